"""Reliability section `sources`: every vendor's faults served over a real socket on 127.0.0.1.

A `ThreadingHTTPServer` on 127.0.0.1 (port 0) answers like each vendor from the recorded responses in
tests/fixtures/data, under one path prefix per vendor (/tiingo, /av, /polygon, /yahoo). deepq's real
sources point at it: Tiingo, Alpha Vantage and Polygon through their `base_url`; Yahoo through yfinance,
whose host is a module constant (no option), so `yahoo_at` patches `_BASE_URL_` in the two yfinance modules
that build chart URLs and skips the cookie/crumb handshake (hard-coded hosts; the chart API works without
it). yfinance's own HTTP stack (curl_cffi) still does every request over the socket.

Each fault is queued per (vendor, symbol) and answers that symbol's next `FAULT_REPEAT` requests:
429 with `Retry-After: 1`, 500, 503, a hang past the client's timeout, a dropped connection, malformed JSON,
a valid answer with no rows, and a 0-byte body. Rows fetched are compared with the fixture's rows (the
window covers the whole recording); lost = expected - fetched. The last rows take each vendor down (503 to
everything) as the first source of a `FallbackChain`: its symbols must come from the next sources.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from deepq.data.chain import FallbackChain
from deepq.data.http import Retry
from deepq.data.sources.alphavantage import AlphaVantageSource
from deepq.data.sources.base import Source, fetch_many
from deepq.data.sources.polygon import PolygonSource
from deepq.data.sources.tiingo import TiingoSource
from deepq.data.sources.yahoo import YahooSource

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "data"
START, END = "2020-06-01", "2020-10-30"  # the whole recording
VENDORS = ("yahoo", "tiingo", "alphavantage", "polygon")
FAULTS = ("429", "500", "503", "timeout", "drop", "malformed", "empty", "blank")
FAULT_REPEAT = 2  # consecutive faulty answers per symbol: one retry is not enough to get through
CLIENT_TIMEOUT_S = 0.2
HANG_S = 0.5  # a "timeout" answer comes this late: past the client's timeout
PREFIX = {"yahoo": "/yahoo", "tiingo": "/tiingo", "alphavantage": "/av", "polygon": "/polygon"}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def expected_rows(vendor: str, symbol: str) -> int:
    """Bars in the vendor's recording for the symbol (the bench window holds all of them)."""
    if vendor == "yahoo":
        res = load(f"yahoo_chart_{symbol}.json")["chart"]["result"][0]
        return sum(c is not None for c in res["indicators"]["quote"][0]["close"])
    if vendor == "tiingo":
        return len(load(f"tiingo_{symbol}.json"))
    if vendor == "alphavantage":
        return len(load(f"alphavantage_{symbol}.json")["Time Series (Daily)"])
    return len(load(f"polygon_aggs_{symbol}.json")["results"])


# ---- the loopback vendor ----------------------------------------------------------------------------------


class VendorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.faults: dict[tuple[str, str], list[str]] = {}
        self.down: set[str] = set()
        self.requests: dict[str, int] = dict.fromkeys(VENDORS, 0)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def inject(self, vendor: str, symbol: str, fault: str, times: int = FAULT_REPEAT) -> None:
        with self.lock:
            self.faults.setdefault((vendor, symbol), []).extend([fault] * times)

    def take(self, vendor: str, symbol: str) -> str | None:
        with self.lock:
            self.requests[vendor] += 1
            if vendor in self.down:
                return "503"
            queue = self.faults.get((vendor, symbol))
            return queue.pop(0) if queue else None


class Handler(BaseHTTPRequestHandler):
    server: VendorServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the vendors answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send(
        self, status: int, body: Any = None, raw: bytes | None = None, headers: dict | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        vendor, symbol, answer = route(parts.path, q)
        if vendor is None:
            self.send(404, {"error": "no route"})
            return
        fault = self.server.take(vendor, symbol)
        with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a hang past its timeout)
            self.answer(vendor, fault, answer)

    def answer(self, vendor: str, fault: str | None, answer: Any) -> None:
        if fault == "429":
            self.send(429, {"error": "too many requests"}, headers={"Retry-After": "1"})
        elif fault in ("500", "503"):
            body = {"chart": {"result": None, "error": {"code": "Internal Server Error"}}}
            self.send(int(fault), body if vendor == "yahoo" else {"error": "server error"})
        elif fault == "timeout":
            time.sleep(HANG_S)
            self.send(200, answer(None))
        elif fault == "drop":
            self.close_connection = True  # nothing written: the client sees the connection closed
        elif fault == "malformed":
            self.send(200, raw=json.dumps(answer(None))[:200].encode())
        elif fault == "blank":
            self.send(200, raw=b"")
        else:
            self.send(200, answer(fault))


