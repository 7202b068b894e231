"""Download, resume, incremental update with overlap check, restatement refetch; the cache is never partial."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from deepq.data.cache import ParquetStore
from deepq.data.chain import FallbackChain
from deepq.data.http import TransientError
from deepq.data.sources.yahoo import YahooSource
from deepq.data.sync import Syncer, overlap_mismatch

from ..conftest import SAMPLE
from .replay import YahooServer, load, yahoo_replay
from .test_chain import Fake, bars
from .test_sources import END, START, retry

NY = "America/New_York"


@pytest.fixture(scope="module")
def days() -> np.ndarray:
    return pd.read_parquet(SAMPLE / "nyse_sessions.parquet")["date"].to_numpy().astype("datetime64[D]")


def yahoo_syncer(tmp_path, days) -> Syncer:
    chain = FallbackChain([YahooSource(retry=retry())])
    return Syncer(ParquetStore(tmp_path / "cache"), chain, session_dates=days)


def requested_start(call) -> str:
    return str(pd.Timestamp(call[1], unit="s", tz="UTC").tz_convert(NY).date())


def test_download_then_incremental_update_fetches_only_new_rows(tmp_path, days):
    server = YahooServer()
    with yahoo_replay(server):
        sync = yahoo_syncer(tmp_path, days)
        rep = sync.download(["AAPL", "KO"], START, "2020-09-30")
        assert rep.status == {"AAPL": "downloaded from yahoo", "KO": "downloaded from yahoo"}
        assert set(sync.store.manifest()["last_date"]) == {pd.Timestamp("2020-09-30")}
        server.calls.clear()
        rep = sync.update(end=END)
    # 5 sessions of overlap before the last cached date, then only the new ones
    assert {requested_start(c) for c in server.calls} == {"2020-09-24"}
    assert rep.status["AAPL"] == "appended 22 rows from yahoo" and not rep.refetched
    with yahoo_replay():
        full = YahooSource(retry=retry()).fetch("AAPL", START, END)
    got = sync.store.read_symbol("AAPL")
    assert len(got) == 108
    np.testing.assert_allclose(got["close"], full["close"], rtol=1e-12)
    assert sync.store.verify() == []
    with yahoo_replay(server):
        server.calls.clear()
        assert sync.update(end=END).status["AAPL"] == "up to date"
        assert server.calls == []  # nothing to fetch when the cache already reaches `end`


def test_restated_overlap_triggers_full_refetch_with_a_logged_reason(tmp_path, days, caplog):
    old = load("yahoo_chart_AAPL.json")
    adj = old["chart"]["result"][0]["indicators"]["adjclose"][0]
    adj["adjclose"] = [x * 0.99 for x in adj["adjclose"]]  # before a dividend restated the history
    server = YahooServer()
    server.overrides["AAPL"] = old
    with yahoo_replay(server):
        sync = yahoo_syncer(tmp_path, days)
        sync.download(["AAPL"], START, "2020-09-30")
        del server.overrides["AAPL"]
        server.calls.clear()
        caplog.set_level(logging.WARNING, logger="deepq.data.sync")
        rep = sync.update(end=END)
    reason = rep.refetched["AAPL"]
    assert reason.startswith("overlap disagrees on 2020-09-24 close") and "restated" in reason
    assert "symbol AAPL: overlap disagrees on 2020-09-24 close" in caplog.text
    assert "refetching its full history" in caplog.text
    assert [requested_start(c) for c in server.calls] == ["2020-09-24", START]
    got = sync.store.read_symbol("AAPL")
    chart = load("yahoo_chart_AAPL.json")["chart"]["result"][0]
    np.testing.assert_allclose(got["close"], chart["indicators"]["adjclose"][0]["adjclose"], rtol=1e-12)


def test_overlap_mismatch_names_date_field_and_size():
    a = bars("X").assign(filled=False)
    assert overlap_mismatch(a, bars("X"), 1e-6) is None
    b = bars("X")
    b.loc[3, "volume"] = 150
    why = overlap_mismatch(a, b, 1e-6)
    assert why is not None and why.startswith("overlap disagrees on 2024-01-05 volume: cached 100, fresh 150")


def test_interrupted_download_resumes_and_leaves_no_partial_symbol(tmp_path, days):
    serves = {s: bars(s, n=40) for s in "ABCDE"}

    class Crashes(Fake):
        def fetch(self, symbol, start=None, end=None):
            if symbol == "C" and not self.calls.count("C"):
                self.calls.append(symbol)
                raise RuntimeError("killed mid-run")
            return super().fetch(symbol, start, end)

    src = Crashes("flaky", serves)
    sync = Syncer(ParquetStore(tmp_path / "c"), FallbackChain([src]), session_dates=days, batch_size=1)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        sync.download(list("ABCDE"))
    assert sync.store.symbols() == ["A", "B"] and sync.store.verify() == []
    rep = sync.download(list("ABCDE"))  # the rerun resumes
    assert rep.status["A"] == "cached (skipped)" and rep.status["E"] == "downloaded from flaky"
    assert sync.store.symbols() == list("ABCDE") and sync.store.verify() == []
    # 40 weekdays hold two holidays, which the calendar drops
    assert all(len(sync.store.read_symbol(s)) == 38 for s in "ABCDE")


def test_failed_update_leaves_the_cached_history_untouched(tmp_path, days):
    store = ParquetStore(tmp_path / "c")
    Syncer(store, FallbackChain([Fake("ok", {"A": bars("A", n=20)})]), session_dates=days).download(["A"])
    before = store.read_symbol("A")
    down = FallbackChain([Fake("down", error=TransientError("down A: HTTP 503"))])
    rep = Syncer(store, down, session_dates=days).update(end="2024-03-01")
    assert (
        rep.status["A"].startswith("failed: down: down A: HTTP 503") and "cache unchanged" in rep.status["A"]
    )
    pd.testing.assert_frame_equal(store.read_symbol("A"), before)


def test_short_gap_filled_and_marked_long_gap_left_missing(tmp_path, days):
    frame = bars("A", n=30)
    frame = frame.drop(index=[5, 12, 13, 14])  # one missing session, then three
    store = ParquetStore(tmp_path / "c")
    rep = Syncer(store, FallbackChain([Fake("f", {"A": frame})]), session_dates=days).download(["A"])
    got = store.read_symbol("A")
    assert got["filled"].sum() == 1 and len(got) == 26  # 30 weekdays - MLK day - 4 missing + 1 filled
    assert rep.cleaning["A"]["off_calendar_dropped"] == 1
    filled = got[got["filled"]].iloc[0]
    assert filled["date"] == bars("A", n=30)["date"][5] and filled["volume"] == 0
    assert rep.cleaning["A"]["long_gaps"] == [("2024-01-18", "2024-01-22", 3)]


def test_an_update_keeps_rows_another_writer_added_while_it_ran(tmp_path, days):
    """`deepq data update` reads, merges and writes a symbol under its lock (ParquetStore.merge): a row that a
    second writer (another feed, a second update) appended after the update read the cache is not dropped."""
    history = bars("A", n=30)
    late = history.iloc[[25]].assign(close=12.5, open=12.5, high=12.5, low=12.5)  # the other writer's row

    class Raced(ParquetStore):
        armed = False

        def read_symbol(self, symbol):
            got = super().read_symbol(symbol)
            if self.armed:  # the update has read the cache: the other process appends now
                self.armed = False
                ParquetStore(tmp_path / "c").append(symbol, late)
            return got

    store = Raced(tmp_path / "c")
    Syncer(store, FallbackChain([Fake("ok", {"A": history.iloc[:20]})]), session_dates=days).download(["A"])
    store.armed = True
    sync = Syncer(store, FallbackChain([Fake("ok", {"A": history.iloc[15:25]})]), session_dates=days)
    rep = sync.update(end="2024-03-01")
    assert not store.armed and rep.status["A"] == "appended 5 rows from ok", rep.status
    got = store.read_symbol("A")
    real = got[~got["filled"]]
    sessions = set(days)
    want = [d for d in history["date"].iloc[:26] if np.datetime64(d.date(), "D") in sessions]  # no MLK day
    assert list(real["date"]) == want  # the 20 cached, the 5 fetched, the late one
    assert real.set_index("date").loc[late["date"].iloc[0], "close"] == 12.5
    assert store.verify() == []
