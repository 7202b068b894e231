"""The cached row format and the interface every store (Parquet, PostgreSQL) speaks.

A cached row is one symbol-day of **adjusted** prices (split- and dividend-adjusted, as the panel uses them),
with the events that produced the adjustment and which source served it:

    date, symbol, open, high, low, close, adj_close, volume, dividend, split, asset_type, source, filled

`adj_close` is the vendor's own adjusted close when it sends one (else equal to `close`); `dividend` is cash
per share on the ex-date (0 otherwise); `split` is new shares per old share (1 otherwise); `filled` marks a
session carried forward by the calendar's gap policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from deepq.data.panel import DataError, parse_dates, validate_prices

FLOAT_COLUMNS = ("open", "high", "low", "close", "adj_close", "dividend", "split")
CACHE_COLUMNS = (
    "date",
    "symbol",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "dividend",
    "split",
    "asset_type",
    "source",
    "filled",
)
MANIFEST_COLUMNS = ("symbol", "first_date", "last_date", "rows", "source", "fetched_at", "checksum")


def guess_asset_type(symbol: str) -> str:
    return "index" if symbol.startswith("^") else "stock"


def to_cache_frame(
    df: pd.DataFrame,
    symbol: str | None = None,
    source: str | None = None,
    asset_type: str | None = None,
    where: str = "prices",
) -> pd.DataFrame:
    """Coerce a long frame to the cached row format (defaults filled in), validated, sorted by symbol, date.

    Raises DataError naming the symbol, field and date of the first problem (see panel.validate_prices).
    """
    df = df.copy()
    if symbol is not None:
        if "symbol" in df.columns and len(df) and (df["symbol"] != symbol).any():
            other = df.loc[df["symbol"] != symbol, "symbol"].iloc[0]
            raise DataError(f"{where}: frame for symbol {symbol} holds rows of symbol {other}")
        df["symbol"] = symbol
    if "date" not in df.columns:
        raise DataError(f"{where}: no 'date' column (symbol {symbol or '?'})")
    df["date"] = _dates(df["date"], symbol, where, df.get("symbol"))
    df = validate_prices(df, where=where)
    if "adj_close" not in df.columns:
        df["adj_close"] = df["close"]
    df["adj_close"] = df["adj_close"].fillna(df["close"])
    if "dividend" not in df.columns:
        df["dividend"] = 0.0
    if "split" not in df.columns:
        df["split"] = 1.0
    df["dividend"] = df["dividend"].fillna(0.0)
    df["split"] = df["split"].fillna(1.0).replace(0.0, 1.0)
    if "asset_type" not in df.columns or df["asset_type"].isna().any():
        guess = df["symbol"].map(lambda s: asset_type or guess_asset_type(s))
        df["asset_type"] = df["asset_type"].fillna(guess) if "asset_type" in df.columns else guess
    if "source" not in df.columns:
        df["source"] = source or "unknown"
    df["source"] = df["source"].fillna(source or "unknown")
    if "filled" not in df.columns:
        df["filled"] = False
    for col in FLOAT_COLUMNS:
        df[col] = df[col].astype("float64")
    vol = df["volume"].astype("float64")
    df["volume"] = np.round(vol.fillna(0.0)).astype("int64")
    df["symbol"] = df["symbol"].astype(str)
    df["asset_type"] = df["asset_type"].astype(str)
    df["source"] = df["source"].astype(str)
    df["filled"] = df["filled"].astype(bool)
    return df[list(CACHE_COLUMNS)].sort_values(["symbol", "date"]).reset_index(drop=True)


def _dates(col: pd.Series, symbol: str | None, where: str, symbols: pd.Series | None = None) -> pd.Series:
    """datetime64[ns], tz-naive, midnight (an aware date keeps its local day); fast when the column already
    is one. DataError naming the symbol, field 'date' and value of the first that is not a date (or is
    missing, or out of range)."""
    col = parse_dates(col, where, symbols if symbols is not None else pd.Series(symbol or "?", col.index))
    values = col.to_numpy().astype("datetime64[D]").astype("datetime64[ns]")
    return pd.Series(values, index=col.index)


def frame_checksum(df: pd.DataFrame) -> str:
    """sha256 of the cached columns' values: equal frames, equal checksums, whatever the store."""
    h = hashlib.sha256()
    h.update(df["date"].to_numpy().astype("datetime64[D]").astype("int64").tobytes())
    for col in ("open", "high", "low", "close", "adj_close", "dividend", "split"):
        h.update(np.ascontiguousarray(df[col].to_numpy(dtype=np.float64)).tobytes())
    h.update(df["volume"].to_numpy(dtype=np.int64).tobytes())
    h.update("|".join(df["source"].astype(str)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ManifestEntry:
    symbol: str
    first_date: pd.Timestamp
    last_date: pd.Timestamp
    rows: int
    source: str  # the sources that served the rows, most rows first ('yahoo' or 'yahoo+tiingo')
    fetched_at: pd.Timestamp
    checksum: str

    @classmethod
    def of(cls, symbol: str, frame: pd.DataFrame, fetched_at: pd.Timestamp | None = None) -> ManifestEntry:
        counts = frame["source"].value_counts()
        return cls(
            symbol=symbol,
            first_date=pd.Timestamp(frame["date"].min()),
            last_date=pd.Timestamp(frame["date"].max()),
            rows=len(frame),
            source="+".join(counts.index.astype(str)),
            fetched_at=fetched_at or pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s"),
            checksum=frame_checksum(frame),
        )


@runtime_checkable
class PriceStore(Protocol):
    """What the downloader, the updater and the panel loader need from a store."""

    def write(self, symbol: str, frame: pd.DataFrame) -> ManifestEntry:
        """Replace the symbol's whole history atomically (readers see the old or the new, never a mix)."""
        ...

    def read(
        self,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> pd.DataFrame:
        """Cached rows (CACHE_COLUMNS), sorted by symbol, date."""
        ...

    def read_symbol(self, symbol: str) -> pd.DataFrame | None: ...

    def manifest(self) -> pd.DataFrame:
        """One row per symbol: MANIFEST_COLUMNS."""
        ...

    def symbols(self) -> list[str]: ...

    def delete(self, symbol: str) -> None: ...


def manifest_frame(entries: Sequence[ManifestEntry]) -> pd.DataFrame:
    df = pd.DataFrame([e.__dict__ for e in entries], columns=list(MANIFEST_COLUMNS))
    for col in ("first_date", "last_date", "fetched_at"):
        df[col] = pd.to_datetime(df[col])
    df["rows"] = df["rows"].astype("int64")
    return df.sort_values("symbol").reset_index(drop=True)
