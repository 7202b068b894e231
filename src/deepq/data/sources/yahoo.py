"""Yahoo Finance through yfinance: batched downloads, rate limit, retries, and per-symbol fallbacks.

A batch goes through `yf.download` (one chart request per ticker, `threads` configurable). Tickers that come
back empty are fetched again one at a time through `Ticker.history` with yfinance's exceptions switched on, so
each failure is classified: rate limited (YFRateLimitError), server error, timeout, malformed JSON and empty
answers are retried with backoff; a symbol Yahoo does not know (no exchange timezone) is NotFound.

Yahoo's Close is split-adjusted and its Adj Close also dividend-adjusted; the cached OHLC is scaled by
Adj Close / Close (what yfinance's auto_adjust does), and the events are kept as `dividend` and `split`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from deepq.data.http import (
    EmptyData,
    MalformedResponse,
    NotFound,
    RateLimited,
    Retry,
    SourceError,
    TokenBucket,
    TransientError,
)
from deepq.data.sources.base import clip_dates

log = logging.getLogger(__name__)
PRICE_COLUMNS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]


class YahooSource:
    name = "yahoo"

    def __init__(
        self,
        batch_size: int = 50,
        requests_per_s: float = 2.0,
        burst: int = 5,
        retry: Retry | None = None,
        threads: bool | int = False,
        timeout_s: float = 30.0,
    ):
        self.batch_size = batch_size
        self.limiter = TokenBucket(requests_per_s, burst)
        self.retry = retry or Retry()
        self.threads = threads
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"YahooSource(batch_size={self.batch_size})"

    # ---- public
    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        return self.retry.call(
            lambda: self._history(symbol, start, end), f"{self.name} {symbol}", on_retry=_forget_answers
        )

    def fetch_many(
        self, symbols: Sequence[str], start: str | None = None, end: str | None = None
    ) -> dict[str, pd.DataFrame | SourceError]:
        out: dict[str, pd.DataFrame | SourceError] = {}
        for i in range(0, len(symbols), self.batch_size):
            batch = list(symbols[i : i + self.batch_size])
            got = self._download(batch, start, end)
            for sym in batch:
                frame = got.get(sym)
                if frame is not None and len(frame):
                    out[sym] = frame
                    continue
                try:  # one at a time, with the failure classified and retried
                    out[sym] = self.fetch(sym, start, end)
                except SourceError as e:
                    out[sym] = e
        return out

    # ---- yfinance calls
    @staticmethod
    def _end_exclusive(end: str | None) -> str | None:
        return str((pd.Timestamp(end) + pd.Timedelta(days=1)).date()) if end else None

    def _download(self, batch: list[str], start: str | None, end: str | None) -> dict[str, pd.DataFrame]:
        import yfinance as yf

        for _ in batch:
            self.limiter.acquire()
        try:
            data = yf.download(
                batch,
                start=start or "1990-01-01",
                end=self._end_exclusive(end),
                actions=True,
                auto_adjust=False,
                group_by="ticker",
                threads=self.threads,
                progress=False,
                repair=False,
                timeout=self.timeout_s,
                multi_level_index=True,
            )
        except (
            Exception
        ) as e:  # yfinance swallows per-ticker errors; anything else: every ticker retries alone
            log.info("yahoo batch of %d failed (%s); fetching one at a time", len(batch), type(e).__name__)
            return {}
        out: dict[str, pd.DataFrame] = {}
        if data is None or data.empty or not isinstance(data.columns, pd.MultiIndex):
            return out
        for sym in batch:
            if sym.upper() not in data.columns.get_level_values(0):
                continue
            sub = data[sym.upper()]
            frame = self._rows(sub, sym)
            if len(frame):
                out[sym] = clip_dates(frame, start, end)
        return out

    def _history(self, symbol: str, start: str | None, end: str | None) -> pd.DataFrame:
        import yfinance as yf
        from yfinance import exceptions as yfe

        self.limiter.acquire()
        previous = yf.config.debug.hide_exceptions
        yf.config.debug.hide_exceptions = False
        try:
            df = yf.Ticker(symbol).history(
                start=start or "1990-01-01",
                end=self._end_exclusive(end),
                interval="1d",
                actions=True,
                auto_adjust=False,
                repair=False,
                timeout=self.timeout_s,
            )
        except yfe.YFRateLimitError:
            raise RateLimited(f"{self.name} {symbol}: rate limited") from None
        except yfe.YFTzMissingError:
            raise NotFound(f"{self.name} {symbol}: unknown symbol (no timezone; possibly delisted)") from None
        except yfe.YFPricesMissingError as e:  # yfinance says "possibly delisted" for any empty answer
            reason = str(e).split(": ", 1)[-1].strip()
            raise EmptyData(f"{self.name} {symbol}: no prices ({reason})") from None
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise MalformedResponse(f"{self.name} {symbol}: malformed answer ({type(e).__name__})") from None
        except Exception as e:  # network errors of curl_cffi/requests: timeouts, resets
            raise TransientError(f"{self.name} {symbol}: {type(e).__name__}") from None
        finally:
            yf.config.debug.hide_exceptions = previous
        frame = self._rows(df, symbol)
        if frame.empty:
            raise EmptyData(f"{self.name} {symbol}: empty frame")
        return clip_dates(frame, start, end)

    def _rows(self, df: Any, symbol: str) -> pd.DataFrame:
        """yfinance columns -> cached rows (adjusted OHLC, events kept)."""
        if df is None or len(df) == 0:
            return pd.DataFrame()
        missing = [c for c in PRICE_COLUMNS if c not in df.columns]
        if missing:
            raise MalformedResponse(f"{self.name} {symbol}: missing column(s) {missing}")
        df = df.dropna(subset=["Close"])
        if df.empty:
            return pd.DataFrame()
        ratio = (df["Adj Close"] / df["Close"]).to_numpy()
        idx = pd.DatetimeIndex(df.index)
        if idx.tz is not None:
            idx = idx.tz_localize(None)
        out = pd.DataFrame(
            {
                "date": idx.normalize(),
                "symbol": symbol,
                "open": df["Open"].to_numpy() * ratio,
                "high": df["High"].to_numpy() * ratio,
                "low": df["Low"].to_numpy() * ratio,
                "close": df["Adj Close"].to_numpy(),
                "adj_close": df["Adj Close"].to_numpy(),
                "volume": df["Volume"].fillna(0).to_numpy(),
                "dividend": df["Dividends"].to_numpy() if "Dividends" in df.columns else 0.0,
                "split": df["Stock Splits"].replace(0, 1).to_numpy() if "Stock Splits" in df.columns else 1.0,
                "source": self.name,
            }
        )
        return out.reset_index(drop=True)


def _forget_answers(_: SourceError) -> None:
    """Before a retry: yfinance keeps every chart answer of a past window in an in-process LRU
    (`YfData.cache_get`), a broken one (5xx, malformed, empty) included, so a retry would re-read it."""
    from yfinance.data import YfData

    clear = getattr(YfData.cache_get, "cache_clear", None)  # absent where a test has replaced cache_get
    if callable(clear):
        clear()
