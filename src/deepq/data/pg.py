"""PostgreSQL behind the same PriceStore interface as the Parquet cache.

One table of cached rows (CACHE_COLUMNS) keyed by (symbol, date), partitioned by date: a TimescaleDB
hypertable (1-year chunks) when the extension is available, else declarative RANGE partitions by year,
created on demand. A manifest table holds one row per symbol, like manifest.parquet.

A symbol's write is one transaction (delete its rows, COPY the new ones, upsert the manifest) under a
transaction-scoped advisory lock on the symbol: readers see the old history or the new one, never a mix, and
two writers of the same symbol queue (up to `lock_timeout_s`, then CacheLocked).

    store = PostgresStore("postgresql://postgres@127.0.0.1:55432/postgres")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deepq.data.cache import CacheLocked
from deepq.data.panel import DataError
from deepq.data.store import CACHE_COLUMNS, MANIFEST_COLUMNS, ManifestEntry, manifest_frame, to_cache_frame

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
COLUMN_TYPES = {
    "date": "date NOT NULL",
    "symbol": "text NOT NULL",
    "open": "double precision",
    "high": "double precision",
    "low": "double precision",
    "close": "double precision NOT NULL",
    "adj_close": "double precision",
    "volume": "bigint NOT NULL",
    "dividend": "double precision NOT NULL",
    "split": "double precision NOT NULL",
    "asset_type": "text NOT NULL",
    "source": "text NOT NULL",
    "filled": "boolean NOT NULL",
}


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        table: str = "deepq_prices",
        partitioning: str = "auto",  # auto | timescale | range
        lock_timeout_s: float = 60.0,
    ):
        import psycopg

        if not _IDENT.match(table):
            raise ValueError(f"table name {table!r} must be a lower-case SQL identifier")
        self.dsn, self.table = dsn, table
        self.manifest_table = f"{table}_manifest"
        self.lock_timeout_s = lock_timeout_s
        self._psycopg = psycopg
        self.partitioning = self._setup(partitioning)

    def __repr__(self) -> str:  # the DSN may hold a password
        return f"PostgresStore(table={self.table!r}, partitioning={self.partitioning!r})"

    def connect(self) -> Any:
        return self._psycopg.connect(self.dsn, autocommit=False)

    # ---- schema
    def _setup(self, partitioning: str) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in COLUMN_TYPES.items())
        with self.connect() as con, con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"deepq-schema-{self.table}",))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,))
            exists = bool(cur.fetchone()[0])
            mode = self._existing_mode(cur) if exists else None
            if mode is None:
                mode = partitioning
                if mode == "auto":
                    mode = "timescale" if self._timescale(cur) else "range"
                elif mode == "timescale" and not self._timescale(cur):
                    raise RuntimeError("TimescaleDB is not available on this server")
                if mode == "timescale":
                    cur.execute(f"CREATE TABLE {self.table} ({cols}, PRIMARY KEY (symbol, date))")
                    cur.execute(
                        "SELECT create_hypertable(%s, 'date', chunk_time_interval => INTERVAL '1 year')",
                        (self.table,),
                    )
                else:
                    cur.execute(
                        f"CREATE TABLE {self.table} ({cols}, PRIMARY KEY (symbol, date)) PARTITION BY RANGE (date)"
                    )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.manifest_table} (symbol text PRIMARY KEY, first_date date, "
                "last_date date, rows bigint, source text, fetched_at timestamp, checksum text)"
            )
            con.commit()
        return mode

    def _timescale(self, cur: Any) -> bool:
        cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
        if not cur.fetchone()[0]:
            return False
        try:
            cur.execute("SAVEPOINT ts")
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("RELEASE SAVEPOINT ts")
            return True
        except self._psycopg.Error:  # available but not loadable (shared_preload_libraries) or not allowed
            cur.execute("ROLLBACK TO SAVEPOINT ts")
            return False

    def _existing_mode(self, cur: Any) -> str:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (self.table,))
        if cur.fetchone()[0] == "p":
            return "range"
        return "timescale"

    def _ensure_partitions(self, cur: Any, years: Sequence[int]) -> None:
        if self.partitioning != "range":
            return
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            (self.table,),
        )
        have = {r[0] for r in cur.fetchall()}
        missing = [y for y in years if f"{self.table}_y{y}" not in have]
        if not missing:
            return
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"deepq-schema-{self.table}",))
        for y in missing:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table}_y{y} PARTITION OF {self.table} "
                f"FOR VALUES FROM ('{y}-01-01') TO ('{y + 1}-01-01')"
            )

    def partitions(self) -> list[str]:
        """The physical pieces of the table: year partitions, or the hypertable's chunks."""
        with self.connect() as con, con.cursor() as cur:
            if self.partitioning == "range":
                cur.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
                    (self.table,),
                )
            else:
                cur.execute("SELECT show_chunks(%s)::text", (self.table,))
            return [r[0] for r in cur.fetchall()]

    # ---- writing
    def write(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        frame = to_cache_frame(frame, symbol=symbol, where=f"postgres write {symbol}")
        if frame.empty:
            raise DataError(f"postgres write {symbol}: empty frame; refusing to replace the cached history")
        entry = ManifestEntry.of(symbol, frame)
        years = sorted(set(frame["date"].dt.year.astype(int)))
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'")
            try:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"deepq-{self.table}-{symbol}",))
            except self._psycopg.errors.LockNotAvailable:
                raise CacheLocked(f"symbol {symbol}: another writer holds its lock in {self.table}") from None
            self._ensure_partitions(cur, years)
            cur.execute(f"DELETE FROM {self.table} WHERE symbol = %s", (symbol,))
            cols = list(CACHE_COLUMNS)
            with cur.copy(f"COPY {self.table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in _records(frame):
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO {self.manifest_table} ({', '.join(MANIFEST_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (symbol) DO UPDATE SET first_date = EXCLUDED.first_date, last_date = EXCLUDED.last_date, "
                "rows = EXCLUDED.rows, source = EXCLUDED.source, fetched_at = EXCLUDED.fetched_at, "
                "checksum = EXCLUDED.checksum",
                (
                    entry.symbol,
                    entry.first_date.date(),
                    entry.last_date.date(),
                    entry.rows,
                    entry.source,
                    entry.fetched_at.to_pydatetime(),
                    entry.checksum,
                ),
            )
            con.commit()
        return entry

    def write_many(self, frames: Sequence[tuple[str, pd.DataFrame]]) -> list[ManifestEntry]:
        return [self.write(s, f) for s, f in frames]

    def delete(self, symbol: str) -> None:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"DELETE FROM {self.table} WHERE symbol = %s", (symbol,))
            cur.execute(f"DELETE FROM {self.manifest_table} WHERE symbol = %s", (symbol,))
            con.commit()

    def drop(self) -> None:
        """Remove both tables (tests, or starting over)."""
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table} CASCADE")
            cur.execute(f"DROP TABLE IF EXISTS {self.manifest_table}")
            con.commit()

    # ---- reading
    def read(
        self,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> pd.DataFrame:
        where, args = [], []
        if symbols is not None:
            absent = sorted(set(symbols) - set(self.symbols()))
            if absent:
                raise DataError(f"postgres {self.table}: unknown symbol(s) {absent}")
            where.append("symbol = ANY(%s)")
            args.append(list(symbols))
        if start:
            where.append("date >= %s")
            args.append(pd.Timestamp(start).date())
        if end:
            where.append("date <= %s")
            args.append(pd.Timestamp(end).date())
        sql = f"SELECT {', '.join(CACHE_COLUMNS)} FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY symbol, date"
        with self.connect() as con, con.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        df = pd.DataFrame(rows, columns=list(CACHE_COLUMNS))
        return _typed(df)

    def read_symbol(self, symbol: str) -> pd.DataFrame | None:
        if symbol not in self.symbols():
            return None
        return self.read([symbol])

    def manifest(self) -> pd.DataFrame:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM {self.manifest_table} ORDER BY symbol")
            rows = cur.fetchall()
        if not rows:
            return manifest_frame([])
        return manifest_frame([ManifestEntry(*r) for r in rows])

    def symbols(self) -> list[str]:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(f"SELECT symbol FROM {self.manifest_table} ORDER BY symbol")
            return [r[0] for r in cur.fetchall()]


def _records(frame: pd.DataFrame) -> Any:
    dates = frame["date"].dt.date.to_numpy()
    cols = [frame[c].to_numpy() for c in CACHE_COLUMNS[1:]]
    for i in range(len(frame)):
        yield (dates[i], *[_py(c[i]) for c in cols])


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df["date"] = pd.to_datetime(df["date"])
    for c in ("open", "high", "low", "close", "adj_close", "dividend", "split"):
        df[c] = df[c].astype("float64")
    df["volume"] = df["volume"].astype("int64")
    df["filled"] = df["filled"].astype(bool)
    for c in ("symbol", "asset_type", "source"):
        df[c] = df[c].astype(str)
    return df
