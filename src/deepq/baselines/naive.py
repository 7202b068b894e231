"""Naive baselines, scored on exactly the rows the models score.

Each returns a frame of `pred` (forecast on the label's scale, NaN if none), `score` (ranking, NaN if none)
and `up` (predicted direction, NaN if none) for the (date row, symbol column) index it is given.
They read the panel at dates <= t only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from deepq.baselines.common import TASKS, check_task, from_point, from_probs, targets
from deepq.data.panel import Panel
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.features import ops

Baseline = Callable[[Panel, np.ndarray, str, int], pd.DataFrame]
BASELINES: dict[str, Baseline] = {}
# the tasks each baseline makes a forecast for (elsewhere it returns NaN, which train.py's report tolerates)
BASELINE_TASKS: dict[str, tuple[str, ...]] = {}


def baseline(name: str, tasks: tuple[str, ...] = ("returns", "direction")) -> Callable[[Baseline], Baseline]:
    def register(fn: Baseline) -> Baseline:
        BASELINES[name] = fn
        BASELINE_TASKS[name] = tasks
        return fn

    return register


def _frame(pred: np.ndarray, score: np.ndarray, up: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"pred": pred, "score": score, "up": up})


@baseline("zero_return", ("returns",))
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


@baseline("last_return")
def last_return(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """The last session's log return continues (scaled to the horizon); its sign is the direction."""
    r = ops.log_return(panel["close"], 1)[index[:, 0], index[:, 1]]
    up = np.where(np.isfinite(r), (r > 0).astype(float), np.nan)
    pred = (
        r * horizon_days if task == "returns" else up if task == "direction" else np.full(len(index), np.nan)
    )
    return _frame(pred, r, up)


@baseline("momentum_sign", ("direction",))
def momentum_sign(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """Only the sign of 20-session momentum: up if positive. A direction bar with no magnitude."""
    mom = ops.log_return(panel["close"], 20)[index[:, 0], index[:, 1]]
    up = np.where(np.isfinite(mom), (mom > 0).astype(float), np.nan)
    pred = up if task == "direction" else np.full(len(index), np.nan)
    return _frame(pred, np.sign(mom), up)


def _realised_log_vol(panel: Panel, window: int) -> np.ndarray:
    r = ops.log_return(panel["close"], 1)
    ms = ops.frame(r * r).rolling(window, min_periods=window).mean().to_numpy()
    with np.errstate(divide="ignore"):
        return np.where(ms > 0, 0.5 * np.log(np.where(ms > 0, ms, 1.0)), np.nan)


@baseline("rw_vol", ("risk",))
def rw_vol(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """Random walk for volatility: the next h sessions' log realised vol equals the last h sessions'."""
    n = len(index)
    if task != "risk":
        return _frame(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    v = _realised_log_vol(panel, max(horizon_days, 2))[index[:, 0], index[:, 1]]
    return _frame(v, v, np.full(n, np.nan))


EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay


@baseline("ewma_vol", ("risk",))
def ewma_vol(panel: Panel, index: np.ndarray, task: str, horizon_days: int) -> pd.DataFrame:
    """RiskMetrics EWMA variance (lambda 0.94) of daily log returns; flat over the horizon, as log vol."""
    n = len(index)
    if task != "risk":
        return _frame(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    r = ops.log_return(panel["close"], 1)
    var = ops.frame(r * r).ewm(alpha=1 - EWMA_LAMBDA, min_periods=21, ignore_na=True).mean().to_numpy()
    v = var[index[:, 0], index[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(v > 0, 0.5 * np.log(np.where(v > 0, v, 1.0)), np.nan)
    return _frame(v, v, np.full(n, np.nan))


class Naive:
    """A registered naive baseline as a FoldModel: nothing to fit, it reads the panel at dates <= t."""

    def __init__(self, name: str):
        if name not in BASELINES:
            raise KeyError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
        self.name = name

    def fit(self, data: PanelData, fold: Fold) -> None:
        """Nothing to fit; only checks that this baseline forecasts the task (a stack drops it otherwise)."""
        check_task(self.name, data.task.name, BASELINE_TASKS[self.name])

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        f = BASELINES[self.name](data.panel, index, data.task.name, data.task.horizon_days)
        return Predictions(f["pred"].to_numpy(float), f["score"].to_numpy(float), f["up"].to_numpy(float))


class HistoricalMean:
    """Each symbol's mean label over the training window (pooled mean where a symbol has too few rows):
    the mean return for returns, the up-rate for direction, the mean log vol for risk."""

    MIN_ROWS = 20

    def __init__(self, name: str = "historical_mean"):
        self.name = name
        self.means: np.ndarray | None = None

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, ("returns", "direction", "risk"))
        idx = data.split_index(fold, "train")
        y = targets(data, idx)
        N = data.shape[1]
        sums = np.bincount(idx[:, 1], weights=y, minlength=N)
        counts = np.bincount(idx[:, 1], minlength=N)
        pooled = float(np.mean(y)) if len(y) else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            self.means = np.where(counts >= self.MIN_ROWS, sums / np.maximum(counts, 1), pooled)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.means is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        v = self.means[index[:, 1]]
        return from_probs("direction", v) if data.task.name == "direction" else from_point(data.task.name, v)


class MajorityClass:
    """The training window's class frequencies for every cell: the accuracy bar of a classifier
    (its prediction is the majority class; its probabilities are the base rates)."""

    def __init__(self, name: str = "majority"):
        self.name = name
        self.freq: np.ndarray | None = None

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, ("direction", "signal"))
        y = targets(data, data.split_index(fold, "train")).astype(int)
        k = 2 if data.task.name == "direction" else 3
        self.freq = np.bincount(y, minlength=k)[:k] / max(len(y), 1)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.freq is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        probs = np.tile(self.freq, (len(index), 1))
        if data.task.name == "direction":
            return from_probs("direction", probs[:, 1])
        return from_probs("signal", probs)


class TaskNaive:
    """`model=naive`: the natural naive forecast of whichever task runs. returns: each symbol's historical
    mean; direction and signal: the majority class; risk: the random walk of realised volatility."""

    def __init__(self, name: str = "naive"):
        self.name = name
        self.inner: HistoricalMean | MajorityClass | Naive | None = None

    def fit(self, data: PanelData, fold: Fold) -> None:
        task = data.task.name
        check_task(self.name, task, TASKS)
        inner: HistoricalMean | MajorityClass | Naive
        if task == "returns":
            inner = HistoricalMean()
        elif task in ("direction", "signal"):
            inner = MajorityClass()
        else:
            inner = Naive("rw_vol")
        inner.fit(data, fold)
        self.inner = inner

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.inner is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        return self.inner.predict(data, index)
