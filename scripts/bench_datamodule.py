"""Our panel datamodule vs pytorch-forecasting's TimeSeriesDataSet on the same panel.

Measured for each, in its own fresh process (so peak memory is not shared): build time, peak memory above the
input (the [T, N, F] float32 panel for us, the long DataFrame for pytorch-forecasting, as each library takes
its input), and the time to draw `--batches` batches of `--batch` windows of `--lookback` sessions.
Ours runs twice: `window` batching (B random (date, stock) windows, what pytorch-forecasting does) and `date`
batching (whole cross-sections: every usable stock of k dates per batch, k = `--batch` / stocks per date so a
batch holds about as many windows; the ranking losses and the cross-stock network train on these). Both are
compared with the peer per window drawn.

The panel has the full shared panel's shape by default (its symbols x sessions, `--features` channels);
feature values are standard normal with each symbol's real listing gaps (NaN before the first bar), because
values do not change either library's speed or memory. `--symbols/--years` run a documented smaller size.

    python scripts/bench_datamodule.py                          # full shared panel shape (needs ../shared/data)
    python scripts/bench_datamodule.py --symbols 100 --years 8  # smaller, e.g. on a shared 2-core box
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssPeak:
    """Peak resident memory while the block runs, sampled every 2 ms (ru_maxrss keeps the loading phase's
    peak, which would hide the library's own)."""

    def __enter__(self) -> RssPeak:
        import ctypes
        import gc
        import threading

        gc.collect()
        with contextlib.suppress(OSError):  # hand freed heap back to the OS: the baseline is what is held
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.base = self.peak = rss_mb()
        self.stop = threading.Event()

        def poll() -> None:
            while not self.stop.is_set():
                self.peak = max(self.peak, rss_mb())
                self.stop.wait(0.002)

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def above_mb(self) -> float:
        return self.peak - self.base


def make_panel(args) -> tuple[np.ndarray, np.ndarray]:
    from deepq.data.panel import load_panel

    base = ROOT.parent / "shared" / "data"
    if args.data == "sample" or not (base / "prices.parquet").exists():
        base = ROOT / "data" / "sample"
    panel = load_panel(base / "prices.parquet", base / "sectors.parquet", base / "nyse_sessions.parquet")
    present = np.isfinite(panel["close"])
    if args.years:
        present = present[-int(252 * args.years) :]
    if args.symbols:
        present = present[:, : args.symbols]
    T, N = present.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, args.features), dtype=np.float32)
    x[~present] = np.nan
    return x, present


def run_ours(args, batching: str = "window") -> dict:
    import torch

    from deepq.dataset.datamodule import PanelDataModule
    from deepq.dataset.folds import Fold

    x, present = make_panel(args)
    labels = np.where(present, 0.0, np.nan).astype(np.float32)
    T = x.shape[0]
    mem = RssPeak().__enter__()
    t0, c0 = time.perf_counter(), time.process_time()
    # date batching: k whole dates per batch, k chosen so a batch holds about --batch windows
    per_date = max(int(present.sum(axis=1).mean()), 1)
    k = max(1, round(args.batch / per_date))
    dm = PanelDataModule(
        x, labels, present, present, lookback=args.lookback, batch_size=args.batch, normalization="robust",
        batching=batching, dates_per_batch=k,
    )  # fmt: skip
    dm.set_fold(Fold(0, (0, T - 2), (T - 2, T - 2), (T - 2, T)))
    dm.to_device(args.device)
    loader = dm.train_dataloader()
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for i, batch in enumerate(loader):
        n += len(batch.y)
        if i + 1 >= args.batches:
            break
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    draw, draw_cpu = time.perf_counter() - t0, time.process_time() - c0
    mem.__exit__()
    return result(build, draw, n, mem.above_mb, x.nbytes / 2**20, len(loader.dataset), build_cpu, draw_cpu)


def result(
    build_s: float,
    draw_s: float,
    n: int,
    above_mb: float,
    input_mb: float,
    windows: int,
    build_cpu_s: float,
    draw_cpu_s: float,
) -> dict:
    """One side's figures, in the same shape for ours and the peer. CPU seconds (this process) are the fair
    measure on a shared machine: wall time there depends on what else runs."""
    return {
        "build_s": build_s,
        "draw_s": draw_s,
        "build_cpu_s": build_cpu_s,
        "draw_cpu_s": draw_cpu_s,
        "ms_per_sample": 1000 * draw_s / n,
        "samples": n,
        "peak_above_input_mb": above_mb,
        "peak_process_mb": peak_mb(),
        "input_mb": input_mb,
        "windows": windows,
    }


