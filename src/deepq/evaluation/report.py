"""One self-contained HTML file per run (plots inlined as PNG data URIs), readable offline.

Sections: seed targets beside measured values with CIs and baselines; forecast and direction summary;
portfolios after costs; equity curves against SPY and drawdowns; IC over time and IC decay; calibration
and confusion matrices; per-regime and stress tables; per-fold metrics; the fold plan; the resolved config.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepq.dataset.crosssection import IC_CONVENTION  # noqa: E402
from deepq.dataset.folds import Fold  # noqa: E402
from deepq.evaluation.degeneracy import flagged_models, warning_text  # noqa: E402
from deepq.evaluation.evaluate import EvalResult  # noqa: E402
from deepq.evaluation.performance import drawdown, equity_curve  # noqa: E402
from deepq.utils.io import write_atomic  # noqa: E402

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:12px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}
.banner{background:#c62828;color:#fff;padding:.8em 1.2em;font-size:15px;border-radius:4px}
.met{background:#e5f5e5}.miss{background:#fbeaea}img{max-width:100%}h2{margin-top:1.6em}
"""

SUMMARY_COLUMNS = (
    "model", "n", "degenerate", "distinct_share", "dispersion_ratio", "dir_acc", "dir_acc_lo", "dir_acc_hi", "always_up_acc", "p_acc_vs_50", "p_acc_vs_always_up",
    "dir_acc_se_clustered", "dir_acc_se_iid", "rank_ic", "rank_ic_lo", "rank_ic_hi", "rank_ic_dates",
    "rank_ic_tied_dates", "icir", "ic", "mse", "mae",
    "r2", "price_r2", "price_r2_rw", "cls_accuracy", "cls_balanced_accuracy", "cls_f1", "cls_log_loss", "cls_auc",
    "cls_brier", "signal_acc", "r2_log_vol", "qlike", "var95_breach_rate", "var95_kupiec_p", "var95_christoffersen_p",
)  # fmt: skip
PORTFOLIO_COLUMNS = (
    "model", "portfolio", "holding_days", "cost_bps", "cagr", "ann_vol", "sharpe", "sharpe_lo", "sharpe_hi",
    "gross_sharpe", "sortino", "calmar", "max_drawdown", "hit_rate", "win_rate", "turnover_per_day",
    "cost_per_year", "alpha", "beta", "info_ratio", "deflated_sharpe", "dsr_trials", "years", "total_return",
)  # fmt: skip


# The report's own style: other libraries (quantstats, seaborn) restyle matplotlib globally on import
STYLE: Any = {
    "axes.prop_cycle": matplotlib.rcParamsDefault["axes.prop_cycle"],  # tab10
    "axes.facecolor": "white",
    "figure.facecolor": "white",
    "axes.grid": False,
}
F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    # decoded before first paint, so a headless screenshot never catches an empty frame
    return f'<img alt="plot" class="plot" src="data:image/png;base64,{data}" decoding="sync" loading="eager">'


def table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    if df is None or df.empty:
        return '<p class="note">(none)</p>'
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0)


@styled
def fold_plan_figure(folds: Sequence[Fold], dates: np.ndarray) -> plt.Figure:
    """Gantt chart of train / validation / test segments per fold."""
    d = pd.to_datetime(np.asarray(dates))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(folds) + 1.2))
    colours = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
    for f in folds:
        for name, seg in (("train", f.train), ("val", f.val), ("test", f.test)):
            if seg[1] > seg[0]:
                start, stop = d[seg[0]], d[seg[1] - 1]
                ax.barh(f.index, (stop - start).days, left=start, color=colours[name], height=0.6,
                        label=name if f.index == 0 else None)  # fmt: skip
    ax.set_yticks([f.index for f in folds])
    ax.invert_yaxis()
    ax.set_ylabel("fold")
    ax.xaxis_date()
    ax.legend(loc="lower left", fontsize=8, ncol=3)
    ax.set_title("walk-forward plan (gaps are purge and embargo)")
    return fig


@styled
def _equity_plots(result: EvalResult) -> str:
    d = result.daily
    if d.empty:
        return '<p class="note">no model has a ranking score: no portfolio</p>'
    prim = d[(d["portfolio"] == result.primary) | (d["portfolio"] == "benchmark")]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for (model, port), g in prim.groupby(["model", "portfolio"], sort=False):
        r = g.set_index("date")["net"]
        label = f"{model} (benchmark)" if port == "benchmark" else str(model)
        style = {"color": "black", "lw": 1.2} if port == "benchmark" else {"lw": 1}
        a1.plot(r.index, equity_curve(r).to_numpy(), label=label, **style)
        a2.plot(r.index, drawdown(r).to_numpy(), label=label, **style)
    a1.set_yscale("log")
    a1.set_title(f"equity after costs, portfolio {result.primary}, vs buy-and-hold benchmark")
    a1.legend(fontsize=8, loc="upper left")
    a2.set_title("drawdown")
    return png(fig)


