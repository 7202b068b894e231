"""Builders shared by the Hydra tasks: the run's PanelData and its model plug-in, from the composed config."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from deepq.dataset.build import run_features
from deepq.dataset.context import FoldModel, PanelData, TaskSpec
from deepq.dataset.labels import forward_return, make_labels
from deepq.dataset.targets import TargetPipeline
from deepq.ensemble.seeds import SeedEnsemble, seeds_for
from deepq.training.neural import NeuralModel


def target_pipeline(cfg: DictConfig) -> TargetPipeline:
    """`task.target`: the training target's processors, in order (none = the raw label)."""
    return TargetPipeline(tuple(instantiate(step) for step in cfg.task.get("target") or ()))


def purge_days(cfg: DictConfig) -> int:
    """Sessions purged between fold segments: `split.purge_days`, never less than the training target's span
    (so no training or validation target reaches into what follows it)."""
    span = target_pipeline(cfg).span(int(cfg.task.horizon_days), str(cfg.task.name))
    return max(int(cfg.split.get("purge_days") or 0), span)


def build_panel_data(cfg: DictConfig) -> PanelData:
    """data -> panel -> features -> labels -> sample mask, from cfg.data, cfg.features, cfg.task, cfg.universe."""
    panel = instantiate(cfg.data)
    run = run_features(cfg, panel)
    task = TaskSpec(cfg.task.name, int(cfg.task.horizon_days), str(cfg.task.get("execution", "next_close")))
    label_kwargs: dict[str, Any] = dict(cfg.task.get("label_kwargs") or {})
    labels = make_labels(panel, task.name, task.horizon_days, task.execution, **label_kwargs)  # type: ignore[arg-type]
    y_ret = forward_return(panel, task.horizon_days, task.execution)  # type: ignore[arg-type]
    target = target_pipeline(cfg)
    target.check_task(task.name)
    return PanelData(
        panel, run.features, run.names, labels, y_ret, run.tradable, run.sample_ok, task, target, run.lagging
    )


def build_model(cfg: DictConfig) -> FoldModel:
    """A plug-in (`model.plugin` with a _target_) or the neural path (`model.net`); `ensemble.seeds=N` (N > 1)
    wraps N of them, seeds seed .. seed+N-1, in a SeedEnsemble that averages their forecasts (`ensemble.combine`)."""
    n = int((cfg.get("ensemble") or {}).get("seeds") or 1)
    if n <= 1:
        return build_one_model(cfg, int(cfg.seed))
    if "plugin" in cfg.model and "seed" not in cfg.model.plugin:
        raise ValueError(
            f"ensemble.seeds={n}: model {cfg.model.name!r} takes no seed, so its members would be equal"
        )
    return SeedEnsemble(
        lambda seed: build_one_model(cfg, seed),
        seeds_for(int(cfg.seed), n),
        str(cfg.task.name),
        combine=str(cfg.ensemble.get("combine") or "scaled"),  # type: ignore[arg-type]
    )


def build_one_model(cfg: DictConfig, seed: int) -> FoldModel:
    """One model of the configured kind, seeded with `seed`."""
    if "plugin" in cfg.model:
        seeded = {"seed": seed} if "seed" in cfg.model.plugin else {}
        return instantiate(cfg.model.plugin, _recursive_=True, **seeded)
    lookback = int(cfg.datamodule.lookback)
    if lookback > int(cfg.universe.min_symbol_history):
        raise ValueError(
            f"datamodule.lookback={lookback} exceeds universe.min_symbol_history={cfg.universe.min_symbol_history}: "
            "windows would start before a symbol's first bar"
        )

    def callbacks() -> list:
        out = [RichProgressBar(leave=False)]
        if cfg.get("early_stopping"):
            out.insert(0, instantiate(cfg.early_stopping))
        return out

    return NeuralModel(
        name=cfg.model.name,
        net=instantiate(cfg.model.net),
        head=lambda: instantiate((cfg.model.get("task_heads") or {}).get(cfg.task.name) or cfg.task.head),
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        trainer=instantiate(cfg.trainer),
        datamodule=instantiate(cfg.datamodule),
        callbacks=callbacks,
        logger=instantiate(cfg.logger.fold) if cfg.get("logger") and cfg.logger.get("fold") else None,
        run_name=cfg.name,
        seed=seed,
        module_kwargs=dict(cfg.model.get("module") or {}),
        monitor=str((cfg.get("early_stopping") or {}).get("monitor", "val_loss")),
        mode=str((cfg.get("early_stopping") or {}).get("mode", "min")),
    )
