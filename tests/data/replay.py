"""Replay recorded vendor responses (tests/fixtures/data) at the HTTP layer, with fault injection.

- `ReplayAdapter` is a requests transport adapter: a real `requests.Session` with it mounted runs requests'
  own URL/param/header handling and `Response.json()`, and answers from the fixture files like the vendor
  would (date windows sliced, 404 for unknown symbols).
- `yahoo_replay` patches `yfinance.data.YfData.get`/`cache_get` (autospec) and `TickerBase._get_ticker_tz`, as
  yfinance's own tests do, so yfinance parses the recorded chart JSON itself. `.json()` returns a fresh copy
  each call (yfinance mutates it).

Faults are queued per URL fragment and consumed in order: "429", "500", "timeout", "connection",
"malformed", "empty".
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import requests
from requests.adapters import BaseAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Faults:
    def __init__(self) -> None:
        self.queue: list[tuple[str, str]] = []

    def add(self, fragment: str, *faults: str) -> None:
        self.queue.extend((fragment, f) for f in faults)

    def pop(self, url: str) -> str | None:
        for i, (frag, fault) in enumerate(self.queue):
            if frag in url:
                del self.queue[i]
                return fault
        return None


def _response(
    request: requests.PreparedRequest, status: int, body: Any, raw_text: str | None = None
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    text = raw_text if raw_text is not None else json.dumps(body)
    resp._content = text.encode()
    resp.headers["Content-Type"] = "application/json"
    resp.url = request.url or ""
    resp.request = request
    resp.encoding = "utf-8"
    return resp


class ReplayAdapter(BaseAdapter):
    """Answers Alpha Vantage, Polygon and Tiingo requests from the recorded fixtures."""

    def __init__(self, faults: Faults | None = None, down: tuple[str, ...] = ()):
        super().__init__()
        self.faults = faults or Faults()
        self.down = down  # hosts that answer 503 to everything
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        url = request.url or ""
        parts = urlsplit(url)
        if any(h in parts.netloc for h in self.down):
            return _response(request, 503, {"error": "service unavailable"})
        fault = self.faults.pop(url)
        if fault == "timeout":
            raise requests.exceptions.ReadTimeout(f"HTTPSConnectionPool: Read timed out. (url: {url})")
        if fault == "connection":
            raise requests.exceptions.ConnectionError(f"Max retries exceeded with url: {url}")
        if fault == "429":
            resp = _response(request, 429, {"error": "too many requests"})
            resp.headers["Retry-After"] = "1"
            return resp
        if fault == "500":
            return _response(request, 500, {"error": "internal"})
        if fault == "malformed":
            return _response(request, 200, None, raw_text='{"Time Series (Daily)": {"2020-06-01": {"1. op')
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if "alphavantage" in parts.netloc:
            return self._alphavantage(request, query, fault)
        if "polygon" in parts.netloc:
            return self._polygon(request, parts.path, query, fault)
        if "tiingo" in parts.netloc:
            return self._tiingo(request, parts.path, query, fault)
        return _response(request, 404, {"error": "no route"})

    def _alphavantage(
        self, request: requests.PreparedRequest, q: dict, fault: str | None
    ) -> requests.Response:
        sym = q["symbol"].replace(".", "-")
        if fault == "empty":
            return _response(request, 200, {"Meta Data": {}, "Time Series (Daily)": {}})
        if fault == "note":
            return _response(
                request,
                200,
                {
                    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute."
                },
            )
        path = FIXTURES / f"alphavantage_{sym}.json"
        if not path.exists():
            return _response(
                request,
                200,
                {
                    "Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY_ADJUSTED."
                },
            )
        return _response(request, 200, load(path.name))

    def _polygon(
        self, request: requests.PreparedRequest, path: str, q: dict, fault: str | None
    ) -> requests.Response:
        bits = path.strip("/").split("/")
        if bits[:2] == ["v2", "aggs"]:
            sym, lo, hi = bits[3].replace(".", "-"), bits[7], bits[8]
            f = FIXTURES / f"polygon_aggs_{sym}.json"
            if not f.exists():
                return _response(
                    request,
                    200,
                    {
                        "ticker": bits[3],
                        "queryCount": 0,
                        "resultsCount": 0,
                        "adjusted": False,
                        "status": "OK",
                        "request_id": "x",
                    },
                )
            body = load(f.name)
            if fault == "empty":
                body["results"] = []
            lo_ms = pd.Timestamp(lo, tz="America/New_York").timestamp() * 1000
            hi_ms = pd.Timestamp(hi, tz="America/New_York").timestamp() * 1000
            body["results"] = [r for r in body.get("results", []) if lo_ms <= r["t"] <= hi_ms]
            body["resultsCount"] = body["queryCount"] = body["count"] = len(body["results"])
            if not body["results"]:
                body.pop("results")
            return _response(request, 200, body)
        kind = bits[-1]  # splits | dividends
        sym = q.get("ticker", "").replace(".", "-")
        f = FIXTURES / f"polygon_{kind}_{sym}.json"
        return _response(
            request, 200, load(f.name) if f.exists() else {"results": [], "status": "OK", "request_id": "x"}
        )

    def _tiingo(
        self, request: requests.PreparedRequest, path: str, q: dict, fault: str | None
    ) -> requests.Response:
        sym = path.strip("/").split("/")[2].upper()
        f = FIXTURES / f"tiingo_{sym}.json"
        if not f.exists():
            return _response(request, 404, {"detail": f"Error: Ticker '{sym}' not found"})
        rows = load(f.name)
        if fault == "empty":
            rows = []
        lo = pd.Timestamp(q.get("startDate", "1900-01-01"))
        hi = pd.Timestamp(q.get("endDate", "2100-01-01"))
        rows = [r for r in rows if lo <= pd.Timestamp(r["date"][:10]) <= hi]
        return _response(request, 200, rows)

    def close(self) -> None:
        pass


def replay_session(adapter: ReplayAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


# ---- Yahoo through yfinance ---------------------------------------------------------------------------------


class YahooResponse:
    def __init__(self, url: str, status: int, body: Any, text: str | None = None):
        self.url, self.status_code = url, status
        self._body = body
        self.text = text if text is not None else json.dumps(body)

    def json(self) -> Any:
        if self._body is None:
            return json.loads(self.text)  # raises json.JSONDecodeError, as a broken body would
        return copy.deepcopy(self._body)  # yfinance mutates what it gets


class YahooServer:
    """The chart endpoint over the recorded fixtures, with faults; `calls` lists (symbol, period1, period2)."""

    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.calls: list[tuple[str, int | None, int | None]] = []
        self.overrides: dict[str, dict] = {}  # symbol -> chart JSON to serve instead of the fixture

    def chart(self, symbol: str) -> dict | None:
        if symbol in self.overrides:
            return copy.deepcopy(self.overrides[symbol])
        f = FIXTURES / f"yahoo_chart_{symbol}.json"
        return load(f.name) if f.exists() else None

    def get(self, _self: Any, url: str, params: dict | None = None, timeout: float = 30) -> YahooResponse:
        from curl_cffi.requests.exceptions import Timeout
        from yfinance.exceptions import YFRateLimitError

        params = params or {}
        symbol = url.rsplit("/", 1)[-1]
        self.calls.append((symbol, params.get("period1"), params.get("period2")))
        fault = self.faults.pop(url)
        if fault == "429":
            raise YFRateLimitError()
        if fault == "timeout":
            raise Timeout(f"Failed to perform, curl: (28) Operation timed out after {timeout} s ({url})")
        if fault == "500":
            body = {
                "chart": {
                    "result": None,
                    "error": {"code": "Internal Server Error", "description": "Internal Server Error"},
                }
            }
            return YahooResponse(url, 500, body)
        if fault == "malformed":
            return YahooResponse(
                url, 200, None, text='{"chart": {"result": [{"meta": {"currency": "USD", "sym'
            )
        data = self.chart(symbol)
        if data is None:
            body = {
                "chart": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
                }
            }
            return YahooResponse(url, 404, body)
        res = data["chart"]["result"][0]
        if fault == "empty":
            res["timestamp"] = []
            res["indicators"]["quote"] = [{}]
            res["indicators"]["adjclose"] = [{"adjclose": []}]
            return YahooResponse(url, 200, data)
        lo, hi = params.get("period1"), params.get("period2")
        keep = [
            i for i, t in enumerate(res["timestamp"]) if (lo is None or t >= lo) and (hi is None or t < hi)
        ]
        res["timestamp"] = [res["timestamp"][i] for i in keep]
        q = res["indicators"]["quote"][0]
        for k in list(q):
            q[k] = [q[k][i] for i in keep]
        adj = res["indicators"]["adjclose"][0]
        adj["adjclose"] = [adj["adjclose"][i] for i in keep]
        return YahooResponse(url, 200, data)

    def tz(self, _self: Any, timeout: float = 10) -> str | None:
        return "America/New_York" if self.chart(_self.ticker) is not None else None


@contextmanager
def yahoo_replay(server: YahooServer | None = None) -> Iterator[YahooServer]:
    from yfinance.base import TickerBase
    from yfinance.data import YfData

    server = server or YahooServer()
    with (
        mock.patch.object(YfData, "get", autospec=True, side_effect=server.get),
        mock.patch.object(YfData, "cache_get", autospec=True, side_effect=server.get),
        mock.patch.object(TickerBase, "_get_ticker_tz", autospec=True, side_effect=server.tz),
    ):
        yield server
