"""What every model plug-in sees: the panel, its features and labels, and which (date, symbol) cells are samples.

`PanelData` is fold-independent and built once per run. A sample is a cell where the symbol is tradable
(in the configured universe, with a bar that day), has at least `min_symbol_history` sessions of history,
and (for training and scoring) a known label. Every model, neural or not, is fitted and scored on the same
cells, so comparisons are fair by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from deepq.data.panel import Panel
from deepq.dataset.folds import Fold
from deepq.dataset.targets import TargetContext, TargetPipeline
from deepq.features.freshness import SeriesLag


@dataclass(frozen=True)
class TaskSpec:
    name: str  # returns | direction | signal | risk
    horizon_days: int = 1
    execution: str = "next_close"


@dataclass(frozen=True)
class PanelData:
    panel: Panel
    features: np.ndarray  # float32 [T, N, F], NaN where undefined
    feature_names: tuple[str, ...]
    labels: np.ndarray  # float64 [T, N], the task's label
    y_ret: np.ndarray  # float64 [T, N], forward return of the same holding period (for direction/IC metrics)
    tradable: np.ndarray  # bool [T, N]: in the universe with a bar that day
    sample_ok: np.ndarray  # bool [T, N]: tradable and with enough history to be a sample
    task: TaskSpec
    target: TargetPipeline = field(default_factory=TargetPipeline)  # what training fits (task.target)
    lagging: tuple[SeriesLag, ...] = ()  # reference series behind the last session (features/freshness.py)

    @property
    def shape(self) -> tuple[int, int, int]:
        T, N, F = self.features.shape
        return T, N, F

    def index(self, start: int, stop: int, require_label: bool = True) -> np.ndarray:
        """[M, 2] (date row, symbol column) of samples with decision dates in [start, stop), date-major order."""
        ok = self.sample_ok[start:stop]
        if require_label:
            ok = ok & np.isfinite(self.labels[start:stop])
        t, s = np.nonzero(ok)
        return np.stack([t + start, s], axis=1)

    def split_index(self, fold: Fold, split: str) -> np.ndarray:
        seg = {"train": fold.train, "val": fold.val, "test": fold.test}[split]
        return self.index(*seg)

    @property
    def target_span(self) -> int:
        """Sessions after t that the training target of t reads: what folds purge and lagged targets wait."""
        return self.target.span(self.task.horizon_days, self.task.name)

    def fold_labels(self, fold: Fold) -> np.ndarray:
        """[T, N] training target of a fold (`task.target` fitted on its training rows; the raw label when
        none is configured). Scoring never reads it: evaluation uses `labels` and `y_ret`."""
        if not self.target.steps:
            return self.labels
        ctx = TargetContext(
            self.panel,
            self.sample_ok & np.isfinite(self.labels),
            self.task.horizon_days,
            self.task.execution,  # type: ignore[arg-type]
        )
        return self.target.fold_target(self.labels, fold.train, ctx)


def sample_mask(present: np.ndarray, tradable: np.ndarray, min_symbol_history: int) -> np.ndarray:
    """tradable cells whose symbol had a bar `min_symbol_history - 1` sessions earlier (history is full)."""
    T = present.shape[0]
    ok = np.zeros_like(tradable, dtype=bool)
    k = max(min_symbol_history - 1, 0)
    if k < T:
        ok[k:] = tradable[k:] & present[: T - k]
    return ok


def window_ends(present: np.ndarray, lookback: int) -> np.ndarray:
    """bool [T, N]: a `lookback`-session window ending at (t, s) is usable, i.e. the symbol has a bar at both
    its first and its last session (what the datamodule trains on and the server answers)."""
    T = present.shape[0]
    ok = np.zeros_like(present, dtype=bool)
    if lookback <= T:
        ok[lookback - 1 :] = present[lookback - 1 :] & present[: T - lookback + 1]
    return ok


@dataclass(frozen=True)
class Predictions:
    """A model's forecasts for an index: `pred` on the label's scale (NaN if none), `score` for ranking
    (NaN if none), `up` predicted direction 1/0 (NaN if none), and any extra named outputs (quantiles, probs)."""

    pred: np.ndarray
    score: np.ndarray
    up: np.ndarray
    extra: dict[str, np.ndarray] | None = None


@runtime_checkable
class FoldModel(Protocol):
    """The plug-in surface: neural models, boosting, classical baselines and stackers all implement it."""

    name: str

    def fit(self, data: PanelData, fold: Fold) -> None: ...

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions: ...


def direction_from_score(task: str, score: np.ndarray) -> np.ndarray:
    """Predicted direction implied by a score: P(up) > 0.5 for direction, > 0 for returns, none otherwise."""
    if task == "direction":
        return np.where(np.isfinite(score), (score > 0.5).astype(float), np.nan)
    if task == "returns":
        return np.where(np.isfinite(score), (score > 0).astype(float), np.nan)
    return np.full(len(score), np.nan)
