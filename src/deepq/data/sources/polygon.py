"""Polygon.io daily aggregates (unadjusted), with splits and dividends from the reference endpoints.

https://polygon.io/docs/stocks/get_v2_aggs_ticker__stocksticker__range__multiplier___timespan___from___to.
The key (POLYGON_API_KEY) goes in an `Authorization: Bearer` header, never in the URL. Raw bars are adjusted
here (deepq.data.actions) from /v3/reference/splits and /v3/reference/dividends, so the rows match the other
sources' convention. Pagination follows `next_url`. Class shares use a dot (BRK.B).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from deepq.data.http import EmptyData, NotFound
from deepq.data.sources.base import HttpSource, adjusted_rows, clip_dates

BASE = "https://api.polygon.io"


class PolygonSource(HttpSource):
    name = "polygon"
    key_env = "POLYGON_API_KEY"

    def __init__(self, base_url: str = BASE, **kw: Any):
        kw.setdefault("calls_per_minute", 5.0)  # free tier
        super().__init__(**kw)
        self.base_url = base_url.rstrip("/")  # another host (a self-hosted proxy, a test server)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _pages(
        self,
        url: str,
        symbol: str,
        params: dict[str, Any] | None,
        key: str = "results",
        empty: str | None = None,
    ) -> list[dict]:
        """Every page's `key` items; with `empty` (why), a page without items is EmptyData, retried."""
        out: list[dict] = []
        next_url: str | None = url
        while next_url:
            page = self.get_json(
                next_url, symbol, lambda d: self._check(d, symbol, key, empty), params, self._headers()
            )
            out.extend(page.get(key) or [])
            next_url, params = page.get("next_url"), None  # next_url carries its own query
        return out

    def _check(self, data: Any, symbol: str, key: str, empty: str | None) -> dict:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        status = data.get("status")
        if status == "NOT_FOUND":
            raise NotFound(f"{self.name} {symbol}: unknown symbol")
        if status not in ("OK", "DELAYED"):
            raise ValueError(f"status {status!r}")
        if empty is not None and not data.get(key):  # inside the retried call, as the other vendors' are
            raise EmptyData(f"{self.name} {symbol}: {empty}")
        return data

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        ticker = symbol.replace("-", ".")
        lo = str(pd.Timestamp(start or "1990-01-01").date())
        hi = str(pd.Timestamp(end or pd.Timestamp.today()).date())
        bars = self._pages(
            f"{self.base_url}/v2/aggs/ticker/{ticker}/range/1/day/{lo}/{hi}",
            symbol,
            {"adjusted": "false", "sort": "asc", "limit": 50000},
            empty=f"no bars between {lo} and {hi}",
        )
        raw = pd.DataFrame(bars).rename(
            columns={"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
        )
        # `t` is the window start in Unix ms (midnight New York): the session date
        raw["date"] = pd.to_datetime(raw["t"], unit="ms", utc=True).dt.tz_convert("America/New_York")
        raw["date"] = raw["date"].dt.tz_localize(None).dt.normalize()
        raw = raw[["date", "open", "high", "low", "close", "volume"]].copy()
        raw["symbol"] = symbol
        # events from the first bar on: earlier events do not change these bars (backward adjustment)
        splits = self._pages(
            f"{self.base_url}/v3/reference/splits", symbol, {"ticker": ticker, "limit": 1000}
        )
        divs = self._pages(
            f"{self.base_url}/v3/reference/dividends", symbol, {"ticker": ticker, "limit": 1000}
        )
        raw["dividend"] = 0.0
        raw["split"] = 1.0
        pos = pd.Series(range(len(raw)), index=raw["date"])
        for s in splits:
            d = pd.Timestamp(s["execution_date"])
            if d in pos.index:
                raw.loc[pos[d], "split"] *= float(s["split_to"]) / float(s["split_from"])
        for dv in divs:
            if dv.get("dividend_type", "CD") not in ("CD", "SC"):  # cash and special cash dividends
                continue
            d = pd.Timestamp(dv["ex_dividend_date"])
            if d in pos.index:
                raw.loc[pos[d], "dividend"] += float(dv["cash_amount"])
        return clip_dates(adjusted_rows(raw, self.name, self.dividend_method), start, end)
