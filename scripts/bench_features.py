"""Benchmark: the whole feature library over the full shared panel (≈470 symbols × 24 years).

Prints wall time and peak memory for every registered feature, and the ratio against a peer: a per-symbol
loop that computes the same indicators over one symbol's pandas DataFrame at a time with pandas rolling
windows and TA-Lib calls (pandas-ta is not installed; this is the usual shape of such code). The peer covers
the TA-Lib technical family, Alpha158 rolling operators it can express with pandas, and the range-based
volatilities; the ratio compares both sides on exactly that subset.

    nice -n 10 .venv/bin/python scripts/bench_features.py [--start 2000-01-01] [--symbols N]

Features are computed one at a time and reduced to a checksum, so memory is the panel plus the working set
of one feature; the full float32 [T, N, F] array a training run would hold is reported as a size.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import talib

from deepq.data.panel import load_panel
from deepq.features.registry import compute_features, registry, resolve

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peer_one_symbol(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The peer: the subset's indicators for one symbol's DataFrame (open/high/low/close/volume)."""
    o, h, lo, c, v = (df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))
    s = df["close"]
    out: dict[str, np.ndarray] = {}
    for p in (7, 21):
        out[f"rsi_{p}"] = talib.RSI(c, p) / 100
    out["cmo_14"] = talib.CMO(c, 14) / 100
    out["cci_20"] = talib.CCI(h, lo, c, 20) / 100
    out["willr_14"] = talib.WILLR(h, lo, c, 14) / 100
    out["mfi_14"] = talib.MFI(h, lo, c, v, 14) / 100
    out["ultosc"] = talib.ULTOSC(h, lo, c) / 100
    for f in ("ADX", "ADXR", "DX", "PLUS_DI", "MINUS_DI"):
        out[f"{f.lower()}_14"] = getattr(talib, f)(h, lo, c, 14) / 100
    k, d = talib.STOCH(h, lo, c, fastk_period=14)
    out["stoch_k"], out["stoch_d"] = k / 100, d / 100
    k, d = talib.STOCHF(h, lo, c, fastk_period=14)
    out["stochf_k"], out["stochf_d"] = k / 100, d / 100
    k, d = talib.STOCHRSI(c, 14)
    out["stochrsi_k"], out["stochrsi_d"] = k / 100, d / 100
    dn, up = talib.AROON(h, lo, 25)
    out["aroon_down_25"], out["aroon_up_25"] = dn / 100, up / 100
    out["aroonosc_25"] = talib.AROONOSC(h, lo, 25) / 100
    out["bop"] = talib.BOP(o, h, lo, c)
    out["ppo"] = talib.PPO(c, 12, 26) / 100
    out["trix_15"] = talib.TRIX(c, 15) / 100
    out["natr_14"], out["natr_5"] = talib.NATR(h, lo, c, 14) / 100, talib.NATR(h, lo, c, 5) / 100
    out["linreg_angle_20"] = talib.LINEARREG_ANGLE(c, 20) / 90
    for n in (3, 10, 20, 60, 120):
        out[f"roc_{n}"] = talib.ROCP(c, n)
    m, sig, hist = talib.MACD(c)
    out["macd"], out["macd_signal"], out["macd_hist"] = m / c, sig / c, hist / c
    out["apo"] = talib.APO(c, 12, 26) / c
    out["mom_10"] = talib.MOM(c, 10) / c
    out["trange"] = talib.TRANGE(h, lo, c) / c
    out["stddev_20"] = talib.STDDEV(c, 20) / c
    out["linreg_slope_20"] = talib.LINEARREG_SLOPE(c, 20) / c
    for n in (12, 26, 50, 200):
        out[f"ema_gap_{n}"] = c / talib.EMA(c, n) - 1
    for f, n in (
        ("WMA", 20),
        ("DEMA", 20),
        ("TEMA", 20),
        ("TRIMA", 20),
        ("KAMA", 30),
        ("T3", 5),
        ("TSF", 20),
    ):
        out[f"{f.lower()}_gap_{n}"] = c / getattr(talib, f)(c, n) - 1
    out["midpoint_gap_14"] = c / talib.MIDPOINT(c, 14) - 1
    out["midprice_gap_14"] = c / talib.MIDPRICE(h, lo, 14) - 1
    out["sar_gap"] = c / talib.SAR(h, lo, 0.02, 0.2) - 1
    for n, lag in ((20, 5), (50, 10), (200, 20)):
        ma = s.rolling(n).mean()
        out[f"sma_slope_{n}"] = (ma / ma.shift(lag) - 1).to_numpy()
    ema = pd.Series(talib.EMA(c, 20))
    out["ema_slope_20"] = (ema / ema.shift(5) - 1).to_numpy()
    out["sma_cross_50_200"] = (s.rolling(50).mean() / s.rolling(200).mean() - 1).to_numpy()
    u, mid, dd = talib.BBANDS(c, 20, 2, 2)
    out["bb_pctb_20"], out["bb_width_20"] = (c - dd) / (u - dd), (u - dd) / mid
    e, a = talib.EMA(c, 20), talib.ATR(h, lo, c, 10)
    out["keltner_pos_20"], out["keltner_width_20"] = (c - e) / (2 * a), 4 * a / e
    for n in (20, 55):
        hh, ll = df["high"].rolling(n).max(), df["low"].rolling(n).min()
        out[f"donchian_pos_{n}"] = ((s - ll) / (hh - ll)).to_numpy()
        out[f"donchian_width_{n}"] = ((hh - ll) / s).to_numpy()
    vs = df["volume"].rolling(21).sum()
    obv, ad = pd.Series(talib.OBV(c, v)), pd.Series(talib.AD(h, lo, c, v))
    out["obv_chg_21"] = (obv - obv.shift(21)).to_numpy() / vs.to_numpy()
    out["ad_chg_21"] = (ad - ad.shift(21)).to_numpy() / vs.to_numpy()
    out["adosc"] = talib.ADOSC(h, lo, c, v, 3, 10) / talib.SMA(v, 10)
    for f in ("CDLDOJI", "CDLENGULFING", "CDLHAMMER", "CDLSHOOTINGSTAR", "CDLHARAMI", "CDL3OUTSIDE"):
        out[f.lower()] = getattr(talib, f)(o, h, lo, c) / 100
    # Alpha158 rolling operators that pandas expresses directly
    dv = df["volume"]
    for w in (5, 20, 60):
        r = s.rolling(w)
        out[f"a158_ma_{w}"] = (r.mean() / s).to_numpy()
        out[f"a158_std_{w}"] = (r.std() / s).to_numpy()
        out[f"a158_max_{w}"] = (df["high"].rolling(w).max() / s).to_numpy()
        out[f"a158_min_{w}"] = (df["low"].rolling(w).min() / s).to_numpy()
        out[f"a158_qtlu_{w}"] = (r.quantile(0.8) / s).to_numpy()
        out[f"a158_qtld_{w}"] = (r.quantile(0.2) / s).to_numpy()
        out[f"a158_rank_{w}"] = r.rank(pct=True).to_numpy()
        out[f"a158_corr_{w}"] = s.rolling(w).corr(np.log1p(dv)).to_numpy()
        out[f"a158_vma_{w}"] = (dv.rolling(w).mean() / (dv + 1e-12)).to_numpy()
        out[f"a158_vstd_{w}"] = (dv.rolling(w).std() / (dv + 1e-12)).to_numpy()
    # range-based volatility
    hl = np.log(df["high"] / df["low"])
    co = np.log(df["close"] / df["open"])
    for w in (10, 21, 63):
        out[f"parkinson_{w}"] = np.sqrt((hl**2 / (4 * np.log(2))).rolling(w).mean()).to_numpy()
        out[f"garman_klass_{w}"] = np.sqrt(
            (0.5 * hl**2 - (2 * np.log(2) - 1) * co**2).rolling(w).mean().clip(lower=0)
        ).to_numpy()
    return out


