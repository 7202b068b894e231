"""Training throughput: our TFT vs pytorch-forecasting's TFT, our DeepAR vs GluonTS's torch DeepAR, and our
cross-stock network (MASTER) on whole-date batches, which has no installable peer.

Same panel (the embedded sample's features, or the full shared panel with --data shared), same hidden size,
lookback, batch size, thread count and precision (`--precision bf16` autocasts every model). One training step = draw a batch from the model's own data pipeline
(except GluonTS, see below), forward, loss, backward, optimiser step. Reported: training samples/s after
warm-up steps, the data-loading share of a step, and the ratio ours / peer, all measured in this one run.

GluonTS's network is fed pre-built tensors of the right shapes (its transformation chain is not timed), which
flatters it; pytorch-forecasting is timed with its own TimeSeriesDataSet loader, as a user would run it.

    python scripts/bench_train.py                      # CPU, 1 thread, sample panel
    python scripts/bench_train.py --device cuda --threads 8 --steps 200   # on a GPU machine
    python scripts/bench_train.py --only ours --precision bf16 --compile  # scripts/gpu_check.sh uses this
    python scripts/bench_train.py --only none --eval-windows 20000 --data shared  # TFT inference only
    python scripts/bench_train.py --only ours --profile /tmp/prof   # + torch.profiler traces and op tables
    python scripts/bench_train.py --only master --lookback 1 --data shared   # the benchmarked network's step

`--only master` trains MasterNet with the per-date IC loss on `--dates-per-batch` whole dates per batch
(every stock of a date, as `datamodule.batching=date`); its samples are the windows of a batch, so the rate
moves with the number of stocks a date holds.

--eval-windows N also times our TFT's inference over N windows of the panel's last year in evaluation order
(symbol by symbol, as NeuralModel.predict runs a fold): each distinct window step through the variable
selection once (the default in eager inference) vs the plain pass over every (window, step) row that tracing
and export record. Windows per CPU-second, and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deepq.data.panel import load_panel  # noqa: E402
from deepq.dataset.covariates import sector_ids  # noqa: E402
from deepq.dataset.datamodule import PanelDataModule  # noqa: E402
from deepq.dataset.folds import Fold  # noqa: E402
from deepq.dataset.labels import forward_return  # noqa: E402
from deepq.models.deepar import DeepARNet  # noqa: E402
from deepq.models.heads import DistributionHead, PointHead, RankHead  # noqa: E402
from deepq.models.master import MasterNet  # noqa: E402
from deepq.models.tft import TFTNet  # noqa: E402
from deepq.training.module import ForecastModule, batch_inputs  # noqa: E402

warnings.filterwarnings("ignore")


def load_data(which: str, n_symbols: int | None, years: float | None):
    base = ROOT / "data" / "sample" if which == "sample" else ROOT.parent / "shared" / "data"
    if not (base / "prices.parquet").exists():
        base = ROOT / "data" / "sample"  # offline fallback
    panel = load_panel(base / "prices.parquet", base / "sectors.parquet", base / "nyse_sessions.parquet")
    if n_symbols or years:
        keep = list(panel.symbols[:n_symbols]) if n_symbols else list(panel.symbols)
        start = str(panel.dates[-1] - np.timedelta64(int(365 * years), "D")) if years else None
        panel = load_panel(
            base / "prices.parquet",
            base / "sectors.parquet",
            base / "nyse_sessions.parquet",
            symbols=keep,
            start=start,
        )
    labels = forward_return(panel, 1)
    try:  # the 32 default features; TA-Lib may be missing on a bare GPU image
        import yaml

        from deepq.features.registry import compute_features, resolve

        names = yaml.safe_load((ROOT / "conf" / "features" / "default.yaml").read_text())["names"]
        features = compute_features(panel, resolve(names=names))
    except ImportError as err:  # speed does not depend on the values: same shape, the panel's gaps
        print(f"note: features library unavailable ({err}); using 32 random channels with the panel's gaps")
        present = np.isfinite(panel["close"])
        features = np.random.default_rng(0).standard_normal((*present.shape, 32), dtype=np.float32)
        features[~present] = np.nan
    return panel, features, labels


def time_steps(step, n_steps: int, warmup: int, sync) -> tuple[float, float, float]:
    """(wall s per step, CPU s per step, data share of wall) over n_steps after warm-up; `step()` returns its
    data seconds. CPU time (this process) is the fair measure on a shared machine with one thread."""
    for _ in range(warmup):
        step()
    sync()
    data_s, t0, c0 = 0.0, time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        data_s += step()
    sync()
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return total / n_steps, cpu / n_steps, data_s / total


def result(sec: float, cpu: float, share: float, batch: int, model: torch.nn.Module) -> dict:
    return {
        "samples_per_s": batch / sec,
        "samples_per_cpu_s": batch / cpu,
        "data_share": share,
        "params": sum(p.numel() for p in model.parameters()),
    }


def our_tft(dm: PanelDataModule, args) -> TFTNet:
    spec = dm.input_spec()
    return TFTNet(
        n_features=spec["n_features"], n_outputs=1, lookback=dm.lookback, n_known=spec["n_known"],
        future_days=dm.future_days, n_symbols=spec["n_symbols"], n_sectors=spec["n_sectors"],
        hidden_size=args.hidden, n_heads=4, dropout=0.1,
    )  # fmt: skip


def ours(dm: PanelDataModule, model_name: str, args, device: torch.device) -> dict:
    spec = dm.input_spec()
    net: torch.nn.Module
    head: PointHead | DistributionHead | RankHead
    if model_name == "tft":
        head = PointHead()
        net = our_tft(dm, args)
    elif model_name == "master":
        head = RankHead("ic")
        net = MasterNet(spec["n_features"], 1, hidden_size=args.hidden)
    else:
        head = DistributionHead("student_t")
        net = DeepARNet(spec["n_features"], 3, spec["n_symbols"], spec["n_sectors"], hidden_size=args.hidden)
    module = ForecastModule(net, head, optimizer=torch.optim.Adam, compile=args.compile).to(device).train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    dm.to_device(device)
    loader = dm.train_dataloader()
    it = iter(loader)
    amp = autocast(args, device)
    rows: list[int] = []  # windows per step: fixed for window batches, whole dates' stocks for date batches

    def step() -> float:
        nonlocal it
        if device.type == "cuda":  # the previous step's kernels must not be billed to data loading
            torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        rows.append(len(batch.y))
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        with amp:
            loss = module._loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dt

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timed = time_steps(step, args.steps, args.warmup, sync)
    out = result(*timed, int(np.mean(rows[-args.steps :])), net)
    if args.profile:  # after the timed steps, so the profiler's own overhead never enters the ratios
        profile_steps(step, f"ours_{model_name}", args, device)
    return out


def autocast(args, device: torch.device | str = "cpu") -> torch.autocast:
    """`--precision bf16`: bfloat16 autocast for ours and the peers alike (each step's forward and loss), so
    the ratios stay at equal precision; on a CPU oneDNN then runs nn.LSTM in bf16 (avx512_bf16 / AMX)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=args.precision == "bf16")


