"""Builders shared by the Hydra tasks: the run's PanelData and its model plug-in, from the composed config."""

from __future__ import annotations

from typing import Any

import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from deepq.data.universe import liquidity_mask, membership_mask
from deepq.dataset.context import FoldModel, PanelData, TaskSpec, sample_mask
from deepq.dataset.labels import forward_return, make_labels
from deepq.features.cache import cached_compute_features
from deepq.features.sources import append_source_features
from deepq.training.neural import NeuralModel


def build_panel_data(cfg: DictConfig) -> PanelData:
    """data -> panel -> features -> labels -> sample mask, from cfg.data, cfg.features, cfg.task, cfg.universe."""
    panel = instantiate(cfg.data)
    specs = instantiate(cfg.features)
    features = cached_compute_features(panel, specs, cfg.get("feature_cache_dir"))  # rerun reads Parquet
    # alternative data: `features.sources` (FeatureSource configs, none by default), joined as of each close
    sources = [instantiate(s) for s in cfg.features.get("sources") or []]
    features, names = append_source_features(panel, features, tuple(s.name for s in specs), sources)
    task = TaskSpec(cfg.task.name, int(cfg.task.horizon_days), str(cfg.task.get("execution", "next_close")))
    label_kwargs: dict[str, Any] = dict(cfg.task.get("label_kwargs") or {})
    labels = make_labels(panel, task.name, task.horizon_days, task.execution, **label_kwargs)  # type: ignore[arg-type]
    y_ret = forward_return(panel, task.horizon_days, task.execution)  # type: ignore[arg-type]
    present = np.isfinite(panel["close"])
    tradable = present & panel.mask(tuple(cfg.universe.asset_types))[None, :]
    if cfg.universe.get("constituents"):  # point-in-time index membership: no survivorship in what is scored
        tradable &= membership_mask(panel, cfg.universe.constituents)
    if cfg.universe.get("min_dollar_volume"):  # trailing median close x volume, causal
        window = int(cfg.universe.get("liquidity_window_days") or 63)
        tradable &= liquidity_mask(panel, float(cfg.universe.min_dollar_volume), window)
    sample_ok = sample_mask(present, tradable, int(cfg.universe.min_symbol_history))
    return PanelData(panel, features, names, labels, y_ret, tradable, sample_ok, task)


def build_model(cfg: DictConfig) -> FoldModel:
    """A plug-in (`model.plugin` with a _target_) or the neural path (`model.net`)."""
    if "plugin" in cfg.model:
        return instantiate(cfg.model.plugin, _recursive_=True)
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
        seed=int(cfg.seed),
        module_kwargs=dict(cfg.model.get("module") or {}),
    )