def run_peer(panel, names: list[str]) -> float:
    checksum = 0.0
    for j, _sym in enumerate(panel.symbols):
        rows = np.flatnonzero(np.isfinite(panel["close"][:, j]))
        if len(rows) < 2:
            continue
        df = pd.DataFrame({k: panel[k][rows, j] for k in ("open", "high", "low", "close", "volume")})
        res = peer_one_symbol(df)
        checksum += float(np.nansum([np.nansum(res[n]) for n in names]))
    return checksum


_PANEL = None


def _run(panel, specs) -> tuple[dict[str, float], int]:
    per_family: dict[str, float] = {}
    finite = 0
    for spec in specs:
        ts = time.process_time()
        arr = compute_features(panel, [spec])
        finite += int(np.isfinite(arr).sum())
        per_family[spec.family] = per_family.get(spec.family, 0.0) + time.process_time() - ts
        del arr
    return per_family, finite


def _compute_chunk(names: list[str]) -> tuple[dict[str, float], int]:
    return _run(_PANEL, resolve(names))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2000-01-01")
    ap.add_argument("--symbols", type=int, default=0, help="first N symbols only (0 = all)")
    ap.add_argument("--workers", type=int, default=2, help="processes computing disjoint feature subsets")
    ap.add_argument("--chunk", type=int, default=30, help="most features per task handed to a worker")
    args = ap.parse_args()
    if not (SHARED / "prices.parquet").exists():
        raise SystemExit(f"{SHARED}/prices.parquet not found")
    t0 = time.perf_counter()
    symbols = None
    if args.symbols:
        all_syms = sorted(pd.read_parquet(SHARED / "prices.parquet", columns=["symbol"])["symbol"].unique())
        symbols = [s for s in all_syms if s != "^GSPC"][: args.symbols] + ["SPY"]
    panel = load_panel(
        SHARED / "prices.parquet",
        SHARED / "sectors.parquet",
        SHARED / "nyse_sessions.parquet",
        symbols=symbols,
        start=args.start,
    )
    t_load = time.perf_counter() - t0
    T, N = panel.shape
    rss_load = peak_rss_mb()
    specs = list(registry().values())
    print(
        f"panel: {N} symbols x {T} sessions ({panel.dates[0]} .. {panel.dates[-1]}), load {t_load:.1f} s, "
        f"peak RSS after load {rss_load:.0f} MB"
    )

    # the whole library, one feature at a time (each vectorised over the panel), split over worker processes
    t0 = time.perf_counter()
    if args.workers > 1:
        ctx = mp.get_context("fork")  # children share the loaded panel copy-on-write
        global _PANEL
        _PANEL = panel
        # contiguous runs of one family in registry order (related features sit together and share memoised
        # intermediates), handed out as workers free up, so the load balances without splitting shared work
        chunks: list[list] = []
        for spec in specs:
            if not chunks or len(chunks[-1]) >= args.chunk or chunks[-1][-1].family != spec.family:
                chunks.append([])
            chunks[-1].append(spec)
        chunks.sort(key=len, reverse=True)  # big tasks first, small ones fill in at the end
        with ctx.Pool(args.workers) as pool:
            results = list(pool.imap_unordered(_compute_chunk, [[s.name for s in c] for c in chunks]))
    else:
        results = [_run(panel, specs)]
    t_all = time.perf_counter() - t0
    per_family: dict[str, float] = {}
    for fam_times, _ in results:
        for fam, sec in fam_times.items():
            per_family[fam] = per_family.get(fam, 0.0) + sec
    gc.collect()
    rss_all = peak_rss_mb()
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    full_gb = T * N * len(specs) * 4 / 1e9
    print(
        f"library: {len(specs)} features in {t_all:.1f} s wall with {args.workers} worker process(es) "
        f"(target < 30 s on 2 cores); CPU-seconds summed {sum(per_family.values()):.1f} s; peak RSS parent "
        f"{rss_all:.0f} MB, largest worker {rss_child:.0f} MB; a float32 [T, N, F] array of all of them is {full_gb:.1f} GB"
    )
    for fam, sec in sorted(per_family.items(), key=lambda kv: -kv[1]):
        print(f"  {fam:<16} {sec:6.1f} s")

    # the peer comparison on the subset both sides compute
    with np.errstate(all="ignore"):
        probe = peer_one_symbol(
            pd.DataFrame({k: panel[k][-300:, 0] for k in ("open", "high", "low", "close", "volume")})
        )
    subset = [n for n in probe if n in registry()]
    ours_specs = resolve(subset)
    # both sides single-process, in the same run; CPU-seconds too, as wall time on a shared machine is noisy
    t0, c0 = time.perf_counter(), time.process_time()
    compute_features(panel, ours_specs)
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    with np.errstate(all="ignore"):
        run_peer(panel, subset)
    t_peer, c_peer = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"subset of {len(subset)} indicators: ours {t_ours:.1f} s wall / {c_ours:.1f} CPU-s, per-symbol "
        f"pandas/TA-Lib loop {t_peer:.1f} s wall / {c_peer:.1f} CPU-s; ratio peer/ours {t_peer / t_ours:.2f}x "
        f"wall, {c_peer / c_ours:.2f}x CPU"
    )
    print(f"peak RSS overall {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
