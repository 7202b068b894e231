"""Reliability section `serve`: loopback requests, hostile ones included, to a real `deepq serve` process.

A tiny model is trained on the embedded sample (the `debug=fdr` run tests/serve/fdr.py trains, in a
subprocess) and registered into a registry in the workdir; `deepq serve` then runs as its own process on a
free 127.0.0.1 port (REST only, the default config otherwise: API key required, 1 MiB body limit,
max_symbols 1000, runtime auto). Requests go out one at a time over one keep-alive socket (bench_serve's
RawClient: the request's bytes are built before the clock starts; a body over the limit gets a fresh
connection, as the server may close it after its 413), in a shuffled order fixed by the seed.

Each kind of request is *valid* (it must get 200) or *hostile* (it must get a 4xx: malformed JSON, wrong
types, an unknown symbol, a body over the limit, a date after the last session, a Saturday, no API key, a
path-traversal model name, too many symbols, unicode junk, negative or huge numbers, unknown paths). A 5xx
is a defect whatever the kind. Latency is per request, client side, connect excluded for the kept-alive
socket.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from bench_serve import RawClient, free_port  # noqa: E402

KEY = "rel-serve-key"
TRAIN_START = "2012-01-01"
REQUESTS = {"small": 300, "full": 10_000}
START_TIMEOUT_S = 240.0
# the fdr run of tests/serve/fdr.py: a slice of the sample, a 20-session window, 8 hidden units
TRAIN_OVERRIDES = [
    "debug=fdr",
    f"data.start={TRAIN_START}",
    "data.symbols=[AAPL,JPM,XOM,JNJ,WMT,GE,NEE,AMT,NFLX,SPY,'^GSPC']",
    "datamodule.lookback=20",
    "model.hidden_size=8",
    "registry.enabled=true",
]
SYMBOLS = ["AAPL", "JPM", "XOM", "JNJ", "WMT", "GE", "NEE", "AMT", "NFLX"]  # the stocks it is trained on


@dataclass(frozen=True)
class Served:
    """What a client knows of the served model: its symbols, sessions and window shape."""

    symbols: list[str]
    last: str  # data_as_of
    sessions: list[str]  # past sessions with a usable window for every symbol
    lookback: int
    n_features: int
    ref: str  # the served version, 'name:version'
    first: str  # the served panel's first session


@dataclass(frozen=True)
class Kind:
    name: str
    valid: bool  # True: must be 200; False: must be 4xx
    weight: float
    make: Callable[[random.Random, Served], tuple[str, str, bytes | None, dict[str, str]]]
    fresh_connection: bool = False


# ---- the model and the server -----------------------------------------------------------------------------


def train(workdir: Path) -> Path:
    """A registered debug=fdr model (seconds); returns the registry root."""
    registry = workdir / "registry"
    env = os.environ | {"DEEPQ_REGISTRY": str(registry), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    args = [*TRAIN_OVERRIDES, f"registry.root={registry}", f"hydra.run.dir={workdir / 'run'}"]
    out = subprocess.run(
        [sys.executable, "-m", "deepq.cli", "train", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"training the served model failed: {(out.stderr or out.stdout)[-800:]}")
    return registry


def start_server(registry: Path, workdir: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    env = os.environ | {"DEEPQ_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    log = workdir / "serve.log"
    with log.open("w") as f:
        server = subprocess.Popen(
            [sys.executable, "-m", "deepq.cli", "serve", f"registry={registry}", "host=127.0.0.1",
             f"port={port}", "grpc_port=null", "prediction_log=null"],
            env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return server, port, log


def wait_ready(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"deepq serve exited ({server.returncode}): {log.read_text()[-800:]}")
        try:
            with RawClient(port, {}) as c:
                if c.send(c.encode("GET", "/ready"))[0] == 200:
                    return
        except OSError:  # refused while it starts
            pass
        time.sleep(0.25)
    raise RuntimeError(f"deepq serve not ready after {START_TIMEOUT_S:.0f} s: {log.read_text()[-800:]}")


def describe(port: int) -> Served:
    """The served model's window shape, and the past sessions where every symbol has a usable window."""
    with RawClient(port, {"X-API-Key": KEY}) as c:
        status, body = c.send(c.encode("GET", "/v1/models"))
        if status != 200:
            raise RuntimeError(f"GET /v1/models: {status} {body[:200]!r}")
        info = json.loads(body)["models"][0]
        last = str(info["data_as_of"])
        days0 = pd.to_datetime(pd.read_parquet(ROOT / "data" / "sample" / "nyse_sessions.parquet")["date"])
        days0 = days0[days0 >= pd.Timestamp(TRAIN_START)]
        days = days0[(days0 <= pd.Timestamp(last)) & (days0 >= pd.Timestamp(last) - pd.Timedelta(days=400))]
        ok = []
        for day in days.iloc[:: max(1, len(days) // 40)].dt.strftime("%Y-%m-%d"):
            status, body = c.send(c.encode("POST", "/v1/predict", {"symbols": SYMBOLS, "as_of": day}))
            if status == 200 and all(p["pred"] is not None for p in json.loads(body)["predictions"]):
                ok.append(day)
    if not ok:
        raise RuntimeError("no past session with a usable window for every symbol")
    first = str(days0.iloc[0].date())
    return Served(SYMBOLS, last, ok, int(info["lookback"]), len(info["features"]), str(info["ref"]), first)


# ---- the requests -----------------------------------------------------------------------------------------


def post(body: Any, path: str = "/v1/predict", key: str | None = KEY) -> tuple[str, str, bytes, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return "POST", path, data, ({"X-API-Key": key} if key is not None else {})


def get(path: str, key: str | None = KEY) -> tuple[str, str, None, dict]:
    return "GET", path, None, ({"X-API-Key": key} if key is not None else {})


def saturday(rng: random.Random, s: Served) -> str:
    day = pd.Timestamp(rng.choice(s.sessions))
    return str((day + pd.Timedelta(days=(5 - day.weekday()) % 7)).date())


JUNK_TEXT = [
    "ÄPPLE",
    "\u202eLPAA",
    "😀",
    "A\u0000B",
    "ＡＡＰＬ",
    "' OR 1=1 --",
    "<script>",
    "\ud7ff" * 3,
    "名前",
]
BAD_JSON = [
    b"",
    b"{",
    b'{"symbols": ["AAPL"], "as_of": ',
    b"null",
    b"[]",
    b'"AAPL"',
    b"{'symbols': ['AAPL']}",
    b"\xff\xfe\x00{",
    b'{"symbols": ["AAPL"], "as_of": "2024-06-28"}}',
    b"NaN",
]


RAW_ODDITIES = [  # whole requests, as bytes: what a broken client or a scanner sends
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}   \r\n0\r\n\r\n",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\r\nBad Header\r\n\r\n",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
]


def random_text(rng: random.Random) -> str:
    """1-12 code points from anywhere in Unicode but the surrogates (JSON-encodable, never a ticker)."""
    cps = [rng.choice([rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF), rng.randint(0, 0x1F)])]
    cps += [rng.randint(0, 0x10FFFF) for _ in range(rng.randint(0, 11))]
    return "".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF)


