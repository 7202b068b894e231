"""Feature normalisation, fitted on a fold's training rows only.

robust: per-feature (x - median) / (IQR / 1.349), clipped to +-clip; statistics from training rows only.
rank:   per-date cross-sectional percentile rank mapped to [-1, 1]; uses one date's cross-section, so it
        needs no fitting and cannot see another date (the future included).
NaN (a feature still warming up) becomes 0 after normalisation: the training median.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Method = Literal["robust", "rank", "none"]


@dataclass(frozen=True)
class Normalizer:
    method: Method
    center: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    clip: float = 5.0

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "clip": self.clip,
        }


def fit_normalizer(
    features: np.ndarray,
    rows: np.ndarray,
    tradable: np.ndarray,
    method: Method = "robust",
    clip: float = 5.0,
    max_samples: int = 200_000,
    seed: int = 0,
) -> Normalizer:
    """Fit on features[rows][tradable] (rows = the training window's dates). Rank needs no fit."""
    F = features.shape[-1]
    if method in ("rank", "none"):
        return Normalizer(method, np.zeros(F, np.float32), np.ones(F, np.float32), clip)
    t, s = np.nonzero(tradable[rows])
    if len(t) > max_samples:  # quantiles of a large random subsample are as good and much cheaper
        pick = np.sort(np.random.default_rng(seed).choice(len(t), max_samples, replace=False))
        t, s = t[pick], s[pick]
    sub = features[rows[t], s]  # [M, F], gathered cell by cell: no copy of the training window
    q25, med, q75 = np.nanpercentile(sub, [25, 50, 75], axis=0) if len(sub) else (np.zeros(F),) * 3
    iqr = np.where(np.isfinite(q75 - q25) & (q75 - q25 > 1e-12), (q75 - q25) / 1.349, 1.0)
    return Normalizer(method, np.nan_to_num(med).astype(np.float32), iqr.astype(np.float32), clip)


def cross_sectional_rank(features: np.ndarray, tradable: np.ndarray) -> np.ndarray:
    """[T, N, F] -> per-date ranks in [-1, 1] among tradable symbols (NaN elsewhere)."""
    T, N, F = features.shape
    out = np.full_like(features, np.nan)
    masked = np.where(tradable[:, :, None], features, np.nan)
    for j in range(F):  # pandas ranks a whole [T, N] slice per call; F calls, not T*F
        out[:, :, j] = pd.DataFrame(masked[:, :, j]).rank(axis=1, pct=True).to_numpy() * 2.0 - 1.0
    return out


def fit_label_scale(labels: np.ndarray, rows: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """(median, IQR/1.349) of the training rows' labels: the scale of the lagged-label input channel."""
    sub = labels[rows][ok[rows]]
    sub = sub[np.isfinite(sub)]
    if not len(sub):
        return 0.0, 1.0
    q25, med, q75 = np.percentile(sub, [25, 50, 75])
    spread = (q75 - q25) / 1.349
    return float(med), float(spread) if spread > 1e-12 else float(np.std(sub) or 1.0)
