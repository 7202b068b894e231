"""The returns benchmark (issue 14): models x feature sets x executions x seeds walked forward on the full
shared panel, then Qlib's table, mean ± std over seeds.

    python scripts/benchmark.py run --out outputs/benchmark                      # the full grid (GPU-sized)
    python scripts/benchmark.py run --out outputs/benchmark --models lightgbm,catboost_rank --seeds 0,1,2 \\
        --features default --executions next_close --first-test 2021-01-01     # a cut CPU run
    python scripts/benchmark.py table outputs/benchmark > table.md

`run` starts one `deepq train` process per configuration: 10 years train -> 1 year test, rolling yearly from
`--first-test` (2012 by default) to 2024-06, point-in-time S&P 500 members, 21-session purge. Each lands in
OUT/<row>/<model>/<features>/<execution>/seed<k> (`--tag T` names the row <row>+T, for a variant made with
`--set`); a configuration whose metrics.json exists is skipped, so a
killed run resumes. `--trainer gpu` runs the networks on CUDA; `--samples/--epochs` cut them on a CPU.

Rows: `before` is deepq's previous returns configuration (raw next-day return, MSE, early stopping on
validation MSE, random-window batches, boosters on a 300k-row subsample of each window); `after` is the
cross-sectional design: the per-date Gaussian-rank target (`target=cs_rank`), early stopping on validation rank IC, and for networks whole-date batches with the per-date
IC loss (`ranking=ic`). Rank boosters (`*_rank`) keep their ranking objective; `booster_blend` (the three
boosters, each stopped on rank IC with a 50-tree floor, averaged as per-date ranks) has only an `after` row.

`table` reads every finished configuration: per date, Pearson IC and rank IC of the score against the realised
raw return (ties at average rank, an all-tied date counts 0; deepq.dataset.crosssection), their mean and ICIR
(mean / std over dates), rank IC t (iid over dates: each date one observation, i.e. clustered by date), the
degeneracy guard's median share of distinct scores per date and share of dates with >= 95 % distinct scores
(a median hides a fold that stopped at a handful of trees; dates of >= 5 names, deepq.evaluation.degeneracy); for the daily decile long-short, the 5-day buffered decile
long-short and the top-20 book, after 5 bps per side: annualised mean net return (x252), information ratio
(annualised mean / std; the top-k book against SPY) and max drawdown of the summed returns, as Qlib reports
them. The last column, for a configuration of several seeds, is the rank IC (t) of their ensemble: each
seed's scores as per-date percentile ranks, averaged per stock. Then rank IC by year and the deflated Sharpe of
the best buffered long-short over all configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deepq.dataset.crosssection import DateGroups, daily_ic_of  # noqa: E402
from deepq.evaluation.degeneracy import DegeneracySpec, degeneracy  # noqa: E402
from deepq.evaluation.stats import deflated_sharpe_ratio  # noqa: E402

NETWORKS = {"lstm", "transformer", "tft", "deepar", "master"}
BLENDS = {"booster_blend"}  # stacks of already cross-sectional members: no raw-MSE "before" row
BOOKS = {"ls": "ls_decile_daily", "ls5b": "ls_decile_5d_buffered", "top20": "top20_5d"}


# ------------------------------------------------------------------------------------------------- run
def overrides(
    row: str, model: str, features: str, execution: str, seed: int, args: argparse.Namespace
) -> list[str]:
    """The `deepq train` overrides of one configuration."""
    over = [
        f"model={model}",
        "task=returns",
        f"task.execution={execution}",
        f"features={features}",
        f"seed={seed}",
        "data=shared",
        "split.train_years=10",
        "split.test_years=1",
        "split.step_years=1",
        "split.val_days=252",
        f"split.first_test={args.first_test}",
        f"num_threads={args.threads}",
        "export=false",
        "registry.enabled=false",
        "logger=csv",
    ]
    if args.max_folds:
        over.append(f"split.max_folds={args.max_folds}")
    network = model in NETWORKS
    if network:
        over += [f"trainer={args.trainer}", f"trainer.max_epochs={args.epochs}", "early_stopping.patience=3"]
        over += [f"datamodule.max_train_samples={args.samples}", f"datamodule.batch_size={args.batch}"]
    if row == "before":
        over += ["target=raw"]
        # the previous booster also trained on a 300k-row subsample of each window (all rows since 2026-12-07)
        if not network:
            over += ["model.plugin.early_stopping_metric=loss", "model.plugin.max_train_rows=300000"]
    elif row == "after":
        over += ["target=cs_rank"]
        if network:
            over += ["ranking=ic", "datamodule.batching=date", "early_stopping.monitor=val_rank_ic"]
            over += ["early_stopping.mode=max"]
        elif model not in BLENDS:  # a blend's members already stop on rank IC (conf/model/booster_blend.yaml)
            over += ["model.plugin.early_stopping_metric=rank_ic"]
    else:
        raise ValueError(f"unknown row {row!r}: before | after")
    return over + list(args.set or [])


def run_grid(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = [
        (row, model, feats, ex, int(seed))
        for row in args.rows.split(",")
        for model in args.models.split(",")
        for feats in args.features.split(",")
        for ex in args.executions.split(",")
        for seed in args.seeds.split(",")
        if not (
            row == "before" and (model.endswith("_rank") or model in BLENDS | {"master"})
        )  # no raw-MSE "before"
    ]
    print(f"benchmark: {len(grid)} configurations into {out}", flush=True)
    failed = 0
    for k, (row, model, feats, ex, seed) in enumerate(grid, 1):
        run = out / (f"{row}+{args.tag}" if args.tag else row) / model / feats / ex / f"seed{seed}"
        if (run / "metrics.json").exists():
            print(f"[{k}/{len(grid)}] {run.relative_to(out)}: done before, skipped", flush=True)
            continue
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "deepq.tasks.train", *overrides(row, model, feats, ex, seed, args)]
        cmd.append(f"hydra.run.dir={run}")
        t0 = time.time()
        env = os.environ | {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
        with open(run / "benchmark.log", "w") as log:
            try:
                rc = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=args.per_run
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        secs = time.time() - t0
        failed += rc != 0
        status = "ok" if rc == 0 else f"FAILED rc={rc} (log: {run / 'benchmark.log'})"
        print(f"[{k}/{len(grid)}] {run.relative_to(out)}: {status}, {secs:.0f} s", flush=True)
        with open(out / "runs.jsonl", "a") as f:
            f.write(
                json.dumps({"run": str(run.relative_to(out)), "rc": rc, "seconds": secs, "cmd": cmd}) + "\n"
            )
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------- table
def book_figures(net: pd.Series) -> dict[str, float]:
    """Annualised mean, information ratio and max drawdown of summed daily returns (Qlib's risk_analysis)."""
    r = net.dropna()
    if len(r) < 3 or r.std(ddof=1) == 0:
        return {"ann_return": np.nan, "ir": np.nan, "mdd": np.nan}
    cum = r.cumsum()
    return {
        "ann_return": float(r.mean() * 252),
        "ir": float(r.mean() / r.std(ddof=1) * np.sqrt(252)),
        "mdd": float((cum - cum.cummax()).min()),
    }


def scored(run: Path, columns: Sequence[str] = ("date", "score", "y_ret")) -> tuple[str, pd.DataFrame]:
    """A finished run's model and its out-of-fold rows with a finite score and realised return."""
    model = json.loads((run / "metrics.json").read_text())["run"]["model"]
    oof = pd.read_parquet(run / "predictions.parquet", columns=[*columns, "model"])
    oof = oof[(oof["model"] == model) & np.isfinite(oof["score"]) & np.isfinite(oof["y_ret"])]
    return model, oof


def t_stat(daily: pd.Series) -> float:
    """Mean / std x sqrt(n) over dates: each date one observation (clustered by date)."""
    return float(daily.mean() / daily.std(ddof=1) * np.sqrt(len(daily)))


def run_figures(run: Path) -> dict[str, object]:
    """One finished configuration's figures, and its daily series for the deflated Sharpe and the years."""
    model, oof = scored(run)
    dates = pd.to_datetime(oof["date"]).to_numpy()
    groups = DateGroups.of(dates)
    score, y = oof["score"].to_numpy(), oof["y_ret"].to_numpy()
    ic = daily_ic_of(groups, score, y, "pearson").ic
    ric = daily_ic_of(groups, score, y, "spearman")
    day = pd.DatetimeIndex(groups.keys)
    rank_ic = pd.Series(ric.ic, index=day).dropna()
    guard = degeneracy(model, dates, score, DegeneracySpec())  # the run's own guard, on the scored dates
    fig: dict[str, object] = {
        "ic": float(np.nanmean(ic)),
        "icir": float(np.nanmean(ic) / np.nanstd(ic, ddof=1)),
        "rank_ic": float(rank_ic.mean()),
        "rank_icir": float(rank_ic.mean() / rank_ic.std(ddof=1)),
        "rank_ic_t": t_stat(rank_ic),
        "tied_dates": int(ric.n_tied),
        "distinct": guard.distinct_share if guard else float("nan"),
        "distinct95": guard.distinct95_share if guard else float("nan"),
        "dates": len(rank_ic),
        "first": str(day.min().date()),
        "last": str(day.max().date()),
        "_rank_ic": rank_ic,
    }
    books = pd.read_parquet(run / "portfolio_returns.parquet")
    bench = books[books["portfolio"] == "benchmark"].set_index("date")["net"]
    for short, name in BOOKS.items():
        b = books[(books["model"] == model) & (books["portfolio"] == name)].set_index("date")["net"]
        if short == "top20":  # long-only: its excess over SPY, as Qlib's top-k tables are
            b = (b - bench.reindex(b.index)).dropna()
        for k, v in book_figures(b).items():
            fig[f"{short}_{k}"] = v
        fig[f"_{short}"] = b
    return fig


def seed_ensemble_rank_ic(runs: Sequence[Path]) -> pd.Series:
    """Per-date rank IC of the seeds' forecasts averaged: each seed's scores as per-date percentile ranks, their
    mean per (date, symbol), the realised return as before. After the fact, over separate runs; `ensemble.seeds=N`
    combines its members inside one run, each weighed by 1 / its validation score spread."""
    ranks, realised = [], []
    for run in runs:
        oof = scored(run, ("date", "symbol", "score", "y_ret"))[1].set_index(["date", "symbol"])
        ranks.append(oof.groupby(level="date")["score"].rank(pct=True))
        realised.append(oof["y_ret"])
    score = pd.concat(ranks, axis=1).mean(axis=1)
    y = pd.concat(realised, axis=1).bfill(axis=1).iloc[:, 0].reindex(score.index)
    dates = pd.to_datetime(score.index.get_level_values("date")).to_numpy()
    groups = DateGroups.of(dates)
    ric = daily_ic_of(groups, score.to_numpy(), y.to_numpy(), "spearman")
    return pd.Series(ric.ic, index=pd.DatetimeIndex(groups.keys)).dropna()


def member_rank_ics(run: Path) -> list[float]:
    """A seed ensemble's members' rank IC over the test rows (metrics.json run.seed_spread); [] for a plain run."""
    spread = json.loads((run / "metrics.json").read_text())["run"].get("seed_spread") or {}
    return [float(v) for v in spread.get("rank_ic", [])]


def configurations(out: Path) -> pd.DataFrame:
    rows = []
    for metrics in sorted(out.glob("*/*/*/*/seed*/metrics.json")):
        run = metrics.parent
        row, model, feats, ex = run.relative_to(out).parts[:4]
        rows.append(
            {"row": row, "model": model, "features": feats, "execution": ex, "seed": run.name, "run": run}
        )
    return pd.DataFrame(rows)


SHOWN = [
    ("IC", "ic", 4), ("ICIR", "icir", 3), ("rank IC", "rank_ic", 4), ("rank ICIR", "rank_icir", 3),
    ("rank IC t", "rank_ic_t", 1), ("distinct", "distinct", 2),
    ("dates >= 95 % distinct", "distinct95", 2),
    ("L/S ann. ret", "ls_ann_return", 3), ("L/S IR", "ls_ir", 2), ("L/S MDD", "ls_mdd", 3),
    ("L/S 5d-buf ann. ret", "ls5b_ann_return", 3), ("L/S 5d-buf IR", "ls5b_ir", 2),
    ("top-20 excess ann. ret", "top20_ann_return", 3), ("top-20 IR", "top20_ir", 2), ("top-20 MDD", "top20_mdd", 3),
]  # fmt: skip


def pm(values: Sequence[float], digits: int) -> str:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "–"
    return f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")


def table(args: argparse.Namespace) -> int:
    out = Path(args.out)
    runs = configurations(out)
    if runs.empty:
        sys.exit(f"{out}: no finished configuration (*/*/*/*/seed*/metrics.json)")
    figs = [run_figures(r) for r in runs["run"]]
    runs = pd.concat([runs, pd.DataFrame(figs)], axis=1)
    keys = ["row", "model", "features", "execution"]
    span = f"{runs['first'].min()} .. {runs['last'].max()}"
    print(
        f"Returns benchmark, {len(runs)} runs, test dates {span}; mean ± std over seeds (the last column: the "
        "seeds' ensemble); books after 5 bps/side.\n"
    )
    print("| " + " | ".join([*keys, "seeds", *(h for h, _, _ in SHOWN), "seed-ensemble rank IC (t)"]) + " |")
    print("|" + "---|" * (len(keys) + 2 + len(SHOWN)))
    by_cfg = runs.groupby(keys, sort=False)
    for key, g in by_cfg:
        cells = [*key, str(len(g)), *(pm(g[c], d) for _, c, d in SHOWN)]
        if len(g) > 1:
            ens = seed_ensemble_rank_ic(list(g["run"]))
            cells.append(f"{ens.mean():.4f} ({t_stat(ens):.1f})")
        else:
            cells.append("–")
        print("| " + " | ".join(cells) + " |")

    for key, g in by_cfg:  # rows trained with ensemble.seeds=N: their members' spread
        members = [ic for r in g["run"] for ic in member_rank_ics(r)]
        if members:
            print(
                f"\n{' / '.join(key)}: each run a seed ensemble; its {len(members)} members' rank IC "
                f"{pm(members, 4)} (min {min(members):.4f}, max {max(members):.4f}), the ensembles' {pm(g['rank_ic'], 4)}"
            )

    best_key = max(by_cfg.groups, key=lambda k: by_cfg.get_group(k)["rank_ic"].mean())
    best = by_cfg.get_group(best_key)
    years = pd.concat(list(best["_rank_ic"]), axis=1).mean(axis=1).groupby(lambda d: d.year).mean()
    print(f"\nBest by mean rank IC: {' / '.join(best_key)}; rank IC by year (seed mean):")
    print(", ".join(f"{y} {v:+.4f}" for y, v in years.items()))

    # deflated Sharpe of the best buffered long-short (seed-averaged daily net), against every configuration
    series = {k: pd.concat(list(g["_ls5b"]), axis=1).mean(axis=1) for k, g in by_cfg}
    sr = {k: s.mean() / s.std(ddof=1) for k, s in series.items() if len(s) > 2 and s.std(ddof=1) > 0}
    if sr:
        top = max(sr, key=lambda k: sr[k])
        dsr, sr0 = deflated_sharpe_ratio(
            series[top].to_numpy(), len(sr), float(np.var(list(sr.values()), ddof=1)) if len(sr) > 1 else None
        )
        print(
            f"\nBest buffered decile L/S after 5 bps: {' / '.join(top)}, net Sharpe {sr[top] * np.sqrt(252):.2f}; "
            f"deflated Sharpe over {len(sr)} configurations: P(true Sharpe > luck's {sr0 * np.sqrt(252):.2f}) = {dsr:.3f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train every configuration (resumable)")
    r.add_argument("--out", default="outputs/benchmark")
    r.add_argument("--rows", default="before,after")
    r.add_argument("--models", default="lightgbm,xgboost,catboost_rank,lstm,transformer,master")
    r.add_argument("--features", default="default,alpha158")
    r.add_argument("--executions", default="next_close,next_open")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--first-test", default="2012-01-01")
    r.add_argument("--max-folds", type=int, default=None)
    r.add_argument("--trainer", default="gpu", help="networks: gpu | cpu")
    r.add_argument("--threads", type=int, default=8)
    r.add_argument("--samples", type=int, default=200000, help="networks: training windows per epoch")
    r.add_argument("--epochs", type=int, default=12)
    r.add_argument("--batch", type=int, default=1024)
    r.add_argument("--per-run", type=int, default=4 * 3600, help="seconds before a configuration is stopped")
    r.add_argument("--set", action="append", help="an extra override for every run (repeatable)")
    r.add_argument("--tag", default=None, help="row name suffix for a --set variant (row+TAG)")
    t = sub.add_parser("table", help="Qlib's table from the finished configurations")
    t.add_argument("out")
    args = ap.parse_args(argv)
    return run_grid(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
