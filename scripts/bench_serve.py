"""Serving benchmark: a bounded loopback load test of `deepq serve`, and the three inference paths compared.

    python scripts/bench_serve.py                       # the registry's default version (trains a tiny one if none)
    python scripts/bench_serve.py --registry registry --single 2000 --batched 300

1. Inference paths, in process, same inputs: TorchScript (the registered artifact), torch.export (.pt2) and
   ONNX Runtime (what `deepq serve` runs with runtime=auto, after checking it against TorchScript). Rows/s and per-call p50/p99 at batch 1 and batch 256, and the largest difference from
   TorchScript's outputs.
2. HTTP: starts `deepq serve` in a subprocess on a free 127.0.0.1 port (loopback only), sends a fixed
   number of requests with a keep-alive client, one at a time: single-symbol requests, then all-symbol
   batches (symbols + as_of), then raw-window batches (`instances`); then gRPC single requests.
   Reports p50/p99 latency, requests/s and predictions/s, and counts 5xx (must be zero). Stops by itself.
   The peer, measured in the same run with the same client: a bare FastAPI endpoint (one POST validating a
   two-field body and returning a constant) under the same uvicorn settings, the floor any REST API pays.
   Two clients, each over both servers: `raw` (the latency table; what wrk or h2load do: request bytes encoded
   before the clock starts, one keep-alive socket, responses read by Content-Length; about 20 us of client CPU
   per request) and `httpx` (a typical Python client, ~1 ms of client CPU per request, which on a 2-core
   machine competes with the server for the same cores and shows up in the tail).
Targets (issue 8): p99 < 5 ms for a single prediction on CPU, >= 5,000 predictions/s batched.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def served_inputs(registry: str, batch: int) -> tuple[torch.Tensor, ...]:
    """Real model inputs (every input the network reads) for `batch` rows of the panel's latest session."""
    from deepq.export.registry import Registry
    from deepq.serve.inputs import InputBuilder, load_panel_features

    reg = Registry(registry)
    mv = reg.resolve()
    meta = mv.meta
    rank = (meta.get("normalizer") or {}).get("method") == "rank"
    src = load_panel_features((mv.path / "config.yaml").read_text(), int(meta["lookback"]), rank)
    builder = InputBuilder(src, meta)
    t = int(np.flatnonzero(builder.servable.any(axis=1))[-1])
    cols = np.resize(np.flatnonzero(builder.servable[t]), batch)
    return builder.model_inputs(np.full(batch, t), cols)


