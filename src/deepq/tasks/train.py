"""`deepq train`: walk-forward training and evaluation of one model against the naive baselines.

Reads top to bottom: data -> features -> labels -> folds -> (fit, predict, baselines) per fold ->
metrics -> report -> export. `train(cfg)` is a plain function; `main` is Hydra's wrapper around it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from deepq.baselines.naive import HistoricalMean, MajorityClass, Naive
from deepq.baselines.volatility import HAR
from deepq.dataset.context import FoldModel, PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.ensemble.seeds import SeedEnsemble
from deepq.evaluation.degeneracy import flagged_models, warning_text
from deepq.evaluation.evaluate import EvalResult, evaluate_run, options_from_config
from deepq.evaluation.report import write_report
from deepq.export.program import export_all
from deepq.export.registry import Registry
from deepq.features.freshness import SeriesLag
from deepq.tasks.common import build_model, build_panel_data, purge_days
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_json_atomic, write_parquet_atomic
from deepq.utils.runinfo import array_fingerprint, git_commit, package_versions
from deepq.utils.seed import seed_everything, set_threads

console = Console()


def oof_frame(data: PanelData, fold: Fold, model: str, index: np.ndarray, p: Predictions) -> pd.DataFrame:
    """One model's out-of-fold rows: the schema every model, baseline and stacker writes."""
    t, s = index[:, 0], index[:, 1]
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(data.panel.dates[t]),
            "symbol": np.asarray(data.panel.symbols)[s],
            "fold": fold.index,
            "model": model,
            "y": data.labels[t, s],
            "y_ret": data.y_ret[t, s],
            "pred": p.pred,
            "score": p.score,
            "up": p.up,
        }
    )
    for name, values in (p.extra or {}).items():
        frame[f"out_{name}"] = values
    return frame


# what a run's verdict compares, by task: (metric of the evaluation summary, higher is better)
VERDICT_METRICS: dict[str, tuple[tuple[str, bool], ...]] = {
    "returns": (("dir_acc", True), ("rank_ic", True), ("mse", False)),
    "direction": (("dir_acc", True), ("rank_ic", True)),
    "signal": (("signal_acc", True),),
    "risk": (("r2_log_vol", True), ("qlike", False)),
}
NAMED_BASELINES: dict[str, type] = {"majority": MajorityClass, "historical_mean": HistoricalMean, "har": HAR}


def build_baselines(cfg: DictConfig, task: str) -> list[FoldModel]:
    """The configured naive bars for this task (`baselines.<task>`; a plain list applies to every task)."""
    node = cfg.get("baselines") or []
    names = list(node.get(task, [])) if isinstance(node, DictConfig) else list(node)
    return [NAMED_BASELINES[n](name=n) if n in NAMED_BASELINES else Naive(n) for n in names]


def verdict(summary: pd.DataFrame, model: str, task: str = "returns") -> str:
    m = summary.set_index("model")
    base = m.drop(index=model)
    parts = []
    for metric, higher_is_better in VERDICT_METRICS.get(task, VERDICT_METRICS["returns"]):
        if metric not in m.columns:
            continue
        vals = base[metric].dropna()
        if vals.empty or pd.isna(m.loc[model, metric]):
            continue
        best_name = vals.idxmax() if higher_is_better else vals.idxmin()
        mine, best = m.loc[model, metric], vals.loc[best_name]
        beats = mine > best if higher_is_better else mine < best
        parts.append(f"{metric} {mine:.4g} {'beats' if beats else 'does NOT beat'} {best_name} ({best:.4g})")
    return f"{model}: " + "; ".join(parts) + "."


def guard_text(evaluation: EvalResult, model: str) -> str:
    """What the verdict adds about ties: the model's degeneracy and the all-tied dates its rank IC scored 0."""
    parts = [warning_text(flagged_models(evaluation.degeneracy, [model]))]
    s = evaluation.summary.set_index("model")
    if model in s.index and "rank_ic_tied_dates" in s and s.loc[model, "rank_ic_tied_dates"] > 0:
        parts.append(
            f"Rank IC: ties at average rank; {int(s.loc[model, 'rank_ic_tied_dates'])} of "
            f"{int(s.loc[model, 'rank_ic_dates'])} dates had all scores tied and count as 0."
        )
    return " ".join(p for p in parts if p)


