"""Malformed price files through the import path (LocalSource + to_cache_frame) and the panel loader: every
one is refused with a DataError naming the symbol and the field, or accepted intact (what `make reliability`'s
frames section found: scripts/rel_frames.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from deepq.data.panel import DataError, load_panel, load_prices
from deepq.data.sources.local import LocalSource
from deepq.data.store import to_cache_frame


def frame(symbols=("AAPL", "JPM"), n=5) -> pd.DataFrame:
    dates = pd.bdate_range("2019-01-02", periods=n)
    rows = [
        {"date": d, "symbol": s, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1000}
        for s in symbols
        for d in dates
    ]
    return pd.DataFrame(rows)


def imported(path) -> dict[str, pd.DataFrame]:
    """What `deepq data import` writes: each symbol's rows through to_cache_frame."""
    return {s: to_cache_frame(g, symbol=s, where=s) for s, g in LocalSource(path).iter_frames()}


def refuses(load, *words: str) -> str:
    with pytest.raises(DataError) as e:
        load()
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    return str(e.value)


def test_aware_dates_keep_their_local_day(tmp_path):
    """Tokyo midnights were converted to UTC first: every bar moved to the day before."""
    df = frame()
    df["date"] = df["date"].dt.tz_localize("Asia/Tokyo")
    want = pd.bdate_range("2019-01-02", periods=5)
    assert list(to_cache_frame(df[df.symbol == "AAPL"], symbol="AAPL")["date"]) == list(want)
    df.to_parquet(tmp_path / "p.parquet")
    assert list(load_panel(tmp_path / "p.parquet").dates) == list(want.to_numpy().astype("datetime64[D]"))
    assert list(imported(tmp_path / "p.parquet")["JPM"]["date"]) == list(want)


def test_mixed_aware_and_naive_dates_are_refused_naming_the_symbol(tmp_path):
    df = frame()
    text = [d.isoformat() for d in df["date"].dt.tz_localize("UTC")]
    text[7] = "2019-01-09"  # one naive date among aware ones (JPM's)
    df.assign(date=text).to_csv(tmp_path / "p.csv", index=False)
    refuses(lambda: load_prices(tmp_path / "p.csv"), "'date'", "JPM", "naive")
    refuses(lambda: imported(tmp_path / "p.csv"), "'date'", "JPM")


def test_a_zone_with_summer_time_reads_from_csv(tmp_path):
    """New York dates written with their offsets (-05:00 in winter, -04:00 in summer): each keeps its day."""
    days = pd.bdate_range("2019-03-01", periods=20)  # across the March switch
    df = pd.DataFrame({"date": [d.isoformat() for d in days.tz_localize("America/New_York")]})
    df = df.assign(symbol="AAPL", open=10.0, high=11.0, low=9.0, close=10.5, volume=1)
    df.to_csv(tmp_path / "p.csv", index=False)
    assert list(load_prices(tmp_path / "p.csv")["date"]) == list(days)


@pytest.mark.parametrize("value", ["2019-13-45", "not a date", "0001-01-02", "9999-01-02", "2250-01-02"])
def test_a_bad_date_is_refused_naming_symbol_and_value(tmp_path, value):
    """These raised pandas' ValueError / OutOfBoundsDatetime (no symbol), or were accepted (a bar in 2250)."""
    df = frame().astype({"date": str})
    df.loc[8, "date"] = value
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_parquet(tmp_path / "p.parquet")
    for path in (tmp_path / "p.csv", tmp_path / "p.parquet"):
        refuses(lambda p=path: load_prices(p), "'date'", "JPM", value)
        refuses(lambda p=path: imported(p), "'date'", "JPM")


def test_an_empty_date_is_refused(tmp_path):
    df = frame()
    df["date"] = df["date"].astype(object)
    df.loc[3, "date"] = None
    df.to_parquet(tmp_path / "p.parquet")
    refuses(lambda: load_prices(tmp_path / "p.parquet"), "'date'", "AAPL", "empty")


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_prices_and_volume_are_refused(tmp_path, value):
    """inf passed the `<= 0` check and reached the panel."""
    for col in ("close", "high", "volume"):
        df = frame().astype({"volume": float})
        df.loc[6, col] = value
        df.to_parquet(tmp_path / "p.parquet")
        refuses(lambda: load_prices(tmp_path / "p.parquet"), col, "JPM")
        refuses(lambda: imported(tmp_path / "p.parquet"), col, "JPM")


@pytest.mark.parametrize("name", ["", "  AAPL", "a/b", "A B", "\n", None, math.nan, "X" * 40])
def test_a_bad_symbol_name_is_refused(tmp_path, name):
    """'' and ' AAPL' became panel columns; None / NaN raised TypeError in the panel loader, and the import
    dropped those rows without a word (groupby skips a missing key)."""
    df = frame().astype({"symbol": object})
    df.loc[5:, "symbol"] = name
    df.to_parquet(tmp_path / "p.parquet")
    refuses(lambda: load_prices(tmp_path / "p.parquet"), "field 'symbol'", "p.parquet")
    refuses(lambda: imported(tmp_path / "p.parquet"), "field 'symbol'", "p.parquet")


def test_empty_files_are_refused(tmp_path):
    (tmp_path / "blank.csv").write_text("")  # pandas' EmptyDataError before
    refuses(lambda: load_prices(tmp_path / "blank.csv"), "empty file", "blank.csv")
    refuses(lambda: imported(tmp_path / "blank.csv"), "empty file", "blank.csv")
    frame().iloc[:0].to_csv(tmp_path / "headers.csv", index=False)  # IndexError in validate_prices before
    refuses(lambda: load_prices(tmp_path / "headers.csv"), "no price rows", "headers.csv")
    assert imported(tmp_path / "headers.csv") == {}


def test_a_text_column_of_numbers_reads_and_junk_names_its_own_symbol(tmp_path):
    """A Parquet string column: AAPL's numbers-as-text were refused naming AAPL, though JPM held the junk."""
    df = frame().astype({"close": str})
    df.loc[7, "close"] = "n/a"
    df.to_parquet(tmp_path / "p.parquet")
    refuses(lambda: load_prices(tmp_path / "p.parquet"), "'close'", "JPM", "n/a")
    refuses(lambda: imported(tmp_path / "p.parquet"), "'close'", "JPM", "n/a")
    ok = frame().astype({"close": str, "volume": str})
    back = to_cache_frame(ok[ok.symbol == "AAPL"], symbol="AAPL")
    assert (
        back["close"].dtype == "float64" and back["volume"].dtype == "int64" and back["close"].iloc[0] == 10.5
    )


def test_day_first_dates_are_refused_not_read_two_ways(tmp_path):
    """'02.01.2019' .. '28.02.2019': guessed month first, then (value by value) day first: the first days of
    each month became January/February's firsts, silently."""
    df = frame(n=30)
    df["date"] = df["date"].dt.strftime("%d.%m.%Y")
    df.to_csv(tmp_path / "p.csv", index=False)
    refuses(lambda: load_prices(tmp_path / "p.csv"), "'date'", "AAPL", "14.01.2019", "mixed formats")
    refuses(lambda: imported(tmp_path / "p.csv"), "'date'", "AAPL", "14.01.2019")
    iso = frame().astype({"date": str})
    iso.loc[3, "date"] = "2019-01-07 00:00:00"  # two ISO spellings read as one
    iso.to_csv(tmp_path / "iso.csv", index=False)
    assert load_prices(tmp_path / "iso.csv")["date"].iloc[3] == pd.Timestamp("2019-01-07")