def run_pf(args) -> dict:
    import pandas as pd
    from pytorch_forecasting import TimeSeriesDataSet

    x, present = make_panel(args)
    T, N, F = x.shape
    t_idx, s_idx = np.nonzero(present)
    names = [f"f{j}" for j in range(F)]
    frame = pd.DataFrame(x[t_idx, s_idx], columns=names)
    frame["time_idx"] = t_idx
    frame["symbol"] = s_idx.astype(str)
    frame["y"] = np.float32(0.0)
    input_mb = frame.memory_usage(deep=True).sum() / 2**20
    del x
    mem = RssPeak().__enter__()
    t0, c0 = time.perf_counter(), time.process_time()
    ds = TimeSeriesDataSet(
        frame, time_idx="time_idx", target="y", group_ids=["symbol"], max_encoder_length=args.lookback,
        min_encoder_length=args.lookback, max_prediction_length=1, time_varying_unknown_reals=names,
        allow_missing_timesteps=True, target_normalizer=None, scalers={n: None for n in names},
        add_relative_time_idx=False, add_target_scales=False, add_encoder_length=False,
    )  # fmt: skip
    loader = ds.to_dataloader(train=True, batch_size=args.batch, num_workers=0)
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for i, (xb, _) in enumerate(loader):
        n += len(xb["encoder_cont"])
        if i + 1 >= args.batches:
            break
    draw, draw_cpu = time.perf_counter() - t0, time.process_time() - c0
    mem.__exit__()
    return result(build, draw, n, mem.above_mb, input_mb, len(ds), build_cpu, draw_cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="shared", choices=["shared", "sample"])
    p.add_argument("--symbols", type=int, default=None)
    p.add_argument("--years", type=float, default=None)
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--lookback", type=int, default=60)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, choices=["ours", "ours_date", "pf"], help=argparse.SUPPRESS)
    p.add_argument("--skip-peer", action="store_true", help="ours only")
    args = p.parse_args()
    if args.only:  # child process: one library, result as JSON on the last line
        import torch

        torch.set_num_threads(1)
        run = {"ours": run_ours, "ours_date": lambda a: run_ours(a, "date"), "pf": run_pf}[args.only]
        print(json.dumps(run(args)))
        return
    results = {}
    for which in ["ours", "ours_date"] + ([] if args.skip_peer else ["pf"]):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", which]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{which} failed:\n{proc.stderr[-3000:]}")
        results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    x_shape = f"{args.symbols or 'all'} symbols, {args.years or 'all'} years, {args.features} features"
    print(
        f"panel: {x_shape}; lookback {args.lookback}; {args.batches} batches of {args.batch}; device {args.device}"
    )
    for name, r in results.items():
        print(
            f"{name:9s} build {r['build_s']:7.2f} s ({r['build_cpu_s']:.2f} CPU-s)   draw {r['draw_s']:7.2f} s "
            f"({r['draw_cpu_s']:.2f} CPU-s, {r['ms_per_sample']:.4f} ms/sample)   "
            f"peak above input {r['peak_above_input_mb']:8.0f} MB (input {r['input_mb']:.0f} MB, process "
            f"{r['peak_process_mb']:.0f} MB)   {r['windows']:,} windows"
        )
    for ours in ("ours", "ours_date") if "pf" in results else ():
        o, f = results[ours], results["pf"]
        # per window drawn: a date batch holds about, not exactly, --batch windows
        per_window = f["ms_per_sample"] / o["ms_per_sample"]
        per_window_cpu = (f["draw_cpu_s"] / f["samples"]) / (o["draw_cpu_s"] / o["samples"])
        print(
            f"ratios (pytorch-forecasting / {ours}): build {f['build_s'] / o['build_s']:.1f}x, "
            f"per window drawn {per_window:.1f}x, peak memory above input "
            f"{f['peak_above_input_mb'] / max(o['peak_above_input_mb'], 1):.1f}x; per CPU-second: build "
            f"{f['build_cpu_s'] / o['build_cpu_s']:.1f}x, per window drawn {per_window_cpu:.1f}x"
        )
    o = results["ours"]
    print(
        f"ours: peak above input = {o['peak_above_input_mb'] / o['input_mb']:.2f}x the panel's float32 size"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
