"""Microstructure from daily bars: range-based volatility, illiquidity, spread estimators, gaps, volume shocks.

Volatilities are per-session (not annualised), as the square root of the window mean of the daily estimator.
References: Parkinson (1980), Garman & Klass (1980), Rogers & Satchell (1991), Yang & Zhang (2000),
Amihud (2002), Roll (1984), Corwin & Schultz (2012).
"""

from __future__ import annotations

import numpy as np

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import bind, close_log_return, memo
from deepq.features.registry import feature

FAMILY = "microstructure"


def _logs(p: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log(high/open), log(low/open), log(close/open), log(open/prev close); memoised (shared, read-only)."""

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        o, h, lo, c = p["open"], p["high"], p["low"], p["close"]
        return np.log(h / o), np.log(lo / o), np.log(c / o), np.log(o / ops.shift(c, 1))

    return memo(p, "micro_logs", compute)


def _log_hl(p: Panel) -> np.ndarray:
    return memo(p, "log_high_low", lambda: np.log(p["high"] / p["low"]))


def _rs_daily(p: Panel) -> np.ndarray:
    """The daily Rogers-Satchell term u (u - c) + d (d - c), shared by RS and Yang-Zhang."""

    def compute() -> np.ndarray:
        u, d, c, _ = _logs(p)
        return u * (u - c) + d * (d - c)

    return memo(p, "rs_daily", compute)


def _sqrt_mean(x: np.ndarray, w: int) -> np.ndarray:
    return np.sqrt(np.maximum(ops.rolling_mean(x, w), 0.0))


def parkinson(p: Panel, w: int) -> np.ndarray:
    hl = _log_hl(p)
    return _sqrt_mean(hl**2 / (4.0 * np.log(2.0)), w)


def garman_klass(p: Panel, w: int) -> np.ndarray:
    hl = _log_hl(p)
    co = np.log(p["close"] / p["open"])
    return _sqrt_mean(0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2, w)


def rogers_satchell(p: Panel, w: int) -> np.ndarray:
    return _sqrt_mean(_rs_daily(p), w)


def yang_zhang(p: Panel, w: int) -> np.ndarray:
    _, _, c, o = _logs(p)
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    var_o = ops.rolling_var(o, w)
    var_c = ops.rolling_var(c, w)
    var_rs = ops.rolling_mean(_rs_daily(p), w)
    return np.sqrt(np.maximum(var_o + k * var_c + (1.0 - k) * var_rs, 0.0))


def _reg_vol(name: str, fn, w: int, lookback: int, what: str) -> None:  # type: ignore[no-untyped-def]
    feature(f"{name}_{w}", FAMILY, lookback, f"{what} volatility over {w} sessions (per session)")(
        lambda p: fn(p, w)
    )


for _w in (10, 21, 63):
    _reg_vol("parkinson", parkinson, _w, _w, "Parkinson high-low")
    _reg_vol("garman_klass", garman_klass, _w, _w, "Garman-Klass OHLC")
    _reg_vol("rogers_satchell", rogers_satchell, _w, _w, "Rogers-Satchell drift-free")
    _reg_vol("yang_zhang", yang_zhang, _w, _w + 1, "Yang-Zhang overnight + open-close + RS")


def amihud(p: Panel, w: int) -> np.ndarray:
    """Mean |return| per million dollars traded; zero-volume days are skipped (not infinite)."""
    r = np.abs(close_log_return(p, 1))
    dv = p["close"] * p["volume"] / 1e6
    daily = np.where(dv > 0, r / np.where(dv > 0, dv, 1.0), np.nan)
    return ops.rolling_mean(daily, w, min_periods=max(2, w // 2))


for _w in (21, 63):
    feature(
        f"amihud_{_w}", FAMILY, _w + 1, f"Amihud illiquidity: mean |log return| per $1M traded, {_w} sessions"
    )(bind(lambda p, w: np.log1p(amihud(p, w)), _w))


@feature(
    "roll_spread_21",
    FAMILY,
    22,
    "Roll (1984) spread: 2 sqrt(-cov(dP_t, dP_t-1)) over 21 sessions, 0 if cov > 0",
)
def roll_spread_21(p: Panel) -> np.ndarray:
    r = close_log_return(p, 1)
    r1 = ops.shift(r, 1)
    cov = ops.rolling_mean(r * r1, 21) - ops.rolling_mean(r, 21) * ops.rolling_mean(r1, 21)
    return 2.0 * np.sqrt(np.maximum(-cov, 0.0))


def corwin_schultz(p: Panel) -> np.ndarray:
    """Daily Corwin-Schultz spread from two consecutive bars (negative estimates set to 0, as in the paper)."""
    h, lo = p["high"], p["low"]
    h1, l1 = ops.shift(h, 1), ops.shift(lo, 1)
    beta = np.log(h / lo) ** 2 + np.log(h1 / l1) ** 2
    gamma = np.log(np.fmax(h, h1) / np.fmin(lo, l1)) ** 2
    den = 3.0 - 2.0 * np.sqrt(2.0)
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / den - np.sqrt(gamma / den)
    s = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    return np.where(np.isnan(s), np.nan, np.maximum(s, 0.0))


@feature("corwin_schultz_21", FAMILY, 22, "Corwin-Schultz high-low spread estimate, mean over 21 sessions")
def corwin_schultz_21(p: Panel) -> np.ndarray:
    return ops.rolling_mean(corwin_schultz(p), 21)


@feature("intraday_ret", FAMILY, 1, "open-to-close log return log(close / open)")
def intraday_ret(p: Panel) -> np.ndarray:
    return np.log(p["close"] / p["open"])


@feature("overnight_gap_mean_21", FAMILY, 22, "mean overnight gap log(open / prev close) over 21 sessions")
def overnight_gap_mean_21(p: Panel) -> np.ndarray:
    return ops.rolling_mean(_logs(p)[3], 21)


@feature("overnight_gap_abs_21", FAMILY, 22, "mean absolute overnight gap over 21 sessions")
def overnight_gap_abs_21(p: Panel) -> np.ndarray:
    return ops.rolling_mean(np.abs(_logs(p)[3]), 21)


@feature("overnight_share_21", FAMILY, 22, "share of 21-session variance from overnight gaps")
def overnight_share_21(p: Panel) -> np.ndarray:
    _, _, c, o = _logs(p)
    on, dy = ops.rolling_mean(o**2, 21), ops.rolling_mean(c**2, 21)
    return on / (on + dy)


@feature("range_z_63", FAMILY, 63, "z-score of today's log(high/low) against its 63-session mean and std")
def range_z_63(p: Panel) -> np.ndarray:
    return ops.rolling_zscore(_log_hl(p), 63)


@feature("range_ratio_5_63", FAMILY, 63, "5-session over 63-session mean intraday range")
def range_ratio_5_63(p: Panel) -> np.ndarray:
    hl = _log_hl(p)
    return ops.rolling_mean(hl, 5) / ops.rolling_mean(hl, 63)


for _w in (63, 252):
    feature(f"volume_z_{_w}", FAMILY, _w, f"z-score of log volume against its {_w}-session mean and std")(
        bind(lambda p, w: ops.rolling_zscore(np.log1p(p["volume"]), w), _w)
    )
for _w in (21, 63):
    feature(
        f"dollar_volume_z_{_w}",
        FAMILY,
        _w,
        f"z-score of log dollar volume against its {_w}-session mean and std",
    )(bind(lambda p, w: ops.rolling_zscore(np.log1p(p["close"] * p["volume"]), w), _w))


@feature("volume_ratio_5_63", FAMILY, 63, "log of 5-session over 63-session mean volume")
def volume_ratio_5_63(p: Panel) -> np.ndarray:
    v = p["volume"]
    return np.log1p(ops.rolling_mean(v, 5)) - np.log1p(ops.rolling_mean(v, 63))


@feature("zero_volume_63", FAMILY, 63, "share of the last 63 sessions with zero volume (non-tradability)")
def zero_volume_63(p: Panel) -> np.ndarray:
    v = p["volume"]
    return ops.rolling_mean(np.where(np.isnan(v), np.nan, (v <= 0).astype(float)), 63)
