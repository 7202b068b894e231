"""A leaderboard across runs and sweeps, read from each run's metrics.json and portfolio_returns.parquet.

A sweep (a Hydra multirun folder) is many runs; picking its best configuration is itself a trial, so the
leaderboard deflates the best Sharpe by the number of configurations tried and estimates the probability
of backtest overfitting (CSCV) over the configurations' daily net returns.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepq.evaluation.performance import equity_curve  # noqa: E402
from deepq.evaluation.report import CSS, STYLE, png, table  # noqa: E402
from deepq.evaluation.stats import deflated_sharpe_ratio, pbo_cscv  # noqa: E402
from deepq.utils.io import write_atomic  # noqa: E402

COLUMNS = (
    "run", "model", "task", "degenerate", "distinct_share", "dispersion_ratio", "dir_acc", "dir_acc_lo", "dir_acc_hi", "always_up_acc", "rank_ic", "rank_ic_lo",
    "rank_ic_hi", "icir", "mse", "r2", "signal_acc", "r2_log_vol", "qlike", "portfolio", "sharpe", "sharpe_lo", "sharpe_hi", "gross_sharpe",
    "max_drawdown", "win_rate", "turnover_per_day", "deflated_sharpe", "targets_met",
)  # fmt: skip


DEGENERATE = "DEGENERATE"  # the leaderboard's mark of a model whose scores barely differ across stocks


@dataclass(frozen=True)
class RunRecord:
    path: Path
    name: str
    metrics: dict[str, Any]


def find_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Every run folder (one holding metrics.json) at or below the given paths, e.g. a multirun folder."""
    runs: list[RunRecord] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"compare: no such run or sweep folder: {p}")
        files = [p / "metrics.json"] if (p / "metrics.json").is_file() else sorted(p.rglob("metrics.json"))
        for f in files:
            metrics = json.loads(f.read_text())
            rel = f.parent.relative_to(p.parent) if f.parent != p else Path(p.name)
            runs.append(RunRecord(f.parent, str(rel), metrics))
    if not runs:
        raise FileNotFoundError(f"compare: no metrics.json under {[str(p) for p in paths]}")
    return runs


