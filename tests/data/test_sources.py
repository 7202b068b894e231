"""Vendor sources against recorded responses replayed at the HTTP layer; faults injected; keys never leak."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from deepq.data.http import (
    EmptyData,
    MalformedResponse,
    NotFound,
    RateLimited,
    Retry,
    SourceError,
    TokenBucket,
    TransientError,
    redact,
)
from deepq.data.sources.alphavantage import AlphaVantageSource
from deepq.data.sources.polygon import PolygonSource
from deepq.data.sources.tiingo import TiingoSource
from deepq.data.sources.yahoo import YahooSource

from .replay import Faults, ReplayAdapter, YahooServer, load, replay_session, yahoo_replay

START, END = "2020-06-01", "2020-10-30"
SECRETS = {"alphavantage": "AVKEY-7f3a9c", "polygon": "PGKEY-d41d8c", "tiingo": "TIKEY-98f13e"}


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


def retry(attempts: int = 4) -> Retry:
    return Retry(max_attempts=attempts, base_delay_s=0.5, max_delay_s=4.0, sleep=Sleeps())


def http_source(cls, adapter: ReplayAdapter, attempts: int = 4):
    name = cls.name
    return cls(
        api_key=SECRETS[name], session=replay_session(adapter), retry=retry(attempts), calls_per_minute=1e9
    )


HTTP = [AlphaVantageSource, PolygonSource, TiingoSource]


@pytest.fixture
def yahoo():
    with yahoo_replay() as server:
        yield server


def test_yahoo_batch_is_parsed_by_yfinance(yahoo):
    got = YahooSource(retry=retry()).fetch_many(["AAPL", "KO", "BRK-B"], START, END)
    assert set(got) == {"AAPL", "KO", "BRK-B"}
    aapl = got["AAPL"]
    assert isinstance(aapl, pd.DataFrame) and len(aapl) == 108
    assert aapl["date"].iloc[0] == pd.Timestamp(START) and aapl["date"].iloc[-1] == pd.Timestamp(END)
    assert aapl.loc[aapl["date"] == "2020-08-31", "split"].item() == 4.0
    assert aapl.loc[aapl["date"] == "2020-08-07", "dividend"].item() == pytest.approx(0.205)
    chart = load("yahoo_chart_AAPL.json")["chart"]["result"][0]
    np.testing.assert_allclose(aapl["close"], chart["indicators"]["adjclose"][0]["adjclose"], rtol=1e-12)
    # yfinance asked Yahoo's chart endpoint for the window, once per ticker (batched, threads=False)
    assert sorted(c[0] for c in yahoo.calls) == ["AAPL", "BRK-B", "KO"]
    assert (aapl["source"] == "yahoo").all()


@pytest.mark.parametrize("cls", HTTP)
def test_http_vendor_rows_match_yahoo(cls, yahoo):
    adapter = ReplayAdapter()
    for sym in ("AAPL", "KO", "BRK-B"):
        ours = http_source(cls, adapter).fetch(sym, START, END)
        ref = YahooSource(retry=retry()).fetch(sym, START, END)
        assert len(ours) == len(ref) == 108
        # four vendors, one convention: backward-adjusted closes agree to the recorded precision
        np.testing.assert_allclose(ours["close"], ref["close"], rtol=1e-6)
        np.testing.assert_allclose(ours["volume"], ref["volume"], rtol=1e-9)
        assert (ours["source"] == cls.name).all()


def test_class_shares_use_the_vendor_spelling():
    adapter = ReplayAdapter()
    for cls in HTTP:
        http_source(cls, adapter).fetch("BRK-B", START, END)
    urls = [r.url for r in adapter.requests]
    assert any("symbol=BRK.B" in u for u in urls)  # Alpha Vantage
    assert any("/ticker/BRK.B/" in u for u in urls)  # Polygon
    assert any("/daily/brk-b/prices" in u for u in urls)  # Tiingo


def test_keys_travel_in_headers_where_the_vendor_allows():
    adapter = ReplayAdapter()
    http_source(PolygonSource, adapter).fetch("AAPL", START, END)
    http_source(TiingoSource, adapter).fetch("AAPL", START, END)
    for r in adapter.requests:
        assert SECRETS["polygon"] not in r.url and SECRETS["tiingo"] not in r.url
    auth = {r.headers["Authorization"] for r in adapter.requests}
    assert f"Bearer {SECRETS['polygon']}" in auth and f"Token {SECRETS['tiingo']}" in auth


def test_polygon_window_is_sliced_by_the_request():
    got = http_source(PolygonSource, ReplayAdapter()).fetch("AAPL", "2020-09-01", "2020-09-30")
    assert got["date"].min() == pd.Timestamp("2020-09-01") and got["date"].max() == pd.Timestamp("2020-09-30")


# ---- fault injection: HTTP vendors ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", HTTP)
def test_429_then_success_backs_off_and_honours_retry_after(cls):
    faults = Faults()
    faults.add("", "429")
    src = http_source(cls, ReplayAdapter(faults))
    got = src.fetch("AAPL", START, END)
    assert len(got) == 108
    assert len(src.retry.sleep) == 1 and src.retry.sleep[0] >= 1.0  # Retry-After: 1


@pytest.mark.parametrize("cls", HTTP)
def test_repeated_500_gives_up_after_max_attempts(cls):
    faults = Faults()
    faults.add("", *["500"] * 10)
    src = http_source(cls, ReplayAdapter(faults), attempts=3)
    with pytest.raises(TransientError, match=r"server error \(HTTP 500\).*gave up after 3 attempts"):
        src.fetch("AAPL", START, END)
    delays = src.retry.sleep
    assert len(delays) == 2 and all(0 <= d <= 4.0 for d in delays)


@pytest.mark.parametrize("cls", HTTP)
@pytest.mark.parametrize("fault,error", [("timeout", TransientError), ("malformed", MalformedResponse)])
def test_timeout_and_malformed_json_are_retried(cls, fault, error):
    faults = Faults()
    faults.add("", fault)
    src = http_source(cls, ReplayAdapter(faults))
    assert len(src.fetch("AAPL", START, END)) == 108
    faults.add("", *[fault] * 5)
    with pytest.raises(error):
        http_source(cls, ReplayAdapter(faults), attempts=2).fetch("AAPL", START, END)


@pytest.mark.parametrize("cls", HTTP)
def test_empty_answer_is_retried_then_reported(cls):
    faults = Faults()
    faults.add("", *["empty"] * 5)
    src = http_source(cls, ReplayAdapter(faults), attempts=2)
    with pytest.raises(EmptyData, match=f"{cls.name} AAPL.*gave up after 2 attempts"):
        src.fetch("AAPL", START, END)
    assert len(src.retry.sleep) == 1


MIRRORS = {
    TiingoSource: "https://tiingo.mirror.internal/tiingo/daily",
    AlphaVantageSource: "https://alphavantage.mirror.internal/query",
    PolygonSource: "https://polygon.mirror.internal",
}


@pytest.mark.parametrize("cls", HTTP)
def test_base_url_sends_every_request_to_another_host(cls):
    adapter = ReplayAdapter()
    src = cls(
        api_key=SECRETS[cls.name],
        session=replay_session(adapter),
        retry=retry(),
        calls_per_minute=1e9,
        base_url=MIRRORS[cls],
    )
    assert len(src.fetch("KO", START, END)) == 108
    assert adapter.requests and all((r.url or "").startswith(MIRRORS[cls]) for r in adapter.requests)


def test_alphavantage_in_body_rate_limit_note_is_retried():
    faults = Faults()
    faults.add("alphavantage", "note")
    src = http_source(AlphaVantageSource, ReplayAdapter(faults))
    assert len(src.fetch("KO", START, END)) == 108 and len(src.retry.sleep) == 1
    with pytest.raises(RateLimited):
        faults.add("alphavantage", *["note"] * 3)
        http_source(AlphaVantageSource, ReplayAdapter(faults), attempts=2).fetch("KO", START, END)


@pytest.mark.parametrize("cls", HTTP)
def test_unknown_symbol_is_not_retried(cls):
    src = http_source(cls, ReplayAdapter())
    with pytest.raises((NotFound, EmptyData)):
        src.fetch("NOPE", START, END)
    if cls is not PolygonSource:  # Polygon answers an unknown ticker with zero results: retried as empty
        assert src.retry.sleep == []


# ---- fault injection: Yahoo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "malformed", "empty"])
def test_yahoo_transient_faults_then_success(fault):
    faults = Faults()
    faults.add("chart/AAPL", fault, fault)  # the batch call and the first one-at-a-time call fail
    with yahoo_replay(YahooServer(faults)):
        src = YahooSource(retry=retry())
        got = src.fetch_many(["AAPL", "KO"], START, END)
    assert len(got["AAPL"]) == 108 and len(got["KO"]) == 108
    assert len(src.retry.sleep) == 1


@pytest.mark.parametrize(
    "fault,error",
    [("429", RateLimited), ("500", EmptyData), ("timeout", TransientError), ("malformed", MalformedResponse)],
)
def test_yahoo_repeated_fault_is_classified(fault, error):
    faults = Faults()
    faults.add("chart/KO", *[fault] * 10)
    with yahoo_replay(YahooServer(faults)):
        got = YahooSource(retry=retry(3)).fetch_many(["KO"], START, END)
    assert isinstance(got["KO"], error) and "gave up after 3 attempts" in str(got["KO"])


def test_yahoo_unknown_symbol(yahoo):
    with pytest.raises(NotFound, match="yahoo NOPE: unknown symbol"):
        YahooSource(retry=retry()).fetch("NOPE", START, END)


# ---- rate limiting and backoff -------------------------------------------------------------------------------


def test_token_bucket_spaces_calls():
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(7)]
    assert waits[:3] == [0, 0, 0]  # the burst
    assert waits[3:] == pytest.approx([0.5] * 4)
    assert now[0] == pytest.approx(2.0)


def test_backoff_is_exponential_with_full_jitter():
    r = Retry(base_delay_s=1.0, max_delay_s=8.0, jitter=False)
    assert [r.delay(k) for k in range(5)] == [1, 2, 4, 8, 8]
    rj = Retry(base_delay_s=1.0, max_delay_s=8.0)
    assert all(0 <= rj.delay(3) <= 8 for _ in range(100))
    assert r.delay(0, retry_after_s=5.0) == 5.0


# ---- keys never in logs or errors ----------------------------------------------------------------------------


def _chain_text(e: BaseException) -> str:
    parts = []
    while e is not None:
        parts += [str(e), repr(e), str(e.args)]
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return " ".join(parts)


@pytest.mark.parametrize("cls", HTTP)
@pytest.mark.parametrize("fault", ["timeout", "connection", "500", "malformed", "429"])
def test_keys_never_in_errors_or_logs(cls, fault, monkeypatch, caplog):
    monkeypatch.setenv(cls.key_env, SECRETS[cls.name])
    faults = Faults()
    faults.add("", *[fault] * 5)
    src = cls(session=replay_session(ReplayAdapter(faults)), retry=retry(2), calls_per_minute=1e9)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as info:
        src.fetch("AAPL", START, END)
    text = _chain_text(info.value) + caplog.text + repr(src)
    assert SECRETS[cls.name] not in text
    assert "AAPL" in str(info.value) and cls.name in str(info.value)


def test_missing_key_names_the_variable_not_a_value(monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    with pytest.raises(SourceError, match="set POLYGON_API_KEY"):
        PolygonSource(session=replay_session(ReplayAdapter())).fetch("AAPL", START, END)


def test_redact_masks_key_parameters_and_headers():
    text = "GET https://x/query?function=F&apikey=abc123&symbol=A {'Authorization': 'Token zzz999'}"
    out = redact(text)
    assert "abc123" not in out and "zzz999" not in out and "symbol=A" in out
    assert redact("secret-in-text", ["secret"]) == "***-in-text"
