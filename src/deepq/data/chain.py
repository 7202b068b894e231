"""The fallback chain: try sources in order per symbol, record who served each row, count each source's health.

A source that fails a symbol (after its own retries) hands the symbol to the next one; the rows' `source`
column says which served them. Health counters per source: attempts, successes, failures by kind, rows
served, and consecutive failures; after `trip_after` consecutive failures a source is skipped for the rest of
the run (a circuit breaker: one vendor down costs a few calls, not one per symbol).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from deepq.data.http import EmptyData, NotFound, SourceError, redact
from deepq.data.panel import DataError
from deepq.data.sources.base import Source, fetch_many
from deepq.data.store import to_cache_frame

log = logging.getLogger(__name__)


@dataclass
class Health:
    attempts: int = 0
    successes: int = 0
    failures: int = 0
    not_found: int = 0
    empty: int = 0
    rows: int = 0
    consecutive_failures: int = 0
    tripped: bool = False
    last_error: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class FetchResult:
    symbol: str
    frame: pd.DataFrame | None  # None when every source failed
    source: str | None
    errors: dict[str, str]  # source name -> why it did not serve the symbol

    @property
    def ok(self) -> bool:
        return self.frame is not None


class AllSourcesFailed(SourceError):
    pass


class FallbackChain:
    def __init__(self, sources: Sequence[Source], trip_after: int = 5):
        if not sources:
            raise ValueError("a fallback chain needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        self.sources = list(sources)
        self.trip_after = trip_after
        self.health: dict[str, Health] = {s.name: Health() for s in sources}

    def __repr__(self) -> str:
        return f"FallbackChain({[s.name for s in self.sources]})"

    def _record_failure(self, name: str, symbol: str, err: Exception) -> str:
        h = self.health[name]
        h.failures += 1
        kind = type(err).__name__
        h.errors_by_kind[kind] = h.errors_by_kind.get(kind, 0) + 1
        if isinstance(err, NotFound):
            h.not_found += 1  # the source is fine; it just does not know the symbol
        else:
            h.consecutive_failures += 1
            if isinstance(err, EmptyData):
                h.empty += 1
        msg = redact(str(err))
        h.last_error = msg
        if h.consecutive_failures >= self.trip_after and not h.tripped:
            h.tripped = True
            log.warning(
                "source %s failed %d times in a row; skipping it for this run", name, h.consecutive_failures
            )
        return msg

    def _record_success(self, name: str, rows: int) -> None:
        h = self.health[name]
        h.successes += 1
        h.rows += rows
        h.consecutive_failures = 0

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> FetchResult:
        return self.fetch_many([symbol], start, end)[symbol]

    def fetch_many(
        self, symbols: Sequence[str], start: str | None = None, end: str | None = None
    ) -> dict[str, FetchResult]:
        """Each symbol from the first source that serves it; batched per source."""
        results = {s: FetchResult(s, None, None, {}) for s in symbols}
        todo = list(symbols)
        for src in self.sources:
            if not todo:
                break
            h = self.health[src.name]
            if h.tripped:
                for sym in todo:
                    results[sym].errors[src.name] = "skipped (source tripped after repeated failures)"
                continue
            h.attempts += len(todo)
            try:
                got = fetch_many(src, todo, start, end)
            except SourceError as e:  # the whole batch failed (e.g. no key)
                got = dict.fromkeys(todo, e)
            still = []
            for sym in todo:
                value = got.get(sym, EmptyData(f"{src.name} {sym}: no answer"))
                if isinstance(value, pd.DataFrame) and value.empty:
                    value = EmptyData(f"{src.name} {sym}: empty frame")
                if isinstance(value, Exception):
                    results[sym].errors[src.name] = self._record_failure(src.name, sym, value)
                    still.append(sym)
                    continue
                frame = value.copy()
                if "source" not in frame.columns:
                    frame["source"] = src.name
                try:  # a source that sends bad rows failed this symbol: the next one gets it
                    frame = to_cache_frame(frame, symbol=sym, where=f"{src.name} rows")
                except DataError as e:
                    results[sym].errors[src.name] = self._record_failure(src.name, sym, e)
                    still.append(sym)
                    continue
                self._record_success(src.name, len(frame))
                results[sym] = FetchResult(sym, frame, src.name, results[sym].errors)
            todo = still
        for sym in todo:
            log.warning("symbol %s: every source failed: %s", sym, results[sym].errors)
        return results

    def require(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        """One symbol or AllSourcesFailed naming each source's reason."""
        res = self.fetch(symbol, start, end)
        if res.frame is None:
            why = "; ".join(f"{k}: {v}" for k, v in res.errors.items())
            raise AllSourcesFailed(f"symbol {symbol}: every source failed ({why})")
        return res.frame

    def health_table(self) -> pd.DataFrame:
        rows = [{"source": name, **asdict(h)} for name, h in self.health.items()]
        return pd.DataFrame(rows)
