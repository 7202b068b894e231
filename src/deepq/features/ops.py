"""Vectorised causal operators over [T, N] arrays (time down the rows, one column per symbol).

Every operator at row t reads rows <= t only. Rolling windows need `window` valid values
(`min_periods` = window) so a feature is NaN, not silently biased, until its lookback is full.

The rolling operators are O(T) numpy passes over the whole array (no per-column Python loop, no
[T, N, window] materialisation): sums come from prefix sums restarted every `_block_rows(window)` rows, so
the rounding of a window's sum depends on the rows near it, not on 24 years of history before it; max/min
use the van Herk / Gil-Werman block scans. Results match pandas' rolling operators (same NaN rule, a
constant window has variance exactly 0) to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def frame(a: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(a)


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """Value k rows earlier (k > 0 only: a negative shift would look ahead)."""
    if k < 0:
        raise ValueError("shift by a negative lag looks into the future")
    out = np.empty(a.shape, dtype=np.float64)
    k = min(k, len(a))  # a lag longer than the history leaves everything undefined
    out[:k] = np.nan
    out[k:] = a[: len(a) - k]
    return out


def log_return(close: np.ndarray, k: int = 1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(close / shift(close, k))


def _block_rows(window: int) -> int:
    # short blocks keep the prefix sums near the magnitude of one window, so s2 - s1^2/n loses no more
    # precision than a two-pass variance would; the block count costs nothing (all blocks in one pass)
    return max(8, 2 * window)


def _window_sum_finite(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last `window` rows of a NaN-free float array (rows < window - 1: sum of rows 0..t).

    Prefix sums restart at every block of B >= window rows, so a window spans at most two blocks:
    sum(s..t) = L[t] - L[s-1] within a block, or L[t] + (block total - L[s-1]) across a boundary.
    The scan runs over the B rows of all blocks at once (contiguous [blocks, N] slices; numpy's cumsum
    down axis 0 of a C-ordered array is several times slower).
    """
    T = x.shape[0]
    if window <= 0:
        return np.full(x.shape, np.nan)
    window = min(window, T)  # a window longer than the history: every row is a partial window
    B = _block_rows(window)
    nb = -(-T // B)
    rest = x.shape[1:]
    L = np.empty((nb, B, *rest), dtype=x.dtype)
    flat = L.reshape(nb * B, *rest)
    flat[:T] = x
    flat[T:] = 0
    for i in range(1, B):
        L[:, i] += L[:, i - 1]
    R = np.empty((nb, B, *rest), dtype=x.dtype)
    R[:, window - 1] = L[:, window - 1]
    R[:, window:] = L[:, window:] - L[:, : B - window]
    if window > 1:
        R[0, : window - 1] = L[0, : window - 1]  # partial windows at the start (for min_periods < window)
        # the head of block k plus the tail of block k - 1
        R[1:, : window - 1] = L[1:, : window - 1] + (L[:-1, B - 1 : B] - L[:-1, B - window : B - 1])
    return R.reshape(nb * B, *rest)[:T]


def _as_count(flags: np.ndarray, window: int) -> np.ndarray:
    """0/1 flags in the narrowest integer type that holds a block's running count (a window sum of them is
    exact and moves an eighth of float64's bytes)."""
    return flags.astype(np.uint8 if _block_rows(window) <= 255 else np.int16)


def _full_windows(a: np.ndarray, window: int) -> np.ndarray:
    """True where the last `window` rows are all finite (an infinity counts as missing, like a NaN)."""
    if window > a.shape[0]:
        return np.zeros(a.shape, dtype=bool)
    missing = _window_sum_finite(_as_count((~np.isfinite(a)), window), window)
    ok = missing == 0
    ok[: window - 1] = False
    return ok


def _count_finite(a: np.ndarray, window: int) -> np.ndarray:
    return _window_sum_finite(_as_count(np.isfinite(a), window), window)


def rolling_sum(a: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    s = _window_sum_finite(np.where(np.isfinite(a), a, 0.0), window)
    if min_periods is None or min_periods >= window:
        return np.where(_full_windows(a, window), s, np.nan)
    return np.where(_count_finite(a, window) >= min_periods, s, np.nan)


def rolling_mean(a: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    s = _window_sum_finite(np.where(np.isfinite(a), a, 0.0), window)
    if min_periods is None or min_periods >= window:
        return np.where(_full_windows(a, window), s / window, np.nan)
    n = _count_finite(a, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= max(min_periods, 1), s / n, np.nan)


def _constant_windows(a: np.ndarray, window: int) -> np.ndarray:
    """True where the last `window` rows are all equal (exact, from a count of changes)."""
    if window <= 1:
        return np.ones(a.shape, dtype=bool)
    changed = np.zeros(a.shape, dtype=bool)
    changed[1:] = a[1:] != a[:-1]
    return _window_sum_finite(_as_count(changed, window - 1), window - 1) == 0


def _zero_constant_windows(a: np.ndarray, window: int, var: np.ndarray, mean_sq: np.ndarray) -> np.ndarray:
    """Set the variance of exactly-constant windows to 0 (their s2 - s1^2/n is rounding noise, ~1e-15 of
    the mean square). Only candidates (variance <= 1e-9 of the mean square; every constant window is one)
    are checked, each from its own window, so a cell's result depends on its window alone."""
    cand = np.flatnonzero(var <= 1e-9 * mean_sq)
    if cand.size == 0:
        return var
    if a.ndim != 2 or cand.size * window > a.size // 4:  # many candidates: one pass over everything
        return np.where(_constant_windows(a, window), 0.0, var)
    t, j = np.divmod(cand, a.shape[1])
    rows = np.maximum(t[:, None] - np.arange(window)[None, :], 0)  # rows < window - 1 are masked later
    vals = a[rows, j[:, None]]
    flat = (vals == vals[:, :1]).all(axis=1)
    var.reshape(-1)[cand[flat]] = 0.0
    return var


def _mean_var(a: np.ndarray, window: int, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and variance from one pair of window sums (NaN where the window is not full)."""
    a = np.asarray(a, dtype=np.float64)
    ok = _full_windows(a, window)
    x = np.where(np.isfinite(a), a, 0.0)
    s1 = _window_sum_finite(x, window)
    s2 = _window_sum_finite(x * x, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(s2 - s1 * s1 / window, 0.0) / (window - ddof)
        var = _zero_constant_windows(a, window, var, s2 / window)
    return np.where(ok, s1 / window, np.nan), np.where(ok, var, np.nan)


def rolling_var(a: np.ndarray, window: int, ddof: int = 1) -> np.ndarray:
    """Rolling variance (ddof=1 like pandas); exactly 0 on a constant window."""
    return _mean_var(a, window, ddof)[1]


def rolling_std(a: np.ndarray, window: int) -> np.ndarray:
    return np.sqrt(rolling_var(a, window))


def rolling_cov_corr(a: np.ndarray, b: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling sample covariance and Pearson correlation over rows where both sides are defined for the
    whole window; the correlation is NaN where either side is constant in the window."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    ok = _full_windows(np.where(both, 0.0, np.nan), window)
    x, y = np.where(both, a, 0.0), np.where(both, b, 0.0)
    sx, sy = _window_sum_finite(x, window), _window_sum_finite(y, window)
    sxy = _window_sum_finite(x * y, window)
    sxx, syy = _window_sum_finite(x * x, window), _window_sum_finite(y * y, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = (sxy - sx * sy / window) / (window - 1)
        vx = np.maximum(sxx - sx * sx / window, 0.0)
        vy = np.maximum(syy - sy * sy / window, 0.0)
        vx = _zero_constant_windows(x, window, vx, sxx)
        vy = _zero_constant_windows(y, window, vy, syy)
        corr = (sxy - sx * sy / window) / np.sqrt(vx * vy)
        corr = np.where(np.isfinite(corr), corr, np.nan)
    return np.where(ok, cov, np.nan), np.where(ok, np.clip(corr, -1.0, 1.0), np.nan)


def _rolling_extreme(a: np.ndarray, window: int, ufunc: np.ufunc) -> np.ndarray:
    """van Herk / Gil-Werman: prefix and suffix scans over blocks of `window` rows; NaN propagates, so a
    window holding a NaN is NaN (pandas' min_periods = window)."""
    a = np.asarray(a, dtype=np.float64)
    T = a.shape[0]
    out = np.full(a.shape, np.nan)
    if window <= 0 or window > T:
        return out
    nb = -(-T // window)
    rest = a.shape[1:]
    xp = np.full((nb * window, *rest), np.nan)
    xp[:T] = a
    blocks = xp.reshape(nb, window, *rest)
    # scans over the rows of all blocks at once ([blocks, N] slices; ufunc.accumulate down axis 1 is slow)
    pre = blocks.copy()
    suf = blocks  # xp is a private copy: scanned in place
    for i in range(1, window):
        ufunc(pre[:, i - 1], pre[:, i], out=pre[:, i])
        ufunc(suf[:, window - i], suf[:, window - i - 1], out=suf[:, window - i - 1])
    prefix = pre.reshape(nb * window, *rest)
    suffix = suf.reshape(nb * window, *rest)
    # the window ending at t starts at s = t - window + 1: suffix[s] covers s..block end (<= t), prefix[t]
    # covers the block start (> s) ..t
    out[window - 1 :] = ufunc(suffix[: T - window + 1], prefix[window - 1 : T])
    return out


def rolling_max(a: np.ndarray, window: int) -> np.ndarray:
    return _rolling_extreme(a, window, np.maximum)


def rolling_min(a: np.ndarray, window: int) -> np.ndarray:
    return _rolling_extreme(a, window, np.minimum)


def rolling_sorted_apply(
    a: np.ndarray,
    window: int,
    fn: Callable[[np.ndarray, np.ndarray], list[np.ndarray]],
    n_out: int,
    chunk_rows: int = 256,
) -> list[np.ndarray]:
    """Apply `fn(sorted_windows [rows, N, window], last [rows, N]) -> n_out arrays [rows, N]` over every
    full window, a chunk of rows at a time (memory: chunk x N x window). Windows holding a NaN give NaN."""
    a = np.asarray(a, dtype=np.float64)
    T = a.shape[0]
    ok = _full_windows(a, window)
    outs = [np.full(a.shape, np.nan) for _ in range(n_out)]
    for r0 in range(max(window - 1, 0), T if window > 0 else 0, chunk_rows):
        r1 = min(T, r0 + chunk_rows)
        win = np.sort(sliding_window_view(a[r0 - window + 1 : r1], window, axis=0), axis=-1)
        for o, r in zip(outs, fn(win, a[r0:r1]), strict=True):
            o[r0:r1] = r
    return [np.where(ok, o, np.nan) for o in outs]


def _quantile_of_sorted(win: np.ndarray, q: float) -> np.ndarray:
    """pandas' linear interpolation between order statistics of a sorted window."""
    pos = q * (win.shape[-1] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, win.shape[-1] - 1)
    frac = pos - lo
    return win[..., lo] + (win[..., hi] - win[..., lo]) * frac if frac else win[..., lo].copy()


def rolling_quantiles(a: np.ndarray, window: int, levels: tuple[float, ...]) -> list[np.ndarray]:
    """Several rolling quantiles (linear interpolation, as pandas) from one sort of each window."""
    return rolling_sorted_apply(
        a, window, lambda win, _last: [_quantile_of_sorted(win, q) for q in levels], len(levels)
    )


def rolling_quantile(a: np.ndarray, window: int, q: float) -> np.ndarray:
    return rolling_quantiles(a, window, (q,))[0]


def rolling_median(a: np.ndarray, window: int) -> np.ndarray:
    return rolling_quantile(a, window, 0.5)  # an odd window lands on the middle order statistic exactly


def rolling_rank_pct(a: np.ndarray, window: int) -> np.ndarray:
    """Percentile rank of each row's value within its trailing window (pandas rolling rank, average ties,
    pct=True): ((# below) + (# equal, itself included) + 1) / 2 / window, from window - 1 shifted compares."""
    a = np.asarray(a, dtype=np.float64)
    T = a.shape[0]
    below = np.zeros(a.shape, dtype=np.int32)
    at_or_below = np.zeros(a.shape, dtype=np.int32)
    for k in range(1, min(window, T)):
        below[k:] += a[:-k] < a[k:]
        at_or_below[k:] += a[:-k] <= a[k:]
    rank = ((below + at_or_below) / 2.0 + 1.0) / window
    return np.where(_full_windows(a, window), rank, np.nan)


def rolling_zscore(a: np.ndarray, window: int) -> np.ndarray:
    mean, var = _mean_var(a, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - mean) / np.sqrt(var)


def wilder_mean(a: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/period), the recursion RSI and ATR use."""
    return frame(a).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean().to_numpy()


def cross_sectional_rank(a: np.ndarray) -> np.ndarray:
    """Per-date percentile rank in [0, 1] among the symbols that have a value that date."""
    return frame(a).rank(axis=1, pct=True).to_numpy()


def broadcast_column(panel_shape: tuple[int, int], column: np.ndarray) -> np.ndarray:
    return np.repeat(column[:, None], panel_shape[1], axis=1)