def profile_steps(step, name: str, args, device: torch.device) -> None:
    """Run `args.profile_steps` training steps under torch.profiler: a Chrome trace (chrome://tracing or
    Perfetto) written to <args.profile>/<name>.json and the top ops by self CPU time printed."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(args.profile_steps):
            step()
    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = out_dir / f"{name}.json"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile {name}: {args.profile_steps} steps, trace {trace}")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_top))


def tft_eval(dm: PanelDataModule, args) -> dict[str, float]:
    torch.manual_seed(0)
    net = our_tft(dm, args).eval()
    with torch.no_grad():
        net.proj.weight.normal_()  # the zero-initialised output layer would hide any difference
    T = dm.features.shape[0]
    index = dm.index(max(T - 262, dm.lookback), T - 10, require_label=False)[: args.eval_windows]
    rates, outs = {}, {}
    for name, distinct in (("distinct rows", True), ("plain pass", False)):
        net.distinct_rows = distinct
        c0, got = time.process_time(), []
        with torch.no_grad():
            for batch in dm.loader_for(index):
                got.append(net(*batch_inputs(batch, net.inputs)))
        rates[name] = len(index) / (time.process_time() - c0)
        outs[name] = torch.cat(got)
    diff = float((outs["distinct rows"] - outs["plain pass"]).abs().max())
    print(f"TFT inference, {len(index):,} windows of the last year in symbol order, batch {dm.eval_batch_size}: "
          + ", ".join(f"{k} {v:,.0f} windows per CPU-s" for k, v in rates.items())
          + f"; {rates['distinct rows'] / rates['plain pass']:.2f}x; max |diff| {diff:.1e}")  # fmt: skip
    return rates


def pf_tft(panel, features, labels, args) -> dict:
    import pandas as pd
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
    from pytorch_forecasting.metrics import RMSE

    from deepq.dataset.covariates import CALENDAR_CHANNELS, calendar_features

    T, N, F = features.shape
    names = [f"f{j}" for j in range(F)]
    cal = calendar_features(panel.dates)
    sid, _ = sector_ids(panel.symbols, panel.sectors)
    t_idx, s_idx = np.nonzero(np.isfinite(features).all(axis=2) & np.isfinite(labels))
    frame = pd.DataFrame(features[t_idx, s_idx], columns=names)
    frame["time_idx"] = t_idx
    frame["symbol"] = np.asarray(panel.symbols)[s_idx]
    frame["sector"] = sid[s_idx].astype(str)
    frame["y"] = labels[t_idx, s_idx].astype(np.float32)
    for j, c in enumerate(CALENDAR_CHANNELS):
        frame[c] = cal[t_idx, j]
    ds = TimeSeriesDataSet(
        frame, time_idx="time_idx", target="y", group_ids=["symbol"], max_encoder_length=args.lookback,
        min_encoder_length=args.lookback, max_prediction_length=1, static_categoricals=["symbol", "sector"],
        time_varying_known_reals=list(CALENDAR_CHANNELS), time_varying_unknown_reals=names,
        allow_missing_timesteps=True, target_normalizer=None, scalers={n: None for n in names},
        add_relative_time_idx=False, add_target_scales=False, add_encoder_length=False,
    )  # fmt: skip
    model = TemporalFusionTransformer.from_dataset(
        ds, hidden_size=args.hidden, attention_head_size=4, hidden_continuous_size=args.hidden, dropout=0.1,
        loss=RMSE(), learning_rate=1e-3,
    )  # fmt: skip
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = ds.to_dataloader(train=True, batch_size=args.batch, num_workers=0)
    it = iter(loader)

    def step() -> float:
        nonlocal it
        t = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        dt = time.perf_counter() - t
        with autocast(args):
            out = model(x)
            loss = model.loss(out["prediction"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dt

    return result(*time_steps(step, args.steps, args.warmup, lambda: None), args.batch, model)


def gluonts_deepar(n_features: int, args) -> dict:
    from gluonts.torch.model.deepar import DeepARModel

    model = DeepARModel(
        freq="B", context_length=args.lookback, prediction_length=1, num_feat_dynamic_real=n_features,
        num_feat_static_real=1, num_feat_static_cat=2, cardinality=[64, 16], hidden_size=args.hidden,
        num_layers=2, dropout_rate=0.1, lags_seq=[1],
    )  # fmt: skip
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B, past = args.batch, model._past_length
    g = torch.Generator().manual_seed(0)

    def batch() -> dict:
        return {
            "feat_static_cat": torch.randint(0, 16, (B, 2), generator=g),
            "feat_static_real": torch.ones(B, 1),
            "past_time_feat": torch.randn(B, past, n_features, generator=g),
            "past_target": torch.randn(B, past, generator=g) * 0.02,
            "past_observed_values": torch.ones(B, past),
            "future_time_feat": torch.randn(B, 1, n_features, generator=g),
            "future_target": torch.randn(B, 1, generator=g) * 0.02,
            "future_observed_values": torch.ones(B, 1),
        }

    def step() -> float:
        t = time.perf_counter()
        b = batch()
        dt = time.perf_counter() - t
        with autocast(args):
            loss = model.loss(**b).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dt

    return result(*time_steps(step, args.steps, args.warmup, lambda: None), args.batch, model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="sample", choices=["sample", "shared"])
    p.add_argument("--symbols", type=int, default=None, help="first N symbols only")
    p.add_argument("--years", type=float, default=None, help="last Y years only")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lookback", type=int, default=60)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dates-per-batch", type=int, default=4, help="master: whole dates per training batch")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--only", default="all", choices=["all", "ours", "tft", "deepar", "master", "none"])
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--eval-windows", type=int, default=0, help="also time TFT inference over N windows")
    p.add_argument("--profile", default=None, help="folder: profile our models' steps, write traces there")
    p.add_argument("--profile-steps", type=int, default=5, help="training steps under the profiler")
    p.add_argument("--profile-top", type=int, default=25, help="rows of the printed op table")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    t0 = time.perf_counter()
    panel, features, labels = load_data(args.data, args.symbols, args.years)
    T, N, F = features.shape
    ok = np.isfinite(features).all(axis=2)

    def datamodule(batching: str) -> PanelDataModule:
        dm = PanelDataModule(
            features, labels, ok, ok, lookback=args.lookback, batch_size=args.batch, seed=0, dates=panel.dates,
            sector_ids=sector_ids(panel.symbols, panel.sectors)[0], label_span=2, future_days=1,
            batching=batching, dates_per_batch=args.dates_per_batch,
        )  # fmt: skip
        dm.set_fold(Fold(0, (0, T - 10), (T - 10, T - 5), (T - 5, T)))
        return dm

    dm = datamodule("window")
    print(f"panel {N} symbols x {T} sessions x {F} features (load {time.perf_counter() - t0:.1f} s); "
          f"batch {args.batch}, lookback {args.lookback}, hidden {args.hidden}, {args.threads} thread(s), "
          f"{device}, {args.precision}{' compile' if args.compile else ''}")  # fmt: skip
    results: dict[str, dict] = {}
    if args.eval_windows:
        results["ours_tft_eval"] = tft_eval(dm, args)
    if args.only in ("all", "ours", "tft"):
        results["ours_tft"] = ours(dm, "tft", args, device)
    if args.only in ("all", "tft"):
        results["pf_tft"] = pf_tft(panel, features, labels, args)
    if args.only in ("all", "ours", "deepar"):
        results["ours_deepar"] = ours(dm, "deepar", args, device)
    if args.only in ("all", "deepar"):
        results["gluonts_deepar"] = gluonts_deepar(F, args)
    if args.only in ("all", "ours", "master"):
        results["ours_master"] = ours(datamodule("date"), "master", args, device)
    for name, r in results.items():
        if "samples_per_s" not in r:
            continue
        print(f"{name:16s} {r['samples_per_s']:8.0f} samples/s wall  {r['samples_per_cpu_s']:8.0f} per CPU-s  "
              f"data {100 * r['data_share']:5.1f} % of step  {r['params']:,} parameters")  # fmt: skip
    for ours_name, peer in (("ours_tft", "pf_tft"), ("ours_deepar", "gluonts_deepar")):
        if ours_name in results and peer in results:
            wall = results[ours_name]["samples_per_s"] / results[peer]["samples_per_s"]
            cpu = results[ours_name]["samples_per_cpu_s"] / results[peer]["samples_per_cpu_s"]
            print(f"ratio {ours_name} / {peer}: {wall:.2f}x wall, {cpu:.2f}x per CPU-second")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
