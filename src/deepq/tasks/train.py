"""`deepq train`: walk-forward training and evaluation of one model against the naive baselines.

Reads top to bottom: data -> features -> labels -> folds -> (fit, predict, baselines) per fold ->
metrics -> report -> export. `train(cfg)` is a plain function; `main` is Hydra's wrapper around it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from deepq.baselines.naive import BASELINES
from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.dataset.labels import forward_return, label_span, make_labels
from deepq.evaluation.metrics import metrics_table
from deepq.evaluation.report import write_report
from deepq.export.torchscript import export_torchscript
from deepq.features.registry import compute_features
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.training.callbacks import RestoreBestWeights
from deepq.training.fit import fit_fold
from deepq.training.module import ForecastModule
from deepq.utils.io import write_json_atomic, write_parquet_atomic
from deepq.utils.runinfo import array_fingerprint, git_commit, package_versions
from deepq.utils.seed import seed_everything, set_threads

log = logging.getLogger("deepq.train")
console = Console()


def _fold_frame(
    panel, dm: PanelDataModule, fold: Fold, model: str, t, s, pred, score, up, y_ret
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.to_datetime(panel.dates[t]),
            "symbol": np.asarray(panel.symbols)[s],
            "fold": fold.index,
            "model": model,
            "y": dm.labels_np[t, s],
            "y_ret": y_ret[t, s],
            "pred": pred,
            "score": score,
            "up": up,
        }
    )


def _verdict(summary: pd.DataFrame, model: str) -> str:
    m = summary.set_index("model")
    base = m.drop(index=model)
    parts = []
    for metric, better in (("dir_acc", max), ("rank_ic", max), ("mse", min)):
        vals = base[metric].dropna()
        if vals.empty or pd.isna(m.loc[model, metric]):
            continue
        best_name = vals.idxmax() if better is max else vals.idxmin()
        mine, best = m.loc[model, metric], vals.loc[best_name]
        beats = mine > best if better is max else mine < best
        parts.append(f"{metric} {mine:.4f} {'beats' if beats else 'does NOT beat'} {best_name} ({best:.4f})")
    return f"{model}: " + "; ".join(parts) + "."


def _print_table(df: pd.DataFrame, title: str) -> None:
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

    # data -> features -> labels
    panel = instantiate(cfg.data)
    specs = instantiate(cfg.features)
    features = compute_features(panel, specs)
    task = cfg.task
    labels = make_labels(panel, task.name, task.horizon_days, task.execution)
    y_ret = forward_return(panel, task.horizon_days, task.execution)
    present = np.isfinite(panel["close"])
    tradable = present & panel.mask(tuple(cfg.universe.asset_types))[None, :]
    console.print(
        f"[bold]deepq[/] {cfg.name}: {panel.shape[1]} symbols x {panel.shape[0]} sessions "
        f"({panel.dates[0]} .. {panel.dates[-1]}), {len(specs)} features, task={task.name} h={task.horizon_days}"
    )

    dm: PanelDataModule = instantiate(cfg.datamodule)(
        features=features, labels=labels, tradable=tradable, present=present, seed=cfg.seed
    )
    purge = cfg.split.purge_days or label_span(task.horizon_days, task.name)
    folds: list[Fold] = instantiate(cfg.split)(
        dates=panel.dates, purge_days=purge, min_history_days=cfg.universe.min_history_days
    )
    head_example = instantiate(task.head)

    def build_module() -> ForecastModule:
        head = instantiate(task.head)
        net = instantiate(cfg.model.net)(n_features=len(specs), n_outputs=head.n_params)
        return ForecastModule(
            net,
            head,
            instantiate(cfg.model.optimizer),
            instantiate(cfg.model.scheduler) if cfg.model.scheduler else None,
        )

    restores: list[RestoreBestWeights] = []  # one per fold: the fold's best validation loss

    def make_trainer(fold: Fold) -> L.Trainer:
        restore = RestoreBestWeights("val_loss")
        restores.append(restore)
        callbacks: list[L.Callback] = [instantiate(cfg.early_stopping), restore, RichProgressBar(leave=False)]
        return instantiate(cfg.trainer)(
            callbacks=callbacks, logger=instantiate(cfg.logger)(fold=fold.index, run_name=cfg.name)
        )

    frames: list[pd.DataFrame] = []
    module: ForecastModule | None = None
    for fold in folds:
        seed_everything(cfg.seed + fold.index)
        module, preds = fit_fold(dm, fold, build_module, make_trainer)
        restore = restores[-1]
        score = preds.score
        up = (score > 0.5).astype(float) if task.name == "direction" else (score > 0).astype(float)
        if task.name not in ("returns", "direction"):
            up = np.full(len(score), np.nan)
        frames.append(
            _fold_frame(panel, dm, fold, cfg.model.name, preds.t, preds.s, preds.out[:, 0], score, up, y_ret)
        )
        index = np.stack([preds.t, preds.s], axis=1)
        for name in cfg.baselines:
            b = BASELINES[name](panel, index, task.name, task.horizon_days)
            frames.append(
                _fold_frame(panel, dm, fold, name, preds.t, preds.s, b["pred"], b["score"], b["up"], y_ret)
            )
        d = fold.describe(panel.dates)
        console.print(
            f"fold {fold.index}: test {d['test']}  windows {len(preds.t):,}  best val_loss {restore.best:.6f}"
        )

    oof = pd.concat(frames, ignore_index=True)
    per_fold = metrics_table(oof, ("fold", "model"))
    summary = metrics_table(oof, ("model",))
    verdict = _verdict(summary, cfg.model.name)
    fold_plan = pd.DataFrame([f.describe(panel.dates) for f in folds])
    _print_table(per_fold, "per fold: model vs baselines (out of sample)")
    _print_table(summary, "all folds")
    console.print(verdict)

    # outputs
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    (out / "config.yaml").write_text(config_yaml)
    write_parquet_atomic(oof, out / "predictions.parquet", index=False)
    write_report(
        out / "report.html", f"deepq {cfg.name}", per_fold, summary, fold_plan, oof, verdict, config_yaml
    )
    if cfg.export and module is not None and dm.gather is not None:
        example = (
            dm.gather(torch.as_tensor(preds.t[:8]), torch.as_tensor(preds.s[:8])).x
            if len(preds.t)
            else torch.zeros(1, dm.lookback, dm.n_features)
        )
        export_torchscript(
            module.model,
            example,
            out / "model.pt",
            {
                "task": task.name,
                "horizon_days": task.horizon_days,
                "features": [s.name for s in specs],
                "lookback": dm.lookback,
                "normalizer": dm.normalizer.to_dict() if dm.normalizer else None,
                "outputs": list(head_example.output_names),
                "fold": folds[-1].index,
                "train": fold_plan.iloc[-1]["train"],
            },
        )
    result: dict[str, float] = {"val_loss": float(np.nanmean([r.best for r in restores]))}
    for row in summary.itertuples(index=False):
        for metric in ("dir_acc", "rank_ic", "mse"):
            result[f"{row.model}/{metric}"] = float(getattr(row, metric))
    meta: dict[str, Any] = {
        "name": cfg.name,
        "git_commit": git_commit(Path(CONFIG_DIR).parent),
        "data_fingerprint": array_fingerprint(panel.dates.astype("int64"), panel["close"]),
        "packages": package_versions(),
        "seconds": round(time.time() - started, 1),
        "verdict": verdict,
    }
    write_json_atomic(
        {
            "summary": result,
            "per_fold": per_fold.to_dict("records"),
            "by_model": summary.to_dict("records"),
            "folds": fold_plan.to_dict("records"),
            "run": meta,
        },
        out / "metrics.json",
    )
    console.print(f"outputs in {out}  ({meta['seconds']} s)")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    result = train(cfg)
    return result.get(cfg.optimized_metric, float("nan"))


if __name__ == "__main__":
    main()
