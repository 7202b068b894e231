"""The feature store: materialised feature values with an offline and an online path.

Offline (training, research): `get_historical_features(symbols, dates)` answers each (symbol, date) entity row
point-in-time, with the features of the last session on or before that date. Nothing computed on a later
session is ever returned, and since every feature is causal, that row uses no price after the date either.

Online (serving): `get_online_features(symbols, names)` returns each symbol's latest vector (its last session
with a bar) from an online backend: `EmbeddedOnline` (in-process arrays, the default) or `RedisOnline` (one
hash per feature set, one float32 vector per symbol; one round trip per request).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd

from deepq.data.panel import Panel
from deepq.features.cache import cached_compute_features, feature_set_hash
from deepq.features.registry import FeatureSpec


class OnlineBackend(Protocol):
    def write(self, symbols: Sequence[str], names: Sequence[str], vectors: np.ndarray) -> None: ...

    def read(self, symbols: Sequence[str], name_idx: np.ndarray | None) -> np.ndarray: ...


class EmbeddedOnline:
    """In-process online store: one float32 [N, F] matrix and a symbol index."""

    def __init__(self) -> None:
        self._matrix = np.empty((0, 0), dtype=np.float32)
        self._index: dict[str, int] = {}

    def write(self, symbols: Sequence[str], names: Sequence[str], vectors: np.ndarray) -> None:
        self._matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = {s: i for i, s in enumerate(symbols)}

    def read(self, symbols: Sequence[str], name_idx: np.ndarray | None) -> np.ndarray:
        try:
            rows = [self._index[s] for s in symbols]
        except KeyError as e:
            raise KeyError(
                f"symbol {e.args[0]!r} is not in the online store ({len(self._index)} symbols)"
            ) from None
        out = self._matrix[rows]
        return out if name_idx is None else out[:, name_idx]


class RedisOnline:
    """Redis online store: hash `<namespace>:vec` maps symbol -> float32 bytes; `<namespace>:names` the columns.

    Reads go over one dedicated connection kept open for the life of the store (HGET for one symbol, HMGET
    for many: one round trip, no pool checkout or command dispatch per call, which was most of the client's
    time per request); a dropped connection is reopened once and the command retried."""

    def __init__(self, url: str, namespace: str = "deepq:features", client: Any = None) -> None:
        import redis

        self.namespace = namespace
        self._client = client or redis.Redis.from_url(url)
        self._width: int | None = None
        self._conn: Any = None
        self._retry_on = (redis.ConnectionError, redis.TimeoutError)

    @property
    def _key(self) -> str:
        return f"{self.namespace}:vec"

    def write(self, symbols: Sequence[str], names: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._key)
        if len(symbols):
            pipe.hset(self._key, mapping={s: vectors[i].tobytes() for i, s in enumerate(symbols)})
        pipe.set(f"{self.namespace}:names", json.dumps(list(names)))
        pipe.execute()
        self._width = len(names)

    def names(self) -> list[str]:
        raw = self._client.get(f"{self.namespace}:names")
        if raw is None:
            raise KeyError(f"no feature set under redis namespace {self.namespace!r}")
        return list(json.loads(raw))

    def _command(self, *args: Any) -> Any:
        if self._conn is None:
            self._conn = self._client.connection_pool.make_connection()
        try:
            self._conn.send_command(*args)
            return self._conn.read_response()
        except self._retry_on:
            self._conn.disconnect()  # the next send reconnects
            self._conn.send_command(*args)
            return self._conn.read_response()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def read(self, symbols: Sequence[str], name_idx: np.ndarray | None) -> np.ndarray:
        raw = (
            [self._command("HGET", self._key, symbols[0])]
            if len(symbols) == 1
            else self._command("HMGET", self._key, *symbols)
        )
        for s, r in zip(symbols, raw, strict=True):
            if r is None:
                raise KeyError(f"symbol {s!r} is not in the redis online store {self._key!r}")
        out = np.frombuffer(b"".join(cast(list[bytes], raw)), dtype="<f4").reshape(len(symbols), -1)
        return out if name_idx is None else out[:, name_idx]


@dataclass(frozen=True)
class FeatureStore:
    dates: np.ndarray  # [T] datetime64[D]
    symbols: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray  # [T, N, F] float32
    last_row: np.ndarray  # [N] each symbol's last row with a bar (-1: none)
    online: OnlineBackend
    set_hash: str = ""

    @classmethod
    def materialize(
        cls,
        panel: Panel,
        specs: Sequence[FeatureSpec],
        cache_dir: str | Path | None = None,
        online: OnlineBackend | None = None,
    ) -> FeatureStore:
        """Compute (or read from the cache) the features of `panel` and load the online backend."""
        values = cached_compute_features(panel, specs, cache_dir)
        has_bar = np.isfinite(panel["close"])
        T = len(panel.dates)
        last_row = np.where(has_bar.any(axis=0), T - 1 - np.argmax(has_bar[::-1], axis=0), -1)
        store = cls(
            dates=panel.dates.astype("datetime64[D]"),
            symbols=tuple(panel.symbols),
            names=tuple(s.name for s in specs),
            values=values,
            last_row=last_row,
            online=online or EmbeddedOnline(),
            set_hash=feature_set_hash(specs),
        )
        store.push_online()
        return store

    @cached_property
    def _symbol_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    @cached_property
    def _names_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def _symbol_idx(self, symbols: Sequence[str]) -> np.ndarray:
        index = self._symbol_index
        missing = [s for s in symbols if s not in index]
        if missing:
            raise KeyError(f"symbol(s) {missing[:5]} not in the feature store ({len(self.symbols)} symbols)")
        return np.array([index[s] for s in symbols], dtype=np.int64)

    def _name_idx(self, names: Sequence[str] | None) -> np.ndarray | None:
        if names is None:
            return None
        index = self._names_index
        missing = [n for n in names if n not in index]
        if missing:
            raise KeyError(f"feature(s) {missing[:5]} not in the feature store ({len(self.names)} features)")
        return np.array([index[n] for n in names], dtype=np.int64)

    def get_historical_features(
        self, symbols: Sequence[str], dates: Sequence[Any], names: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Point-in-time features for entity rows (symbols[i], dates[i]): the values of the last session on or
        before dates[i] (`as_of`); NaN for a date before the first session."""
        if len(symbols) != len(dates):
            raise ValueError(f"symbols ({len(symbols)}) and dates ({len(dates)}) must pair up row by row")
        cols = self._symbol_idx(symbols)
        qdates = pd.to_datetime(pd.Index(dates)).values.astype("datetime64[D]")
        rows = np.searchsorted(self.dates, qdates, side="right") - 1
        name_idx = self._name_idx(names)
        chosen = list(self.names) if names is None else list(names)
        vals = self.values[np.maximum(rows, 0), cols]
        if name_idx is not None:
            vals = vals[:, name_idx]
        vals = np.where((rows >= 0)[:, None], vals, np.nan)
        out = pd.DataFrame(vals, columns=chosen)
        as_of = np.where(rows >= 0, self.dates[np.maximum(rows, 0)], np.datetime64("NaT"))
        out.insert(0, "as_of", pd.to_datetime(as_of))
        out.insert(0, "date", pd.to_datetime(qdates))
        out.insert(0, "symbol", list(symbols))
        return out

    def push_online(self) -> None:
        """Load each symbol's latest vector into the online backend."""
        ok = self.last_row >= 0
        syms = [s for s, k in zip(self.symbols, ok, strict=True) if k]
        vectors = self.values[self.last_row[ok], np.flatnonzero(ok)]
        self.online.write(syms, self.names, vectors)

    def get_online_features(self, symbols: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """[len(symbols), len(names)] float32: each symbol's latest features (all features when names is None)."""
        return self.online.read(symbols, self._name_idx(names))

    def online_name_index(self, names: Sequence[str]) -> np.ndarray:
        """Precomputed column indices for a hot serving path (`online.read(symbols, idx)`)."""
        idx = self._name_idx(names)
        assert idx is not None
        return idx
