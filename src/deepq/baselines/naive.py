"""Naive baselines, scored on exactly the rows the models score.

Each returns a frame of `pred` (forecast on the label's scale, NaN if none), `score` (ranking, NaN if none)
and `up` (predicted direction, NaN if none) for the (date row, symbol column) index it is given.
They read the panel at dates <= t only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from deepq.data.panel import Panel
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.features import ops

Baseline = Callable[[Panel, np.ndarray, str, int], pd.DataFrame]
BASELINES: dict[str, Baseline] = {}


def baseline(name: str) -> Callable[[Baseline], Baseline]:
    def register(fn: Baseline) -> Baseline:
        BASELINES[name] = fn
        return fn

    return register


def _frame(pred: np.ndarray, score: np.ndarray, up: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"pred": pred, "score": score, "up": up})


@baseline("zero_return")
def zero_return(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """Forecast a zero return (the random walk): the MSE bar. It has no ranking and no direction."""
    n = len(index)
    pred = np.zeros(n) if task == "returns" else np.full(n, np.nan)
    return _frame(pred, np.full(n, np.nan), np.full(n, np.nan))


@baseline("always_up")
def always_up(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """Always predict up: the direction-accuracy bar (markets drift up)."""
    n = len(index)
    pred = np.ones(n) if task == "direction" else np.full(n, np.nan)
    return _frame(pred, np.full(n, np.nan), np.ones(n))


@baseline("momentum_20")
def momentum_20(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """The last 20 sessions' log return continues: scaled to the horizon as a forecast, its sign as direction."""
    mom = ops.log_return(panel["close"], 20)[index[:, 0], index[:, 1]]
    up = np.where(np.isfinite(mom), (mom > 0).astype(float), np.nan)
    if task == "returns":
        pred = mom * horizon_days / 20.0
    elif task == "direction":
        pred = up
    else:
        pred = np.full(len(index), np.nan)
    return _frame(pred, mom, up)


class Naive:
    """A registered naive baseline as a FoldModel: nothing to fit, it reads the panel at dates <= t."""

    def __init__(self, name: str):
        if name not in BASELINES:
            raise KeyError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
        self.name = name

    def fit(self, data: PanelData, fold: Fold) -> None:
        return None

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        f = BASELINES[self.name](data.panel, index, data.task.name, data.task.horizon_days)
        return Predictions(f["pred"].to_numpy(float), f["score"].to_numpy(float), f["up"].to_numpy(float))
