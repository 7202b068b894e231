"""Serving benchmark: a bounded loopback load test of `deepq serve`, and the three inference paths compared.

    python scripts/bench_serve.py                       # the registry's default version (trains a tiny one if none)
    python scripts/bench_serve.py --registry registry --single 2000 --batched 300

1. Inference paths, in process, same inputs: TorchScript (what `deepq serve` runs), torch.export (.pt2) and
   ONNX Runtime. Rows/s and per-call p50/p99 at batch 1 and batch 256, and the largest difference from
   TorchScript's outputs.
2. HTTP: starts `deepq serve` in a subprocess on a free 127.0.0.1 port (loopback only), sends a fixed
   number of requests with a keep-alive client, one at a time: single-symbol requests, then all-symbol
   batches (symbols + as_of), then raw-window batches (`instances`); then gRPC single requests.
   Reports p50/p99 latency, requests/s and predictions/s, and counts 5xx (must be zero). Stops by itself.
Targets (issue 8): p99 < 5 ms for a single prediction on CPU, >= 5,000 predictions/s batched.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def ensure_registry(path: str | None) -> str:
    from deepq.export.registry import Registry, default_root

    root = Path(path) if path else default_root(ROOT)
    if root.exists() and Registry(root).versions():
        return str(root)
    root = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    print(f"no registered model: training a debug=fdr one into {root} ...", flush=True)
    env = os.environ | {"DEEPQ_REGISTRY": str(root), "OMP_NUM_THREADS": "1"}
    out = tempfile.mkdtemp(prefix="bench-run-")
    subprocess.run(
        [sys.executable, "-m", "deepq.cli", "train", "debug=fdr", f"hydra.run.dir={out}"],
        check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return str(root)


def rebuild_module(ts: torch.jit.ScriptModule, mv) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """The eager Forecaster behind a TorchScript artifact (same weights), for torch.export and ONNX."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from deepq.training.module import Forecaster

    cfg = OmegaConf.create((mv.path / "config.yaml").read_text())
    head = instantiate(cfg.task.head)
    net = instantiate(cfg.model.net)(n_features=len(mv.meta["features"]), n_outputs=head.n_params)
    model = Forecaster(net, head)
    # strict=False: buffers a newer head adds (label centring) keep their identity defaults for older artifacts;
    # the "max |diff|" column checks the rebuilt paths against TorchScript's outputs either way
    model.load_state_dict(ts.state_dict(), strict=False)
    return _OneInput(model).eval()