def route(path: str, q: dict[str, str]) -> tuple[str | None, str, Any]:
    """(vendor, symbol, answer(fault) -> JSON body) for a request path, as each vendor lays out its API."""
    bits = path.strip("/").split("/")
    if bits[0] == "tiingo" and len(bits) == 3:  # /tiingo/<sym>/prices
        sym = bits[1].upper()
        return "tiingo", sym, lambda fault: tiingo(sym, q, fault)
    if bits[0] == "av":
        sym = q.get("symbol", "").replace(".", "-")
        return "alphavantage", sym, lambda fault: alphavantage(sym, fault)
    if bits[0] == "polygon" and bits[1:3] == ["v2", "aggs"]:
        sym = bits[4].replace(".", "-")
        return "polygon", sym, lambda fault: polygon_aggs(sym, bits[8], bits[9], fault)
    if bits[0] == "polygon" and bits[1:3] == ["v3", "reference"]:
        sym = q.get("ticker", "").replace(".", "-")
        return "polygon", sym, lambda fault: load(f"polygon_{bits[3]}_{sym}.json")
    if bits[0] == "yahoo" and bits[1:4] == ["v8", "finance", "chart"]:
        sym = bits[4]
        return "yahoo", sym, lambda fault: yahoo_chart(sym, q, fault)
    return None, "", None


def tiingo(sym: str, q: dict[str, str], fault: str | None) -> Any:
    rows = [] if fault == "empty" else load(f"tiingo_{sym}.json")
    lo, hi = pd.Timestamp(q.get("startDate", "1900-01-01")), pd.Timestamp(q.get("endDate", "2100-01-01"))
    return [r for r in rows if lo <= pd.Timestamp(r["date"][:10]) <= hi]


def alphavantage(sym: str, fault: str | None) -> Any:
    if fault == "empty":
        return {"Meta Data": {}, "Time Series (Daily)": {}}
    return load(f"alphavantage_{sym}.json")


def polygon_aggs(sym: str, lo: str, hi: str, fault: str | None) -> Any:
    body = load(f"polygon_aggs_{sym}.json")
    lo_ms = pd.Timestamp(lo, tz="America/New_York").timestamp() * 1000
    hi_ms = pd.Timestamp(hi, tz="America/New_York").timestamp() * 1000
    results = [] if fault == "empty" else [r for r in body["results"] if lo_ms <= r["t"] <= hi_ms]
    body["results"] = results
    body["resultsCount"] = body["queryCount"] = body["count"] = len(results)
    if not results:
        body.pop("results")
    return body


def yahoo_chart(sym: str, q: dict[str, str], fault: str | None) -> Any:
    data = load(f"yahoo_chart_{sym}.json")
    res = data["chart"]["result"][0]
    lo, hi = int(q.get("period1", 0)), int(q.get("period2", 2**62))
    keep = [] if fault == "empty" else [i for i, t in enumerate(res["timestamp"]) if lo <= t < hi]
    res["timestamp"] = [res["timestamp"][i] for i in keep]
    quote = res["indicators"]["quote"][0]
    for k in list(quote):
        quote[k] = [quote[k][i] for i in keep]
    res["indicators"]["adjclose"][0]["adjclose"] = [
        res["indicators"]["adjclose"][0]["adjclose"][i] for i in keep
    ]
    return copy.deepcopy(data)


@contextmanager
def serving() -> Iterator[VendorServer]:
    server = VendorServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def yahoo_at(base_url: str, tz_cache: Path) -> Iterator[None]:
    """yfinance's chart requests to `base_url` (its host is a module constant: patched, see module doc)."""
    import yfinance as yf
    import yfinance.base as yf_base
    import yfinance.scrapers.history as yf_history
    from yfinance.data import YfData

    tz_cache.mkdir(parents=True, exist_ok=True)
    previous_tz_cache = yf.cache._TzDBManager.get_location()
    yf.set_tz_cache_location(str(tz_cache))  # the bench's timezones stay in its workdir
    yf_log = logging.getLogger("yfinance")
    level, yf_log.level = yf_log.level, logging.CRITICAL  # its per-ticker error lines: the table says it
    with (
        mock.patch.object(yf_base, "_BASE_URL_", base_url),
        mock.patch.object(yf_history, "_BASE_URL_", base_url),
        mock.patch.object(YfData, "_get_cookie_and_crumb", lambda self, *a, **k: (None, "basic")),
    ):
        try:
            yield
        finally:
            yf_log.setLevel(level)
            yf.set_tz_cache_location(previous_tz_cache)