def kinds() -> list[Kind]:
    v = [  # valid: 200
        Kind(
            "predict: one symbol",
            True,
            30,
            lambda r, s: post({"symbols": [r.choice(s.symbols)], "as_of": s.last}),
        ),
        Kind(
            "predict: batch, every symbol",
            True,
            10,
            lambda r, s: post({"symbols": s.symbols, "as_of": s.last}),
        ),
        Kind(
            "predict: as_of a past session",
            True,
            15,
            lambda r, s: post(
                {"symbols": r.sample(s.symbols, r.randint(1, len(s.symbols))), "as_of": r.choice(s.sessions)}
            ),
        ),
        Kind(
            "predict: no usable window (a reason)",
            True,
            2,
            lambda r, s: post(
                r.choice(
                    [
                        {
                            "symbols": ["SPY", "^GSPC"],
                            "as_of": s.last,
                        },  # in the panel, not traded by the model
                        {"symbols": [r.choice(s.symbols)], "as_of": s.first},  # no history before it
                    ]
                )
            ),
        ),
        Kind(
            "predict: the version pinned",
            True,
            3,
            lambda r, s: post({"symbols": [r.choice(s.symbols)], "as_of": s.last, "model": s.ref}),
        ),
        Kind(
            "predict: a Saturday, allow_stale",
            True,
            3,
            lambda r, s: post(
                {"symbols": [r.choice(s.symbols)], "as_of": saturday(r, s), "allow_stale": True}
            ),
        ),
        Kind(
            "predict: raw windows (instances)",
            True,
            5,
            lambda r, s: post(
                {
                    "instances": [
                        {
                            "key": f"k{i}",
                            "window": np.round(
                                np.random.default_rng(r.randint(0, 2**31)).normal(
                                    size=(s.lookback, s.n_features)
                                ),
                                3,
                            ).tolist(),
                        }
                        for i in range(r.randint(1, 4))
                    ]
                }
            ),
        ),
        Kind("GET /health", True, 3, lambda r, s: get("/health", key=None)),
        Kind("GET /ready", True, 3, lambda r, s: get("/ready", key=None)),
        Kind("GET /v1/models", True, 3, lambda r, s: get("/v1/models")),
        Kind("POST /v1/admin/reload", True, 0.02, lambda r, s: post(b"", path="/v1/admin/reload")),
    ]
    h = [  # hostile: 4xx
        Kind("malformed JSON", False, 5, lambda r, s: post(r.choice(BAD_JSON))),
        Kind(
            "wrong types",
            False,
            5,
            lambda r, s: post(
                r.choice(
                    [
                        {"symbols": "AAPL", "as_of": s.last},
                        {"symbols": [1, 2], "as_of": s.last},
                        {"symbols": ["AAPL"], "as_of": 20240628},
                        {"symbols": ["AAPL"], "as_of": [2024, 6, 28]},
                        {"symbols": ["AAPL"], "as_of": s.last, "allow_stale": "maybe"},
                        {"instances": "x"},
                        {"instances": [{"key": 1, "window": [[1.0]]}]},
                        {"symbols": None, "as_of": s.last},
                        {"symbols": {"AAPL": 1}, "as_of": s.last},
                        {"symbols": ["AAPL"], "as_of": s.last, "extra": 1},
                        {"symbols": ["AAPL"], "as_of": s.last, "instances": []},
                        {},
                    ]
                )
            ),
        ),
        Kind(
            "unknown symbol",
            False,
            4,
            lambda r, s: post(
                {"symbols": [r.choice(["ZZZZ", "AAPL.X", "^NOPE", "X" * 32])], "as_of": s.last}
            ),
        ),
        Kind(
            "body over the 1 MiB limit",
            False,
            0.4,
            lambda r, s: post({"symbols": ["AAPL"] * 200_000, "as_of": s.last}),
            fresh_connection=True,
        ),
        Kind(
            "date after the last session",
            False,
            4,
            lambda r, s: post(
                {
                    "symbols": [r.choice(s.symbols)],
                    "as_of": str((pd.Timestamp(s.last) + pd.Timedelta(days=r.randint(1, 4000))).date()),
                }
            ),
        ),
        Kind(
            "a Saturday",
            False,
            4,
            lambda r, s: post({"symbols": [r.choice(s.symbols)], "as_of": saturday(r, s)}),
        ),
        Kind(
            "no or wrong API key",
            False,
            4,
            lambda r, s: r.choice(
                [
                    post({"symbols": ["AAPL"], "as_of": s.last}, key=None),
                    post({"symbols": ["AAPL"], "as_of": s.last}, key="x"),
                    get("/v1/models", key=None),
                    post(b"", path="/v1/admin/reload", key=None),
                    post(b"", path="/v1/admin/reload", key="wrong"),
                ]
            ),
        ),
        Kind(
            "path traversal in model name",
            False,
            3,
            lambda r, s: post(
                {
                    "symbols": ["AAPL"],
                    "as_of": s.last,
                    "model": r.choice(
                        [
                            "../../etc/passwd",
                            "lstm_returns:../../1",
                            "/etc/shadow",
                            "..",
                            "lstm_returns:1/../2",
                            "%2e%2e%2f",
                            "lstm_returns:-1",
                            "lstm_returns:99999999999999999999",
                        ]
                    ),
                }
            ),
        ),
        Kind(
            "too many symbols",
            False,
            1,
            lambda r, s: post({"symbols": [f"S{i}" for i in range(r.randint(1001, 5000))], "as_of": s.last}),
        ),
        Kind(
            "unicode junk",
            False,
            3,
            lambda r, s: r.choice(
                [
                    post({"symbols": [r.choice(JUNK_TEXT)], "as_of": s.last}),
                    post(
                        {
                            "symbols": ["AAPL"],
                            "as_of": r.choice(["２０２４-０６-２８", "2024-06-28\u0000", "🗓"]),
                        }
                    ),
                    post({"symbols": ["AAPL"], "as_of": s.last, "model": r.choice(JUNK_TEXT)}),
                    post(b'{"symbols": ["\\ud800"], "as_of": "2024-06-28"}'),
                    post({"symbols": [random_text(r) for _ in range(r.randint(1, 5))], "as_of": s.last}),
                    post({"symbols": ["AAPL"], "as_of": random_text(r)}),
                    post({"symbols": ["AAPL"], "as_of": s.last, "request_key": random_text(r) * 130}),
                ]
            ),
        ),
        Kind(
            "negative or huge numbers",
            False,
            3,
            lambda r, s: post(
                r.choice(
                    [
                        {"symbols": ["AAPL"], "as_of": -1},
                        {"symbols": ["AAPL"], "as_of": 1e308},
                        {"symbols": ["AAPL"], "as_of": "-2024-06-28"},
                        {"symbols": ["AAPL"], "as_of": "99999-01-01"},
                        {"symbols": ["AAPL"], "as_of": "0001-01-01"},
                        {"symbols": ["AAPL"], "as_of": "1900-01-02"},
                        {"instances": [{"key": "a", "window": [[1e308] * s.n_features] * (s.lookback + 1)}]},
                        {"instances": [{"key": "a", "window": [[-1.0] * (s.n_features + 3)] * s.lookback}]},
                        {"instances": [{"key": "a", "window": []}]},
                        {"instances": [{"key": "a", "window": [[1.0] * s.n_features, [1.0]] * s.lookback}]},
                    ]
                )
            ),
        ),
        Kind(
            "raw HTTP oddities",
            False,
            1,
            lambda r, s: ("RAW", "", r.choice(RAW_ODDITIES), {}),
            fresh_connection=True,
        ),
        Kind(
            "unknown path or method",
            False,
            2,
            lambda r, s: r.choice(
                [
                    get("/v1/predict"),
                    get("/../../etc/passwd"),
                    post({}, path="/v1/models"),
                    get("/v2/predict"),
                    post({}, path="/health"),
                    get("/v1/models/../../registry.db"),
                ]
            ),
        ),
    ]
    return v + h


