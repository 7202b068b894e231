"""Tiny real folds for plug-in tests: the sample slice of tests/conftest.py as PanelData for any task."""

from __future__ import annotations

import numpy as np

from deepq.data.panel import Panel
from deepq.dataset.context import PanelData, TaskSpec, sample_mask
from deepq.dataset.folds import Fold, walk_forward
from deepq.dataset.labels import forward_return, label_span, make_labels
from deepq.features.registry import compute_features, resolve

FEATURES = ("ret_1", "ret_5", "ret_21", "vol_5", "vol_21", "rsi_14", "ma_gap_20", "mkt_ret_1", "beta_63")


_CACHE: dict[int, np.ndarray] = {}


def _features(panel: Panel) -> np.ndarray:
    if id(panel) not in _CACHE:
        _CACHE[id(panel)] = compute_features(panel, resolve(FEATURES))
    return _CACHE[id(panel)]


def make_data(panel: Panel, task: str, horizon_days: int = 1) -> PanelData:
    features = _features(panel)
    labels = make_labels(panel, task, horizon_days)  # type: ignore[arg-type]
    y_ret = forward_return(panel, horizon_days)
    present = np.isfinite(panel["close"])
    tradable = present & panel.mask(("stock",))[None, :]
    ok = sample_mask(present, tradable, 63)
    return PanelData(panel, features, FEATURES, labels, y_ret, tradable, ok, TaskSpec(task, horizon_days))


def make_folds(data: PanelData, n: int = 2) -> list[Fold]:
    """Short expanding folds: 2 years to train, half-year test blocks."""
    purge = label_span(data.task.horizon_days, data.task.name)
    return walk_forward(
        data.panel.dates,
        train_years=2,
        test_years=0.5,
        mode="expanding",
        purge_days=purge,
        val_days=63,
        min_history_days=252,
        max_folds=n,
    )
