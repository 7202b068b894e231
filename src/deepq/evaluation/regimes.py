"""Market regimes and stress windows for breaking every metric down by market condition.

Regimes are labelled from the market's own close (SPY, else ^GSPC) with information known at each date:
  trend       bull when the close is above its `trend_days` moving average, else bear;
  volatility  high when the trailing `vol_days` realised volatility is above its expanding median, else low.
Stress windows are fixed, configured date ranges (crises and flash crashes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepq.data.panel import Panel


@dataclass(frozen=True)
class StressWindow:
    name: str
    start: str
    end: str


DEFAULT_STRESS: tuple[StressWindow, ...] = (
    StressWindow("GFC 2008-09 .. 2009-03", "2008-09-01", "2009-03-31"),
    StressWindow("COVID crash", "2020-02-19", "2020-04-30"),
    StressWindow("2022 bear market", "2022-01-03", "2022-10-12"),
    StressWindow("flash crash 2010-05-06", "2010-05-06", "2010-05-06"),
    StressWindow("ETF flash crash 2015-08-24", "2015-08-24", "2015-08-24"),
    StressWindow("Volmageddon 2018-02-05", "2018-02-05", "2018-02-05"),
)


def market_close(panel: Panel, candidates: Sequence[str] = ("SPY", "^GSPC")) -> pd.Series:
    """Close of the first candidate market series in the panel (dates as a DatetimeIndex)."""
    for sym in candidates:
        if sym in panel.symbols:
            close = panel["close"][:, panel.symbol_index(sym)]
            return pd.Series(close, index=pd.to_datetime(panel.dates), name=sym).dropna()
    raise KeyError(f"no market series among {list(candidates)} in the panel; add one for regimes")


def regime_labels(close: pd.Series, trend_days: int = 200, vol_days: int = 21) -> pd.DataFrame:
    """Per-date `trend` (bull/bear) and `volatility` (high/low) labels, causal; NaN while warming up."""
    sma = close.rolling(trend_days, min_periods=trend_days).mean()
    trend = pd.Series(np.where(close > sma, "bull", "bear"), index=close.index).where(sma.notna())
    vol = np.log(close).diff().rolling(vol_days, min_periods=vol_days).std()
    med = vol.expanding(min_periods=252).median()
    level = pd.Series(np.where(vol > med, "high vol", "low vol"), index=close.index).where(med.notna())
    return pd.DataFrame({"trend": trend, "volatility": level})


def stress_mask(dates: pd.DatetimeIndex, window: StressWindow) -> np.ndarray:
    return np.asarray((dates >= pd.Timestamp(window.start)) & (dates <= pd.Timestamp(window.end)))


def by_regime(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    metric: Callable[[pd.DataFrame], Mapping[str, float]],
    date_col: str = "date",
) -> pd.DataFrame:
    """metric(rows) per regime label of each regime column; `frame` has a date column (or date index)."""
    dates = pd.DatetimeIndex(frame[date_col] if date_col in frame.columns else frame.index)
    rows = []
    for col in labels.columns:
        lab = labels[col].reindex(dates).to_numpy()
        for value in sorted(v for v in pd.unique(lab) if isinstance(v, str)):
            part = frame[lab == value]
            rows.append(
                {"regime": col, "label": value, "days": part_days(part, date_col)} | dict(metric(part))
            )
    return pd.DataFrame(rows)


def by_stress(
    frame: pd.DataFrame,
    windows: Sequence[StressWindow],
    metric: Callable[[pd.DataFrame], Mapping[str, float]],
    date_col: str = "date",
) -> pd.DataFrame:
    dates = pd.DatetimeIndex(frame[date_col] if date_col in frame.columns else frame.index)
    rows = []
    for w in windows:
        part = frame[stress_mask(dates, w)]
        if len(part):
            rows.append(
                {"window": w.name, "start": w.start, "end": w.end, "days": part_days(part, date_col)}
                | dict(metric(part))
            )
    return pd.DataFrame(rows)


def part_days(part: pd.DataFrame, date_col: str) -> int:
    return int(pd.Series(part[date_col] if date_col in part.columns else part.index).nunique())
