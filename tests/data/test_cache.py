"""The Parquet cache: round trip, manifest, atomic writes, file locks, the panel loader, DuckDB SQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from deepq.data.cache import CacheLocked, ParquetStore, load_cache_panel
from deepq.data.panel import DataError, load_panel, load_prices
from deepq.data.sql import query
from deepq.data.store import CACHE_COLUMNS, frame_checksum, to_cache_frame

from ..conftest import SAMPLE

SYMBOLS = ["AAPL", "JPM", "XOM", "SPY", "^GSPC"]


@pytest.fixture(scope="module")
def sample_long() -> pd.DataFrame:
    return load_prices(SAMPLE / "prices.parquet", symbols=SYMBOLS, start="2018-01-01", end="2019-12-31")


@pytest.fixture
def store(tmp_path, sample_long) -> ParquetStore:
    s = ParquetStore(tmp_path / "cache", lock_timeout_s=0.5)
    s.write_many([(sym, g) for sym, g in sample_long.groupby("symbol")])
    return s


def test_round_trip_and_manifest(store, sample_long):
    back = store.read()
    assert list(back.columns) == list(CACHE_COLUMNS)
    expect = to_cache_frame(sample_long)
    pd.testing.assert_frame_equal(back, expect)
    man = store.manifest().set_index("symbol")
    assert sorted(man.index) == sorted(SYMBOLS)
    aapl = back[back["symbol"] == "AAPL"]
    assert man.loc["AAPL", "rows"] == len(aapl)
    assert man.loc["AAPL", "first_date"] == pd.Timestamp("2018-01-02")
    assert man.loc["AAPL", "last_date"] == pd.Timestamp("2019-12-31")
    assert man.loc["AAPL", "source"] == "yahoo" and man.loc["SPY", "source"] == "stooq"
    assert man.loc["AAPL", "checksum"] == frame_checksum(aapl)
    assert store.verify() == []
    assert store.read(["XOM"], start="2019-06-01")["date"].min() >= pd.Timestamp("2019-06-01")


def test_unknown_symbol_names_it(store):
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['NOPE'\]"):
        store.read(["AAPL", "NOPE"])
    assert store.read_symbol("NOPE") is None


def test_crash_mid_write_leaves_previous_version(store, monkeypatch):
    before = store.read_symbol("AAPL")
    man_before = store.manifest()
    new = before.assign(close=before["close"] * 2)

    def torn_write(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(OSError, match="disk full"):
        store.write("AAPL", new)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read_symbol("AAPL"), before)
    pd.testing.assert_frame_equal(store.manifest(), man_before)
    assert not list(store.prices_dir.glob("*.tmp")) and store.verify() == []


def test_empty_or_bad_frames_are_refused(store):
    with pytest.raises(DataError, match="empty frame; refusing"):
        store.write("AAPL", store.read_symbol("AAPL").iloc[:0])
    bad = store.read_symbol("JPM")
    bad.loc[3, "high"] = -2.0
    with pytest.raises(DataError, match=r"non-positive high -2.0 for symbol JPM on 2018-01-05"):
        store.write("JPM", bad)
    assert store.verify() == []


def test_file_lock_keeps_a_second_writer_out(store, tmp_path):
    lock = store.root / "locks" / "AAPL.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from filelock import FileLock
                with FileLock({str(lock)!r}):
                    print("held", flush=True)
                    time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CacheLocked, match="symbol AAPL: another process holds"):
            store.write("AAPL", store.read_symbol("AAPL"))
        store.write("JPM", store.read_symbol("JPM"))  # other symbols are not blocked
    finally:
        holder.kill()
        holder.wait()
    store.write("AAPL", store.read_symbol("AAPL"))


def test_verify_and_rebuild_manifest(store):
    store.manifest_path.unlink()
    assert any("not in the manifest" in p for p in store.verify())
    store.rebuild_manifest()
    assert store.verify() == []
    store.delete("XOM")
    assert "XOM" not in store.symbols() and "XOM" not in set(store.manifest()["symbol"])


def test_cache_panel_equals_file_panel(store):
    sessions = SAMPLE / "nyse_sessions.parquet"
    a = load_cache_panel(store.root, sessions=sessions, sectors=SAMPLE / "sectors.parquet")
    b = load_panel(
        SAMPLE / "prices.parquet", SAMPLE / "sectors.parquet", sessions, SYMBOLS, "2018-01-01", "2019-12-31"
    )
    assert a.symbols == b.symbols
    np.testing.assert_array_equal(a.dates, b.dates)
    for f in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(a[f], b[f])
    assert a.asset_types == b.asset_types and a.sectors == b.sectors
    sub = load_cache_panel(store.root, symbols=["JPM", "AAPL"], start="2019-01-01", end="2019-03-31")
    assert sub.symbols == ("AAPL", "JPM") and str(sub.dates[0]) == "2019-01-02"


def test_empty_cache_says_how_to_fill_it(tmp_path):
    with pytest.raises(DataError, match="deepq data import"):
        load_cache_panel(tmp_path / "none")


def test_duckdb_sql_over_the_cache(store):
    df = query(
        store.root, "select symbol, count(*) as n, max(date) as last from prices group by 1 order by 1"
    )
    assert list(df["symbol"]) == sorted(SYMBOLS)
    assert (df["n"] == 503).all() and str(df["last"].iloc[0])[:10] == "2019-12-31"
    man = query(store.root, "select symbol, rows from manifest where symbol = 'SPY'")
    assert man["rows"].item() == 503


def test_append_merges_new_rows_and_replaces_cached_dates(store):
    aapl = store.read_symbol("AAPL")
    head, tail = aapl.iloc[:300], aapl.iloc[290:]
    store.delete("AAPL")
    store.append("AAPL", head)
    entry = store.append("AAPL", tail.assign(close=tail["close"] * 1.01))  # dates 290..299 restated
    back = store.read_symbol("AAPL")
    assert len(back) == len(aapl) == entry.rows and back["date"].is_monotonic_increasing
    np.testing.assert_allclose(back["close"].iloc[290:], aapl["close"].iloc[290:] * 1.01)
    np.testing.assert_allclose(back["close"].iloc[:290], aapl["close"].iloc[:290])
    assert store.verify() == []


def test_a_late_manifest_update_records_the_newer_file(store):
    """Writer A's file is replaced by writer B's before A updates the manifest: the manifest keeps B's."""
    aapl = store.read_symbol("AAPL")
    with store.lock("AAPL"):
        late = store._put_file("AAPL", aapl.assign(source="writer-a"))
    store.write("AAPL", aapl.assign(source="writer-b"))
    store._update_manifest([late])
    assert store.manifest().set_index("symbol").loc["AAPL", "source"] == "writer-b"
    assert store.verify() == []


def test_repair_after_a_kill_between_file_and_manifest(store):
    aapl = store.read_symbol("AAPL")
    store._write_file("AAPL", aapl.assign(close=aapl["close"] * 2))  # killed before its manifest update
    (store.prices_dir / ".JPM.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half a file")  # killed mid-write
    assert store.symbols() == sorted(SYMBOLS)  # a temp file is never a symbol
    assert [p for p in store.verify() if "AAPL" in p and "checksum" in p]
    done = store.repair()
    assert any("JPM.parquet.k1ll3d.tmp" in d for d in done) and any("row of AAPL" in d for d in done)
    assert store.verify() == [] and not list(store.prices_dir.glob("*.tmp"))
    assert store.manifest().set_index("symbol").loc["AAPL", "checksum"] == frame_checksum(
        store.read_symbol("AAPL")
    )
    assert store.repair() == []
