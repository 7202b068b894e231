"""Prices in, an aligned date x symbol panel out.

The long frame (one row per symbol-date) is what sources and the cache speak; the `Panel` is what
features and the dataset speak: one float64 [time, symbol] array per field, NaN where a symbol has no bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
REQUIRED_COLUMNS = ("date", "symbol", *PRICE_FIELDS)


class DataError(ValueError):
    """Bad market data; the message names the symbol, field and date or file."""


# Sessions a reference series (the market, a sector ETF, an as-of joined source) may be carried forward past
# its last value; beyond it the value is NaN, so a series that stops yields invalid windows, never flat ones.
DEFAULT_FILL_LIMIT = 5


@dataclass(frozen=True)
class Panel:
    dates: np.ndarray  # datetime64[D], sorted, unique, length T
    symbols: tuple[str, ...]  # length N
    fields: Mapping[str, np.ndarray]  # name -> float64 [T, N], NaN where there is no bar
    asset_types: Mapping[str, str] = field(default_factory=dict)  # symbol -> stock | etf | index
    sectors: Mapping[str, str] = field(default_factory=dict)  # symbol -> GICS sector
    fill_limit: int = (
        DEFAULT_FILL_LIMIT  # sessions a reference series is carried forward (`freshness` config)
    )

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"panel has no field {name!r}; fields: {sorted(self.fields)}") from None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dates), len(self.symbols)

    def symbol_index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(f"symbol {symbol!r} is not in the panel ({len(self.symbols)} symbols)") from None

    def date_index(self, date: str | np.datetime64 | pd.Timestamp) -> int:
        """Index of the last session on or before `date`."""
        d = np.datetime64(pd.Timestamp(date).date(), "D")
        i = int(np.searchsorted(self.dates, d, side="right")) - 1
        if i < 0:
            raise KeyError(f"date {d} is before the panel's first session {self.dates[0]}")
        return i

    def mask(self, asset_types: Sequence[str] = ("stock",)) -> np.ndarray:
        """[N] bool: which symbols are of the given asset types (unknown types count as stock)."""
        return np.array([self.asset_types.get(s, "stock") in asset_types for s in self.symbols])


def validate_prices(df: pd.DataFrame, where: str = "prices") -> pd.DataFrame:
    """Check a long price frame; raise DataError naming the symbol, field and date of the first problem."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; have {list(df.columns)}")
    for col in PRICE_FIELDS:
        if not pd.api.types.is_numeric_dtype(df[col]):
            bad = df.loc[pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()]
            row = bad.iloc[0] if len(bad) else df.iloc[0]
            raise DataError(
                f"{where}: field {col!r} has dtype {df[col].dtype}, expected numeric "
                f"(symbol {row['symbol']}, date {row['date']}, value {row[col]!r})"
            )
    for col in ("open", "high", "low", "close"):
        bad = df[df[col] <= 0]
        if len(bad):
            row = bad.iloc[0]
            raise DataError(
                f"{where}: non-positive {col} {row[col]} for symbol {row['symbol']} on {row['date']} "
                f"({len(bad)} such rows)"
            )
    bad = df[df["volume"] < 0]
    if len(bad):
        row = bad.iloc[0]
        raise DataError(f"{where}: negative volume for symbol {row['symbol']} on {row['date']}")
    dup = df.duplicated(["symbol", "date"], keep=False)
    if dup.any():
        row = df[dup].iloc[0]
        raise DataError(
            f"{where}: duplicate date {row['date']} for symbol {row['symbol']} ({int(dup.sum())} duplicated rows)"
        )
    return df


def load_prices(
    path: str | Path,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Read a long price Parquet/CSV file, filtered and validated; dates become datetime64[ns]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"price file not found: {path}")
    filters = [("symbol", "in", list(symbols))] if symbols else None
    if path.suffix == ".csv":
        df = pd.read_csv(path)
        if symbols:
            df = df[df["symbol"].isin(symbols)]
    else:
        df = pd.read_parquet(path, filters=filters)
    if "date" not in df.columns:
        raise DataError(f"{path}: no 'date' column")
    df["date"] = pd.to_datetime(df["date"])
    if start:
        df = df[df["date"] >= pd.Timestamp(start)]
    if end:
        df = df[df["date"] <= pd.Timestamp(end)]
    if symbols:
        absent = sorted(set(symbols) - set(df["symbol"].unique()))
        if absent:
            raise DataError(f"{path}: unknown symbol(s) {absent}")
    return validate_prices(df.reset_index(drop=True), where=str(path))


def to_panel(
    prices: pd.DataFrame,
    sessions: Sequence | np.ndarray | None = None,
    sectors: Mapping[str, str] | None = None,
) -> Panel:
    """Pivot a long frame onto one date axis. With `sessions`, the axis is that calendar (in the frame's span)."""
    prices = prices.sort_values(["symbol", "date"])
    if sessions is None:
        dates = np.unique(prices["date"].to_numpy().astype("datetime64[D]"))
    else:
        dates = np.asarray(sessions, dtype="datetime64[D]")
        lo, hi = prices["date"].min(), prices["date"].max()
        dates = dates[(dates >= np.datetime64(lo.date())) & (dates <= np.datetime64(hi.date()))]
    symbols = tuple(sorted(prices["symbol"].unique()))
    t_idx = np.searchsorted(dates, prices["date"].to_numpy().astype("datetime64[D]"))
    s_idx = np.searchsorted(np.array(symbols), prices["symbol"].to_numpy())
    inside = (t_idx < len(dates)) & (
        dates[np.minimum(t_idx, len(dates) - 1)] == prices["date"].to_numpy().astype("datetime64[D]")
    )
    t_idx, s_idx = t_idx[inside], s_idx[inside]
    fields: dict[str, np.ndarray] = {}
    for name in PRICE_FIELDS:
        arr = np.full((len(dates), len(symbols)), np.nan)
        arr[t_idx, s_idx] = prices[name].to_numpy(dtype=np.float64)[inside]
        fields[name] = arr
    asset_types: dict[str, str] = {}
    if "asset_type" in prices.columns:
        asset_types = prices.drop_duplicates("symbol").set_index("symbol")["asset_type"].astype(str).to_dict()
    return Panel(
        dates=dates, symbols=symbols, fields=fields, asset_types=asset_types, sectors=dict(sectors or {})
    )


def load_panel(
    prices: str | Path,
    sectors: str | Path | None = None,
    sessions: str | Path | None = None,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    constituents: str | Path | None = None,
) -> Panel:
    """The datamodule's entry point: price file (+ optional sector and session files) -> Panel.

    `constituents` names the point-in-time membership file that goes with these prices; it is applied by the
    universe (`universe.constituents`, deepq.data.universe), and only checked for existence here so that a
    wrong path fails at load time.
    """
    if constituents is not None and not Path(constituents).exists():
        raise FileNotFoundError(f"constituents file not found: {constituents}")
    long = load_prices(prices, symbols=symbols, start=start, end=end)
    sector_map: dict[str, str] = {}
    if sectors and Path(sectors).exists():
        sec = pd.read_parquet(sectors)
        sector_map = dict(zip(sec["symbol"], sec["gics_sector"].astype(str), strict=True))
    session_dates = None
    if sessions and Path(sessions).exists():
        session_dates = pd.read_parquet(sessions)["date"].to_numpy().astype("datetime64[D]")
    return to_panel(long, sessions=session_dates, sectors=sector_map)
