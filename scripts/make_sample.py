"""Cut the embedded real sample from ../shared/data: ~33 stocks (3 per GICS sector), SPY, QQQ, the sector ETFs and
^GSPC, daily 2005-01-03 -> 2024-06-28, plus the matching sectors, NYSE sessions and point-in-time membership.

Stocks: per sector, the 3 names with the highest median dollar volume over 2005-2024 among those with a full
history from 2005 (a deterministic, documented choice; it favours large caps, as users' first universes do).
Run: python scripts/make_sample.py [--shared ../shared/data] [--out data/sample]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

START, END = "2005-01-01", "2024-06-28"
ETFS = [
    "SPY",
    "QQQ",
    "XLK",
    "XLF",
    "XLE",
    "XLV",
    "XLI",
    "XLP",
    "XLY",
    "XLU",
    "XLB",
    "XLRE",
    "XLC",
    "TLT",
    "GLD",
]
PER_SECTOR = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "sample"))
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    prices = pd.read_parquet(shared / "prices.parquet")
    prices["date"] = pd.to_datetime(prices["date"])
    prices = prices[(prices["date"] >= START) & (prices["date"] <= END)]
    sectors = pd.read_parquet(shared / "sectors.parquet")

    stocks = prices[prices["asset_type"] == "stock"]
    first = stocks.groupby("symbol")["date"].min()
    full = first[first <= pd.Timestamp("2005-01-31")].index
    dv = (
        (stocks["close"] * stocks["volume"])
        .groupby(stocks["symbol"])
        .median()
        .loc[full]
        .rename("dollar_volume")
    )
    ranked = sectors.merge(dv, left_on="symbol", right_index=True).sort_values(
        "dollar_volume", ascending=False
    )
    chosen = ranked.groupby("gics_sector").head(PER_SECTOR)["symbol"].tolist()
    keep = sorted(chosen) + ETFS + ["^GSPC"]

    sample = prices[prices["symbol"].isin(keep)].sort_values(["symbol", "date"]).reset_index(drop=True)
    sample["date"] = sample["date"].dt.date
    sample.to_parquet(
        out / "prices.parquet",
        index=False,
        compression="zstd",
        compression_level=19,
        use_byte_stream_split=["open", "high", "low", "close", "adj_close"],
    )
    sectors[sectors["symbol"].isin(chosen)].to_parquet(out / "sectors.parquet", index=False)
    sessions = pd.read_parquet(shared / "nyse_sessions.parquet")
    sessions[pd.to_datetime(sessions["date"]) >= "2004-01-01"].to_parquet(
        out / "nyse_sessions.parquet", index=False
    )
    cons = pd.read_parquet(shared / "constituents.parquet")
    cons[cons["symbol"].isin(chosen)].to_parquet(out / "constituents.parquet", index=False)
    print(f"{len(chosen)} stocks, {len(keep) - len(chosen)} ETFs/index, {len(sample):,} rows -> {out}")
    print(ranked[ranked["symbol"].isin(chosen)][["symbol", "gics_sector"]].to_string(index=False))


if __name__ == "__main__":
    main()