def leaderboard(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        ev = run.metrics.get("evaluation") or {}
        primary = ev.get("primary_portfolio")
        ports = {r["model"]: r for r in ev.get("portfolios", []) if r.get("portfolio") == primary}
        met = pd.DataFrame(ev.get("targets") or [])
        task = ev.get("task") or ""
        summary = ev.get("summary") or run.metrics.get("by_model") or []
        own = (run.metrics.get("run") or {}).get("model")
        for s in summary:
            model = s["model"]
            n_met = int(met[(met["model"] == model) & met["met"]].shape[0]) if len(met) else 0
            rows.append(
                {"run": run.name, "task": task}
                | s
                | (ports.get(model) or {})
                | {"targets_met": n_met}
                | {"_baseline": own is not None and model != own}
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # a naive baseline scored on the same rows in several runs of a sweep is one row, not one per run
    same = [c for c in ("model", "task", "n", "mse", "rank_ic", "dir_acc") if c in frame.columns]
    repeated = frame["_baseline"] & frame[same].astype(str).duplicated()
    frame = frame[~repeated]
    frame = frame[[c for c in COLUMNS if c in frame.columns]]
    if "degenerate" in frame.columns:  # the guard's verdict as a mark, not a bool lost among the figures
        frame["degenerate"] = frame["degenerate"].map(
            lambda v: DEGENERATE if isinstance(v, bool | np.bool_) and v else ""
        )
    key = "sharpe" if "sharpe" in frame.columns else "rank_ic"
    return frame.sort_values(key, ascending=False, na_position="last").reset_index(drop=True)


def sweep_returns(runs: list[RunRecord]) -> pd.DataFrame:
    """[dates, configurations] daily net returns of each run's primary portfolio, per model (common dates)."""
    cols = {}
    for run in runs:
        f = run.path / "portfolio_returns.parquet"
        primary = (run.metrics.get("evaluation") or {}).get("primary_portfolio")
        if not f.is_file() or not primary:
            continue
        d = pd.read_parquet(f)
        d = d[d["portfolio"] == primary]
        for model, g in d.groupby("model"):
            cols[f"{run.name}:{model}"] = g.set_index("date")["net"]
    return pd.DataFrame(cols).dropna() if cols else pd.DataFrame()


def sweep_stats(returns: pd.DataFrame) -> dict[str, float]:
    if returns.shape[1] < 2 or len(returns) < 40:
        return {}
    sr = returns.mean() / returns.std(ddof=1)
    best = sr.idxmax()
    dsr, sr0 = deflated_sharpe_ratio(returns[best].to_numpy(), returns.shape[1], float(sr.var(ddof=1)))
    return {
        "configurations": float(returns.shape[1]),
        "best_sharpe": float(sr[best] * np.sqrt(252)),
        "deflated_sharpe_of_best": dsr,
        "sharpe_needed_by_luck": sr0 * np.sqrt(252),
        "pbo": pbo_cscv(returns.to_numpy(), 16 if len(returns) >= 320 else 8),
        "best": str(best),  # type: ignore[dict-item]
    }


def flagged_rows(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows the degeneracy guard flagged (see deepq.evaluation.degeneracy)."""
    if board.empty or "degenerate" not in board.columns:
        return board.iloc[0:0]
    return board[board["degenerate"] == DEGENERATE]


def flagged_text(board: pd.DataFrame) -> str:
    rows = flagged_rows(board)
    if rows.empty:
        return ""
    names = ", ".join(f"{r.run}:{r.model}" for r in rows.itertuples(index=False))
    return (
        f"{DEGENERATE} (scores barely differ across stocks; their rank IC and portfolios rank ties): {names}"
    )


def to_markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no runs)\n"
    cols = list(frame.columns)
    fmt = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in fmt]
    return "\n".join(lines) + "\n"


def write_leaderboard(out_dir: Path, runs: list[RunRecord]) -> tuple[Path, Path]:
    board = leaderboard(runs)
    rets = sweep_returns(runs)
    stats = sweep_stats(rets)
    stats_df = pd.DataFrame([stats]) if stats else pd.DataFrame()
    plot = ""
    if not rets.empty:
        with plt.rc_context(STYLE):
            fig, ax = plt.subplots(figsize=(10, 4))
            for col in rets.columns:
                ax.plot(rets.index, equity_curve(rets[col]).to_numpy(), lw=0.9, label=col)
            ax.set_yscale("log")
            ax.set_title("primary portfolio after costs, every run and model (common dates)")
            ax.legend(fontsize=7, ncol=2)
            plot = png(fig)
    board_html = table(board).replace(f"<td>{DEGENERATE}</td>", f'<td class="miss"><b>{DEGENERATE}</b></td>')
    note = (
        "Deflated Sharpe of the best configuration discounts for the number of configurations tried; PBO is the "
        "probability that the in-sample best configuration ranks in the bottom half out of sample (CSCV)."
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>deepq leaderboard</title>
<style>{CSS}</style></head><body><h1>deepq leaderboard ({len(runs)} runs)</h1>
{f'<div class="banner">{html.escape(flagged_text(board))}</div>' if len(flagged_rows(board)) else ""}
<h2>Leaderboard</h2>{board_html}
<h2>Sweep statistics</h2>{table(stats_df)}<p class="note">{html.escape(note)}</p>{plot}
<h2>Runs</h2><ul>{"".join(f"<li>{html.escape(r.name)}: {html.escape(str(r.path))}</li>" for r in runs)}</ul>
</body></html>"""
    out_dir.mkdir(parents=True, exist_ok=True)
    h = write_atomic(out_dir / "leaderboard.html", lambda tmp: tmp.write_text(body))
    md = "# deepq leaderboard\n\n"
    if warn := flagged_text(board):
        md += f"**{warn}**\n\n"
    md += to_markdown(board)
    if stats:
        md += "\n## Sweep statistics\n\n" + to_markdown(stats_df) + f"\n{note}\n"
    m = write_atomic(out_dir / "leaderboard.md", lambda tmp: tmp.write_text(md))
    return h, m
