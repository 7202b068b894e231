"""The `FeatureSource` interface and the point-in-time joins every source goes through.

A source yields *events*: a long frame with `symbol` (`*` for market-wide series such as macro data),
`available` (the first calendar date on which the information may be used at that day's close) and value
columns. `available` comes from the publication time, never from the period the value describes:
a timestamp at or after the 16:00 New York close becomes usable the next day; a date-only publication is
usable `lag_days` after that date (each source documents its lag). The as-of join then returns, for a query
(symbol, date), the last event with `available <= date`, so nothing dated after the query date can leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from deepq.data.panel import Panel

EXCHANGE_TZ = "America/New_York"
CLOSE_HOUR = 16
MARKET = "*"


class FeatureSource(Protocol):
    name: str
    # A source may also set `max_age_sessions: int | None`: how long its last value is held (None: the
    # run's `freshness.fill_limit_sessions`). Read with `max_age(source, panel)`.

    def events(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Columns: symbol, available (datetime64[ns], date only), then the source's value columns."""
        ...


def max_age(source: object, panel: Panel) -> int:
    """Sessions the source's last value may be held: its own `max_age_sessions`, else the panel's fill limit."""
    own = getattr(source, "max_age_sessions", None)
    return panel.fill_limit if own is None else int(own)


def available_date(published: pd.Series | pd.DatetimeIndex, lag_days: int = 0) -> pd.Series:
    """The date from which a publication may be used at the close.

    tz-aware timestamps are converted to New York time; a publication at or after the 16:00 close counts
    from the next day. tz-naive values are taken as dates (any time is ignored) plus `lag_days`.
    """
    ts = pd.to_datetime(pd.Series(published))
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        local = ts.dt.tz_convert(EXCHANGE_TZ)
        after_close = local.dt.hour >= CLOSE_HOUR
        day = local.dt.tz_localize(None).dt.normalize()
        return day + pd.to_timedelta(after_close.astype(int) + lag_days, unit="D")
    return ts.dt.normalize() + pd.Timedelta(days=lag_days)


def asof_join(
    events: pd.DataFrame,
    symbols: Sequence[str],
    dates: Sequence,
    columns: Sequence[str],
    max_age_days: int | None = None,
) -> pd.DataFrame:
    """For each query row (symbols[i], dates[i]): the columns of the last event available on or before the
    date (market-wide `*` events answer every symbol). NaN where there is none (or it is older than
    `max_age_days`). Returns the query rows in order, with `event_available` for audit."""
    q = pd.DataFrame({"symbol": list(symbols), "date": pd.to_datetime(pd.Index(dates)).normalize()})
    q["_row"] = np.arange(len(q))
    ev = events[["symbol", "available", *columns]].copy()
    ev["available"] = pd.to_datetime(ev["available"])
    market_wide = (ev["symbol"] == MARKET).all() if len(ev) else False
    if market_wide:
        ev = ev.drop(columns="symbol")
    ev = ev.sort_values("available").rename(columns={"available": "event_available"})
    q = q.sort_values("date")
    joined = pd.merge_asof(
        q,
        ev,
        left_on="date",
        right_on="event_available",
        by=None if market_wide else "symbol",
        direction="backward",
        allow_exact_matches=True,
    )
    if max_age_days is not None:
        stale = (joined["date"] - joined["event_available"]).dt.days > max_age_days
        joined.loc[stale, list(columns)] = np.nan
    return joined.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def session_rows(panel: Panel, available: pd.Series) -> np.ndarray:
    """Row of the first panel session on or after each available date (len(dates) if after the panel)."""
    days = pd.to_datetime(available).values.astype("datetime64[D]")
    return np.searchsorted(panel.dates.astype("datetime64[D]"), days, side="left")


def events_on_sessions(panel: Panel, events: pd.DataFrame, column: str) -> np.ndarray:
    """[T, N] sum of an event column on the session each event becomes usable (0 where none, NaN for a symbol
    not in the events' universe is not distinguished: absent symbols get 0). Market-wide events fill every column."""
    T, N = panel.shape
    out = np.zeros((T, N))
    if events.empty:
        return out
    rows = session_rows(panel, events["available"])
    inside = rows < T
    values = events[column].to_numpy(dtype=np.float64)
    index = {s: j for j, s in enumerate(panel.symbols)}
    if (events["symbol"] == MARKET).all():
        np.add.at(out, rows[inside], np.nan_to_num(values[inside])[:, None] * np.ones((1, N)))
        return out
    cols = np.array([index.get(s, -1) for s in events["symbol"]])
    ok = inside & (cols >= 0) & np.isfinite(values)
    np.add.at(out, (rows[ok], cols[ok]), values[ok])
    return out


def last_value_on_sessions(
    panel: Panel, events: pd.DataFrame, column: str, max_age_sessions: int | None = None
) -> np.ndarray:
    """[T, N] the latest event value usable at each session: held at most `max_age_sessions` sessions
    (default `panel.fill_limit`), then NaN, so a series that stops is never carried on; NaN before the
    first event."""
    limit = panel.fill_limit if max_age_sessions is None else int(max_age_sessions)
    T, N = panel.shape
    out = np.full((T, N), np.nan)
    if events.empty:
        return out
    ev = events.sort_values("available", kind="stable")
    rows = session_rows(panel, ev["available"])
    values = ev[column].to_numpy(dtype=np.float64)
    index = {s: j for j, s in enumerate(panel.symbols)}
    if (ev["symbol"] == MARKET).all():
        col = np.full(T, np.nan)
        ok = rows < T
        col[rows[ok]] = values[ok]  # later events on the same session overwrite earlier ones
        return np.repeat(pd.Series(col).ffill(limit=limit).to_numpy()[:, None], N, axis=1)
    cols = np.array([index.get(s, -1) for s in ev["symbol"]])
    ok = (rows < T) & (cols >= 0)
    out[rows[ok], cols[ok]] = values[ok]
    return pd.DataFrame(out).ffill(limit=limit).to_numpy()