@styled
def _portfolio_compare_plot(result: EvalResult) -> str:
    d = result.daily[result.daily["portfolio"] != "benchmark"] if len(result.daily) else result.daily
    if d.empty:
        return ""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for (model, port), g in d.groupby(["model", "portfolio"], sort=False):
        r = g.set_index("date")["net"]
        ax.plot(r.index, equity_curve(r).to_numpy(), lw=0.9, label=f"{model} / {port}")
    ax.set_yscale("log")
    ax.set_title("every model x portfolio construction, after costs")
    ax.legend(fontsize=7, ncol=2)
    return png(fig)


@styled
def _ic_plots(result: EvalResult) -> str:
    if result.ic_daily.empty:
        return '<p class="note">no ranking scores</p>'
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
    for model, g in result.ic_daily.groupby("model", sort=False):
        s = g.set_index("date")["ic"]
        a1.plot(s.index, s.rolling(63, min_periods=20).mean().to_numpy(), lw=1, label=str(model))
    a1.axhline(0, color="#999", lw=0.5)
    a1.set_title("daily rank IC, 63-session rolling mean")
    a1.legend(fontsize=8)
    for model, g in result.ic_decay.groupby("model", sort=False):
        a2.plot(g["horizon_days"], g["rank_ic"], marker="o", label=str(model))
    a2.axhline(0, color="#999", lw=0.5)
    a2.set_xscale("log")
    a2.set_xlabel("horizon (sessions)")
    a2.set_title("IC decay")
    return png(fig)


@styled
def _calibration_plot(result: EvalResult) -> str:
    c = result.calibration
    if c.empty:
        return '<p class="note">calibration needs probabilities (task=direction)</p>'
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="#999", lw=0.6)
    for model, g in c.groupby("model", sort=False):
        ax.plot(g["mean_pred"], g["frac_up"], marker="o", label=str(model))
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8)
    return png(fig)


def _confusion_html(result: EvalResult) -> str:
    parts = []
    for model, m in result.confusion.items():
        share = m / max(m.to_numpy().sum(), 1)
        parts.append(
            f"<div style='display:inline-block;margin-right:2em'><b>{html.escape(model)}</b>"
            f"{share.to_html(float_format=lambda v: f'{v:.3f}', border=0)}</div>"
        )
    return "".join(parts) or '<p class="note">no direction calls</p>'


def targets_html(targets: pd.DataFrame) -> str:
    if targets.empty:
        return '<p class="note">(none)</p>'
    rows = []
    for r in targets.itertuples(index=False):
        ci = f" [{r.lo:.3g}, {r.hi:.3g}]" if np.isfinite(r.lo) and np.isfinite(r.hi) else ""
        value = "–" if not np.isfinite(r.value) else f"{r.value:.4g}{ci}"
        cls = "met" if r.met else "miss"
        verdict = "met" if r.met else ("not measured" if not np.isfinite(r.value) else "NOT met")
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(r.target)}</td><td>{html.escape(str(r.model))}</td>"
            f"<td>{value}</td><td>{verdict}</td><td>{html.escape(str(r.note))}</td></tr>"
        )
    head = "<tr><th>seed target</th><th>model / baseline</th><th>measured [95% CI]</th><th>verdict</th><th>note</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def degeneracy_banner(result: EvalResult, models: Sequence[str] | None = None) -> str:
    """The red banner naming each flagged model of `models` (all models when None), with its figures."""
    flagged = flagged_models(result.degeneracy, None if models is None else list(models))
    if flagged.empty:
        return ""
    names = ", ".join(html.escape(str(m)) for m in flagged["model"])
    return (
        f'<div class="banner" id="degenerate"><b>Degenerate forecaster: {names}.</b> '
        f"{html.escape(warning_text(flagged))} Its rank IC and portfolios rank ties, not stocks: read them "
        'as a defect, not a result (see <a href="#guard">the guard</a>).</div>'
    )


