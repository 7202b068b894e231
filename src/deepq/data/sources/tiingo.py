"""Tiingo end-of-day prices (IEX-sourced; the successor here to IEX Cloud, which closed in 2024).

https://www.tiingo.com/documentation/end-of-day. The key (TIINGO_API_KEY) goes in an
`Authorization: Token` header. Each row has raw OHLCV, Tiingo's adjusted fields, `divCash` and
`splitFactor`; the bars are adjusted here (deepq.data.actions) and Tiingo's adjClose is kept as adj_close.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from deepq.data.http import EmptyData, NotFound
from deepq.data.sources.base import HttpSource, adjusted_rows, clip_dates

BASE = "https://api.tiingo.com/tiingo/daily"
FIELDS = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "adjClose": "adj_close",
    "divCash": "dividend",
    "splitFactor": "split",
}


class TiingoSource(HttpSource):
    name = "tiingo"
    key_env = "TIINGO_API_KEY"

    def __init__(self, base_url: str = BASE, **kw: Any):
        kw.setdefault("calls_per_minute", 50.0 / 60.0)  # free tier: 50 requests an hour
        super().__init__(**kw)
        self.base_url = base_url.rstrip("/")  # another host (a self-hosted proxy, a test server)

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        params = {"startDate": str(pd.Timestamp(start or "1990-01-01").date()), "format": "json"}
        if end:
            params["endDate"] = str(pd.Timestamp(end).date())
        headers = {"Authorization": f"Token {self.api_key}", "Content-Type": "application/json"}
        raw = self.get_json(
            f"{self.base_url}/{symbol.lower()}/prices",
            symbol,
            lambda d: self.parse(d, symbol),
            params,
            headers,
        )
        return clip_dates(adjusted_rows(raw, self.name, self.dividend_method), start, end)

    def parse(self, data: Any, symbol: str) -> pd.DataFrame:
        if isinstance(data, dict) and "detail" in data:
            raise NotFound(f"{self.name} {symbol}: {str(data['detail'])[:80]}")
        if not isinstance(data, list):
            raise ValueError(f"expected a JSON list, got {type(data).__name__}")
        if not data:
            raise EmptyData(f"{self.name} {symbol}: empty price list")
        df = pd.DataFrame(data)
        missing = [c for c in ("date", *FIELDS) if c not in df.columns]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        out = df[list(FIELDS)].rename(columns=FIELDS).apply(pd.to_numeric, errors="raise")
        out["date"] = pd.to_datetime(df["date"], utc=True).dt.tz_localize(None).dt.normalize()
        out["symbol"] = symbol
        return out.sort_values("date").reset_index(drop=True)
