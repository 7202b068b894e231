"""The fallback chain: order, who served each row, health counters, circuit breaker."""

from __future__ import annotations

import pandas as pd
import pytest

from deepq.data.chain import AllSourcesFailed, FallbackChain
from deepq.data.http import NotFound, TransientError
from deepq.data.sources.alphavantage import AlphaVantageSource
from deepq.data.sources.tiingo import TiingoSource
from deepq.data.sources.yahoo import YahooSource

from .replay import Faults, ReplayAdapter, YahooServer, replay_session, yahoo_replay
from .test_sources import END, START, retry


def bars(symbol: str, n: int = 5, close: float = 10.0) -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-02", periods=n)
    return pd.DataFrame(
        {
            "date": dates,
            "symbol": symbol,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 100,
        }
    )


class Fake:
    def __init__(
        self, name: str, serves: dict[str, pd.DataFrame] | None = None, error: Exception | None = None
    ):
        self.name, self.serves, self.error, self.calls = name, serves or {}, error, []

    def fetch(self, symbol, start=None, end=None):
        self.calls.append(symbol)
        if self.error is not None:
            raise self.error
        if symbol not in self.serves:
            raise NotFound(f"{self.name} {symbol}: unknown")
        return self.serves[symbol]


def test_first_source_that_serves_wins_and_rows_say_who():
    a = Fake("a", {"X": bars("X")})
    b = Fake("b", {"X": bars("X", close=11.0), "Y": bars("Y")})
    chain = FallbackChain([a, b])
    got = chain.fetch_many(["X", "Y", "Z"])
    assert got["X"].source == "a" and set(got["X"].frame["source"]) == {"a"}
    assert got["Y"].source == "b" and set(got["Y"].frame["source"]) == {"b"}
    assert not got["Z"].ok and set(got["Z"].errors) == {"a", "b"}
    assert chain.health["a"].successes == 1 and chain.health["a"].not_found == 2
    assert chain.health["b"].rows == 5 and chain.health["b"].attempts == 2
    with pytest.raises(
        AllSourcesFailed, match=r"symbol Z: every source failed \(a: a Z: unknown; b: b Z: unknown\)"
    ):
        chain.require("Z")


def test_bad_rows_from_a_source_fall_through_to_the_next():
    bad = bars("X")
    bad.loc[2, "close"] = -1.0
    chain = FallbackChain([Fake("a", {"X": bad}), Fake("b", {"X": bars("X")})])
    res = chain.fetch("X")
    assert res.source == "b"
    assert "non-positive close -1.0 for symbol X" in res.errors["a"]


def test_source_down_trips_after_consecutive_failures():
    down = Fake("down", error=TransientError("down: 503"))
    up = Fake("up", {s: bars(s) for s in "ABCDEFG"})
    chain = FallbackChain([down, up], trip_after=3)
    for s in "ABCDEFG":
        assert chain.fetch(s).source == "up"
    assert down.calls == ["A", "B", "C"]  # skipped once tripped
    h = chain.health["down"]
    assert h.tripped and h.consecutive_failures == 3 and h.errors_by_kind == {"TransientError": 3}
    table = chain.health_table()
    assert list(table["source"]) == ["down", "up"] and table.loc[1, "successes"] == 7


def test_yahoo_down_falls_back_to_tiingo_then_alphavantage(monkeypatch):
    """One vendor down (every Yahoo call fails): the chain serves from the next, with real replayed answers."""
    faults = Faults()
    faults.add("chart/", *["500"] * 50)
    adapter = ReplayAdapter(down=("api.tiingo.com",))
    session = replay_session(adapter)
    sources = [
        YahooSource(retry=retry(2)),
        TiingoSource(api_key="t", session=session, retry=retry(2), calls_per_minute=1e9),
        AlphaVantageSource(api_key="a", session=session, retry=retry(2), calls_per_minute=1e9),
    ]
    with yahoo_replay(YahooServer(faults)):
        got = FallbackChain(sources).fetch_many(["AAPL", "KO"], START, END)
    for sym in ("AAPL", "KO"):
        assert got[sym].source == "alphavantage" and len(got[sym].frame) == 108
        assert "yahoo" in got[sym].errors and "server error (HTTP 503)" in got[sym].errors["tiingo"]