def bench_paths(registry: str, calls: int) -> None:
    from deepq.export.registry import Registry
    from deepq.serve.runtime import onnx_runner

    reg = Registry(registry)
    mv = reg.resolve()
    ts, meta = reg.load(mv)
    names = list(meta.get("inputs") or ["x"])
    runners: dict[str, object] = {"torchscript": lambda xs: ts(*xs)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    example = served_inputs(registry, 8)
    try:
        if names != ["x"]:
            raise ValueError(f"the benchmark rebuilds single-input networks only (this one reads {names})")
        eager = rebuild_module(ts, mv)
        from deepq.export.program import export_onnx, export_program, load_onnx, load_program

        prog = load_program(export_program(eager, example[0], tmp / "m.pt2", {}), verify=False)[0]
        onnx = load_onnx(export_onnx(eager, example[0], tmp / "m.onnx", {}, dynamo=False), verify=False)[0]
        runners["torch.export"] = lambda xs: prog(*xs)
        runners["onnxruntime"] = lambda xs: onnx(*xs)
    except Exception as e:  # noqa: BLE001 - report and carry on with the other paths
        print(f"torch.export / exported-ONNX paths unavailable: {type(e).__name__}: {e}")
    served = onnx_runner(ts, example, names, threads=1)  # what `deepq serve` runs (runtime=auto)
    runners["ort: serve"] = lambda xs: torch.from_numpy(served(xs))
    shapes = ", ".join(f"{n} {list(t.shape[1:])}" for n, t in zip(names, example, strict=True))
    print(f"\n== inference paths ({mv.ref}, inputs {shapes} per row, real windows, 1 thread)")
    print(f"{'path':<14}{'batch':>6}{'p50 ms':>9}{'p99 ms':>9}{'rows/s':>11}{'max |diff|':>12}")
    for batch in (1, 256):
        xs = served_inputs(registry, batch)
        with torch.inference_mode():
            ref = ts(*xs)
            base = None
            for name, run in runners.items():
                for _ in range(10):
                    run(xs)  # type: ignore[operator]
                times = []
                n = calls if batch == 1 else max(calls // 10, 20)
                for _ in range(n):
                    t = time.perf_counter()
                    out = run(xs)  # type: ignore[operator]
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


BARE_APP = """
import sys, datetime, uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
class Body(BaseModel):
    symbols: list[str]
    as_of: datetime.date
app = FastAPI()
@app.post("/v1/predict")
async def predict(body: Body) -> dict:
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            proxy_headers=False, server_header=False)
"""


class RawClient:
    """A keep-alive HTTP/1.1 client on one socket, as load generators (wrk, h2load) are: `encode` builds a
    request's bytes before the clock starts, `send` writes them and reads the response by its Content-Length.
    Its own cost per request is tens of microseconds, so the latency it measures is the server's and the
    kernel's, not a Python client's."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port, self.headers = port, headers
        self.sock: socket.socket | None = None
        self.buf = b""
        self.reconnects = 0  # reported: a reconnect inside the timed loop costs a TCP connect

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def encode(self, method: str, path: str, body: object | None = None) -> bytes:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in ({"Content-Type": "application/json"} | self.headers).items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + data

    def send(self, request: bytes) -> tuple[int, bytes]:
        try:
            return self._exchange(request)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # the server closed an idle keep-alive connection (uvicorn: after 5 s): reconnect, send again
            self.reconnects += 1
            return self._exchange(request)

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            self._connected().sendall(request)
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                self._fill()
            head = self.buf[:end].split(b"\r\n")
            status = int(head[0].split(b" ", 2)[1])
            length = next(
                (int(h.split(b":", 1)[1]) for h in head[1:] if h.lower().startswith(b"content-length:")), None
            )
            if length is None:
                raise RuntimeError(f"response without Content-Length: {head[:3]!r}")
            while len(self.buf) < end + 4 + length:
                self._fill()
        except BaseException:
            self._close()  # never leave half a response in the buffer for the next request to read
            raise
        body, self.buf = self.buf[end + 4 : end + 4 + length], self.buf[end + 4 + length :]
        return status, body

    def _connected(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        self.buf += chunk


class HttpxClient:
    """The same two calls over httpx (a typical Python client): `encode` builds the httpx.Request."""

    def __init__(self, port: int, headers: dict[str, str]):
        import httpx

        # TCP_NODELAY: without it small POSTs can wait on delayed ACKs, measuring the kernel, not the server
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30,
                                   transport=nodelay)  # fmt: skip

    def __enter__(self) -> HttpxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def encode(self, method: str, path: str, body: object | None = None):  # type: ignore[no-untyped-def]
        return self.client.build_request(method, path, json=body)

    def send(self, request) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        import httpx

        try:
            r = self.client.send(request)
        except httpx.TransportError as e:
            raise ConnectionError(str(e)) from e
        return r.status_code, r.content


CLIENTS: dict[str, type[RawClient] | type[HttpxClient]] = {"raw": RawClient, "httpx": HttpxClient}


def get_json(client, path: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    status, body = client.send(client.encode("GET", path))
    return status, json.loads(body) if status == 200 else None


def bench_bare(client_cls, n: int, symbols: list[str], as_of: str) -> None:  # type: ignore[no-untyped-def]
    """The peer: a bare FastAPI endpoint, same client, same uvicorn settings (http/loop: auto)."""
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with client_cls(port, {}) as client:
            wait_ready(client, server, "/docs", "bare FastAPI app")
            run_scenario(client, server.pid, "bare FastAPI endpoint", n,
                         lambda i: {"symbols": [symbols[i % len(symbols)]], "as_of": as_of}, 1)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=20)


def wait_ready(client, server: subprocess.Popen, path: str, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + 180
    while True:
        try:
            if client.send(client.encode("GET", path))[0] == 200:
                return
        except OSError:  # refused while the server starts
            pass
        if time.time() > deadline or server.poll() is not None:
            raise SystemExit(f"{what} did not become ready")
        time.sleep(0.5)


def run_scenario(client, pid: int, name: str, n: int, body_for, rows: int) -> int:  # type: ignore[no-untyped-def]
    """n sequential POSTs after 20 warm-up ones, their bytes built before the clock starts; prints one table
    row; returns the count of 5xx."""
    requests = [client.encode("POST", "/v1/predict", body_for(i)) for i in range(n)]
    for request in requests[:20]:  # after encoding: the connection is not left idle before the clock starts
        client.send(request)
    times, bad = [], 0
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    for i, request in enumerate(requests):
        t = time.perf_counter()
        status, body = client.send(request)
        times.append(time.perf_counter() - t)
        bad += status >= 500
        if status != 200 and i == 0:
            print(f"  {name}: HTTP {status} {body[:200]!r}")
    wall = time.perf_counter() - t0
    if getattr(client, "reconnects", 0):
        print(f"  {name}: {client.reconnects} reconnect(s) so far (idle keep-alive closed by the server)")
    print_row(name, rows, times, wall, bad, (cpu_seconds(pid) - cpu0) / n * 1000)
    return bad


def print_row(name: str, rows: int, times: list[float], wall: float, bad: int, cpu_ms: float) -> None:
    """One scenario's line of the HTTP/gRPC table (columns as printed by bench_http)."""
    n = len(times)
    p50, p99 = pct(times)
    print(f"{name:<26}{n:>9}{rows:>9}{p50:>9.2f}{p99:>9.2f}{n / wall:>9.0f}{n * rows / wall:>10,.0f}{bad:>5}"
          f"{cpu_ms:>10.2f}{1000 / max(cpu_ms, 1e-9) * rows:>12,.0f}")  # fmt: skip


def bench_http(registry: str, n_single: int, n_batched: int, instances: int, serve_args: list[str],
               clients: list[str], grpc: bool = True) -> int:  # fmt: skip
    port, gport = free_port(), free_port()
    serve_args = [f"grpc_port={gport if grpc else 'null'}", *serve_args]  # the caller's settings win
    env = os.environ | {"DEEPQ_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    log = open(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1], "w")  # noqa: SIM115 - the server's log
    server = subprocess.Popen(
        [sys.executable, "-m", "deepq.cli", "serve", f"registry={registry}", "host=127.0.0.1", f"port={port}",
         "max_body_bytes=16000000", "max_instances=100000", "prediction_log=null",
         *serve_args],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    errors_5xx = 0
    symbols, as_of = _symbols_and_date(registry)
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    try:
        for kind in clients:
            client_cls = CLIENTS[kind]
            with client_cls(port, {"X-API-Key": KEY}) as client:
                wait_ready(client, server, "/ready", f"deepq serve (log: {log.name})")
                info = get_json(client, "/v1/models")[1]["models"][0]
                L, F = int(info["lookback"]), len(info["features"])
                print(
                    f"\n== HTTP on 127.0.0.1, {kind} client ({info['ref']}, runtime "
                    f"{info.get('runtime', 'torchscript')}, uvicorn {parser}; {len(symbols)} symbols at {as_of}; "
                    "sequential keep-alive requests)"
                )
                print(
                    f"{'scenario':<26}{'requests':>9}{'rows/req':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'pred/s':>10}{'5xx':>5}{'srv cpu':>10}{'pred/cpu-s':>12}"
                )
                print(
                    "(srv cpu: server-process CPU ms per request; pred/cpu-s: predictions per second of server CPU)"
                )
                errors_5xx += run_scenario(client, server.pid, "single symbol", n_single,
                    lambda i: {"symbols": [symbols[i % len(symbols)]], "as_of": as_of, "request_key": f"c{i}"}, 1)  # fmt: skip
                errors_5xx += run_scenario(client, server.pid, "batch: all symbols", n_batched,
                                           lambda i: {"symbols": symbols, "as_of": as_of}, len(symbols))  # fmt: skip
                rng = np.random.default_rng(0)
                windows = rng.normal(size=(instances, L, F)).round(4).tolist()
                payload = {"instances": [{"key": str(k), "window": w} for k, w in enumerate(windows)]}
                if info.get("inputs", ["x"]) == ["x"]:  # multi-input models take symbols + as_of only
                    errors_5xx += run_scenario(client, server.pid, f"batch: {instances} raw windows",
                                               max(n_batched // 5, 10), lambda i, p=payload: p, instances)  # fmt: skip
            bench_bare(client_cls, n_single, symbols, as_of)
        if grpc:
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
            print_row(scenario, len(syms or [0]), times, wall, 0, (cpu_seconds(pid) - cpu0) / count * 1000)
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
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra `deepq serve` key=value, e.g. runtime=torchscript",
    )
    p.add_argument(
        "--client", choices=[*CLIENTS, "both"], default="both", help="HTTP client(s); see the docstring"
    )
    p.add_argument("--no-grpc", action="store_true", help="serve REST only (no gRPC server in the process)")
    args = p.parse_args()
    torch.set_num_threads(1)
    registry = ensure_registry(args.registry)
    bench_paths(registry, args.calls)
    clients = list(CLIENTS) if args.client == "both" else [args.client]
    errors = bench_http(
        registry, args.single, args.batched, args.instances, args.serve_arg, clients, grpc=not args.no_grpc
    )
    print(f"\n5xx responses: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
