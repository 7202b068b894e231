"""Pre-downloaded prices from disk: the emergency source, and how `deepq data import` fills the cache.

`path` is either one long file (Parquet or CSV with `date, symbol, open, high, low, close, volume` and
optionally `adj_close, asset_type, dividend, split, source`) or a folder of per-symbol files
(`<SYMBOL>.parquet` / `<SYMBOL>.csv`, the symbol taken from the file name when there is no column).
Rows keep the file's `source` column when it has one (e.g. 'yahoo', 'stooq'), prefixed with `local:`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from deepq.data.http import NotFound, SourceError
from deepq.data.panel import DataError, check_symbols, parse_dates, read_price_file
from deepq.data.sources.base import clip_dates


def _read(path: Path, symbols: Sequence[str] | None = None) -> pd.DataFrame:
    if path.suffix == ".csv":
        df = read_price_file(path)
        if symbols is not None and "symbol" in df.columns:
            df = df[df["symbol"].isin(list(symbols))]
    else:
        filters = [("symbol", "in", list(symbols))] if symbols is not None else None
        try:
            df = pd.read_parquet(path, filters=filters)
        except Exception:  # a per-symbol file without a symbol column cannot be filtered
            df = pd.read_parquet(path)
    return df


class LocalSource:
    name = "local"

    def __init__(self, path: str | Path, mark_source: bool = True):
        self.path = Path(path)
        self.mark_source = mark_source
        self._frame: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"LocalSource({self.path})"

    def _files(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.path.glob("*")) if p.suffix in (".csv", ".parquet")}

    def symbols(self) -> list[str]:
        if not self.path.exists():
            raise FileNotFoundError(f"local source not found: {self.path}")
        if self.path.is_dir():
            return sorted(self._files())
        if self.path.suffix == ".csv":
            return sorted(pd.read_csv(self.path, usecols=["symbol"])["symbol"].astype(str).unique())
        return sorted(pd.read_parquet(self.path, columns=["symbol"])["symbol"].astype(str).unique())

    def _normalise(self, df: pd.DataFrame, symbol: str | None, where: Path) -> pd.DataFrame:
        if "date" not in df.columns:
            raise DataError(f"{where}: no 'date' column")
        if "symbol" not in df.columns:
            if symbol is None:
                raise DataError(f"{where}: no 'symbol' column")
            df = df.assign(symbol=symbol)
        df = df.copy()
        check_symbols(df, str(where))  # before grouping by it: a missing symbol would drop its rows
        df["date"] = parse_dates(df["date"], str(where), df["symbol"])
        src = df["source"].astype(str) if "source" in df.columns else pd.Series("file", index=df.index)
        df["source"] = ("local:" + src) if self.mark_source else src
        return df

    def iter_frames(
        self, symbols: Sequence[str] | None = None, start: str | None = None, end: str | None = None
    ) -> Iterator[tuple[str, pd.DataFrame]]:
        """(symbol, rows) for every symbol (or the requested ones), reading the file once."""
        if not self.path.exists():
            raise FileNotFoundError(f"local source not found: {self.path}")
        if self.path.is_dir():
            files = self._files()
            for sym in symbols if symbols is not None else sorted(files):
                if sym not in files:
                    raise DataError(f"{self.path}: unknown symbol(s) ['{sym}']")
                yield sym, clip_dates(self._normalise(_read(files[sym]), sym, files[sym]), start, end)
            return
        df = self._normalise(_read(self.path, symbols), None, self.path)
        if symbols is not None:
            absent = sorted(set(symbols) - set(df["symbol"].astype(str).unique()))
            if absent:
                raise DataError(f"{self.path}: unknown symbol(s) {absent}")
        df = clip_dates(df, start, end)
        for sym, g in df.groupby("symbol", sort=True):
            yield str(sym), g.reset_index(drop=True)

    def fetch(self, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
        if not self.path.exists():
            raise SourceError(f"{self.name} {symbol}: {self.path} does not exist")
        try:
            frames = dict(self.iter_frames([symbol], start, end))
        except DataError as e:
            if "unknown symbol" in str(e):
                raise NotFound(f"{self.name} {symbol}: not in {self.path}") from None
            raise
        return frames.get(symbol, pd.DataFrame())
