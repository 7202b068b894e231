"""A run's features and universe masks from its config: the one place training (tasks/common.py) and
serving (serve/inputs.py) build them, so a served version sees the columns and cells its run trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from deepq.data.panel import Panel
from deepq.data.universe import liquidity_mask, membership_mask
from deepq.dataset.context import sample_mask
from deepq.features.cache import cached_compute_features
from deepq.features.freshness import SeriesLag, gate, reference_gaps, reference_lags
from deepq.features.sources import append_source_features


@dataclass(frozen=True)
class RunFeatures:
    features: np.ndarray  # float32 [T, N, F]: the registered features, then `features.sources` columns
    names: tuple[str, ...]
    tradable: np.ndarray  # bool [T, N]: a bar, the configured asset types, index member, liquid
    sample_ok: np.ndarray  # bool [T, N]: tradable with enough history to be a sample
    lagging: tuple[SeriesLag, ...] = ()  # reference series behind the panel's last session (the gate's view)


def run_features(cfg: DictConfig, panel: Panel) -> RunFeatures:
    """cfg.features (the feature store's Parquet cache when configured) + cfg.features.sources, and the
    universe masks of cfg.universe. Reference series are carried forward `freshness.fill_limit_sessions` at
    most, and one that the features read and that stopped longer ago than that stops the run here
    (`freshness.allow_stale` accepts it: features/freshness.py)."""
    fresh = cfg.get("freshness") or {}
    panel = dataclasses.replace(panel, fill_limit=int(fresh.get("fill_limit_sessions", panel.fill_limit)))
    specs = instantiate(cfg.features)
    features = cached_compute_features(panel, specs, cfg.get("feature_cache_dir"))  # rerun reads Parquet
    # alternative data: `features.sources` (FeatureSource configs, none by default), joined as of each close
    sources = [instantiate(s) for s in cfg.features.get("sources") or []]
    features, names, source_lags = append_source_features(
        panel, features, tuple(s.name for s in specs), sources
    )
    lagging = gate([*reference_lags(panel, specs), *source_lags], bool(fresh.get("allow_stale", False)))
    present = np.isfinite(panel["close"])
    tradable = present & panel.mask(tuple(cfg.universe.asset_types))[None, :]
    if cfg.universe.get("constituents"):  # point-in-time index membership: no survivorship in what is scored
        tradable &= membership_mask(panel, cfg.universe.constituents)
    if cfg.universe.get("min_dollar_volume"):  # trailing median close x volume, causal
        window = int(cfg.universe.get("liquidity_window_days") or 63)
        tradable &= liquidity_mask(panel, float(cfg.universe.min_dollar_volume), window)
    sample_ok = sample_mask(present, tradable, int(cfg.universe.min_symbol_history))
    sample_ok &= ~reference_gaps(panel, specs)  # a reference series missing past the fill limit: no sample
    return RunFeatures(features, names, tradable, sample_ok, tuple(lagging))
