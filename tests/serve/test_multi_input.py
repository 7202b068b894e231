"""Serving a multi-input network (TFT: feature window x, static symbol/sector ids, known calendar) over REST
and gRPC: its predictions equal the offline walk-forward predictions, with ONNX Runtime and TorchScript."""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deepq.dataset.covariates import calendar_features, extend_sessions
from deepq.serve.app import create_app
from deepq.serve.grpc_server import start_grpc
from deepq.serve.pb import deepq_pb2, deepq_pb2_grpc
from deepq.serve.service import PredictionService, ServeSettings
from tests.serve.fdr import tft_run_dir

KEY = "tft-key"
H = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def tft(tmp_path_factory):
    run, registry = tft_run_dir(tmp_path_factory)
    frame = pd.read_parquet(run / "predictions.parquet")
    oof = frame[frame["model"] == "tft"]
    return registry, oof[oof["fold"] == oof["fold"].max()]  # the exported model is the last fold's


def _dates(oof: pd.DataFrame) -> list[pd.Timestamp]:
    dates = sorted(oof["date"].unique())
    return [pd.Timestamp(d) for d in (dates[0], dates[len(dates) // 3], dates[-1])]


def test_rest_predictions_of_a_tft_equal_offline_predictions(tft):
    registry, oof = tft
    service = PredictionService(ServeSettings(registry=str(registry), prediction_log=None), api_key=KEY)
    client = TestClient(create_app(service))
    info = client.get("/v1/models", headers=H).json()["models"][0]
    assert info["inputs"] == ["x", "static", "known"] and info["runtime"] == "onnxruntime"
    for d in _dates(oof):
        rows = oof[oof["date"] == d].sort_values("symbol")
        body = {"symbols": list(rows["symbol"]), "as_of": str(d.date())}
        r = client.post("/v1/predict", json=body, headers=H)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert [p["key"] for p in got] == list(rows["symbol"])
        pred = np.array([p["pred"] for p in got])
        np.testing.assert_allclose(pred, rows["pred"].to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose([p["score"] for p in got], rows["score"].to_numpy(), rtol=0, atol=1e-6)
        assert np.ptp(pred) > 0  # a constant model would make parity trivial
    # raw feature windows carry no symbol or date for the ids and the calendar: a clear 422, not a 5xx
    window = [[0.0] * len(info["features"])] * int(info["lookback"])
    r = client.post("/v1/predict", json={"instances": [{"key": "a", "window": window}]}, headers=H)
    assert r.status_code == 422 and "symbols and as_of" in r.json()["detail"]


def test_grpc_predictions_of_a_tft_with_torchscript_equal_offline_predictions(tft):
    registry, oof = tft
    service = PredictionService(ServeSettings(registry=str(registry), runtime="torchscript"), api_key=KEY)
    assert next(iter(service.models.values())).runtime == "torchscript"
    server, port = start_grpc(service, "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = deepq_pb2_grpc.PredictorStub(channel)
            for d in _dates(oof)[1:]:
                rows = oof[oof["date"] == d].sort_values("symbol")
                req = deepq_pb2.PredictRequest(symbols=list(rows["symbol"]), as_of=str(d.date()))
                resp = stub.Predict(req, metadata=[("x-api-key", KEY)], timeout=30)
                assert [p.pred for p in resp.predictions] == pytest.approx(list(rows["pred"]), abs=1e-6)
    finally:
        server.stop(grace=None)


def test_static_ids_and_calendar_are_the_training_run_ones(tft):
    """The ids come from model.json (training panel order and sectors), the calendar from the session dates:
    symbol j of the training panel has id j, and `known` covers the window and the label's future sessions."""
    registry, oof = tft
    service = PredictionService(ServeSettings(registry=str(registry), runtime="torchscript"))
    builder = next(iter(service.models.values())).builder
    meta = builder.meta
    panel = builder.source.panel
    d = _dates(oof)[-1]
    t = panel.date_index(d)
    symbols = ["XOM", "AAPL"]
    cols = np.array([panel.symbol_index(s) for s in symbols])
    x, static, known = builder.model_inputs(np.full(2, t), cols)
    assert static.tolist() == [
        [meta["symbols"].index(s), meta["sector_of_symbol"][meta["symbols"].index(s)]] for s in symbols
    ]
    L, K = int(meta["lookback"]), int(meta["future_days"])
    sessions = extend_sessions(panel.dates, K)[t - L + 1 : t + K + 1]
    np.testing.assert_array_equal(known[0].numpy(), calendar_features(sessions))
    assert x.shape == (2, L, len(meta["features"]))
