"""The default embedded store: one Parquet file per symbol plus a manifest, and the panel loader over it.

    <root>/prices/<SYMBOL>.parquet   the symbol's whole cached history (CACHE_COLUMNS), sorted by date
    <root>/manifest.parquet          symbol, first/last date, rows, source, fetched-at, checksum
    <root>/meta/                     sessions, sectors, constituents, actions that go with the prices
    <root>/locks/                    one lock file per symbol, and one for the manifest

Every file is written to a temp file in the same folder and renamed into place (deepq.utils.io), so a crash
mid-write leaves the previous version readable. A symbol's file is written under its file lock, so two
processes never write the same symbol at once; `merge` (and `append`, and `deepq data update` through it)
reads, merges and writes under that lock, so two writers of one symbol both keep their rows. The manifest is read-modified-written under its own
lock, and each entry is checked against the file it indexes (the file is the truth: a writer that lost the
race to a newer file records the newer file). The manifest is an index: a crash between a file and its
manifest entry leaves the entry one version behind, which `repair()` (or the next write) puts right, and
`rebuild_manifest()` recomputes it whole.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from deepq.data.panel import PRICE_FIELDS, DataError, Panel
from deepq.data.store import CACHE_COLUMNS, ManifestEntry, manifest_frame, to_cache_frame
from deepq.utils.io import atomic_path, sha256_file

log = logging.getLogger(__name__)


class CacheLocked(RuntimeError):
    """Another process holds the write lock of a symbol (or of the manifest) for longer than the timeout."""


def _file_name(symbol: str) -> str:
    return quote(symbol, safe="^-_.") + ".parquet"


def _symbol_of(path: Path) -> str:
    return unquote(path.name[: -len(".parquet")])


class ParquetStore:
    """PriceStore over a folder of per-symbol Parquet files (see module doc)."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 60.0, compression: str = "lz4"):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s
        self.compression = compression

    # ---- paths and locks
    @property
    def prices_dir(self) -> Path:
        return self.root / "prices"

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    def path(self, symbol: str) -> Path:
        return self.prices_dir / _file_name(symbol)

    def lock(self, name: str, timeout_s: float | None = None) -> FileLock:
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        timeout = self.lock_timeout_s if timeout_s is None else timeout_s
        return FileLock(str(self.root / "locks" / f"{quote(name, safe='^-_.')}.lock"), timeout=timeout)

    # ---- writing
    def write(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        entry = self._write_file(symbol, frame)
        self._update_manifest([entry])
        return entry

    def write_many(self, frames: Iterable[tuple[str, pd.DataFrame]]) -> list[ManifestEntry]:
        """Write several symbols, then update the manifest once (each symbol file is still atomic)."""
        entries = [self._write_file(symbol, frame) for symbol, frame in frames]
        if entries:
            self._update_manifest(entries)
        return entries

    def append(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        """Merge rows into the symbol's history (a date already cached takes the new row), all under the
        symbol's lock: concurrent appenders never drop each other's rows."""
        frame = to_cache_frame(frame, symbol=symbol, where=f"cache append {symbol}")

        def merged(cached: pd.DataFrame | None) -> pd.DataFrame:
            if cached is None:
                return frame
            return pd.concat([cached[~cached["date"].isin(frame["date"])], frame], ignore_index=True)

        entry = self.merge(symbol, merged)
        assert entry is not None
        return entry

    def merge(
        self, symbol: str, make: Callable[[pd.DataFrame | None], pd.DataFrame | None]
    ) -> ManifestEntry | None:
        """Read, transform and write one symbol under its lock: `make(cached)` (None if not cached) returns the
        symbol's new history, or None to leave it as it is. A concurrent writer of the symbol waits for the
        lock, so a read-merge-write (an incremental update, an append) never drops the other's rows."""
        try:
            with self.lock(symbol):
                frame = make(self.read_symbol(symbol))
                if frame is None:
                    return None
                entry = self._put_file(symbol, frame)
        except Timeout:
            raise self._locked(symbol) from None
        self._update_manifest([entry])
        return entry

    def _write_file(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        try:
            with self.lock(symbol):
                return self._put_file(symbol, frame)
        except Timeout:
            raise self._locked(symbol) from None

    def _locked(self, symbol: str) -> CacheLocked:
        return CacheLocked(
            f"symbol {symbol}: another process holds {self.root / 'locks'} lock for over {self.lock_timeout_s} s"
        )

    def _put_file(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        """Write the symbol's file atomically; the caller holds the symbol's lock."""
        frame = to_cache_frame(frame, symbol=symbol, where=f"cache write {symbol}")
        if frame.empty:
            raise DataError(f"cache write {symbol}: empty frame; refusing to replace the cached history")
        entry = ManifestEntry.of(symbol, frame)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(
            table.schema.get_field_index("date"), "date", table["date"].cast(pa.date32())
        )
        table = table.replace_schema_metadata(
            {
                b"deepq.symbol": symbol.encode(),
                b"deepq.source": entry.source.encode(),
                b"deepq.fetched_at": str(entry.fetched_at).encode(),
                b"deepq.checksum": entry.checksum.encode(),
            }
        )
        with atomic_path(self.path(symbol)) as tmp:
            pq.write_table(table, tmp, compression=self.compression)
        return entry

    def _on_disk(self, entry: ManifestEntry) -> ManifestEntry | None:
        """`entry`, or the entry of the file that replaced it since (None when the file is gone)."""
        if not self.path(entry.symbol).exists():
            return None
        if self._file_checksum(entry.symbol) == entry.checksum:
            return entry
        return self._entry_of_file(entry.symbol)

    def _file_checksum(self, symbol: str) -> str:
        meta = pq.read_schema(self.path(symbol)).metadata or {}
        return meta.get(b"deepq.checksum", b"").decode()

    def _entry_of_file(self, symbol: str) -> ManifestEntry | None:
        df = self.read_symbol(symbol)
        if df is None or df.empty:
            return None
        fetched = (pq.read_schema(self.path(symbol)).metadata or {}).get(b"deepq.fetched_at")
        return ManifestEntry.of(symbol, df, pd.Timestamp(fetched.decode()) if fetched else None)

    def _update_manifest(self, entries: Sequence[ManifestEntry], drop: Sequence[str] = ()) -> None:
        try:
            with self.lock("_manifest"):
                current = self.manifest()
                gone = {e.symbol for e in entries} | set(drop)
                entries = [e for e in map(self._on_disk, entries) if e is not None]
                current = current[~current["symbol"].isin(gone)]
                new = manifest_frame(entries)
                merged = pd.concat([x for x in (current, new) if len(x)], ignore_index=True)
                merged = manifest_frame([ManifestEntry(**r) for r in merged.to_dict("records")])
                with atomic_path(self.manifest_path) as tmp:
                    merged.to_parquet(tmp, index=False)
        except Timeout:
            raise CacheLocked(f"manifest of {self.root} is locked by another process") from None

    def delete(self, symbol: str) -> None:
        with self.lock(symbol):
            self.path(symbol).unlink(missing_ok=True)
        self._update_manifest([], drop=[symbol])

    # ---- reading
    def manifest(self) -> pd.DataFrame:
        if not self.manifest_path.exists():
            return manifest_frame([])
        return pd.read_parquet(self.manifest_path)

    def symbols(self) -> list[str]:
        if not self.prices_dir.is_dir():
            return []
        return sorted(_symbol_of(p) for p in self.prices_dir.glob("*.parquet"))

    def read_symbol(self, symbol: str) -> pd.DataFrame | None:
        path = self.path(symbol)
        if not path.exists():
            return None
        df = pq.read_table(path).to_pandas()
        df["date"] = pd.to_datetime(df["date"])
        return df[list(CACHE_COLUMNS)]

    def read(
        self,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> pd.DataFrame:
        names = self._resolve(symbols)
        tables = self._read_tables(names, list(CACHE_COLUMNS))
        if not tables:
            return to_cache_frame(pd.DataFrame(columns=list(CACHE_COLUMNS)))
        df = pa.concat_tables(tables).to_pandas()
        df["date"] = pd.to_datetime(df["date"])
        if start:
            df = df[df["date"] >= pd.Timestamp(start)]
        if end:
            df = df[df["date"] <= pd.Timestamp(end)]
        return df.sort_values(["symbol", "date"]).reset_index(drop=True)

    def _resolve(self, symbols: Sequence[str] | None) -> list[str]:
        have = self.symbols()
        if symbols is None:
            return have
        absent = sorted(set(symbols) - set(have))
        if absent:
            raise DataError(f"cache {self.root}: unknown symbol(s) {absent} (run `deepq data download`)")
        return list(symbols)

    def _read_tables(self, symbols: Sequence[str], columns: list[str]) -> list[pa.Table]:
        # one small file per symbol: per-file overhead dominates, so files are lz4 (decodes ~4x faster than zstd
        # here) and read by a few threads, each file single-threaded
        def one(sym: str) -> pa.Table:
            return pq.ParquetFile(self.path(sym), memory_map=True).read(columns=columns, use_threads=False)

        with ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 2)
        ) as ex:  # more threads than cores: slower
            return list(ex.map(one, symbols))

    # ---- integrity
    def verify(self) -> list[str]:
        """Problems found: manifest rows without files, files without manifest rows, checksum mismatches."""
        problems = []
        man = self.manifest().set_index("symbol")
        files = set(self.symbols())
        for sym in sorted(set(man.index) - files):
            problems.append(f"symbol {sym}: in the manifest but no file {self.path(sym)}")
        for sym in sorted(files - set(man.index)):
            problems.append(f"symbol {sym}: file {self.path(sym)} is not in the manifest")
        for sym in sorted(files & set(man.index)):
            meta = pq.read_schema(self.path(sym)).metadata or {}
            got = meta.get(b"deepq.checksum", b"").decode()
            if got != man.loc[sym, "checksum"]:
                problems.append(f"symbol {sym}: checksum in the file ({got[:12]}) differs from the manifest")
        return problems

    def repair(self) -> list[str]:
        """After a crash: temp files of interrupted writes removed (each under the lock its writer held) and
        the manifest rows that disagree with the files recomputed from them. Returns what was done."""
        done = []
        for tmp in sorted(self.prices_dir.glob(".*.parquet.*.tmp")) if self.prices_dir.is_dir() else []:
            symbol = _symbol_of(Path(tmp.name[1:].split(".parquet.", 1)[0] + ".parquet"))
            with self.lock(symbol):
                if tmp.exists():
                    tmp.unlink()
                    done.append(f"removed temp file {tmp}")
        with self.lock("_manifest"):
            for tmp in sorted(self.root.glob(f".{self.manifest_path.name}.*.tmp")):
                tmp.unlink(missing_ok=True)
                done.append(f"removed temp file {tmp}")
        man = self.manifest().set_index("symbol")["checksum"]
        files = set(self.symbols())
        stale = [sym for sym in sorted(files) if man.get(sym) != self._file_checksum(sym)]
        gone = sorted(set(man.index) - files)
        if stale or gone:
            self._update_manifest([e for e in map(self._entry_of_file, stale) if e is not None], drop=gone)
            done.extend(f"manifest: row of {sym} recomputed from its file" for sym in stale)
            done.extend(f"manifest: row of {sym} dropped (no file)" for sym in gone)
        return done

    def rebuild_manifest(self) -> pd.DataFrame:
        entries = []
        for sym in self.symbols():
            df = self.read_symbol(sym)
            if df is None or df.empty:
                continue
            meta = pq.read_schema(self.path(sym)).metadata or {}
            fetched = meta.get(b"deepq.fetched_at")
            entries.append(ManifestEntry.of(sym, df, pd.Timestamp(fetched.decode()) if fetched else None))
        self._update_manifest(entries, drop=list(self.manifest()["symbol"]))
        return self.manifest()

    def fingerprint(self) -> str:
        """sha256 over the manifest's checksums: changes whenever any cached symbol changes."""
        return sha256_file(self.manifest_path) if self.manifest_path.exists() else ""


# ---- the panel loader (conf/data/cache.yaml) ---------------------------------------------------------------


def load_cache_panel(
    root: str | Path,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    sectors: str | Path | None = None,
    sessions: str | Path | None = None,
    constituents: str | Path | None = None,
    fields: Sequence[str] = PRICE_FIELDS,
) -> Panel:
    """The cache as a Panel: every cached symbol (or `symbols`) on the session calendar in [start, end].

    `sessions` is a Parquet file of session dates (the cache keeps one in meta/); without it the date axis is
    the union of the cached dates. `constituents` is only checked here; the universe applies it.
    """
    store = ParquetStore(root)
    names = store._resolve(symbols)
    if not names:
        raise DataError(
            f"cache {store.root} is empty: fill it with `deepq data import ../shared/data/prices.parquet` "
            "or `deepq data download`"
        )
    if constituents is not None and not Path(constituents).exists():
        raise FileNotFoundError(f"constituents file not found: {constituents}")
    names = sorted(names)
    cols = ["date", *fields, "asset_type"]
    tables = store._read_tables(names, cols)
    lengths = np.array([t.num_rows for t in tables])
    big = pa.concat_tables(tables, promote_options="default")  # zero-copy: one chunk per symbol
    d = big["date"].to_numpy().astype("datetime64[D]")
    col = np.repeat(np.arange(len(names)), lengths)
    keep = np.ones(len(d), bool)
    if start:
        keep &= d >= np.datetime64(pd.Timestamp(start).date())
    if end:
        keep &= d <= np.datetime64(pd.Timestamp(end).date())
    if not keep.any():
        raise DataError(f"cache {store.root}: no rows between {start} and {end}")
    first, last = d[keep].min(), d[keep].max()
    if sessions and Path(sessions).exists():
        axis = pd.read_parquet(sessions)["date"].to_numpy().astype("datetime64[D]")
        axis = axis[(axis >= first) & (axis <= last)]
    else:
        axis = np.unique(d[keep])
    row = np.searchsorted(axis, d)
    keep &= row < len(axis)
    keep[keep] &= axis[row[keep]] == d[keep]  # bars on non-sessions are not in the panel
    flat = row[keep] * len(names) + col[keep]  # a 1-D scatter is ~1.5x faster than [row, col] here
    out = {}
    for f in fields:
        arr = np.full((len(axis), len(names)), np.nan)
        arr.reshape(-1)[flat] = big[f].to_numpy().astype(np.float64, copy=False)[keep]
        out[f] = arr
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    atype = big["asset_type"]
    asset_types = {
        sym: str(atype[int(o)].as_py()) for sym, o, n in zip(names, offsets, lengths, strict=True) if n
    }
    sector_map: dict[str, str] = {}
    if sectors and Path(sectors).exists():
        sec = pd.read_parquet(sectors, columns=["symbol", "gics_sector"])
        sector_map = dict(zip(sec["symbol"], sec["gics_sector"].astype(str), strict=True))
    return Panel(
        dates=axis,
        symbols=tuple(names),
        fields=out,
        asset_types=asset_types,
        sectors=sector_map,
    )
