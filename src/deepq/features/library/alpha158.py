"""Alpha158-style features following Qlib's published expressions (qlib/contrib/data/loader.py), own code.

k-bar shape (KMID ... KSFT2), price ratios (OPEN0, HIGH0, LOW0; Qlib's VWAP0 needs intraday VWAP, which daily
bars lack) and 27 rolling operators at windows 5, 20 and 60. Qlib's 1e-12 guards are kept. Rolling windows
need all `d` values (Qlib's min_periods is looser; ours is stricter so a value never silently uses less).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import talib
from scipy.signal import lfilter

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import memo, per_symbol
from deepq.features.registry import feature

FAMILY = "alpha158"
EPS = 1e-12
WINDOWS = (5, 20, 60)


def _kbar(name: str, description: str, fn: Callable[[Panel], np.ndarray]) -> None:
    feature(f"a158_{name}", FAMILY, 1, description)(fn)


def _ohlc(p: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return p["open"], p["high"], p["low"], p["close"]


_kbar("kmid", "(close - open) / open", lambda p: (p["close"] - p["open"]) / p["open"])
_kbar("klen", "(high - low) / open", lambda p: (p["high"] - p["low"]) / p["open"])
_kbar(
    "kmid2",
    "(close - open) / (high - low)",
    lambda p: (p["close"] - p["open"]) / (p["high"] - p["low"] + EPS),
)
_kbar(
    "kup",
    "(high - max(open, close)) / open",
    lambda p: (p["high"] - np.fmax(p["open"], p["close"])) / p["open"],
)
_kbar(
    "kup2",
    "(high - max(open, close)) / (high - low)",
    lambda p: (p["high"] - np.fmax(p["open"], p["close"])) / (p["high"] - p["low"] + EPS),
)
_kbar(
    "klow",
    "(min(open, close) - low) / open",
    lambda p: (np.fmin(p["open"], p["close"]) - p["low"]) / p["open"],
)
_kbar(
    "klow2",
    "(min(open, close) - low) / (high - low)",
    lambda p: (np.fmin(p["open"], p["close"]) - p["low"]) / (p["high"] - p["low"] + EPS),
)
_kbar("ksft", "(2 close - high - low) / open", lambda p: (2 * p["close"] - p["high"] - p["low"]) / p["open"])
_kbar(
    "ksft2",
    "(2 close - high - low) / (high - low)",
    lambda p: (2 * p["close"] - p["high"] - p["low"]) / (p["high"] - p["low"] + EPS),
)
_kbar("open0", "open / close", lambda p: p["open"] / p["close"])
_kbar("high0", "high / close", lambda p: p["high"] / p["close"])
_kbar("low0", "low / close", lambda p: p["low"] / p["close"])


def _argmax_pos(p: Panel, field: str, d: int, use_max: bool) -> np.ndarray:
    """Qlib IdxMax/IdxMin: 1-based position of the extreme in the window (1 = oldest). TA-Lib MAXINDEX /
    MININDEX per symbol; on exact ties TA-Lib picks the latest occurrence where numpy's argmax picks the first."""
    func = talib.MAXINDEX if use_max else talib.MININDEX

    def one(col: np.ndarray) -> np.ndarray:
        pos = func(col, d).astype(np.float64) - (np.arange(len(col)) - d + 1) + 1.0
        pos[: d - 1] = np.nan
        return pos

    return memo(p, ("a158_argpos", field, d, use_max), lambda: per_symbol(p, one, (field,))[0])


