"""A deliberately degenerate forecaster for the guard's tests: every stock of a date gets the same score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepq.baselines.naive import Naive
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold


class MarketMean:
    """The date's mean last-session return for every stock: it follows the market and ranks nothing (what
    the old raw-target LightGBM learnt). `noise` > 0 adds a tiny per-stock jitter, so every score is distinct
    while the cross-section still carries nothing but noise."""

    def __init__(self, name: str = "market_mean", noise: float = 0.0, seed: int = 0):
        self.name, self.noise, self.seed = name, noise, seed
        self.inner = Naive("last_return")

    def fit(self, data: PanelData, fold: Fold) -> None:
        self.inner.fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        p = self.inner.predict(data, index)
        mean = pd.Series(p.score).groupby(index[:, 0]).transform("mean").to_numpy()
        mean = mean + self.noise * np.random.default_rng(self.seed).standard_normal(len(mean))
        up = np.where(np.isfinite(mean), (mean > 0).astype(float), np.nan)
        return Predictions(mean, mean, up)
