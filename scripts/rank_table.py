"""Ranking table of finished `deepq train` runs, read from their out-of-fold predictions.

For each run folder (predictions.parquet + metrics.json), the run's own model (metrics.json run.model, or
--model): per-date rank IC of its score against the realised raw return (deepq.dataset.crosssection:
ties at average rank, an all-tied date counts 0), its mean, t (iid over dates: mean / (std / sqrt(dates))),
the mean per calendar year, and the median over dates of the share of distinct scores among a date's names
(1.0 = every stock told apart, 1 / names = one score for the whole date). Markdown to stdout:

    python scripts/rank_table.py outputs/run_a outputs/run_b [--label NAME ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from deepq.dataset.crosssection import DateGroups, daily_rank_ic


def run_model(run: Path, model: str | None) -> tuple[str, str]:
    meta = json.loads((run / "metrics.json").read_text())["run"]
    return model or meta["model"], str(meta.get("target") or "raw")


def rank_row(run: Path, model: str | None = None) -> dict[str, object]:
    name, target = run_model(run, model)
    oof = pd.read_parquet(run / "predictions.parquet", columns=["date", "model", "score", "y_ret"])
    mine = oof[oof["model"] == name]
    if mine.empty:
        raise ValueError(f"{run}: no predictions of model {name!r} (has {sorted(oof['model'].unique())})")
    dates = pd.to_datetime(mine["date"]).to_numpy()
    groups = DateGroups.of(dates)
    ic = daily_rank_ic(groups, mine["score"].to_numpy(), mine["y_ret"].to_numpy())
    day = np.array([dates[r[0]] for r in groups.rows], dtype="datetime64[ns]")  # each group's date
    by_year = pd.Series(ic, index=pd.DatetimeIndex(day)).groupby(lambda d: d.year).mean()
    per_date = mine.groupby("date")["score"]
    distinct = (per_date.nunique() / per_date.size()).median()
    t = ic.mean() / (ic.std(ddof=1) / np.sqrt(len(ic))) if len(ic) > 1 and ic.std() > 0 else float("nan")
    return {
        "run": run.name,
        "model": name,
        "target": target,
        "dates": len(ic),
        "distinct": float(distinct),
        "rank_ic": float(ic.mean()),
        "t": float(t),
        "by_year": {int(y): float(v) for y, v in by_year.items()},
    }


def markdown(rows: list[dict[str, object]], labels: list[str]) -> str:
    years = sorted({y for r in rows for y in r["by_year"]})  # type: ignore[attr-defined]
    head = "| configuration | target | distinct scores per date (median) | rank IC (t, iid over dates) | "
    head += "by year " + " / ".join(str(y) for y in years) + " |"
    out = [head, "|---|---|---|---|---|"]
    for label, r in zip(labels, rows, strict=True):
        yearly = " / ".join(f"{r['by_year'].get(y, float('nan')):.4f}" for y in years)  # type: ignore[attr-defined]
        out.append(
            f"| {label} | {r['target']} | {100 * r['distinct']:.1f} % | "  # type: ignore[operator]
            f"{r['rank_ic']:.4f} ({r['t']:.2f}) | {yearly} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of `deepq train`")
    ap.add_argument("--label", action="append", help="row label per run, in order (default: folder name)")
    ap.add_argument("--model", help="model to read (default: each run's own model)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = ap.parse_args()
    rows = [rank_row(r, args.model) for r in args.runs]
    labels = args.label or [r.name for r in args.runs]
    if len(labels) != len(rows):
        ap.error(f"{len(labels)} labels for {len(rows)} runs")
    print(json.dumps(rows, indent=1) if args.json else markdown(rows, labels))


if __name__ == "__main__":
    main()
