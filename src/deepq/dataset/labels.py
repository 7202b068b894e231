"""Labels: explicit, shifted future quantities. The label at decision date t is the only place the future is read.

Execution is explicit: a signal formed at the close of t trades at the next session's open or close,
and the return label covers exactly that holding period of `horizon_days` sessions:
    next_close: log(close[t+1+h] / close[t+1])      next_open: log(open[t+1+h] / open[t+1])
`label_span(h)` is how many sessions past t a label reaches; folds purge that many sessions before a test block.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from deepq.data.panel import Panel

Execution = Literal["next_close", "next_open"]
TaskName = Literal["returns", "direction", "signal", "risk"]


def future(a: np.ndarray, k: int) -> np.ndarray:
    """Value k rows later (NaN past the end)."""
    out = np.full_like(a, np.nan, dtype=np.float64)
    if k < len(a):
        out[: len(a) - k] = a[k:]
    return out


def label_span(horizon_days: int, task: str = "returns") -> int:
    """Sessions after t that the label of date t reads."""
    return horizon_days if task == "risk" else horizon_days + 1


EXECUTIONS = ("next_close", "next_open")


def execution_price(panel: Panel, execution: Execution = "next_close") -> np.ndarray:
    """The [T, N] price a trade executes at: the open or the close of a session (see the module docstring)."""
    if execution not in EXECUTIONS:
        raise ValueError(f"task.execution must be one of {EXECUTIONS}, got {execution!r}")
    return panel["open"] if execution == "next_open" else panel["close"]


def entry_price(panel: Panel, execution: Execution = "next_close") -> np.ndarray:
    """Price at which a signal of decision date t is entered: session t+1's open or close (NaN past the end)."""
    return future(execution_price(panel, execution), 1)


def forward_return(panel: Panel, horizon_days: int, execution: Execution = "next_close") -> np.ndarray:
    """Log return from entry (session t+1) to exit `horizon_days` sessions later, at the same price type.

    With horizon_days=1 this is the one-session return a daily-rebalanced portfolio earns on its weights of t,
    so labels, IC and backtests all speak of the same holding period.
    """
    price = execution_price(panel, execution)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(future(price, 1 + horizon_days) / future(price, 1))


def trailing_volatility(panel: Panel, window: int = 21) -> np.ndarray:
    """Std of daily log returns over the last `window` sessions (known at t): the scale of signal thresholds."""
    import pandas as pd

    close = panel["close"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(close[1:] / close[:-1])
    r = np.vstack([np.full((1, close.shape[1]), np.nan), r])
    return pd.DataFrame(r).rolling(window, min_periods=window).std().to_numpy()


def forward_volatility(panel: Panel, horizon_days: int) -> np.ndarray:
    """Realised volatility of the daily log returns over sessions t+1 .. t+h (annualisation left to the user)."""
    close = panel["close"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(future(close, 1) / close)  # return earned on session t+1, indexed at t
        sq = np.where(np.isfinite(r), r * r, np.nan)
    csum = np.vstack([np.zeros((1, close.shape[1])), np.nancumsum(sq, axis=0)])
    cnt = np.vstack([np.zeros((1, close.shape[1])), np.cumsum(np.isfinite(sq), axis=0)])
    T = close.shape[0]
    out = np.full(close.shape, np.nan)
    end = np.arange(T) + horizon_days
    ok = end <= T
    s = csum[end[ok]] - csum[np.arange(T)[ok]]
    n = cnt[end[ok]] - cnt[np.arange(T)[ok]]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[ok] = np.where(n == horizon_days, np.sqrt(s / n), np.nan)
    return out


def make_labels(
    panel: Panel,
    task: TaskName,
    horizon_days: int = 1,
    execution: Execution = "next_close",
    signal_k: float = 0.5,
    signal_vol_window: int = 21,
) -> np.ndarray:
    """[T, N] float labels for a task; NaN where the label is unknown.

    returns:   forward log return
    direction: 1.0 if the forward return > 0 else 0.0
    signal:    0 sell / 1 hold / 2 buy, thresholds +-signal_k * trailing vol * sqrt(h)
    risk:      log of forward realised volatility
    """
    if task == "risk":
        with np.errstate(divide="ignore"):
            vol = forward_volatility(panel, horizon_days)
            return np.where(vol > 0, np.log(np.where(vol > 0, vol, 1.0)), np.nan)
    fwd = forward_return(panel, horizon_days, execution)
    if task == "returns":
        return fwd
    if task == "direction":
        return np.where(np.isfinite(fwd), (fwd > 0).astype(np.float64), np.nan)
    if task == "signal":
        band = signal_k * trailing_volatility(panel, signal_vol_window) * np.sqrt(horizon_days)
        cls = np.where(fwd > band, 2.0, np.where(fwd < -band, 0.0, 1.0))
        return np.where(np.isfinite(fwd) & np.isfinite(band), cls, np.nan)
    raise ValueError(f"unknown task {task!r}; expected returns, direction, signal or risk")
