"""The source interface and the shared HTTP plumbing of the JSON vendors (Alpha Vantage, Polygon, Tiingo)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import pandas as pd
import requests

from deepq.data.actions import DividendMethod, adjust
from deepq.data.http import (
    AuthError,
    MalformedResponse,
    NotFound,
    RateLimited,
    Retry,
    SourceError,
    TokenBucket,
    TransientError,
    redact,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@runtime_checkable
class Source(Protocol):
    name: str

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        """One symbol's adjusted daily bars in [start, end] (dates inclusive); raises SourceError."""
        ...


def fetch_many(
    source: Source, symbols: Sequence[str], start: str | None = None, end: str | None = None
) -> dict[str, pd.DataFrame | SourceError]:
    """A batch: the source's own batching when it has one, else one fetch per symbol."""
    batched = getattr(source, "fetch_many", None)
    if callable(batched):
        return batched(symbols, start, end)
    out: dict[str, pd.DataFrame | SourceError] = {}
    for sym in symbols:
        try:
            out[sym] = source.fetch(sym, start, end)
        except SourceError as e:
            out[sym] = e
    return out


def clip_dates(df: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    if start:
        df = df[df["date"] >= pd.Timestamp(start)]
    if end:
        df = df[df["date"] <= pd.Timestamp(end)]
    return df.reset_index(drop=True)


def adjusted_rows(raw: pd.DataFrame, source: str, method: DividendMethod) -> pd.DataFrame:
    """Raw OHLCV + dividend/split events -> cached rows (backward-adjusted here, deepq.data.actions)."""
    raw = raw.sort_values("date").reset_index(drop=True)
    adj = adjust(raw, method=method, invalid="ignore")
    adj["source"] = source
    if "adj_close" not in adj.columns:
        adj["adj_close"] = adj["close"]
    return adj.drop(columns=["raw_close"])


class HttpSource:
    """Requests-based JSON source: rate limit, retries, status mapping, and keys kept out of messages."""

    name = "http"
    key_env: str | None = None

    def __init__(
        self,
        api_key: str | None = None,
        calls_per_minute: float = 5.0,
        burst: int = 1,
        retry: Retry | None = None,
        timeout_s: float = 30.0,
        session: requests.Session | None = None,
        dividend_method: DividendMethod = "prev_close",
    ):
        self._api_key = api_key or (os.environ.get(self.key_env) if self.key_env else None)
        self.limiter = TokenBucket(calls_per_minute / 60.0, burst)
        self.retry = retry or Retry()
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.dividend_method: DividendMethod = dividend_method

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(key={'set' if self._api_key else 'unset'})"

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    @property
    def api_key(self) -> str:
        if not self._api_key:
            raise AuthError(f"{self.name}: no API key (set {self.key_env})")
        return self._api_key

    def _fail(self, cls: type[SourceError], symbol: str, what: str, **kw: Any) -> SourceError:
        return cls(redact(f"{self.name} {symbol}: {what}", [self._api_key]), **kw)

    def get_json(
        self,
        url: str,
        symbol: str,
        parse: Callable[[Any], T],
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        """GET url, decode JSON, `parse` it (which may raise Transient/NotFound errors); retried as a whole."""

        def once() -> T:
            self.limiter.acquire()
            try:
                resp = self.session.get(url, params=params, headers=headers, timeout=self.timeout_s)
            except requests.Timeout:
                raise self._fail(TransientError, symbol, f"timeout after {self.timeout_s} s") from None
            except requests.RequestException as e:
                raise self._fail(TransientError, symbol, f"{type(e).__name__}") from None
            status = resp.status_code
            if status == 429:
                after = resp.headers.get("Retry-After")
                raise self._fail(
                    RateLimited,
                    symbol,
                    "rate limited (HTTP 429)",
                    retry_after_s=float(after) if after and after.replace(".", "").isdigit() else None,
                )
            if status >= 500:
                raise self._fail(TransientError, symbol, f"server error (HTTP {status})")
            if status in (401, 403):
                raise self._fail(AuthError, symbol, f"key rejected (HTTP {status})")
            if status == 404:
                raise self._fail(NotFound, symbol, "unknown symbol (HTTP 404)")
            if status >= 400:
                raise self._fail(SourceError, symbol, f"request rejected (HTTP {status})")
            try:
                data = resp.json()
            except ValueError:
                raise self._fail(MalformedResponse, symbol, "malformed JSON") from None
            try:
                return parse(data)
            except SourceError as e:
                raise type(e)(redact(str(e), [self._api_key])) from None
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                what = f"unexpected response layout ({type(e).__name__}: {e})"
                raise self._fail(MalformedResponse, symbol, what) from None

        return self.retry.call(once, f"{self.name} {symbol}")
