"""File-backed sources: macro series in FRED/ALFRED CSV format, scored news headlines, and options flow.

FRED CSV (`observation_date,<SERIES>` or `DATE,<SERIES>`): the date is the *period* the value describes,
not when it was published, so each series needs a release lag (`release_lag_days`, e.g. 1 for daily market
series such as DGS10, ~35 for monthly UNRATE/CPI). An ALFRED vintage file with a `realtime_start` column
is used as-is: that column *is* the publication date. FRED writes missing values as `.`.

News sentiment CSV: `published_at` (ISO timestamp with offset), `symbol`, `sentiment` in [-1, 1],
optional `relevance` (weight, default 1) and `headline`. Usable per the close rule in `base.available_date`.

Options-flow CSV schema (one row per symbol and trade date, end-of-day data):
`date, symbol, call_volume, put_volume, call_oi, put_oi, iv_30` (iv_30 optional, annualised decimal).
End-of-day options data settles after the equity close, so a row is usable from the next day (lag 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepq.features.sources.base import MARKET, available_date

OPTIONS_COLUMNS = ("date", "symbol", "call_volume", "put_volume", "call_oi", "put_oi")


def _require(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; have {list(df.columns)}")


@dataclass(frozen=True)
class FredCsv:
    path: str | Path
    release_lag_days: int = 1
    name: str = "macro"
    # sessions a value is held past its publication; None = `freshness.fill_limit_sessions` (daily series).
    # A weekly or monthly series needs its cadence plus slack here (e.g. 7 weekly, 25 monthly).
    max_age_sessions: int | None = None

    def events(self, symbols: Sequence[str] = ()) -> pd.DataFrame:
        path = Path(self.path)
        df = pd.read_csv(path, na_values=["."])
        date_col = next((c for c in ("observation_date", "DATE", "date") if c in df.columns), None)
        if date_col is None:
            raise ValueError(f"{path}: no observation_date/DATE column; have {list(df.columns)}")
        if "realtime_start" in df.columns:  # ALFRED vintages: the publication date is given
            value_cols = [c for c in df.columns if c not in (date_col, "realtime_start", "realtime_end")]
            available = available_date(df["realtime_start"])
        else:
            value_cols = [c for c in df.columns if c != date_col]
            available = available_date(df[date_col], self.release_lag_days)
        out = pd.DataFrame(
            {
                "symbol": MARKET,
                "available": available.to_numpy(),
                "observation_date": pd.to_datetime(df[date_col]).to_numpy(),
            }
        )
        for c in value_cols:
            out[c.lower()] = pd.to_numeric(df[c], errors="coerce").to_numpy()
        # FRED's '.' (no value, e.g. a holiday) is not an observation
        out = out.dropna(subset=[c.lower() for c in value_cols], how="all")
        # a vintage published on the same day as an older one supersedes it: keep the order stable
        return out.sort_values(["available", "observation_date"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class NewsSentimentCsv:
    path: str | Path
    name: str = "news_sentiment"

    def events(self, symbols: Sequence[str] = ()) -> pd.DataFrame:
        path = Path(self.path)
        df = pd.read_csv(path)
        _require(df, ("published_at", "symbol", "sentiment"), path)
        if symbols:
            df = df[df["symbol"].isin(symbols)]
        published = pd.to_datetime(df["published_at"], utc=True)
        weight = pd.to_numeric(df["relevance"], errors="coerce").fillna(1.0) if "relevance" in df else 1.0
        sentiment = pd.to_numeric(df["sentiment"], errors="coerce").clip(-1, 1)
        out = pd.DataFrame(
            {
                "symbol": df["symbol"].to_numpy(),
                "available": available_date(published).to_numpy(),
                "sentiment": sentiment.to_numpy(),
                "weighted_sentiment": (sentiment * weight).to_numpy(),
                "weight": np.broadcast_to(np.asarray(weight, dtype=float), len(df)).copy(),
                "count": 1.0,
            }
        )
        return out.sort_values(["symbol", "available"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class OptionsFlowCsv:
    path: str | Path
    lag_days: int = 1
    name: str = "options_flow"
    max_age_sessions: int | None = None  # daily data: `freshness.fill_limit_sessions`

    def events(self, symbols: Sequence[str] = ()) -> pd.DataFrame:
        path = Path(self.path)
        df = pd.read_csv(path)
        _require(df, OPTIONS_COLUMNS, path)
        if symbols:
            df = df[df["symbol"].isin(symbols)]
        num = {c: pd.to_numeric(df[c], errors="coerce") for c in OPTIONS_COLUMNS[2:]}
        bad = (pd.DataFrame(num) < 0).any(axis=1)
        if bad.any():
            row = df[bad].iloc[0]
            raise ValueError(f"{path}: negative volume/open interest for {row['symbol']} on {row['date']}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = pd.DataFrame(
                {
                    "symbol": df["symbol"].to_numpy(),
                    "available": available_date(df["date"], self.lag_days).to_numpy(),
                    "put_call_volume": np.log1p(num["put_volume"]) - np.log1p(num["call_volume"]),
                    "put_call_oi": np.log1p(num["put_oi"]) - np.log1p(num["call_oi"]),
                    "options_volume": np.log1p(num["put_volume"] + num["call_volume"]),
                    "iv_30": pd.to_numeric(df["iv_30"], errors="coerce") if "iv_30" in df else np.nan,
                }
            )
        return out.sort_values(["symbol", "available"], kind="stable").reset_index(drop=True)
