"""Performance decay as labels arrive: daily cross-sectional rank IC and directional accuracy, rolled.

Input is one row per (date, symbol) with the model's `score`, `pred`, and the realised `y_ret` (NaN until
the label is known). A date counts once its labels are in; the rolling window is in sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def daily_performance(frame: pd.DataFrame, min_symbols: int = 5) -> pd.DataFrame:
    """Per date: rank IC (Spearman of score vs realised return across symbols), accuracy of sign(pred), n."""
    known = frame[np.isfinite(frame["y_ret"]) & np.isfinite(frame["score"])]
    rows = []
    for date, g in known.groupby("date", sort=True):
        n = len(g)
        ic = g["score"].rank().corr(g["y_ret"].rank()) if n >= min_symbols else np.nan
        acc = float(np.mean(np.sign(g["pred"]) == np.sign(g["y_ret"]))) if n else np.nan
        rows.append({"date": date, "ic": ic, "accuracy": acc, "n": n})
    return pd.DataFrame(rows, columns=["date", "ic", "accuracy", "n"])


def rolling_performance(daily: pd.DataFrame, window_days: int = 21) -> pd.DataFrame:
    out = daily.copy()
    minp = max(2, window_days // 2)
    out["rolling_ic"] = daily["ic"].rolling(window_days, min_periods=minp).mean()
    out["rolling_accuracy"] = daily["accuracy"].rolling(window_days, min_periods=minp).mean()
    return out
