"""Benchmark: the full shared panel (~477 symbols x 24 years) from the Parquet cache vs per-symbol CSVs with pandas.

One timed run of each, same machine, same process, warm OS page cache for both (each file's bytes are read
once untimed first); wall and CPU time (CPU counts every thread of this process, so on a busy shared machine
it says what the load costs when wall time is inflated by other processes): `load_cache_panel` (what `data=cache` does) against reading one CSV per symbol with
pandas and pivoting to the same date x symbol arrays. Prints both times and the ratio; the target is the
full panel in under 2 s. The two panels are checked equal.

    python scripts/bench_cache.py [--cache DIR] [--shared ../shared/data] [--json out.json]

If the cache is empty it is filled first from the shared file (`deepq data import`, not timed); the CSVs
are written to a temporary folder (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deepq.data.cache import ParquetStore, load_cache_panel
from deepq.data.panel import PRICE_FIELDS, Panel

ROOT = Path(__file__).resolve().parents[1]
START = "2000-01-01"


def csv_panel(folder: Path, sessions: np.ndarray) -> Panel:
    """The pandas way: one read_csv per symbol, concat, pivot each field onto the session calendar."""
    frames = [pd.read_csv(p, parse_dates=["date"]) for p in sorted(folder.glob("*.csv"))]
    long = pd.concat(frames, ignore_index=True)
    long = long[long["date"] >= START]
    dates = sessions[
        (sessions >= long["date"].min().to_datetime64()) & (sessions <= long["date"].max().to_datetime64())
    ]
    fields = {}
    for f in PRICE_FIELDS:
        wide = long.pivot(index="date", columns="symbol", values=f).reindex(pd.DatetimeIndex(dates))
        fields[f] = wide.to_numpy(dtype=np.float64)
    symbols = tuple(wide.columns)
    types = long.drop_duplicates("symbol").set_index("symbol")["asset_type"].to_dict()
    return Panel(dates=dates.astype("datetime64[D]"), symbols=symbols, fields=fields, asset_types=types)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", default=os.environ.get("DEEPQ_CACHE") or str(ROOT / "cache" / "market"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    store = ParquetStore(args.cache)
    if not store.symbols() and not (Path(args.shared) / "prices.parquet").exists():
        print(
            f"bench_cache: skipped (cache {store.root} is empty and {args.shared}/prices.parquet is absent)"
        )
        return
    if not store.symbols():
        from deepq.tasks.data import run

        print(f"cache {store.root} is empty: importing {args.shared}/prices.parquet (not timed)")
        os.environ["DEEPQ_CACHE"] = str(store.root)
        run(["import", str(Path(args.shared) / "prices.parquet")])
    sessions_path = store.meta_dir / "sessions_XNYS.parquet"
    sessions = pd.read_parquet(sessions_path)["date"].to_numpy().astype("datetime64[ns]")

    with tempfile.TemporaryDirectory(prefix="deepq-bench-csv-") as tmp:
        folder = Path(tmp)
        for sym in store.symbols():
            df = store.read_symbol(sym)
            assert df is not None
            df[["date", "symbol", *PRICE_FIELDS, "asset_type"]].to_csv(folder / f"{sym}.csv", index=False)
        # warm the OS page cache for both, so the timing compares decoding, not the disk
        for p in folder.glob("*.csv"):
            p.read_bytes()
        for p in store.prices_dir.glob("*.parquet"):
            p.read_bytes()

        t0, c0 = time.perf_counter(), time.process_time()
        panel = load_cache_panel(store.root, start=START, sessions=sessions_path)
        t_cache, c_cache = time.perf_counter() - t0, time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        ref = csv_panel(folder, sessions)
        t_csv, c_csv = time.perf_counter() - t0, time.process_time() - c0

    assert panel.symbols == ref.symbols, "the two panels hold different symbols"
    np.testing.assert_array_equal(panel.dates, ref.dates)
    for f in PRICE_FIELDS:
        np.testing.assert_allclose(panel[f], ref[f], rtol=1e-12, equal_nan=True)

    T, N = panel.shape
    rows = int(np.isfinite(panel["close"]).sum())
    figures = {
        "symbols": N,
        "sessions": T,
        "rows": rows,
        "cache_s": round(t_cache, 3),
        "csv_pandas_s": round(t_csv, 3),
        "cache_cpu_s": round(c_cache, 3),
        "csv_pandas_cpu_s": round(c_csv, 3),
        "ratio": round(t_csv / t_cache, 1),
        "target_s": 2.0,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    print(f"full panel: {N} symbols x {T} sessions ({rows:,} bars)")
    verdict = "OK" if t_cache < 2.0 else "OVER"
    print(
        f"  Parquet cache (load_cache_panel): {t_cache:.3f} s wall, {c_cache:.3f} s CPU  {verdict} the 2 s target"
    )
    print(f"  per-symbol CSVs (pandas):         {t_csv:.3f} s wall, {c_csv:.3f} s CPU")
    print(
        f"  ratio: cache is {t_csv / t_cache:.1f}x faster  (cpus={os.cpu_count()}, load avg {figures['load_avg_1m']})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