class _OneInput(torch.nn.Module):
    """Forecaster.forward takes *inputs; exporters want a plain forward(x) with one dynamic batch dimension."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def bench_paths(registry: str, calls: int) -> None:
    from deepq.export.registry import Registry

    reg = Registry(registry)
    mv = reg.resolve()
    ts, meta = reg.load(mv)
    L, F = int(meta["lookback"]), len(meta["features"])
    runners: dict[str, object] = {"torchscript": ts}
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        eager = rebuild_module(ts, mv)
        example = torch.randn(8, L, F)
        try:  # the project's exporters when present and working on this model
            from deepq.export.program import export_onnx, export_program, load_onnx, load_program

            runners["torch.export"] = load_program(
                export_program(eager, example, tmp / "m.pt2", {}), verify=False
            )[0]
            runners["onnxruntime"] = load_onnx(
                export_onnx(eager, example, tmp / "m.onnx", {}, dynamo=False), verify=False
            )[0]
        except Exception as e:  # noqa: BLE001 - no working exporters in deepq.export yet: export here
            print(f"deepq.export.program unavailable ({type(e).__name__}); exporting in the benchmark")
            import onnxruntime as ort

            prog = torch.export.export(
                eager, (example,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=65536)},)
            )
            runners["torch.export"] = prog.module()
            torch.onnx.export(eager, (example,), str(tmp / "m.onnx"), dynamo=False, input_names=["x"],
                              output_names=["out"], dynamic_axes={"x": {0: "b"}, "out": {0: "b"}}, opset_version=17)  # fmt: skip
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(tmp / "m.onnx"), opts, providers=["CPUExecutionProvider"])
            runners["onnxruntime"] = lambda x: torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
    except Exception as e:  # noqa: BLE001 - report and carry on with TorchScript alone
        print(f"torch.export / ONNX paths unavailable: {type(e).__name__}: {e}")
    print(f"\n== inference paths ({mv.ref}, input [batch, {L}, {F}], 1 thread)")
    print(f"{'path':<14}{'batch':>6}{'p50 ms':>9}{'p99 ms':>9}{'rows/s':>11}{'max |diff|':>12}")
    for batch in (1, 256):
        x = torch.randn(batch, L, F)
        with torch.inference_mode():
            ref = ts(x)
            base = None
            for name, run in runners.items():
                for _ in range(10):
                    run(x)  # type: ignore[operator]
                times = []
                n = calls if batch == 1 else max(calls // 10, 20)
                for _ in range(n):
                    t = time.perf_counter()
                    out = run(x)  # type: ignore[operator]
                    times.append(time.perf_counter() - t)
                p50, p99 = pct(times)
                rate = batch / float(np.mean(times))
                base = base or rate
                diff = float((out - ref).abs().max())
                print(
                    f"{name:<14}{batch:>6}{p50:>9.3f}{p99:>9.3f}{rate:>11,.0f}{diff:>12.2e}   ({rate / base:.2f}x torchscript)"
                )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): what requests cost the server, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_http(registry: str, n_single: int, n_batched: int, instances: int) -> int:
    import httpx

    port, gport = free_port(), free_port()
    env = os.environ | {"DEEPQ_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    log = open(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1], "w")  # noqa: SIM115 - the server's log
    server = subprocess.Popen(
        [sys.executable, "-m", "deepq.cli", "serve", f"registry={registry}", "host=127.0.0.1", f"port={port}",
         f"grpc_port={gport}", "max_body_bytes=16000000", "max_instances=100000", "prediction_log=null"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    errors_5xx = 0
    try:
        base = f"http://127.0.0.1:{port}"
        # TCP_NODELAY: without it small POSTs can wait on delayed ACKs, measuring the kernel, not the server
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30, transport=nodelay) as client:
            deadline = time.time() + 180
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"server did not become ready; log: {log.name}")
                time.sleep(0.5)
            info = client.get("/v1/models").json()["models"][0]
            L, F = int(info["lookback"]), len(info["features"])
            models_symbols = _symbols_and_date(registry)
            symbols, as_of = models_symbols
            print(
                f"\n== HTTP on 127.0.0.1 ({info['ref']}; {len(symbols)} symbols at {as_of}; sequential keep-alive client)"
            )
            print(
                f"{'scenario':<26}{'requests':>9}{'rows/req':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'pred/s':>10}{'5xx':>5}{'srv cpu':>10}{'pred/cpu-s':>12}"
            )
            print(
                "(srv cpu: server-process CPU ms per request; pred/cpu-s: predictions per second of server CPU)"
            )

            def run(name: str, n: int, body_for, rows: int) -> None:  # type: ignore[no-untyped-def]
                nonlocal errors_5xx
                for i in range(min(20, n)):
                    client.post("/v1/predict", json=body_for(i))
                times, bad = [], 0
                cpu0 = cpu_seconds(server.pid)
                t0 = time.perf_counter()
                for i in range(n):
                    t = time.perf_counter()
                    r = client.post("/v1/predict", json=body_for(i))
                    times.append(time.perf_counter() - t)
                    bad += r.status_code >= 500
                    if r.status_code != 200 and i == 0:
                        print(f"  {name}: HTTP {r.status_code} {r.text[:200]}")
                wall = time.perf_counter() - t0
                cpu_ms = (cpu_seconds(server.pid) - cpu0) / n * 1000
                errors_5xx += bad
                p50, p99 = pct(times)
                print(f"{name:<26}{n:>9}{rows:>9}{p50:>9.2f}{p99:>9.2f}{n / wall:>9.0f}{n * rows / wall:>10,.0f}{bad:>5}"
                      f"{cpu_ms:>10.2f}{1000 / max(cpu_ms, 1e-9) * rows:>12,.0f}")  # fmt: skip

            run(
                "single symbol",
                n_single,
                lambda i: {"symbols": [symbols[i % len(symbols)]], "as_of": as_of, "request_key": f"c{i}"},
                1,
            )
            run("batch: all symbols", n_batched, lambda i: {"symbols": symbols, "as_of": as_of}, len(symbols))
            rng = np.random.default_rng(0)
            windows = rng.normal(size=(instances, L, F)).round(4).tolist()
            payload = {"instances": [{"key": str(k), "window": w} for k, w in enumerate(windows)]}
            run(f"batch: {instances} raw windows", max(n_batched // 5, 10), lambda i: payload, instances)
        errors_5xx += bench_grpc(gport, symbols, as_of, n_single, server.pid)
    finally:
        log.close()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return errors_5xx


def bench_grpc(port: int, symbols: list[str], as_of: str, n: int, pid: int) -> int:
    import grpc

    from deepq.serve.pb import deepq_pb2, deepq_pb2_grpc

    md = [("x-api-key", KEY)]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = deepq_pb2_grpc.PredictorStub(channel)
        for scenario, syms, count in (
            ("gRPC single symbol", None, n),
            ("gRPC batch: all symbols", symbols, max(n // 5, 10)),
        ):
            times = []
            cpu0 = cpu_seconds(pid)
            t0 = time.perf_counter()
            for i in range(count):
                req = deepq_pb2.PredictRequest(symbols=syms or [symbols[i % len(symbols)]], as_of=as_of)
                t = time.perf_counter()
                stub.Predict(req, metadata=md, timeout=30)
                times.append(time.perf_counter() - t)
            wall = time.perf_counter() - t0
            cpu_ms = (cpu_seconds(pid) - cpu0) / count * 1000
            rows = len(syms or [0])
            p50, p99 = pct(times)
            print(f"{scenario:<26}{count:>9}{rows:>9}{p50:>9.2f}{p99:>9.2f}{count / wall:>9.0f}{count * rows / wall:>10,.0f}{0:>5}"
                  f"{cpu_ms:>10.2f}{1000 / max(cpu_ms, 1e-9) * rows:>12,.0f}")  # fmt: skip
    return 0


def _symbols_and_date(registry: str) -> tuple[list[str], str]:
    """The symbols with a usable window on the panel's last session (what a live client would ask for)."""
    from deepq.export.registry import Registry
    from deepq.serve.inputs import load_panel_features

    mv = Registry(registry).resolve()
    src = load_panel_features((mv.path / "config.yaml").read_text(), int(mv.meta["lookback"]),
                              (mv.meta.get("normalizer") or {}).get("method") == "rank")  # fmt: skip
    t = int(np.flatnonzero(src.window_ok.any(axis=1))[-1])
    symbols = [s for j, s in enumerate(src.panel.symbols) if src.window_ok[t, j]]
    return symbols, str(src.panel.dates[t])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", default=None)
    p.add_argument("--single", type=int, default=2000)
    p.add_argument("--batched", type=int, default=300)
    p.add_argument("--instances", type=int, default=256)
    p.add_argument("--calls", type=int, default=2000, help="in-process calls per path at batch 1")
    args = p.parse_args()
    torch.set_num_threads(1)
    registry = ensure_registry(args.registry)
    bench_paths(registry, args.calls)
    errors = bench_http(registry, args.single, args.batched, args.instances)
    print(f"\n5xx responses: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
