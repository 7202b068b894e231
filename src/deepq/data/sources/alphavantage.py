"""Alpha Vantage TIME_SERIES_DAILY_ADJUSTED: raw OHLCV, AV's adjusted close, dividends and split coefficients.

https://www.alphavantage.co/documentation/#dailyadj. The key (ALPHAVANTAGE_API_KEY) is a query parameter, so
every message passes through `redact`. AV answers HTTP 200 with a JSON "Note"/"Information" when rate limited
and "Error Message" for an unknown symbol. Class shares use a dot (BRK.B).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from deepq.data.http import EmptyData, NotFound, RateLimited
from deepq.data.sources.base import HttpSource, adjusted_rows, clip_dates

URL = "https://www.alphavantage.co/query"
SERIES_KEY = "Time Series (Daily)"
FIELDS = {
    "1. open": "open",
    "2. high": "high",
    "3. low": "low",
    "4. close": "close",
    "5. adjusted close": "adj_close",
    "6. volume": "volume",
    "7. dividend amount": "dividend",
    "8. split coefficient": "split",
}


class AlphaVantageSource(HttpSource):
    name = "alphavantage"
    key_env = "ALPHAVANTAGE_API_KEY"

    def __init__(self, compact_days: int = 90, base_url: str = URL, **kw: Any):
        kw.setdefault("calls_per_minute", 5.0)  # the free tier's limit; premium keys allow 75+
        super().__init__(**kw)
        self.base_url = base_url  # another host (a self-hosted proxy, a test server)
        self.compact_days = compact_days  # "compact" returns the last 100 points: enough for a short update

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        recent = start is not None and pd.Timestamp(start) >= pd.Timestamp.today() - pd.Timedelta(
            days=self.compact_days
        )
        params = {
            "function": "TIME_SERIES_DAILY_ADJUSTED",
            "symbol": symbol.replace("-", "."),
            "outputsize": "compact" if recent else "full",
            "datatype": "json",
            "apikey": self.api_key,
        }
        raw = self.get_json(self.base_url, symbol, lambda d: self.parse(d, symbol), params=params)
        return clip_dates(adjusted_rows(raw, self.name, self.dividend_method), start, end)

    def parse(self, data: Any, symbol: str) -> pd.DataFrame:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        for key in ("Note", "Information"):
            if key in data and SERIES_KEY not in data:
                raise RateLimited(f"{self.name} {symbol}: {str(data[key])[:120]}")
        if "Error Message" in data:
            raise NotFound(f"{self.name} {symbol}: unknown symbol ({str(data['Error Message'])[:80]})")
        series = data[SERIES_KEY]
        if not series:
            raise EmptyData(f"{self.name} {symbol}: empty time series")
        df = pd.DataFrame.from_dict(series, orient="index").rename(columns=FIELDS)
        missing = [c for c in FIELDS.values() if c not in df.columns]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        df = df[list(FIELDS.values())].apply(pd.to_numeric, errors="raise")
        df.index = pd.to_datetime(df.index)
        df = df.rename_axis("date").reset_index().sort_values("date")
        df["symbol"] = symbol
        return df