def degeneracy_html(result: EvalResult, models: Sequence[str] | None = None) -> str:
    g = result.degeneracy
    if g.empty:
        return '<p class="note">no model has a ranking score</p>'
    shown = g.assign(degenerate=g["degenerate"].map({True: "DEGENERATE", False: ""}))
    body = table(shown).replace("<td>DEGENERATE</td>", '<td class="miss"><b>DEGENERATE</b></td>')
    others = flagged_models(g)
    if models is not None:
        others = others[~others["model"].isin(list(models))]
    note = (
        f" Baselines that tie by construction (flagged, no banner): {html.escape(', '.join(others['model']))}."
        if len(others)
        else ""
    )
    return body + f'<p class="note">{GUARD_NOTE}{note}</p>'


GUARD_NOTE = (
    "distinct_share: median over dates of distinct scores / scored names; tied_date_share: dates whose scores "
    "are all equal; dispersion_ratio: mean over dates of the cross-sectional std of scores over the std across "
    "dates of the daily mean score (near 0: the scores move with the market, not across stocks)."
)


def ties_note(result: EvalResult) -> str:
    s = result.summary
    if s.empty or "rank_ic_tied_dates" not in s:
        return ""
    tied = [
        f"{html.escape(str(r.model))}: {int(r.rank_ic_tied_dates)} of {int(r.rank_ic_dates)} dates all tied, scored 0"
        for r in s.itertuples(index=False)
        if pd.notna(r.rank_ic_tied_dates) and r.rank_ic_tied_dates > 0
    ]
    return f"Rank IC: {html.escape(IC_CONVENTION)}." + (f" {'; '.join(tied)}." if tied else "")


def write_report(
    path: str | Path,
    title: str,
    result: EvalResult,
    folds: Sequence[Fold],
    dates: np.ndarray,
    verdict: str,
    config_yaml: str,
    models: Sequence[str] | None = None,
) -> Path:
    """`models`: the run's own model(s), whose degeneracy raises the red banner (None: every model)."""
    fold_plan = pd.DataFrame([f.describe(dates) for f in folds])
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
{degeneracy_banner(result, models)}
<p>{html.escape(verdict)}</p>
<h2 id="targets">Seed targets</h2>{targets_html(result.targets)}
<p class="note">Intervals: direction accuracy and signal accuracy use date-clustered standard errors (the date is the unit
of independent evidence); Sharpe uses a stationary bootstrap of daily net returns. Portfolio targets are read from
portfolio <b>{html.escape(result.primary)}</b> after costs. Always-up and the random walk are scored on the same rows.</p>
<h2 id="summary">Forecasts (all test folds)</h2>{table(result.summary, SUMMARY_COLUMNS)}
<p class="note">dir_acc: share of rows whose predicted direction matched the sign of the forward return; always_up_acc on
the same rows. p_acc_vs_50 / p_acc_vs_always_up: one-sided iid binomial and exact McNemar p-values (optimistic: compare
dir_acc_se_clustered with dir_acc_se_iid). rank_ic: mean daily Spearman correlation of score and forward return, CI by
Newey-West over dates. price_r2: median per-symbol R² of predicted exit price, beside the random walk's.
{ties_note(result)}</p>
<h2 id="guard">Do the scores tell stocks apart?</h2>{degeneracy_html(result, models)}
<h2 id="portfolios">Portfolios after costs</h2>{table(result.portfolios, PORTFOLIO_COLUMNS)}
<p class="note">Sharpe CI: stationary bootstrap; deflated_sharpe: probability that the true Sharpe beats the best of
dsr_trials skill-less trials; win_rate: share of (position, holding period) pairs with positive P&amp;L; hit_rate: share of
positive days. Alpha, beta and information ratio against the benchmark's next-session return.</p>
<h2 id="equity">Equity and drawdown against the benchmark</h2>{_equity_plots(result)}{_portfolio_compare_plot(result)}
<h2 id="ic">Information coefficient over time and IC decay</h2>{_ic_plots(result)}{table(result.ic_decay)}
<h2 id="calibration">Calibration and confusion matrices</h2>{_calibration_plot(result)}{_confusion_html(result)}
<h2 id="regimes">By market regime</h2>{table(result.regimes)}
<p class="note">trend: market above/below its 200-session average; volatility: 21-session realised volatility above/below
its expanding median. Portfolio columns refer to {html.escape(result.primary)}.</p>
<h2 id="stress">Stress windows</h2>{table(result.stress)}
<h2 id="folds">Per fold</h2>{table(result.per_fold)}
<h2 id="plan">Fold plan</h2>{png(fold_plan_figure(folds, dates))}{table(fold_plan)}
<h2>Resolved config</h2><pre>{html.escape(config_yaml)}</pre>
</body></html>"""
    return write_atomic(path, lambda tmp: tmp.write_text(body))
