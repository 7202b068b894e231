"""The NYSE calendar from exchange-calendars, and aligning a symbol to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.data import calendar
from deepq.data.calendar import GapPolicy, align_symbol, check_sessions, sessions
from deepq.data.panel import DataError


def test_xnys_matches_the_recorded_sessions(shared_data, tmp_path, monkeypatch):
    ours = sessions("XNYS", "1990-01-01", "2024-06-28", memo_dir=tmp_path)
    ref = pd.read_parquet(shared_data / "nyse_sessions.parquet")["date"].to_numpy().astype("datetime64[D]")
    np.testing.assert_array_equal(ours, ref[ref >= np.datetime64("1990-01-01")])
    assert (tmp_path / "sessions_XNYS.parquet").exists()  # memoised on disk

    def no_rebuild(*a, **k):
        raise AssertionError("the on-disk memo should have answered")

    monkeypatch.setattr("exchange_calendars.get_calendar", no_rebuild)
    monkeypatch.setattr(calendar, "_MEMO", {})
    again = sessions("XNYS", "2000-01-01", "2010-12-31", memo_dir=tmp_path)
    assert again[0] == np.datetime64("2000-01-03") and np.datetime64("2001-09-11") not in again


def _frame(dates):
    n = len(dates)
    return pd.DataFrame(
        {
            "date": pd.to_datetime(dates),
            "symbol": "X",
            "open": np.arange(n) + 10.0,
            "high": np.arange(n) + 11.0,
            "low": np.arange(n) + 9.0,
            "close": np.arange(n) + 10.5,
            "volume": 100,
        }
    )


CAL = np.array(pd.bdate_range("2024-03-04", "2024-03-29").values, dtype="datetime64[D]")


def test_short_gap_is_filled_from_the_previous_close_and_marked():
    f = _frame(["2024-03-04", "2024-03-05", "2024-03-07", "2024-03-08"])
    al = align_symbol(f, CAL, GapPolicy("ffill", 1))
    row = al.frame.set_index("date").loc["2024-03-06"]
    assert row["filled"] and row["close"] == 11.5 and row["open"] == row["high"] == row["low"] == 11.5
    assert row["volume"] == 0 and list(al.missing) == [pd.Timestamp("2024-03-06")]


def test_long_gap_is_never_invented():
    f = _frame(["2024-03-04", "2024-03-11", "2024-03-12"])
    al = align_symbol(f, CAL, GapPolicy("ffill", 2))
    assert len(al.frame) == 3 and not al.frame["filled"].any()
    assert al.long_gaps == [(pd.Timestamp("2024-03-05"), pd.Timestamp("2024-03-08"), 4)]
    none = align_symbol(_frame(["2024-03-04", "2024-03-06"]), CAL, GapPolicy("none"))
    assert len(none.frame) == 2 and len(none.missing) == 1


def test_off_calendar_rows_are_dropped_and_checkable():
    f = _frame(["2024-03-04", "2024-03-09", "2024-03-11"])  # a Saturday
    al = align_symbol(f, CAL, GapPolicy("none"))
    assert list(al.off_calendar) == [pd.Timestamp("2024-03-09")]
    with pytest.raises(DataError, match="symbol X has a bar on 2024-03-09 00:00:00, which is not a session"):
        check_sessions(f, CAL)
    with pytest.raises(ValueError, match="gap policy method"):
        GapPolicy("interpolate")


@pytest.mark.parametrize(
    ("now", "last"),
    [
        ("2024-07-01T19:59:00+00:00", "2024-06-28"),  # 15:59 in New York (EDT): Monday still trading
        ("2024-07-01T20:00:00+00:00", "2024-07-01"),  # 16:00 EDT: closed
        ("2024-01-08T20:30:00+00:00", "2024-01-05"),  # 15:30 EST in winter: still trading
        ("2024-01-08T21:00:00+00:00", "2024-01-08"),  # 16:00 EST
        ("2024-07-04T23:00:00+00:00", "2024-07-03"),  # Independence Day: no session
        ("2024-07-06T12:00:00", "2024-07-05"),  # Saturday; a naive time reads UTC
    ],
)
def test_last_completed_session_follows_the_close_in_new_york(now, last):
    assert calendar.last_completed_session(pd.Timestamp(now)) == np.datetime64(last)


def test_sessions_between_counts_sessions_not_days():
    assert calendar.sessions_between("2024-06-28", "2024-07-08") == 5  # 1, 2, 3, 5, 8 July
    assert calendar.sessions_between("2024-06-28", "2024-06-28") == 0
    assert calendar.sessions_between("2024-07-08", "2024-06-28") == 0  # data newer than "today"
