"""Point-in-time universes: who was an S&P 500 member on each date, and named, versioned symbol lists.

Membership comes from intervals (`symbol, start_date, end_date`; a null end date means "still a member"). A
member is in the index from `start_date` (inclusive) to `end_date` (exclusive): on the day of a change the
replacement is the member, so a rename (FB -> META on 2022-06-09) reads as one continuous membership.

Prices are keyed by today's ticker (Yahoo), the intervals by the ticker of the day. `RENAMES` lists the
ticker changes whose history the price files carry under the new ticker, so META is a member from 2013 (as
FB), not only from 2022. A ticker re-used by an unrelated company (AAL 1996-97 is not American Airlines)
matches only where prices exist for those dates, which is as close as ticker-keyed data can get.

Everything here is causal: the mask for date t uses membership on t and dollar volume up to t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from deepq.data.panel import DataError, Panel

# old ticker -> new ticker: histories the price files hold under the new name (see shared PROVENANCE.md)
RENAMES: dict[str, str] = {
    "FB": "META",
    "ANTM": "ELV",
    "ABC": "COR",
    "COG": "CTRA",
    "RE": "EG",
    "PKI": "RVTY",
    "WLTW": "WTW",
    "NLOK": "GEN",
    "BLL": "BALL",
    "FLT": "CPAY",
    "PEAK": "DOC",
    "DISCA": "WBD",
}


def load_constituents(path: str | Path) -> pd.DataFrame:
    """Membership intervals, validated: symbol, start_date, end_date (datetime64; NaT = still a member)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"constituents file not found: {path}")
    df = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path)
    missing = [c for c in ("symbol", "start_date", "end_date") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {list(df.columns)}")
    out = pd.DataFrame({"symbol": df["symbol"].astype(str)})
    for col in ("start_date", "end_date"):
        try:
            out[col] = pd.to_datetime(df[col])
        except (ValueError, TypeError) as e:
            raise DataError(f"{path}: field {col!r} is not a date ({e})") from None
    if out["start_date"].isna().any():
        row = out[out["start_date"].isna()].iloc[0]
        raise DataError(f"{path}: symbol {row['symbol']} has no start_date")
    bad = out[out["end_date"].notna() & (out["end_date"] < out["start_date"])]
    if len(bad):
        row = bad.iloc[0]
        raise DataError(
            f"{path}: symbol {row['symbol']} ends ({row['end_date'].date()}) before it starts "
            f"({row['start_date'].date()})"
        )
    return out


def _intervals(constituents: pd.DataFrame | str | Path) -> pd.DataFrame:
    return constituents if isinstance(constituents, pd.DataFrame) else load_constituents(constituents)


def membership_mask(
    panel: Panel,
    constituents: pd.DataFrame | str | Path,
    renames: Mapping[str, str] | None = None,
) -> np.ndarray:
    """bool [T, N]: symbol n was an index member on session t (intervals [start, end), renames followed)."""
    cons = _intervals(constituents)
    renames = RENAMES if renames is None else renames
    panel_symbols = set(panel.symbols)
    # an old ticker's intervals count for the new ticker only when the panel lacks the old one
    key = cons["symbol"].map(lambda s: renames.get(s, s) if s not in panel_symbols else s)
    dates = panel.dates.astype("datetime64[D]")
    mask = np.zeros(panel.shape, dtype=bool)
    col = {s: j for j, s in enumerate(panel.symbols)}
    starts = cons["start_date"].to_numpy().astype("datetime64[D]")
    ends = cons["end_date"].to_numpy().astype("datetime64[D]")
    for sym, start, end in zip(key, starts, ends, strict=True):
        j = col.get(sym)
        if j is None:
            continue
        lo = int(np.searchsorted(dates, start, side="left"))
        hi = len(dates) if np.isnat(end) else int(np.searchsorted(dates, end, side="left"))
        mask[lo:hi, j] = True
    return mask


def members_on(constituents: pd.DataFrame | str | Path, date: str | pd.Timestamp) -> list[str]:
    """Tickers (as of that day) that were members on `date`."""
    cons = _intervals(constituents)
    d = pd.Timestamp(date)
    on = (cons["start_date"] <= d) & (cons["end_date"].isna() | (cons["end_date"] > d))
    return sorted(cons.loc[on, "symbol"].unique())


def ever_members(
    constituents: pd.DataFrame | str | Path, start: str | None = None, end: str | None = None
) -> list[str]:
    """Every ticker that was a member at some point in [start, end]: the survivorship-free download list."""
    cons = _intervals(constituents)
    keep = np.ones(len(cons), dtype=bool)
    if start:
        keep &= (cons["end_date"].isna() | (cons["end_date"] > pd.Timestamp(start))).to_numpy()
    if end:
        keep &= (cons["start_date"] <= pd.Timestamp(end)).to_numpy()
    return sorted(cons.loc[keep, "symbol"].unique())


def trailing_median_dollar_volume(panel: Panel, window_days: int = 63, min_periods: int = 20) -> np.ndarray:
    """float [T, N]: median of close x volume over the last `window_days` sessions up to and including t."""
    dv = panel["close"] * panel["volume"]
    frame = pd.DataFrame(dv)
    return frame.rolling(window_days, min_periods=min_periods).median().to_numpy()


def liquidity_mask(
    panel: Panel, min_dollar_volume: float, window_days: int = 63, min_periods: int = 20
) -> np.ndarray:
    """bool [T, N]: trailing median dollar volume (causal) is at least `min_dollar_volume`."""
    med = trailing_median_dollar_volume(panel, window_days, min_periods)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(med, nan=-1.0) >= float(min_dollar_volume)


# ---- named, versioned symbol lists -------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolList:
    name: str
    as_of: str  # the date the list describes (YYYY-MM-DD)
    symbols: tuple[str, ...]
    description: str
    source: str
    path: Path


def _read_list(path: Path) -> SymbolList:
    raw = yaml.safe_load(path.read_text())
    for key in ("name", "as_of", "symbols"):
        if key not in raw:
            raise DataError(f"{path}: symbol list has no {key!r}")
    symbols = [str(s) for s in raw["symbols"]]
    dup = sorted({s for s in symbols if symbols.count(s) > 1})
    if dup:
        raise DataError(f"{path}: duplicate symbol(s) {dup}")
    return SymbolList(
        name=str(raw["name"]),
        as_of=str(raw["as_of"]),
        symbols=tuple(symbols),
        description=str(raw.get("description", "")),
        source=str(raw.get("source", "")),
        path=path,
    )


def list_versions(name: str, root: str | Path) -> list[SymbolList]:
    """Every version of a named list (files `<root>/<name>/<as_of>.yaml`), oldest first."""
    folder = Path(root) / name
    if not folder.is_dir():
        known = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise KeyError(f"unknown symbol list {name!r} in {root}; known: {known}")
    versions = [_read_list(p) for p in sorted(folder.glob("*.yaml"))]
    return sorted(versions, key=lambda v: v.as_of)


def load_symbol_list(name: str, root: str | Path, as_of: str | None = None) -> SymbolList:
    """The latest version of a named list dated on or before `as_of` (default: the latest)."""
    versions = list_versions(name, root)
    if as_of is not None:
        cutoff = str(pd.Timestamp(as_of).date())
        versions = [v for v in versions if v.as_of <= cutoff]
    if not versions:
        raise KeyError(f"symbol list {name!r} has no version dated on or before {as_of}")
    return versions[-1]
