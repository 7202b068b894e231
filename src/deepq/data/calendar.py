"""The NYSE session calendar (exchange-calendars) and aligning a symbol's bars to it.

Building an exchange-calendars calendar takes seconds, so `sessions()` memoises the dates in memory and,
given a folder, on disk (`sessions_<NAME>.parquet`); the cache keeps its copy in `meta/`.

Gap policy (explicit and configured, never silent): a missing session inside a symbol's first..last span is
*flagged*. A run of at most `max_gap_sessions` missing sessions may be *filled* by carrying the previous close
(open = high = low = close = previous close, volume 0) and marking the row `filled = True`. Longer runs stay
missing: a long gap is never invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deepq.data.panel import DataError

_MEMO: dict[tuple[str, str, str], np.ndarray] = {}
# exchange-calendars' XNYS differs from the recorded NYSE history before 1990 (old holidays, Saturdays)
CALENDAR_SINCE = "1990-01-01"


def sessions(
    name: str = "XNYS",
    start: str | pd.Timestamp = CALENDAR_SINCE,
    end: str | pd.Timestamp | None = None,
    memo_dir: str | Path | None = None,
) -> np.ndarray:
    """datetime64[D] sessions of exchange `name` in [start, end] (end default: today)."""
    start_s = str(pd.Timestamp(start).date())
    end_s = str(pd.Timestamp(end if end is not None else pd.Timestamp.today()).date())
    key = (name, start_s, end_s)
    if key in _MEMO:
        return _MEMO[key]
    path = Path(memo_dir) / f"sessions_{name}.parquet" if memo_dir else None
    if path is not None and path.exists():
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        since = meta.get(b"deepq.since", b"9999-12-31").decode()
        until = meta.get(b"deepq.until", b"0000-01-01").decode()
        if since <= start_s and until >= end_s:  # the memo covers the request (ends may be holidays)
            cached = table["date"].to_numpy().astype("datetime64[D]")
            out = cached[(cached >= np.datetime64(start_s)) & (cached <= np.datetime64(end_s))]
            _MEMO[key] = out
            return out
    import exchange_calendars as xcals  # slow import: only when a calendar is really built

    cal = xcals.get_calendar(name, start=start_s, end=end_s)
    out = np.asarray(cal.sessions.values, dtype="datetime64[D]")
    if path is not None:
        from deepq.utils.io import write_atomic

        table = pa.table({"date": pa.array(out, type=pa.date32())})
        table = table.replace_schema_metadata(
            {b"deepq.since": start_s.encode(), b"deepq.until": end_s.encode()}
        )
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    _MEMO[key] = out
    return out


@dataclass(frozen=True)
class GapPolicy:
    """How missing sessions inside a symbol's span are treated (see module doc)."""

    method: str = "ffill"  # ffill | none
    max_gap_sessions: int = 1

    def __post_init__(self) -> None:
        if self.method not in ("ffill", "none"):
            raise ValueError(f"gap policy method must be 'ffill' or 'none', got {self.method!r}")
        if self.max_gap_sessions < 0:
            raise ValueError(f"max_gap_sessions must be >= 0, got {self.max_gap_sessions}")


@dataclass(frozen=True)
class Alignment:
    frame: pd.DataFrame  # the symbol's rows on sessions only, with short gaps filled (`filled` column)
    off_calendar: pd.DatetimeIndex  # rows dropped because their date is not a session
    missing: pd.DatetimeIndex  # sessions inside the span with no bar, before filling
    filled: pd.DatetimeIndex  # sessions filled by the policy
    long_gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]]  # (first, last, length) of gaps left missing