# ---- the cases --------------------------------------------------------------------------------------------


def make_source(vendor: str, base: str) -> Source:
    retry = Retry(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05)
    kw: dict[str, Any] = {
        "retry": retry,
        "timeout_s": CLIENT_TIMEOUT_S,
        "calls_per_minute": 1e6,
        "burst": 100,
    }
    if vendor == "yahoo":
        return YahooSource(retry=retry, timeout_s=CLIENT_TIMEOUT_S, requests_per_s=1e6, burst=100)
    if vendor == "tiingo":
        return TiingoSource(base_url=f"{base}/tiingo", api_key="bench-key", **kw)
    if vendor == "alphavantage":
        return AlphaVantageSource(base_url=f"{base}/av/query", api_key="bench-key", **kw)
    return PolygonSource(base_url=f"{base}/polygon", api_key="bench-key", **kw)


def fresh_yfinance() -> None:
    """Forget yfinance's in-process answers: it caches every chart response of a past window (cache_get)."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()


def one_source(server: VendorServer, vendor: str, fault: str | None, symbols: tuple[str, ...]) -> dict:
    src = make_source(vendor, server.url)
    fresh_yfinance()
    server.faults.clear()
    for sym in symbols:
        if fault:
            server.inject(vendor, sym, fault)
    before = server.requests[vendor]
    got = fetch_many(src, symbols, START, END)
    expected = sum(expected_rows(vendor, s) for s in symbols)
    fetched = sum(len(v) for v in got.values() if isinstance(v, pd.DataFrame))
    failed = {s: str(v) for s, v in got.items() if not isinstance(v, pd.DataFrame)}
    slept = src.retry.slept_s  # type: ignore[attr-defined]
    row = {
        "section": "sources",
        "case": f"{vendor} {fault or 'no fault'}",
        "expected": expected,
        "got": fetched,
        "lost": expected - fetched,
        "errors": len(failed),
        "requests": server.requests[vendor] - before,
        "retries": len(slept),
        "waited_ms": round(1000 * sum(slept), 1),
        "ok": fetched == expected and not failed,
    }
    unserved = sum(len(q) for q in server.faults.values())
    if unserved:
        row["note"] = f"{unserved} queued fault(s) never requested"
    if fault == "429" and vendor != "yahoo":
        # Retry-After: 1 s is honoured up to max_delay_s (0.05 s): every wait is at least that
        row["ok"] = row["ok"] and bool(slept) and min(slept) >= 0.05
    if failed:
        row["note"] = "; ".join(failed.values())[:160]
    server.faults.clear()
    return row


def one_down(server: VendorServer, down: str, symbols: tuple[str, ...]) -> dict:
    order = [down, *(v for v in VENDORS if v != down)]
    chain = FallbackChain([make_source(v, server.url) for v in order])
    fresh_yfinance()
    server.down = {down}
    try:
        got = chain.fetch_many(list(symbols), START, END)
    finally:
        server.down = set()
    served = {s: r.source for s, r in got.items()}
    expected = sum(expected_rows(served[s] or order[1], s) for s in symbols)
    fetched = sum(len(r.frame) for r in got.values() if r.frame is not None)
    fallbacks = sum(src is not None and src != down for src in served.values())
    return {
        "section": "sources",
        "case": f"{down} down, chain {'>'.join(order)}",
        "expected": expected,
        "got": fetched,
        "lost": expected - fetched,
        "errors": sum(r.frame is None for r in got.values()),
        "fallbacks": fallbacks,
        "ok": fetched == expected and fallbacks == len(symbols),
    }


def run(scale: str, workdir: Path) -> list[dict]:
    symbols = ("AAPL", "KO", "BRK-B") if scale == "full" else ("AAPL",)
    faults = FAULTS if scale == "full" else ("429", "503", "timeout", "malformed", "empty")
    rows = []
    with serving() as server, yahoo_at(f"{server.url}/yahoo", workdir / "yf-tz"):
        for vendor in VENDORS:
            rows.append(one_source(server, vendor, None, symbols))  # also warms yfinance's timezone cache
            rows.extend(one_source(server, vendor, f, symbols) for f in faults)
        downs = VENDORS if scale == "full" else ("yahoo", "tiingo")
        rows.extend(one_down(server, v, symbols) for v in downs)
    return rows


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for r in run(sys.argv[1] if len(sys.argv) > 1 else "small", Path(d)):
            print(r)
