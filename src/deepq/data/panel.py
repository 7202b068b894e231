"""Prices in, an aligned date x symbol panel out.

The long frame (one row per symbol-date) is what sources and the cache speak; the `Panel` is what
features and the dataset speak: one float64 [time, symbol] array per field, NaN where a symbol has no bar.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

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


SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9.^=_\-]{1,32}$")  # the serve API's grammar too (serve.rest.Symbol)
FIRST_YEAR = 1800  # an earlier bar is a typo or an epoch default, not market data


def check_symbols(df: pd.DataFrame, where: str = "prices") -> None:
    """DataError naming the field, date and value of the first symbol that is missing or not a ticker."""
    values = df["symbol"]
    good = [v for v in pd.unique(values) if isinstance(v, str) and SYMBOL_PATTERN.match(v)]
    bad = ~values.isin(good).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        date = df["date"].iloc[i] if "date" in df.columns else "?"
        raise DataError(
            f"{where}: field 'symbol' holds {values.iloc[i]!r}, not a ticker (1-32 of A-Z a-z 0-9 . ^ = _ -), "
            f"date {date} ({int(bad.sum())} such rows)"
        )


def parse_dates(values: pd.Series, where: str = "prices", symbols: pd.Series | None = None) -> pd.Series:
    """A date column as tz-naive datetime64[ns]. An aware date keeps its local calendar day (a Tokyo
    midnight is that day, not the UTC day before). DataError naming the symbol, field 'date' and value of
    the first value that is missing, not a date, out of range, or aware where others are naive."""

    def fail(i: int, why: str, count: int | None = None, detail: str = "") -> DataError:
        sym = symbols.iloc[i] if symbols is not None else "?"
        more = (f"; {count} such rows" if count else "") + (f"; {detail}" if detail else "")
        return DataError(f"{where}: field 'date' {why} for symbol {sym} (value {values.iloc[i]!r}{more})")

    col = values
    if not pd.api.types.is_datetime64_any_dtype(col):
        mixed_formats = False
        try:
            with warnings.catch_warnings():  # mixed offsets: an object column and a FutureWarning
                warnings.simplefilter("ignore", FutureWarning)
                col = pd.to_datetime(col, cache=False)
        except (ValueError, TypeError, OverflowError) as e:
            col, mixed_formats = None, "doesn't match format" in str(e)
        if col is None or col.dtype == object:  # one bad value, or aware and naive values mixed
            parsed = []
            for i, v in enumerate(values):
                try:
                    parsed.append(pd.Timestamp(v))
                except (ValueError, TypeError, OverflowError) as e:
                    raise fail(i, "is not a date", detail=str(e).splitlines()[0][:80]) from None
            last = pd.Timestamp.now().year + 1
            for i, t in enumerate(parsed):
                if t is not pd.NaT and not FIRST_YEAR <= t.year <= last:
                    raise fail(i, f"is out of range (years {FIRST_YEAR}-{last})")
            present = np.flatnonzero([t is not pd.NaT for t in parsed])
            aware = np.array([parsed[i].tzinfo is not None for i in present], dtype=bool)
            if aware.any() and not aware.all():  # name the first that differs from the first date
                i = int(present[np.flatnonzero(aware != aware[0])[0]])
                raise fail(i, "mixes timezone-aware and naive dates")
            if mixed_formats:  # each value parses alone, not all in the first one's format
                col = _iso_or_refuse(values, fail)
            else:
                local = [t.tz_localize(None) if t is not pd.NaT and t.tzinfo else t for t in parsed]
                col = pd.Series(
                    pd.to_datetime(local), index=values.index
                )  # several zones: each one's local day
    if getattr(col.dt, "tz", None) is not None:
        col = col.dt.tz_localize(None)
    days = col.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(days)
    if missing.any():
        raise fail(int(np.flatnonzero(missing)[0]), "is empty", int(missing.sum()))
    last = pd.Timestamp.now().year + 1
    wrong = (days < np.datetime64(f"{FIRST_YEAR}-01-01")) | (days >= np.datetime64(f"{last + 1}-01-01"))
    if wrong.any():
        why = f"is out of range (years {FIRST_YEAR}-{last})"
        raise fail(int(np.flatnonzero(wrong)[0]), why, int(wrong.sum()))
    return col


def _iso_or_refuse(values: pd.Series, fail: Callable[[int, str], DataError]) -> pd.Series:
    """Dates in several ISO 8601 spellings ('2019-01-02', '2019-01-02 00:00:00') read; any other mix of
    formats is refused, naming the first value not in the first one's: '02.01.2019' then '28.02.2019' would
    read as February 1 then February 28 (month first, then day first) if each were guessed alone."""
    try:
        return pd.to_datetime(values, cache=False, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        pass
    first = values.dropna().iloc[0]
    fmt = guess_datetime_format(str(first))
    for i, v in enumerate(values):
        if v == v and v is not None:
            try:
                pd.to_datetime(str(v), format=fmt)
            except (ValueError, TypeError):
                why = f"is not in the format of the first date ({fmt!r}, from {first!r}): mixed formats"
                raise fail(i, why) from None
    raise fail(0, "does not parse as one format")


def validate_prices(df: pd.DataFrame, where: str = "prices") -> pd.DataFrame:
    """Check a long price frame; raise DataError naming the symbol, field and date of the first problem.

    Returns the frame, with a text column of numbers (a Parquet string column, say) read as numbers."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; have {list(df.columns)}")
    if df.empty:
        return df
    check_symbols(df, where)
    for col in PRICE_FIELDS:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            as_numbers = pd.to_numeric(df[col], errors="coerce")
            bad = df.loc[as_numbers.isna() & df[col].notna()]
            if len(bad) or pd.api.types.is_bool_dtype(df[col]):
                row = bad.iloc[0] if len(bad) else df.iloc[0]
                raise DataError(
                    f"{where}: field {col!r} has dtype {df[col].dtype}, expected numeric "
                    f"(symbol {row['symbol']}, date {row['date']}, value {row[col]!r})"
                )
            df = df.assign(**{col: as_numbers.astype("float64")})
    values = {col: df[col].to_numpy(dtype=np.float64, na_value=np.nan) for col in PRICE_FIELDS}
    for col, v in values.items():
        inf = np.isinf(v)
        if inf.any():
            row = df[inf].iloc[0]
            raise DataError(
                f"{where}: infinite {col} {row[col]} for symbol {row['symbol']} on {row['date']} "
                f"({int(inf.sum())} such rows)"
            )
    for col in ("open", "high", "low", "close"):
        nonpos = values[col] <= 0
        if nonpos.any():
            row = df[nonpos].iloc[0]
            raise DataError(
                f"{where}: non-positive {col} {row[col]} for symbol {row['symbol']} on {row['date']} "
                f"({int(nonpos.sum())} such rows)"
            )
    negative = values["volume"] < 0
    if negative.any():
        row = df[negative].iloc[0]
        raise DataError(f"{where}: negative volume for symbol {row['symbol']} on {row['date']}")
    dup = df.duplicated(["symbol", "date"], keep=False)
    if dup.any():
        row = df[dup].iloc[0]
        raise DataError(
            f"{where}: duplicate date {row['date']} for symbol {row['symbol']} ({int(dup.sum())} duplicated rows)"
        )
    return df


def read_price_file(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as read; DataError for a file with no columns at all (an empty CSV)."""
    if path.suffix == ".csv":
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file: no columns (need {list(REQUIRED_COLUMNS)})") from None
    return pd.read_parquet(path)


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
        df = read_price_file(path)
        if symbols and "symbol" in df.columns:
            df = df[df["symbol"].isin(symbols)]
    else:
        df = pd.read_parquet(path, filters=filters)
    if "date" not in df.columns:
        raise DataError(f"{path}: no 'date' column")
    if "symbol" in df.columns:
        check_symbols(df, str(path))
    df["date"] = parse_dates(df["date"], str(path), df.get("symbol"))
    if start:
        df = df[df["date"] >= pd.Timestamp(start)]
    if end:
        df = df[df["date"] <= pd.Timestamp(end)]
    if symbols:
        absent = sorted(set(symbols) - set(df["symbol"].unique()))
        if absent:
            raise DataError(f"{path}: unknown symbol(s) {absent}")
    if df.empty:
        raise DataError(f"{path}: no price rows" + (f" between {start} and {end}" if start or end else ""))
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
