"""Vectorised causal operators over [T, N] arrays (time down the rows, one column per symbol).

Every operator at row t reads rows <= t only. Rolling windows need `window` valid values
(`min_periods` = window) so a feature is NaN, not silently biased, until its lookback is full.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def frame(a: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(a)


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """Value k rows earlier (k > 0 only: a negative shift would look ahead)."""
    if k < 0:
        raise ValueError("shift by a negative lag looks into the future")
    out = np.full_like(a, np.nan, dtype=np.float64)
    if k < len(a):  # a lag longer than the history leaves everything undefined
        out[k:] = a[: len(a) - k] if k else a
    return out


def log_return(close: np.ndarray, k: int = 1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(close / shift(close, k))


def rolling_mean(a: np.ndarray, window: int) -> np.ndarray:
    return frame(a).rolling(window, min_periods=window).mean().to_numpy()


def rolling_std(a: np.ndarray, window: int) -> np.ndarray:
    return frame(a).rolling(window, min_periods=window).std().to_numpy()


def rolling_max(a: np.ndarray, window: int) -> np.ndarray:
    return frame(a).rolling(window, min_periods=window).max().to_numpy()


def rolling_min(a: np.ndarray, window: int) -> np.ndarray:
    return frame(a).rolling(window, min_periods=window).min().to_numpy()


def rolling_median(a: np.ndarray, window: int) -> np.ndarray:
    return frame(a).rolling(window, min_periods=window).median().to_numpy()


def rolling_zscore(a: np.ndarray, window: int) -> np.ndarray:
    mean, std = rolling_mean(a, window), rolling_std(a, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - mean) / std


def wilder_mean(a: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/period), the recursion RSI and ATR use."""
    return frame(a).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean().to_numpy()


def cross_sectional_rank(a: np.ndarray) -> np.ndarray:
    """Per-date percentile rank in [0, 1] among the symbols that have a value that date."""
    return frame(a).rank(axis=1, pct=True).to_numpy()


def broadcast_column(panel_shape: tuple[int, int], column: np.ndarray) -> np.ndarray:
    return np.repeat(column[:, None], panel_shape[1], axis=1)
