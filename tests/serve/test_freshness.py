"""A server that stays fresh: reload picks up sessions appended to a copy of the sample, swaps the panel
atomically (a concurrent request answers wholly from the old or the new panel), keeps the old panel when a
reload fails, flags stale data, and /ready turns 503 beyond max_staleness_sessions. "Today" is an injected
clock, never the wall clock."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deepq.export.registry import Registry
from deepq.serve.app import create_app
from deepq.serve.rest import answer_predict
from deepq.serve.service import PredictionService, ServeSettings
from tests.conftest import SAMPLE

KEY = "fresh-key"
H = {"X-API-Key": KEY}
SYMBOLS = ["AAPL", "JPM", "XOM", "NFLX", "JNJ"]
CUT = "2024-06-25"  # the copy starts here; the sample's last three sessions arrive later, one by one
NEW = ["2024-06-26", "2024-06-27", "2024-06-28"]


class Clock:
    """A settable 'now' (UTC): the service reads it for every freshness figure."""

    def __init__(self, now: str):
        self.set(now)

    def set(self, now: str) -> None:
        self.now = datetime.fromisoformat(now).replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")  # as the cache writes: temp file + rename, so a reader never sees half
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


@pytest.fixture(scope="module")
def sample_prices() -> pd.DataFrame:
    frame = pd.read_parquet(SAMPLE / "prices.parquet")
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


@pytest.fixture(scope="module")
def registry(fdr_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fresh_registry")
    Registry(root).register_run(fdr_run)
    return root


def _service(registry: Path, clock: Clock, **settings) -> PredictionService:
    return PredictionService(
        ServeSettings(registry=str(registry), routes={"lstm_returns:1": 1.0}, **settings), KEY, clock
    )


@pytest.fixture
def truncated(sample_prices, registry, tmp_path):
    """A service over a copy of the sample that ends at CUT, with a clock at the close of 2024-06-28."""
    prices = tmp_path / "prices.parquet"
    _write(sample_prices[sample_prices["date"] <= CUT], prices)
    clock = Clock("2024-06-28T21:00:00")  # 17:00 in New York: the 28th is a completed session
    service = _service(registry, clock, data_overrides={"prices": str(prices)}, max_staleness_sessions=2)
    return service, prices, clock


@pytest.fixture(scope="module")
def reference(registry):
    """The full sample (through 2024-06-28) served as usual: what the reloaded server must answer."""
    return _service(registry, Clock("2024-06-28T21:00:00"))


def _append_through(sample_prices: pd.DataFrame, path: Path, last: str) -> None:
    _write(sample_prices[sample_prices["date"] <= last], path)


def _preds(body: dict) -> list[float | None]:
    return [p["pred"] for p in body["predictions"]]


def test_reload_picks_up_appended_sessions(truncated, reference, sample_prices):
    service, prices, _ = truncated
    client = TestClient(create_app(service))
    d = NEW[-1]
    ask = {"symbols": SYMBOLS, "as_of": d}
    models = client.get("/v1/models", headers=H).json()
    assert (models["data_as_of"], models["stale_sessions"]) == (CUT, 3)
    assert models["models"][0]["data_as_of"] == CUT

    r = client.post("/v1/predict", json=ask, headers=H)  # the feed stopped: say so, naming the last session
    assert r.status_code == 422 and CUT in r.json()["detail"], r.text
    r = client.post("/v1/predict", json=ask | {"allow_stale": True}, headers=H)
    assert r.status_code == 200, r.text
    assert (r.json()["as_of"], r.json()["stale"], r.json()["stale_sessions"]) == (CUT, True, 3)

    # the refresher's check: nothing changed -> no rebuild; one new session -> reload
    assert service.refresh_if_changed() is None
    _append_through(sample_prices, prices, NEW[0])
    out = service.refresh_if_changed()
    assert out is not None and (out["previous_data_as_of"], out["data_as_of"]) == (CUT, NEW[0])
    assert service.refresh_if_changed() is None

    # the background refresher notices the next session by itself
    _append_through(sample_prices, prices, NEW[1])
    service.start_refresher(0.05)
    try:
        for _ in range(600):
            if service.state.data_as_of == NEW[1]:
                break
            threading.Event().wait(0.05)
    finally:
        service.stop_refresher()
    assert service.state.data_as_of == NEW[1]

    # the last session by the admin route, as `deepq daily` calls it
    _append_through(sample_prices, prices, NEW[2])
    assert client.post("/v1/admin/reload").status_code == 401
    r = client.post("/v1/admin/reload", headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["data_as_of"] == d and r.json()["stale_sessions"] == 0
    got = client.post("/v1/predict", json=ask, headers=H).json()
    assert (got["as_of"], got["data_as_of"], got["stale_sessions"], got["stale"]) == (d, d, 0, False)
    want, _ = reference.predict(lambda b: b.for_symbols(SYMBOLS, d, allow_stale=False))
    assert np.ptp(_preds(want)) > 0
    assert _preds(got) == pytest.approx(_preds(want), abs=1e-6)  # as if the server had started with them
    assert client.get("/v1/models", headers=H).json()["data_as_of"] == d


def test_concurrent_requests_answer_from_the_old_or_the_new_panel_never_a_mix(truncated, sample_prices):
    service, prices, _ = truncated
    body = b'{"symbols": ["AAPL", "JPM", "XOM", "NFLX", "JNJ"], "as_of": "2024-06-28", "allow_stale": true}'

    def answer() -> tuple:
        status, out, _ = answer_predict(service, KEY, body)
        assert status == 200, out
        b = json.loads(out)
        return b["as_of"], b["data_as_of"], b["stale"], tuple(_preds(b))

    old = answer()
    held = service.state  # a request in flight holds this state
    _append_through(sample_prices, prices, NEW[2])
    seen: list[tuple] = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            seen.append(answer())

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        while not seen and worker.is_alive():  # the worker is answering before the reload starts
            threading.Event().wait(0.001)
        service.reload()
        after = len(seen)
        for _ in range(1000):  # a few more answers after the swap
            if len(seen) >= after + 20:
                break
            threading.Event().wait(0.01)
    finally:
        done.set()
        worker.join()
    new = answer()
    assert old[:3] == (CUT, CUT, True) and new[:3] == (NEW[2], NEW[2], False) and old[3] != new[3]
    assert set(seen) == {old, new}, set(seen) - {old, new}  # both panels answered, nothing in between
    # the state a request read before the swap is untouched: its panel still ends at CUT
    assert str(held.models["lstm_returns:1"].builder.source.panel.dates[-1]) == CUT


def test_a_failed_reload_keeps_serving_the_old_panel(truncated):
    service, prices, _ = truncated
    client = TestClient(create_app(service))
    prices.write_bytes(b"not parquet")  # a broken copy of the cache
    r = client.post("/v1/admin/reload", headers=H)
    assert r.status_code == 500 and CUT in r.json()["detail"], r.text
    assert service.state.data_as_of == CUT
    r = client.post("/v1/predict", json={"symbols": SYMBOLS, "as_of": CUT}, headers=H)
    assert r.status_code == 200 and r.json()["data_as_of"] == CUT
    assert 'deepq_reloads_total{outcome="error"} 1.0' in client.get("/metrics").text


def test_ready_is_503_when_data_is_older_than_max_staleness(truncated):
    service, _, clock = truncated  # data through CUT (a Tuesday); max_staleness_sessions=2
    client = TestClient(create_app(service))
    clock.set("2024-06-27T21:00:00")  # 26th and 27th completed: 2 behind, still ready
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["stale_sessions"] == 2, r.text
    clock.set("2024-06-28T15:00:00")  # 11:00 in New York: the 28th is still trading
    assert client.get("/ready").json()["stale_sessions"] == 2
    clock.set("2024-06-28T21:00:00")
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["ready"] is False, r.text
    assert CUT in r.json()["reason"] and "max_staleness_sessions=2" in r.json()["reason"]
    clock.set("2024-07-06T12:00:00")  # a Saturday after the 4th of July: 1st, 2nd, 3rd, 5th added
    assert client.get("/ready").json()["stale_sessions"] == 7
    assert "deepq_data_stale_sessions 7.0" in client.get("/metrics").text
