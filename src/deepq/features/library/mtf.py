"""Multi-timeframe features: weekly and monthly bars built from completed periods only, aligned back to daily.

A period's bar (first open, max high, min low, last close, summed volume) is complete at the close of its
last session. Whether a session is the last of its week/month comes from the date axis and, for the panel's
final row, from the XNYS calendar (schedules are public in advance), never from prices. At a daily row t a
feature therefore reads the last period that ended at or before t; a partly elapsed period is never used.
The panel's first period is dropped, since it may have started before the panel did.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import memo
from deepq.features.library.regime import _next_session
from deepq.features.registry import feature

FAMILY = "multi_timeframe"
SESSIONS = {"W": 5, "M": 21}  # sessions per period, for lookbacks


def _period_id(dates: np.ndarray, freq: str) -> np.ndarray:
    d = dates.astype("datetime64[D]")
    if freq == "M":
        return d.astype("datetime64[M]").astype(np.int64)
    # ISO-style weeks starting Monday: 1970-01-01 was a Thursday, so shift by 3 days
    return (d.astype(np.int64) + 3) // 7


def _bars(p: Panel, freq: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Completed period bars ({field: [P, N]}) and, per daily row, the index of the last completed bar (-1: none)."""

    def compute() -> tuple[dict[str, np.ndarray], np.ndarray]:
        pid = _period_id(p.dates, freq)
        next_pid = np.append(pid[1:], _period_id(_next_session(p)[-1:], freq))
        is_end = next_pid != pid  # the row's close completes its period
        starts = np.flatnonzero(np.append(True, pid[1:] != pid[:-1]))
        ends = np.flatnonzero(is_end)
        # complete periods: those whose last row is in the panel; drop the first (may predate the panel)
        complete_starts = starts[: len(ends)][1:]
        complete_ends = ends[1:]
        bars: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore"):
            bars["open"] = ops.frame(p["open"]).bfill(limit=None).to_numpy()[complete_starts]
            bars["high"] = np.fmax.reduceat(p["high"], complete_starts, axis=0)
            bars["low"] = np.fmin.reduceat(p["low"], complete_starts, axis=0)
            bars["close"] = ops.frame(p["close"]).ffill().to_numpy()[complete_ends]
            bars["volume"] = np.add.reduceat(np.nan_to_num(p["volume"]), complete_starts, axis=0)
        # reduceat's last segment runs to the end of the array: cut it at its period's end
        if len(complete_starts):
            last = slice(complete_starts[-1], complete_ends[-1] + 1)
            bars["high"][-1] = np.fmax.reduce(p["high"][last], axis=0)
            bars["low"][-1] = np.fmin.reduce(p["low"][last], axis=0)
            bars["volume"][-1] = np.nansum(p["volume"][last], axis=0)
        # a symbol with no bar in the period has no bar: NaN, not a carried close
        has_bar = np.add.reduceat(np.isfinite(p["close"]).astype(np.int64), complete_starts, axis=0) > 0
        if len(complete_starts):
            has_bar[-1] = np.isfinite(p["close"][last]).any(axis=0)
        for k in bars:
            bars[k] = np.where(has_bar, bars[k], np.nan)
        # daily row t reads bar b if complete_ends[b] <= t
        which = np.searchsorted(complete_ends, np.arange(len(p.dates)), side="right") - 1
        return bars, which

    return memo(p, ("mtf_bars", freq), compute)


def _to_daily(values: np.ndarray, which: np.ndarray) -> np.ndarray:
    out = np.full((len(which), values.shape[1]), np.nan)
    ok = which >= 0
    out[ok] = values[which[ok]]
    return out


def _rsi(close: np.ndarray, n: int) -> np.ndarray:
    d = close - ops.shift(close, 1)
    up = ops.wilder_mean(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), n)
    dn = ops.wilder_mean(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), n)
    return up / (up + dn)


BarFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def _register(freq: str, name: str, periods: int, description: str, fn: BarFn) -> None:
    lookback = (periods + 2) * SESSIONS[freq] + 5  # +2 periods: the dropped first and the one in progress

    @feature(name, FAMILY, lookback, description)
    def _f(p: Panel) -> np.ndarray:
        bars, which = _bars(p, freq)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _to_daily(fn(bars), which)


WEEKLY: list[tuple[str, int, str, BarFn]] = [
    ("w_ret_1", 1, "last completed week's log return", lambda b: ops.log_return(b["close"], 1)),
    ("w_ret_4", 4, "log return over the last 4 completed weeks", lambda b: ops.log_return(b["close"], 4)),
    ("w_ret_13", 13, "log return over the last 13 completed weeks", lambda b: ops.log_return(b["close"], 13)),
    ("w_rsi_14", 15, "Wilder RSI(14) on completed weekly closes", lambda b: _rsi(b["close"], 14)),
    (
        "w_vol_13",
        14,
        "std of weekly log returns over 13 completed weeks",
        lambda b: ops.rolling_std(ops.log_return(b["close"]), 13),
    ),
    (
        "w_ma_gap_10",
        10,
        "weekly close over its 10-week MA, minus 1",
        lambda b: b["close"] / ops.rolling_mean(b["close"], 10) - 1.0,
    ),
    (
        "w_ma_gap_40",
        40,
        "weekly close over its 40-week MA, minus 1",
        lambda b: b["close"] / ops.rolling_mean(b["close"], 40) - 1.0,
    ),
    ("w_range", 1, "last completed week's log(high / low)", lambda b: np.log(b["high"] / b["low"])),
    (
        "w_close_loc",
        1,
        "where the weekly close sits in the week's range",
        lambda b: (b["close"] - b["low"]) / (b["high"] - b["low"]),
    ),
    (
        "w_volume_z_13",
        13,
        "z-score of log weekly volume over 13 weeks",
        lambda b: ops.rolling_zscore(np.log1p(b["volume"]), 13),
    ),
    (
        "w_stoch_13",
        13,
        "weekly close in the 13-week high/low range",
        lambda b: (
            (b["close"] - ops.rolling_min(b["low"], 13))
            / (ops.rolling_max(b["high"], 13) - ops.rolling_min(b["low"], 13))
        ),
    ),
]
MONTHLY: list[tuple[str, int, str, BarFn]] = [
    ("m_ret_1", 1, "last completed month's log return", lambda b: ops.log_return(b["close"], 1)),
    ("m_ret_3", 3, "log return over the last 3 completed months", lambda b: ops.log_return(b["close"], 3)),
    ("m_ret_6", 6, "log return over the last 6 completed months", lambda b: ops.log_return(b["close"], 6)),
    (
        "m_ret_12",
        12,
        "log return over the last 12 completed months",
        lambda b: ops.log_return(b["close"], 12),
    ),
    ("m_rsi_6", 7, "Wilder RSI(6) on completed monthly closes", lambda b: _rsi(b["close"], 6)),
    (
        "m_vol_12",
        13,
        "std of monthly log returns over 12 completed months",
        lambda b: ops.rolling_std(ops.log_return(b["close"]), 12),
    ),
    (
        "m_ma_gap_10",
        10,
        "monthly close over its 10-month MA, minus 1 (Faber timing)",
        lambda b: b["close"] / ops.rolling_mean(b["close"], 10) - 1.0,
    ),
    ("m_range", 1, "last completed month's log(high / low)", lambda b: np.log(b["high"] / b["low"])),
    (
        "m_close_loc",
        1,
        "where the monthly close sits in the month's range",
        lambda b: (b["close"] - b["low"]) / (b["high"] - b["low"]),
    ),
]
for _name, _n, _desc, _fn in WEEKLY:
    _register("W", _name, _n, _desc, _fn)
for _name, _n, _desc, _fn in MONTHLY:
    _register("M", _name, _n, _desc, _fn)
