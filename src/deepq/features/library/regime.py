"""Market regime and calendar features.

Regimes read the market series (SPY, carried forward at most `panel.fill_limit` sessions; the equal-weight
stock index when SPY is absent).
Calendar features read only the date axis and the XNYS exchange calendar (exchange-calendars), whose
schedule is published in advance, so knowing that t is the last session of a month, or how many days
remain to the next holiday, uses no price after t.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import close_log_return, market_close, memo
from deepq.features.registry import feature

REGIME = "regime"
CALENDAR = "calendar"


def _bcast(p: Panel, col: np.ndarray) -> np.ndarray:
    return ops.broadcast_column(p.shape, col)


def _mkt(p: Panel) -> np.ndarray:
    return market_close(p)[:, None]


def _mkt_vol(p: Panel, w: int) -> np.ndarray:
    return ops.rolling_std(ops.log_return(_mkt(p)), w)


@feature(
    "mkt_vol_regime",
    REGIME,
    273,
    "percentile of SPY's 21-session volatility within its last 252 values",
    reads=("market",),
)
def mkt_vol_regime(p: Panel) -> np.ndarray:
    v = _mkt_vol(p, 21)
    return _bcast(p, ops.rolling_rank_pct(v, 252)[:, 0])


@feature(
    "mkt_vol_ratio_21_252",
    REGIME,
    253,
    "SPY 21-session over 252-session realised volatility",
    reads=("market",),
)
def mkt_vol_ratio(p: Panel) -> np.ndarray:
    return _bcast(p, (_mkt_vol(p, 21) / _mkt_vol(p, 252))[:, 0])


@feature("mkt_trend_200", REGIME, 200, "SPY over its 200-session moving average, minus 1", reads=("market",))
def mkt_trend_200(p: Panel) -> np.ndarray:
    m = _mkt(p)
    return _bcast(p, (m / ops.rolling_mean(m, 200) - 1.0)[:, 0])


@feature(
    "mkt_trend_regime",
    REGIME,
    200,
    "trend regime: +1 if SPY's 50-day MA is above its 200-day MA, else -1",
    reads=("market",),
)
def mkt_trend_regime(p: Panel) -> np.ndarray:
    m = _mkt(p)
    a, b = ops.rolling_mean(m, 50), ops.rolling_mean(m, 200)
    return _bcast(p, np.where(np.isnan(b), np.nan, np.where(a > b, 1.0, -1.0))[:, 0])


@feature(
    "mkt_drawdown", REGIME, 1, "SPY's drawdown from its running high (within the panel)", reads=("market",)
)
def mkt_drawdown(p: Panel) -> np.ndarray:
    m = _mkt(p)
    return _bcast(p, (m / ops.frame(m).cummax().to_numpy() - 1.0)[:, 0])


@feature("mkt_drawdown_252", REGIME, 252, "SPY's drawdown from its 252-session high", reads=("market",))
def mkt_drawdown_252(p: Panel) -> np.ndarray:
    m = _mkt(p)
    return _bcast(p, (m / ops.rolling_max(m, 252) - 1.0)[:, 0])


@feature("drawdown_ath", REGIME, 1, "the symbol's drawdown from its running high close (within the panel)")
def drawdown_ath(p: Panel) -> np.ndarray:
    c = p["close"]
    return c / ops.frame(c).cummax().to_numpy() - 1.0


@feature("mkt_breadth_50", REGIME, 50, "share of stocks above their 50-session moving average")
def mkt_breadth_50(p: Panel) -> np.ndarray:
    c = np.where(p.mask(("stock",))[None, :], p["close"], np.nan)
    ma = ops.rolling_mean(c, 50)
    ok = np.isfinite(ma) & np.isfinite(c)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _bcast(p, np.where(n > 0, ((c > ma) & ok).sum(axis=1) / n, np.nan))


@feature("mkt_dispersion_21", REGIME, 22, "cross-sectional std of 21-session stock returns")
def mkt_dispersion_21(p: Panel) -> np.ndarray:
    r = np.where(p.mask(("stock",))[None, :], close_log_return(p, 21), np.nan)
    ok = np.isfinite(r)
    n = ok.sum(axis=1)
    x = np.where(ok, r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=1) / n
        var = np.where(ok, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
    return _bcast(p, np.where(n > 1, np.sqrt(var), np.nan))


# --- calendar ---
@lru_cache(maxsize=4)
def _xnys(start_year: int, end_year: int) -> tuple[np.ndarray, np.ndarray]:
    """(sessions, weekday holidays) of XNYS as datetime64[D] arrays between the given years."""
    import exchange_calendars as xc

    start = max(start_year, 1960)
    cal = xc.get_calendar("XNYS", start=f"{start}-01-01", end=f"{end_year}-12-31")
    sessions = cal.sessions.values.astype("datetime64[D]")
    weekdays = pd.bdate_range(f"{start}-01-01", f"{end_year}-12-31").values.astype("datetime64[D]")
    holidays = np.setdiff1d(weekdays, sessions)
    return sessions, holidays


def _calendar(p: Panel) -> tuple[np.ndarray, np.ndarray]:
    years = p.dates.astype("datetime64[Y]").astype(int) + 1970
    return _xnys(int(years.min()), int(years.max()) + 1)


def _next_session(p: Panel) -> np.ndarray:
    """The exchange's next session after each panel date (the panel's own next row where the calendar ends)."""
    sessions, _ = _calendar(p)
    i = np.searchsorted(sessions, p.dates, side="right")
    nxt = sessions[np.minimum(i, len(sessions) - 1)]
    fallback = np.append(p.dates[1:], p.dates[-1] + np.timedelta64(1, "D"))
    return np.where(i < len(sessions), nxt, fallback)


@feature("day_of_week", CALENDAR, 0, "weekday of the session, 0 = Monday .. 4 = Friday, scaled to [0, 1]")
def day_of_week(p: Panel) -> np.ndarray:
    return _bcast(p, ((p.dates.astype("datetime64[D]").astype(int) + 3) % 7) / 4.0)


@feature("month_of_year", CALENDAR, 0, "calendar month, January = 0 .. December = 1")
def month_of_year(p: Panel) -> np.ndarray:
    return _bcast(p, (p.dates.astype("datetime64[M]").astype(int) % 12) / 11.0)


@feature("month_sin", CALENDAR, 0, "sin of the day-of-year angle (smooth seasonality)")
def month_sin(p: Panel) -> np.ndarray:
    doy = (p.dates - p.dates.astype("datetime64[Y]")).astype(int)
    return _bcast(p, np.sin(2 * np.pi * doy / 365.25))


@feature("month_cos", CALENDAR, 0, "cos of the day-of-year angle (smooth seasonality)")
def month_cos(p: Panel) -> np.ndarray:
    doy = (p.dates - p.dates.astype("datetime64[Y]")).astype(int)
    return _bcast(p, np.cos(2 * np.pi * doy / 365.25))


def _session_of_month(p: Panel) -> tuple[np.ndarray, np.ndarray]:
    """(sessions since the month's first session, sessions until its last session) per panel date."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        sessions, _ = _calendar(p)
        month = sessions.astype("datetime64[M]")
        i = np.clip(np.searchsorted(sessions, p.dates), 0, len(sessions) - 1)
        first = np.searchsorted(month, month[i], side="left")
        last = np.searchsorted(month, month[i], side="right") - 1
        return (i - first).astype(float), (last - i).astype(float)

    return memo(p, "session_of_month", compute)


@feature(
    "turn_of_month", CALENDAR, 0, "1 on the last session of a month and the first three of the next, else 0"
)
def turn_of_month(p: Panel) -> np.ndarray:
    since, until = _session_of_month(p)
    return _bcast(p, ((until == 0) | (since <= 2)).astype(float))


@feature("sessions_to_month_end", CALENDAR, 0, "sessions left until the month's last session, / 22")
def sessions_to_month_end(p: Panel) -> np.ndarray:
    return _bcast(p, _session_of_month(p)[1] / 22.0)


@feature(
    "quarter_end_month",
    CALENDAR,
    0,
    "1 in March, June, September and December (window dressing, rebalancing)",
)
def quarter_end_month(p: Panel) -> np.ndarray:
    m = p.dates.astype("datetime64[M]").astype(int) % 12
    return _bcast(p, (m % 3 == 2).astype(float))


@feature("days_to_holiday", CALENDAR, 0, "calendar days to the next XNYS weekday holiday, capped at 30, / 30")
def days_to_holiday(p: Panel) -> np.ndarray:
    _, holidays = _calendar(p)
    i = np.searchsorted(holidays, p.dates, side="right")
    nxt = holidays[np.minimum(i, len(holidays) - 1)]
    days = np.where(i < len(holidays), (nxt - p.dates).astype(int), 30)
    return _bcast(p, np.minimum(days, 30) / 30.0)


@feature(
    "days_since_holiday", CALENDAR, 0, "calendar days since the last XNYS weekday holiday, capped at 30, / 30"
)
def days_since_holiday(p: Panel) -> np.ndarray:
    _, holidays = _calendar(p)
    i = np.searchsorted(holidays, p.dates, side="left") - 1
    prev = holidays[np.maximum(i, 0)]
    days = np.where(i >= 0, (p.dates - prev).astype(int), 30)
    return _bcast(p, np.minimum(days, 30) / 30.0)


@feature(
    "pre_holiday",
    CALENDAR,
    0,
    "1 if the next session is more than one weekday away (a holiday or long weekend follows)",
)
def pre_holiday(p: Panel) -> np.ndarray:
    gap = np.busday_count(p.dates, _next_session(p))
    return _bcast(p, (gap > 1).astype(float))