def align_symbol(
    frame: pd.DataFrame, session_dates: np.ndarray, policy: GapPolicy | None = None
) -> Alignment:
    """Put one symbol's rows (sorted by date) on the session calendar inside its own first..last span."""
    policy = policy or GapPolicy()
    if frame.empty:
        empty = pd.DatetimeIndex([])
        return Alignment(frame.assign(filled=pd.Series(dtype=bool)), empty, empty, empty, [])
    dates = pd.DatetimeIndex(frame["date"])
    cal = pd.DatetimeIndex(session_dates.astype("datetime64[ns]"))
    in_range = (dates >= cal[0]) & (dates <= cal[-1]) if len(cal) else np.zeros(len(dates), bool)
    on_cal = dates.isin(cal) | ~in_range  # rows outside the calendar's range are kept as they are
    off = dates[~on_cal]
    frame = frame.loc[on_cal].copy()
    dates = pd.DatetimeIndex(frame["date"])
    span = cal[(cal >= dates.min()) & (cal <= dates.max())]
    missing = span.difference(dates)
    if "filled" not in frame.columns:
        frame["filled"] = False
    if missing.empty or policy.method == "none" or policy.max_gap_sessions == 0:
        return Alignment(frame, off, missing, pd.DatetimeIndex([]), _runs(span, missing))
    # run lengths of consecutive missing sessions (consecutive on the calendar, not in days)
    pos = span.get_indexer(missing)
    run_id = np.cumsum(np.r_[1, np.diff(pos) != 1])
    run_len = pd.Series(run_id).map(pd.Series(run_id).value_counts()).to_numpy()
    fill = missing[run_len <= policy.max_gap_sessions]
    long_missing = missing[run_len > policy.max_gap_sessions]
    if len(fill):
        prev_idx = np.searchsorted(dates.values, fill.values, side="left") - 1
        prev = frame.iloc[prev_idx]
        add = pd.DataFrame(
            {
                "date": fill,
                "symbol": prev["symbol"].to_numpy(),
                "open": prev["close"].to_numpy(),
                "high": prev["close"].to_numpy(),
                "low": prev["close"].to_numpy(),
                "close": prev["close"].to_numpy(),
                "volume": 0,
                "filled": True,
            }
        )
        for col in frame.columns:
            if col not in add.columns:
                add[col] = prev[col].to_numpy()
        if "adj_close" in frame.columns:
            add["adj_close"] = prev["adj_close"].to_numpy()
        for col, neutral in (("dividend", 0.0), ("split", 1.0)):
            if col in frame.columns:
                add[col] = neutral
        frame = pd.concat([frame, add[frame.columns]], ignore_index=True).sort_values("date")
    return Alignment(frame.reset_index(drop=True), off, missing, fill, _runs(span, long_missing))


def _runs(span: pd.DatetimeIndex, missing: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    if missing.empty:
        return []
    pos = span.get_indexer(missing)
    breaks = np.flatnonzero(np.diff(pos) != 1)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(pos) - 1]
    return [(missing[a], missing[b], int(b - a + 1)) for a, b in zip(starts, ends, strict=True)]


def check_sessions(frame: pd.DataFrame, session_dates: np.ndarray, where: str = "prices") -> None:
    """Raise DataError naming the symbol and date of the first bar that is not a session."""
    d = frame["date"].to_numpy().astype("datetime64[D]")
    lo, hi = session_dates[0], session_dates[-1]
    inside = (d >= lo) & (d <= hi)
    bad = inside & ~np.isin(d, session_dates)
    if bad.any():
        row = frame.loc[bad].iloc[0]
        raise DataError(f"{where}: symbol {row['symbol']} has a bar on {row['date']}, which is not a session")


# A session's bars are final once the exchange has closed. The regular NYSE close is 16:00 New York time;
# on the few early-close days (13:00) a session counts as completed three hours late, which errs on the side
# of calling data fresh for a little longer, never of expecting bars that cannot exist yet.
SESSION_CLOSE_LOCAL = "16:00"
EXCHANGE_TZ = {"XNYS": "America/New_York", "XNAS": "America/New_York"}


def last_completed_session(
    now: pd.Timestamp, name: str = "XNYS", since: str | np.datetime64 | None = None
) -> np.datetime64:
    """The latest session of exchange `name` whose close is at or before `now` (a tz-aware timestamp, or
    naive UTC). `since` (a date before which nothing is asked) lets one calendar build serve the memo."""
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    local = now.tz_convert(EXCHANGE_TZ.get(name, "America/New_York"))
    today = local.tz_localize(None).normalize()
    # at least ten days back, so the window always holds a completed session (and start < end)
    start = today - pd.Timedelta(days=10)
    if since is not None:
        start = min(start, pd.Timestamp(since))
    days = sessions(name, start=start.date(), end=today.date())
    if (
        len(days)
        and days[-1] == np.datetime64(local.date(), "D")
        and local.strftime("%H:%M") < SESSION_CLOSE_LOCAL
    ):
        days = days[:-1]  # today's session is still trading
    if not len(days):
        raise ValueError(f"no completed {name} session between {start.date()} and {local.date()}")
    return days[-1]


def sessions_between(after: str | np.datetime64, through: str | np.datetime64, name: str = "XNYS") -> int:
    """How many sessions of `name` lie in (after, through]: 0 when `through` is not later than `after`."""
    a, b = np.datetime64(str(after)[:10], "D"), np.datetime64(str(through)[:10], "D")
    if b <= a:
        return 0
    days = sessions(name, start=str(a), end=str(b))
    return int(np.count_nonzero(days > a))
