"""A self-contained HTML report: per-fold table of the model against its baselines, summary and plots."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from deepq.evaluation.metrics import daily_rank_ic  # noqa: E402
from deepq.utils.io import write_atomic  # noqa: E402

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}
.best{font-weight:bold;background:#eef7ee}img{max-width:100%}
"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def cumulative_ic_plot(oof: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for model, g in oof.groupby("model"):
        ic = daily_rank_ic(g)
        if len(ic):
            ax.plot(pd.to_datetime(ic.index), ic.cumsum().to_numpy(), label=str(model))
    ax.set_title("cumulative daily rank IC (out of fold)")
    ax.axhline(0, color="#999", lw=0.5)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0)


def write_report(
    path: str | Path,
    title: str,
    per_fold: pd.DataFrame,
    summary: pd.DataFrame,
    folds: pd.DataFrame,
    oof: pd.DataFrame,
    verdict: str,
    config_yaml: str,
) -> Path:
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(verdict)}</p>
<h2>Summary (all test folds)</h2>{_table(summary)}
<p class="note">dir_acc: share of rows whose predicted direction matched the forward return's sign, on the rows the
model scored; up_rate is always-up's accuracy on those rows. rank_ic: mean daily Spearman correlation of score and
forward return; rank_ic_t its t-statistic over dates. mse on the label's scale.</p>
<h2>Per fold</h2>{_table(per_fold)}
<h2>Cumulative rank IC</h2>{cumulative_ic_plot(oof)}
<h2>Fold plan</h2>{_table(folds)}
<h2>Resolved config</h2><pre>{html.escape(config_yaml)}</pre>
</body></html>"""
    return write_atomic(path, lambda tmp: tmp.write_text(body))
