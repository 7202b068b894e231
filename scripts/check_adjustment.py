"""Our backward adjustment vs Alpha Vantage's own adjusted close, on the full shared raw data.

Rebuilds adjusted closes from `prices_raw_alphavantage.parquet` (raw) + `actions.parquet` (dividends,
splits) with deepq.data.actions, under both dividend conventions, and prints the median, 99th percentile and
worst relative difference to AV's `adjusted_close`, and the symbols beyond the test tolerance.

    python scripts/check_adjustment.py [--shared ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from deepq.data.actions import adjust, attach_actions, compare_adjusted

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-3  # per-symbol worst relative difference, as tested in tests/data/test_actions.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--json")
    args = ap.parse_args()
    raw = pd.read_parquet(Path(args.shared) / "prices_raw_alphavantage.parquet")
    actions = pd.read_parquet(Path(args.shared) / "actions.parquet")
    events = attach_actions(raw.drop(columns=["dividend_amount", "split_coefficient"]), actions)
    out = {}
    for method in ("ex_close", "prev_close"):
        adj = adjust(events, method=method, invalid="ignore")  # type: ignore[arg-type]
        rel = (adj["close"] / adj["adjusted_close"] - 1).abs()
        per = compare_adjusted(adj["close"], adj["adjusted_close"], adj["symbol"])
        beyond = per[per["worst_rel_diff"] > TOLERANCE].sort_values("worst_rel_diff", ascending=False)
        out[method] = {
            "rows": int(rel.notna().sum()),
            "symbols": len(per),
            "median_rel_diff": float(rel.median()),
            "p99_rel_diff": float(rel.quantile(0.99)),
            "worst_rel_diff": float(rel.max()),
            "worst_symbol": str(per["worst_rel_diff"].idxmax()),
            "symbols_within_tolerance": int((per["worst_rel_diff"] <= TOLERANCE).sum()),
            "beyond_tolerance": {s: round(float(v), 4) for s, v in beyond["worst_rel_diff"].head(15).items()},
        }
        o = out[method]
        print(
            f"{method:>10}: median {o['median_rel_diff']:.2e}  p99 {o['p99_rel_diff']:.2e}  worst {o['worst_rel_diff']:.3g} "
            f"({o['worst_symbol']}); {o['symbols_within_tolerance']}/{o['symbols']} symbols within {TOLERANCE:g}"
        )
        print(f"            beyond: {o['beyond_tolerance']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