def _slope_stats(y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rolling OLS of y on the in-window position 0..d-1: slope, R^2 and the last residual (Qlib Slope,
    Rsquare, Resi). The position-weighted sum is a causal FIR filter, so a NaN affects d rows only."""
    weights = np.arange(d - 1, -1, -1, dtype=np.float64)  # y[t-k] sits at position d-1-k
    sum_ky = lfilter(weights, [1.0], y, axis=0)
    my = ops.rolling_mean(y, d)
    mean_k = (d - 1) / 2.0
    var_k = (d * d - 1) / 12.0
    cov = sum_ky / d - mean_k * my
    slope = cov / var_k
    var_y = ops.rolling_std(y, d) ** 2 * (d - 1) / d
    r2 = np.where(var_y > 0, cov**2 / (var_k * np.where(var_y > 0, var_y, 1.0)), np.nan)
    r2 = np.where(np.isnan(my), np.nan, np.clip(r2, 0.0, 1.0))
    fitted_last = my + slope * ((d - 1) - mean_k)
    return slope, r2, y - fitted_last


def _rolling_corr(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    """Rolling Pearson correlation over d rows; NaN where either side is constant in the window."""
    return ops.rolling_cov_corr(a, b, d)[1]


def _rolling_sum(a: np.ndarray, d: int) -> np.ndarray:
    return ops.rolling_sum(a, d)


def _diff(a: np.ndarray) -> np.ndarray:
    return a - ops.shift(a, 1)


def _rolling_ops(d: int) -> dict[str, tuple[str, Callable[[Panel], np.ndarray]]]:
    def c(p: Panel) -> np.ndarray:
        return p["close"]

    def slope(p: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return memo(p, ("a158_slope", d), lambda: _slope_stats(p["close"], d))

    def sums(p: Panel, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            dx = _diff(p[field])
            up = _rolling_sum(np.where(np.isnan(dx), np.nan, np.maximum(dx, 0.0)), d)
            dn = _rolling_sum(np.where(np.isnan(dx), np.nan, np.maximum(-dx, 0.0)), d)
            tot = _rolling_sum(np.abs(dx), d) + EPS
            return up / tot, dn / tot, (up - dn) / tot

        return memo(p, ("a158_sums", field, d), compute)

    def cnt(p: Panel) -> tuple[np.ndarray, np.ndarray]:
        def compute() -> tuple[np.ndarray, np.ndarray]:
            dx = _diff(p["close"])
            up = ops.rolling_mean(np.where(np.isnan(dx), np.nan, (dx > 0).astype(float)), d)
            dn = ops.rolling_mean(np.where(np.isnan(dx), np.nan, (dx < 0).astype(float)), d)
            return up, dn

        return memo(p, ("a158_cnt", d), compute)

    def wvma(p: Panel) -> np.ndarray:
        x = np.abs(p["close"] / ops.shift(p["close"], 1) - 1.0) * p["volume"]
        return ops.rolling_std(x, d) / (ops.rolling_mean(x, d) + EPS)

    def rank(p: Panel) -> np.ndarray:
        # Qlib Rank: percentile of the latest value within its window (pandas rolling rank, pct=True)
        return ops.rolling_rank_pct(c(p), d)

    def q(p: Panel, level: float) -> np.ndarray:
        # QTLU and QTLD share one sort of each window
        qs = memo(p, ("a158_quantiles", d), lambda: ops.rolling_quantiles(c(p), d, (0.8, 0.2)))
        return qs[(0.8, 0.2).index(level)] / c(p)

    def rsv(p: Panel) -> np.ndarray:
        lo, hi = ops.rolling_min(p["low"], d), ops.rolling_max(p["high"], d)
        return (c(p) - lo) / (hi - lo + EPS)

    def cord(p: Panel) -> np.ndarray:
        v = p["volume"]
        with np.errstate(divide="ignore", invalid="ignore"):
            lv = np.log(v / ops.shift(v, 1) + 1.0)
        return _rolling_corr(c(p) / ops.shift(c(p), 1), lv, d)

    return {
        "roc": ("close[t-d] / close", lambda p: ops.shift(c(p), d) / c(p)),
        "ma": ("mean(close, d) / close", lambda p: ops.rolling_mean(c(p), d) / c(p)),
        "std": ("std(close, d) / close", lambda p: ops.rolling_std(c(p), d) / c(p)),
        "beta": ("regression slope of close on time over d / close", lambda p: slope(p)[0] / c(p)),
        "rsqr": ("R^2 of that regression", lambda p: slope(p)[1]),
        "resi": ("last residual of that regression / close", lambda p: slope(p)[2] / c(p)),
        "max": ("max(high, d) / close", lambda p: ops.rolling_max(p["high"], d) / c(p)),
        "min": ("min(low, d) / close", lambda p: ops.rolling_min(p["low"], d) / c(p)),
        "qtlu": ("0.8 quantile of close over d / close", lambda p: q(p, 0.8)),
        "qtld": ("0.2 quantile of close over d / close", lambda p: q(p, 0.2)),
        "rank": ("percentile of today's close within the window", rank),
        "rsv": ("(close - min(low, d)) / (max(high, d) - min(low, d))", rsv),
        "imax": ("days-position of the window's max high / d", lambda p: _argmax_pos(p, "high", d, True) / d),
        "imin": ("position of the window's min low / d", lambda p: _argmax_pos(p, "low", d, False) / d),
        "imxd": (
            "(position of max high - position of min low) / d",
            lambda p: (_argmax_pos(p, "high", d, True) - _argmax_pos(p, "low", d, False)) / d,
        ),
        "corr": (
            "corr(close, log(volume + 1)) over d",
            lambda p: _rolling_corr(c(p), np.log1p(p["volume"]), d),
        ),
        "cord": ("corr(close/close[t-1], log(volume/volume[t-1] + 1)) over d", cord),
        "cntp": ("share of up days over d", lambda p: cnt(p)[0]),
        "cntn": ("share of down days over d", lambda p: cnt(p)[1]),
        "cntd": ("share of up minus down days over d", lambda p: cnt(p)[0] - cnt(p)[1]),
        "sump": ("sum of gains / sum of |changes| over d (RSI-like)", lambda p: sums(p, "close")[0]),
        "sumn": ("sum of losses / sum of |changes| over d", lambda p: sums(p, "close")[1]),
        "sumd": ("(gains - losses) / sum of |changes| over d", lambda p: sums(p, "close")[2]),
        "vma": ("mean(volume, d) / volume", lambda p: ops.rolling_mean(p["volume"], d) / (p["volume"] + EPS)),
        "vstd": ("std(volume, d) / volume", lambda p: ops.rolling_std(p["volume"], d) / (p["volume"] + EPS)),
        "wvma": ("std / mean of |return| x volume over d", wvma),
        "vsump": ("volume increases / |volume changes| over d", lambda p: sums(p, "volume")[0]),
        "vsumn": ("volume decreases / |volume changes| over d", lambda p: sums(p, "volume")[1]),
        "vsumd": ("(increases - decreases) / |volume changes| over d", lambda p: sums(p, "volume")[2]),
    }


def _register_rolling() -> None:
    for d in WINDOWS:
        for op, (what, fn) in _rolling_ops(d).items():
            lookback = (
                d + 1
                if op
                in ("cord", "cntp", "cntn", "cntd", "sump", "sumn", "sumd", "wvma", "vsump", "vsumn", "vsumd")
                else d
            )
            feature(f"a158_{op}_{d}", FAMILY, lookback, f"Qlib {op.upper()}{d}: {what} (d={d})")(fn)


_register_rolling()
