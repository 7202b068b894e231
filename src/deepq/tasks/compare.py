"""`deepq compare RUN_OR_SWEEP_DIR...`: a leaderboard (HTML and markdown) across runs and sweeps.

A folder holding metrics.json is one run; any other folder (a Hydra multirun folder, an outputs/ day) is
searched for runs. With --reevaluate, each run's report and evaluation are rebuilt from its
predictions.parquet and config.yaml with the current evaluation code (no model is refitted).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from deepq.evaluation.evaluate import evaluate_run, options_from_config
from deepq.evaluation.leaderboard import find_runs, flagged_text, leaderboard, write_leaderboard
from deepq.evaluation.report import write_report
from deepq.tasks.common import build_panel_data, purge_days
from deepq.tasks.hydra_utils import register_resolvers
from deepq.utils.io import write_json_atomic, write_parquet_atomic

console = Console()


def reevaluate(run_dir: Path) -> None:
    """Rebuild one run's evaluation and report from its saved predictions (same data, same folds)."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert isinstance(cfg, DictConfig)
    data = build_panel_data(cfg)
    purge = purge_days(cfg)
    folds = instantiate(cfg.split)(
        dates=data.panel.dates, purge_days=purge, min_history_days=cfg.universe.min_history_days
    )
    oof = pd.read_parquet(run_dir / "predictions.parquet")
    folds = [f for f in folds if f.index in set(oof["fold"].unique())]
    node = OmegaConf.to_container(cfg.evaluation, resolve=True) if cfg.get("evaluation") else None
    result = evaluate_run(oof, data, options_from_config(node, int(cfg.get("n_trials") or 1), int(cfg.seed)))  # type: ignore[arg-type]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["evaluation"] = result.to_json()
    verdict = (metrics.get("run") or {}).get("verdict", "")
    own = (metrics.get("run") or {}).get("model")
    write_report(run_dir / "report.html", f"deepq {cfg.name}", result, folds, data.panel.dates, verdict,
                 OmegaConf.to_yaml(cfg), models=[own] if own else None)  # fmt: skip
    if len(result.daily):
        write_parquet_atomic(result.daily, run_dir / "portfolio_returns.parquet", index=False)
    write_json_atomic(metrics, run_dir / "metrics.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deepq compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run folders, sweep (multirun) folders, or folders of runs")
    parser.add_argument("--out", default=None, help="where leaderboard.html/.md go (default: the first path)")
    parser.add_argument(
        "--reevaluate", action="store_true", help="rebuild each run's report from its predictions"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    register_resolvers()
    runs = find_runs(args.paths)
    if args.reevaluate:
        for run in runs:
            console.print(f"re-evaluating {run.path}")
            reevaluate(run.path)
        runs = find_runs(args.paths)
    board = leaderboard(runs)
    out = Path(args.out or args.paths[0])
    html_path, md_path = write_leaderboard(out, runs)
    t = Table(title=f"leaderboard ({len(runs)} runs)")
    cols = [
        c
        for c in ("run", "model", "degenerate", "dir_acc", "rank_ic", "sharpe", "max_drawdown", "targets_met")
        if c in board
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("run", "model") else "right")
    for row in board[cols].itertuples(index=False):
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(t)
    if warn := flagged_text(board):
        console.print(warn, style="bold red", markup=False, highlight=False)
    console.print(f"wrote {html_path} and {md_path}")


if __name__ == "__main__":
    main()
