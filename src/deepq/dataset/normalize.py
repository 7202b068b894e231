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
    max_samples: int = 50_000,
    seed: int = 0,
    block: int = 16,
) -> Normalizer:
    """Fit on features[rows][tradable] (rows = the training window's dates). Rank needs no fit.

    Quantiles come from a seeded random subsample of at most `max_samples` training cells (the standard error
    of a median from 50,000 draws is under 1 % of a standard deviation), gathered `block` features at a time,
    so the extra memory is max_samples x block floats, never a copy of the training window."""
    F = features.shape[-1]
    if method in ("rank", "none"):
        return Normalizer(method, np.zeros(F, np.float32), np.ones(F, np.float32), clip)
    t, s = np.nonzero(tradable[rows])
    if len(t) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(t), max_samples, replace=False))
        t, s = t[pick], s[pick]
    q = np.zeros((3, F))  # q25, median, q75; a feature with no finite value keeps 0 and gets scale 1
    r = rows[t]
    for j0 in range(0, F, block):
        cols = np.ascontiguousarray(features[r, s, j0 : j0 + block].T)  # [block, M], float32
        for j, col in enumerate(cols, start=j0):
            finite = col[np.isfinite(col)]
            if len(finite):
                q[:, j] = np.percentile(finite, [25, 50, 75])
    spread = q[2] - q[0]
    iqr = np.where(spread > 1e-12, spread / 1.349, 1.0)
    return Normalizer(method, q[1].astype(np.float32), iqr.astype(np.float32), clip)


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