def inputs_text(lagging: Sequence[SeriesLag]) -> str:
    """What the verdict says about reference series that end before the panel: stale ones accepted with
    freshness.allow_stale first, then lags within the fill limit."""
    stale = [lag for lag in lagging if lag.stale]
    held = [lag for lag in lagging if not lag.stale]
    parts = []
    if stale:
        parts.append(
            "STALE INPUTS ACCEPTED (freshness.allow_stale): "
            + "; ".join(
                f"{lag.series} since {lag.last}, its features NaN from {lag.nan_from}" for lag in stale
            )
            + "."
        )
    if held:
        parts.append(
            "Inputs lagging within the fill limit (last value held): "
            + "; ".join(f"{lag.series} {lag.lag_sessions} session(s) (last {lag.last})" for lag in held)
            + "."
        )
    return " ".join(parts)


def print_table(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def train(cfg: DictConfig) -> dict[str, float]:
    started = time.time()
    set_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    out = Path(cfg.get("output_dir") or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    data = build_panel_data(cfg)
    T, N, F = data.shape
    console.print(
        f"[bold]deepq[/] {cfg.name}: {N} symbols x {T} sessions ({data.panel.dates[0]} .. {data.panel.dates[-1]}), "
        f"{F} features, task={data.task.name} h={data.task.horizon_days}, target={data.target.describe()}"
    )
    purge = purge_days(cfg)
    folds: list[Fold] = instantiate(cfg.split)(
        dates=data.panel.dates, purge_days=purge, min_history_days=cfg.universe.min_history_days
    )
    model: FoldModel = build_model(cfg)
    baselines = [b for b in build_baselines(cfg, data.task.name) if b.name != model.name]

    pruner = instantiate(cfg.pruner, run_dir=str(out)) if cfg.get("pruner") else None
    pruned = False
    frames: list[pd.DataFrame] = []
    for fold in folds:
        seed_everything(cfg.seed + fold.index)
        t0 = time.perf_counter()
        model.fit(data, fold)
        t1 = time.perf_counter()
        index = data.split_index(fold, "test")
        frames.append(oof_frame(data, fold, model.name, index, model.predict(data, index)))
        t2 = time.perf_counter()
        for b in baselines:
            b.fit(data, fold)
            frames.append(oof_frame(data, fold, b.name, index, b.predict(data, index)))
        d = fold.describe(data.panel.dates)
        console.print(
            f"fold {fold.index}: train {d['train']}  test {d['test']}  scored {len(index):,} stock-days  "
            f"(fit {t1 - t0:.0f} s, predict {t2 - t1:.0f} s, baselines {time.perf_counter() - t2:.0f} s)"
        )
        fold_val = getattr(model, "best_val_loss", {}).get(fold.index, float("nan"))
        if pruner is not None and pruner.report(fold.index, fold_val):
            console.print(
                f"[yellow]pruned after fold {fold.index}[/]: validation loss worse than the sweep's median"
            )
            pruned, folds = True, folds[: fold.index + 1]
            break

    oof = pd.concat(frames, ignore_index=True)
    eval_node = OmegaConf.to_container(cfg.evaluation, resolve=True) if cfg.get("evaluation") else None
    options = options_from_config(eval_node, int(cfg.get("n_trials") or 1), int(cfg.seed))  # type: ignore[arg-type]
    evaluation = evaluate_run(oof, data, options)
    per_fold = evaluation.per_fold
    # the plain all-folds table: the evaluation's per-model summary cut to the per-fold metrics (not recomputed)
    summary = evaluation.summary[[c for c in per_fold.columns if c != "fold"]].sort_values(
        "model", ignore_index=True
    )
    text = verdict(evaluation.summary, model.name, data.task.name)
    if guard := guard_text(evaluation, model.name):
        text += " " + guard
    if (
        not data.target.is_raw
    ):  # the forecasts were fitted to a transformed target: say so where they are judged
        text += f" Trained on target {data.target.describe()}; every metric scores realised raw returns."
    if notes := inputs_text(data.lagging):
        text += " " + notes
    fold_plan = pd.DataFrame([f.describe(data.panel.dates) for f in folds])
    print_table(per_fold, "per fold: model vs baselines (out of sample)")
    print_table(summary, "all folds")
    if len(evaluation.portfolios):
        cols = ["model", "portfolio", "sharpe", "gross_sharpe", "cagr", "max_drawdown", "win_rate"]
        print_table(evaluation.portfolios[cols], "portfolios after costs (out of sample)")
    spread = model.seed_spread(data) if isinstance(model, SeedEnsemble) else None
    if spread:
        ics = ", ".join(f"{ic:+.4f}" for ic in spread["rank_ic"])
        text += (
            f" Seed ensemble of {len(spread['seeds'])}: per-seed rank IC {ics} "
            f"(mean {spread['rank_ic_mean']:+.4f} ± {spread['rank_ic_std']:.4f}); the ensemble's is in the table."
        )
    red = not flagged_models(evaluation.degeneracy, [model.name]).empty
    console.print(text, style="bold red" if red else None, markup=False, highlight=False)

    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    (out / "config.yaml").write_text(config_yaml)
    write_parquet_atomic(oof, out / "predictions.parquet", index=False)
    title = f"deepq {cfg.name}"
    write_report(
        out / "report.html",
        title,
        evaluation,
        folds,
        data.panel.dates,
        text,
        config_yaml,
        models=[model.name],
    )
    if len(evaluation.daily):
        write_parquet_atomic(evaluation.daily, out / "portfolio_returns.parquet", index=False)
    exportable = getattr(model, "exportable", None)
    if cfg.export and callable(exportable):
        last = folds[-1]
        net, example, net_meta = exportable(data.split_index(last, "test"))
        # model.pt (TorchScript) always, the registry reads it; torch.export / ONNX twins as configured
        formats = list(cfg.get("export_formats") or ())
        export_all(
            net,
            example,
            out / "model",
            net_meta
            | {
                "name": cfg.name,
                "task": data.task.name,
                "horizon_days": data.task.horizon_days,
                "execution": data.task.execution,
                "features": list(data.feature_names),
                "fold": last.index,
                "train": fold_plan.iloc[-1]["train"],
            },
            formats=["torchscript", *(f for f in formats if f != "torchscript")],
        )

    result = validation_summary(model)
    task_metrics = [m for m, _ in VERDICT_METRICS.get(data.task.name, ())]
    for row in evaluation.summary.to_dict("records"):
        for metric in dict.fromkeys(["dir_acc", "rank_ic", "mse", *task_metrics]):
            if metric in row and row[metric] is not None:
                result[f"{row['model']}/{metric}"] = float(row[metric])
    meta: dict[str, Any] = {
        "name": cfg.name,
        "model": model.name,
        "git_commit": git_commit(Path(CONFIG_DIR).parent),
        "data_fingerprint": array_fingerprint(data.panel.dates.astype("int64"), data.panel["close"]),
        "packages": package_versions(),
        "seconds": round(time.time() - started, 1),
        "verdict": text,
        "target": data.target.describe(),
        "pruned": pruned,
        "inputs_lagging": [lag.record() for lag in data.lagging],
        "seed_spread": spread,
    }
    write_json_atomic(
        {
            "summary": result,
            "per_fold": per_fold.to_dict("records"),
            "by_model": summary.to_dict("records"),
            "folds": fold_plan.to_dict("records"),
            "evaluation": evaluation.to_json(),
            "run": meta,
        },
        out / "metrics.json",
    )
    if cfg.get("logger") and cfg.logger.get("run"):  # W&B / MLflow record of the whole run
        tracked = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(tracked, dict)
        tracked.pop("hydra", None)
        instantiate(cfg.logger.run).log_run(tracked, meta, result, per_fold, out)
    if cfg.export and callable(exportable) and cfg.get("registry") and cfg.registry.enabled:
        version = Registry(cfg.registry.root).register_run(out, name=cfg.name)  # a new candidate
        console.print(f"registered {version.ref} ({version.stage}) in {cfg.registry.root}")
    console.print(f"outputs in {out}  ({meta['seconds']} s)")
    return result


def validation_summary(model: Any) -> dict[str, float]:
    """Mean over folds of each validation metric at the kept epoch: val_loss, and val_rank_ic where the model
    logs it (networks; `optimized_metric=val_rank_ic` with `hydra.sweeper.direction=maximize`)."""
    best_val = getattr(model, "best_val_loss", {})
    out = {"val_loss": float(np.nanmean(list(best_val.values()))) if best_val else float("nan")}
    per_fold = list(getattr(model, "val_scores", {}).values())
    ics = [m["val_rank_ic"] for m in per_fold if "val_rank_ic" in m]
    if ics:
        out["val_rank_ic"] = float(np.mean(ics))
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    result = train(cfg)
    return result.get(cfg.optimized_metric, float("nan"))


if __name__ == "__main__":
    main()
