"""Fundamentals and analyst/insider events from Yahoo Finance through yfinance (network at fetch time only;
tests replay recorded responses).

- `YahooEarnings`: reported earnings with EPS estimate, actual and surprise. Yahoo stamps each with the
  announcement time; an announcement at or after the 16:00 close is usable from the next day. Scheduled
  future dates (no reported EPS yet) are dropped: when the schedule itself became public is unknown.
- `YahooRatings`: analyst upgrades/downgrades (`epochGradeDate`, UTC): +1 up, -1 down, 0 otherwise.
- `YahooInsider`: insider transactions. Yahoo gives the transaction date, not the Form 4 filing date; the
  SEC allows two business days to file, so a transaction is usable `lag_days` (default 4 calendar days)
  later. Purchases count +value, sales -value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepq.features.sources.base import available_date

COLUMNS_EARNINGS = ["eps_estimate", "eps_actual", "eps_surprise_pct"]


def _ticker(symbol: str) -> Any:
    import yfinance as yf

    return yf.Ticker(symbol)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in ["symbol", "available", *columns]}
        ).astype({"symbol": object, "available": "datetime64[ns]"})
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "available"], kind="stable")


@dataclass(frozen=True)
class YahooEarnings:
    name: str = "earnings"
    limit: int = 100
    # the last surprise holds until the next report (~63 sessions); a name that misses one turns NaN
    max_age_sessions: int | None = 95
    ticker: Callable[[str], Any] = _ticker

    def events(self, symbols: Sequence[str]) -> pd.DataFrame:
        frames = []
        for sym in symbols:
            df = self.ticker(sym).get_earnings_dates(limit=self.limit)
            if df is None or df.empty:
                continue
            df = df.rename(
                columns={
                    "EPS Estimate": "eps_estimate",
                    "Reported EPS": "eps_actual",
                    "Surprise(%)": "eps_surprise_pct",
                }
            )
            df = df[df["eps_actual"].notna()]
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": sym,
                        "available": available_date(pd.Series(df.index)).to_numpy(),
                        "published": pd.Series(df.index).astype(str).to_numpy(),
                        **{c: pd.to_numeric(df[c], errors="coerce").to_numpy() for c in COLUMNS_EARNINGS},
                    }
                )
            )
        return _concat(frames, [*COLUMNS_EARNINGS, "published"])


ACTION_SCORE = {"up": 1.0, "down": -1.0}


@dataclass(frozen=True)
class YahooRatings:
    name: str = "analyst_ratings"
    ticker: Callable[[str], Any] = _ticker

    def events(self, symbols: Sequence[str]) -> pd.DataFrame:
        frames = []
        for sym in symbols:
            df = self.ticker(sym).get_upgrades_downgrades()
            if df is None or df.empty:
                continue
            stamps = pd.Series(pd.DatetimeIndex(df.index).tz_localize("UTC"))
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": sym,
                        "available": available_date(stamps).to_numpy(),
                        "rating_change": df["Action"].map(ACTION_SCORE).fillna(0.0).to_numpy(),
                        "firm": df["Firm"].to_numpy(),
                    }
                )
            )
        return _concat(frames, ["rating_change", "firm"])


@dataclass(frozen=True)
class YahooInsider:
    name: str = "insider_transactions"
    lag_days: int = 4
    ticker: Callable[[str], Any] = _ticker

    def events(self, symbols: Sequence[str]) -> pd.DataFrame:
        frames = []
        for sym in symbols:
            df = self.ticker(sym).get_insider_transactions()
            if df is None or df.empty:
                continue
            text = df["Text"].fillna("").str.lower()
            sign = np.where(
                text.str.contains("purchase|buy"), 1.0, np.where(text.str.contains("sale|sold"), -1.0, 0.0)
            )
            value = pd.to_numeric(df["Value"], errors="coerce").fillna(0.0).to_numpy()
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": sym,
                        "available": available_date(df["Start Date"], self.lag_days).to_numpy(),
                        "insider_net_value": sign * value,
                        "insider_shares": sign
                        * pd.to_numeric(df["Shares"], errors="coerce").fillna(0.0).to_numpy(),
                    }
                )
            )
        return _concat(frames, ["insider_net_value", "insider_shares"])