# ---- the run ----------------------------------------------------------------------------------------------


def exchange(client: RawClient, port: int, kind: Kind, req: tuple) -> tuple[int, float]:
    method, path, body, headers = req
    if kind.fresh_connection:
        with RawClient(port, headers) as c:
            data = _with_body(c, method, path, body, headers)
            t = time.perf_counter()
            try:
                c._connected().settimeout(5)
                status, _ = c.send(data)
            except (ConnectionError, OSError, RuntimeError, ValueError, IndexError):  # no (parsable) answer
                status = -1
            return status, time.perf_counter() - t
    data = _with_body(client, method, path, body, headers)
    t = time.perf_counter()
    status, _ = client.send(data)
    return status, time.perf_counter() - t


def _with_body(client: RawClient, method: str, path: str, body: bytes | None, headers: dict) -> bytes:
    """Raw request bytes (the body as given, already encoded: malformed JSON stays malformed)."""
    if method == "RAW":  # a whole request, as is
        return body or b""
    data = body or b""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{client.port}", f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in ({"Content-Type": "application/json"} | headers).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def run(scale: str, workdir: Path, registry: Path | None = None) -> list[dict]:
    """`registry`: an already-trained registry (tests share one); else a model is trained into workdir."""
    t_train = time.perf_counter()
    trained = registry is None
    registry = registry or train(workdir)
    t_train = time.perf_counter() - t_train
    server, port, log = start_server(registry, workdir)
    try:
        t_start = time.perf_counter()
        wait_ready(port, server, log)
        t_start = time.perf_counter() - t_start
        served = describe(port)
        rows = fire(port, served, REQUESTS[scale])
        if server.poll() is not None:
            raise RuntimeError(f"deepq serve died during the run: {log.read_text()[-800:]}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    tail = [line for line in log.read_text().splitlines() if "Traceback" in line or "ERROR" in line]
    rows[0]["note"] = (
        (f"model trained in {t_train:.0f} s" if trained else "model given")
        + f", server ready in {t_start:.0f} s; "
        f"{len(tail)} error line(s) in its log" + (f"; {rows[0]['note']}" if rows[0].get("note") else "")
    )
    return rows


def fire(port: int, served: Served, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    ks = kinds()
    total = sum(k.weight for k in ks)
    plan = [k for k in ks for _ in range(max(1, round(n * k.weight / total)))]
    rng.shuffle(plan)
    results: dict[str, list[tuple[int, float]]] = {k.name: [] for k in ks}
    examples: dict[str, str] = {}
    with RawClient(port, {}) as client:
        warm = _with_body(client, *post({"symbols": served.symbols[:1], "as_of": served.last}))
        for _ in range(20):  # warm-up, not counted
            client.send(warm)
        for kind in plan:
            req = kind.make(rng, served)
            status, dt = exchange(client, port, kind, req)
            results[kind.name].append((status, dt))
            if not expected(kind, status) and kind.name not in examples:
                examples[kind.name] = f"{status} for {req[0]} {req[1]} {(req[2] or b'')[:60]!r}"
    rows = []
    for kind in ks:
        got = results[kind.name]
        statuses = np.array([s for s, _ in got])
        ms = np.array([dt for _, dt in got]) * 1000
        five = int((statuses >= 500).sum())
        wrong = int(sum(not expected(kind, s) for s in statuses))
        row: dict[str, Any] = {
            "section": "serve",
            "case": f"{'valid' if kind.valid else 'hostile'}: {kind.name}",
            "requests": len(got),
            "errors": int(((statuses >= 400) & (statuses < 500)).sum()),
            "5xx": five,
            "wrong": wrong,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "ok": five == 0 and wrong == 0,
        }
        if kind.name in examples:
            row["note"] = examples[kind.name]
        rows.append(row)
    return rows


def expected(kind: Kind, status: int) -> bool:
    return status == 200 if kind.valid else 400 <= status < 500
