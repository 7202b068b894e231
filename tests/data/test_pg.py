"""The PostgreSQL store round-trips the same frames as the Parquet one (needs DEEPQ_PG_DSN; .ci/services.sh)."""

from __future__ import annotations

import os
import threading
import uuid

import pandas as pd
import pytest

from deepq.data.cache import CacheLocked, ParquetStore
from deepq.data.chain import FallbackChain
from deepq.data.panel import DataError, load_prices
from deepq.data.sync import Syncer

from ..conftest import SAMPLE
from .test_chain import Fake

pytestmark = pytest.mark.postgres
DSN = os.environ.get("DEEPQ_PG_DSN")
skip_no_pg = pytest.mark.skipif(not DSN, reason="DEEPQ_PG_DSN is not set (source .ci/services.sh)")


@pytest.fixture
def pg():
    from deepq.data.pg import PostgresStore

    store = PostgresStore(DSN, table=f"deepq_test_{uuid.uuid4().hex[:8]}", lock_timeout_s=0.5)
    yield store
    store.drop()


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    long = load_prices(
        SAMPLE / "prices.parquet",
        symbols=["AAPL", "XOM", "SPY", "^GSPC"],
        start="2016-06-01",
        end="2019-03-31",
    )
    return {s: g for s, g in long.groupby("symbol")}


@skip_no_pg
def test_round_trip_equals_parquet(pg, frames, tmp_path):
    pq = ParquetStore(tmp_path / "c")
    for s, f in frames.items():
        assert pg.write(s, f).checksum == pq.write(s, f).checksum
    pd.testing.assert_frame_equal(pg.read(), pq.read())
    pd.testing.assert_frame_equal(
        pg.read(["XOM", "SPY"], start="2018-01-01", end="2018-06-30"),
        pq.read(["XOM", "SPY"], start="2018-01-01", end="2018-06-30"),
    )
    cols = ["symbol", "first_date", "last_date", "rows", "source", "checksum"]
    pd.testing.assert_frame_equal(pg.manifest()[cols], pq.manifest()[cols])
    assert pg.symbols() == pq.symbols()
    # a rewrite replaces the whole history (no leftover rows)
    short = frames["AAPL"].iloc[:100]
    pg.write("AAPL", short)
    assert len(pg.read_symbol("AAPL")) == 100
    pg.delete("XOM")
    assert pg.read_symbol("XOM") is None
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['NOPE'\]"):
        pg.read(["NOPE"])


@skip_no_pg
def test_table_is_partitioned_by_date(pg, frames):
    pg.write("SPY", frames["SPY"])
    parts = pg.partitions()
    if pg.partitioning == "range":
        assert parts == [f"{pg.table}_y{y}" for y in (2016, 2017, 2018, 2019)]
    else:  # TimescaleDB hypertable: one chunk per year
        assert len(parts) == 4


@skip_no_pg
def test_second_writer_of_a_symbol_waits_then_gives_up(pg, frames):
    pg.write("SPY", frames["SPY"])
    holding, release = threading.Event(), threading.Event()

    def hold():
        with pg.connect() as con, con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"deepq-{pg.table}-SPY",))
            holding.set()
            release.wait(10)
            con.rollback()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(5)
        with pytest.raises(CacheLocked, match="symbol SPY"):
            pg.write("SPY", frames["SPY"])
    finally:
        release.set()
        t.join()
    pg.write("SPY", frames["SPY"])


@skip_no_pg
def test_syncer_works_over_postgres(pg):
    dates = pd.bdate_range("2024-01-02", periods=10)
    rows = pd.DataFrame(
        {"date": dates, "symbol": "A", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 5}
    )
    rep = Syncer(pg, FallbackChain([Fake("f", {"A": rows})])).download(["A"])
    assert rep.status == {"A": "downloaded from f"} and len(pg.read_symbol("A")) == 10
