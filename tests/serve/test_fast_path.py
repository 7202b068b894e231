"""The REST fast lane (FrontDoor) answers exactly as the documented FastAPI route, turns a server bug into a
counted 500 without internals, and the inference runtime is chosen by a parity check against TorchScript."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from deepq.export.registry import Registry
from deepq.serve.app import create_app
from deepq.serve.runtime import choose_runner
from deepq.serve.service import PredictionService, ServeSettings

KEY = "fast-key"
H = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def app_and_service(fdr_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    Registry(root / "registry").register_run(fdr_run)
    service = PredictionService(ServeSettings(registry=str(root / "registry"), max_symbols=20), api_key=KEY)
    return create_app(service), service, create_app(service, fast_lane=False)


@pytest.mark.parametrize(
    "body",
    [
        {"symbols": ["AAPL", "JPM", "NFLX"], "as_of": "2019-06-03", "model": "lstm_returns:1"},
        {"symbols": ["AAPL"], "as_of": "2019-06-03", "request_key": "k1"},
        {"symbols": ["NOPE"], "as_of": "2019-06-03"},
        {"symbols": ["AAPL"]},
        {"symbols": ["AAPL"] * 21, "as_of": "2019-06-03"},
        {"symbols": ["AAPL"], "as_of": "2019-06-03", "model": "other:1"},
    ],
)
def test_fast_lane_answers_as_the_fastapi_route(app_and_service, body):
    app, _, slow = app_and_service
    fast = TestClient(app).post("/v1/predict", json=body, headers=H)
    route = TestClient(slow).post("/v1/predict", json=body, headers=H)  # FastAPI's route
    assert fast.status_code == route.status_code
    a, b = fast.json(), route.json()
    if fast.status_code == 200:
        assert a.pop("request_id") != b.pop("request_id")  # fresh per request
    assert a == b
    assert TestClient(slow).post("/v1/predict", json=body).status_code == 401


def test_a_server_bug_is_a_500_without_internals_and_is_counted(app_and_service, monkeypatch, caplog):
    app, service, _ = app_and_service

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="deepq.serve"):
        r = TestClient(app).post("/v1/predict", json={"symbols": ["AAPL"], "as_of": "2019-06-03"}, headers=H)
    assert r.status_code == 500 and "secret" not in r.text
    assert "secret internals" in caplog.text  # the traceback goes to the server log
    metrics = TestClient(app).get("/metrics").text
    assert 'deepq_requests_total{endpoint="/v1/predict",status="500"} 1.0' in metrics


def test_openapi_documents_the_predict_request_body(app_and_service):
    app, _, _ = app_and_service
    schema = TestClient(app).get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    comps = schema["components"]["schemas"]
    assert {"symbols", "as_of", "instances"} <= set(comps["PredictRequest"]["properties"])
    assert "Instance" in comps and "PredictResponse" in comps


def test_served_runtime_matches_torchscript_on_the_served_panel(app_and_service):
    _, service, _ = app_and_service
    model = service.models["lstm_returns:1"]
    assert model.runtime == "onnxruntime"
    builder = model.builder
    t = int(np.flatnonzero(builder.servable.any(axis=1))[-1])
    cols = np.flatnonzero(builder.servable[t])
    xs = builder.model_inputs(np.full(len(cols), t), cols)
    with torch.inference_mode():
        ref = model.module(*xs).numpy()
    np.testing.assert_allclose(model.run(xs), ref, rtol=0, atol=1e-6)
    one = builder.model_inputs(np.array([t]), cols[:1])  # the one-row path normalises in numpy
    np.testing.assert_array_equal(one[0].numpy(), xs[0][:1].numpy())


def _scripted() -> tuple[torch.jit.ScriptModule, list[tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = torch.randn(5, 4, 3)
    return torch.jit.trace(net, (x,)), [(x[:1],), (x,)]


def test_runtime_auto_falls_back_to_torchscript_and_strict_onnxruntime_refuses(caplog):
    module, examples = _scripted()
    name, run = choose_runner("auto", module, examples, ["x"], "m:1")
    assert name == "onnxruntime"
    np.testing.assert_allclose(run(examples[1]), module(*examples[1]).detach().numpy(), atol=1e-6)
    with caplog.at_level(logging.WARNING, logger="deepq.serve"):  # an impossible tolerance fails the check
        assert choose_runner("auto", module, examples, ["x"], "m:1", parity_atol=-1.0)[0] == "torchscript"
    assert "m:1: serving with TorchScript" in caplog.text
    with pytest.raises(RuntimeError, match="m:1: cannot serve with ONNX Runtime"):
        choose_runner("onnxruntime", module, examples, ["x"], "m:1", parity_atol=-1.0)
    with pytest.raises(ValueError, match="runtime 'tensorrt'"):
        choose_runner("tensorrt", module, examples, ["x"], "m:1")
