"""The REST API over a real registered run: parity with offline predictions, auth, 4xx on bad input,
A/B split and stickiness, shadow logging, the features payload, metrics."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deepq.export.registry import Registry
from deepq.serve.app import create_app
from deepq.serve.service import PredictionService, ServeSettings
from tests.serve.fdr import exported_fold_oof

KEY = "test-key-123"
H = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def served(fdr_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    reg = Registry(root / "registry")
    for _ in range(3):  # three versions of the same run: A, B and the shadow
        reg.register_run(fdr_run)
    settings = ServeSettings(
        registry=str(root / "registry"),
        routes={"lstm_returns:1": 0.8, "lstm_returns:2": 0.2},
        shadow="lstm_returns:3",
        max_symbols=50,
        max_body_bytes=20_000,
        prediction_log=str(root / "predictions.jsonl"),
    )
    service = PredictionService(settings, api_key=KEY)
    return TestClient(create_app(service)), service, root


@pytest.fixture(scope="module")
def oof(fdr_run):
    return exported_fold_oof(fdr_run)


def test_api_predictions_equal_offline_out_of_fold_predictions(served, oof):
    client, _, _ = served
    dates = sorted(oof["date"].unique())
    for d in (dates[0], dates[len(dates) // 2], dates[-1]):
        rows = oof[oof["date"] == d].sort_values("symbol")
        body = {
            "symbols": list(rows["symbol"]),
            "as_of": str(pd.Timestamp(d).date()),
            "model": "lstm_returns:1",
        }
        r = client.post("/v1/predict", json=body, headers=H)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["version"] == 1 and got["as_of"] == str(pd.Timestamp(d).date())
        pred = np.array([p["pred"] for p in got["predictions"]])
        score = np.array([p["score"] for p in got["predictions"]])
        np.testing.assert_allclose(pred, rows["pred"].to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(score, rows["score"].to_numpy(), rtol=0, atol=1e-6)
        assert np.ptp(pred) > 0  # a constant model would make parity trivial


def test_features_payload_gives_the_same_prediction_as_symbols(served, oof):
    client, service, _ = served
    d = oof["date"].max()
    builder = service.models["lstm_returns:1"].builder
    t = builder.source.panel.date_index(d)
    s = builder.source.panel.symbol_index("AAPL")
    raw = builder.source.features[t - builder.lookback + 1 : t + 1, s].numpy()
    window = [[None if np.isnan(v) else float(v) for v in row] for row in raw]
    by_payload = client.post(
        "/v1/predict",
        json={"instances": [{"key": "x", "window": window}], "model": "lstm_returns:1"},
        headers=H,
    ).json()["predictions"][0]["pred"]
    by_symbol = client.post(
        "/v1/predict",
        json={"symbols": ["AAPL"], "as_of": str(pd.Timestamp(d).date()), "model": "lstm_returns:1"},
        headers=H,
    ).json()["predictions"][0]["pred"]
    assert by_payload == pytest.approx(by_symbol, abs=1e-6)


def test_auth_is_required_on_v1_but_not_on_probes(served):
    client, _, _ = served
    body = {"symbols": ["AAPL"], "as_of": "2019-06-03"}
    assert client.post("/v1/predict", json=body).status_code == 401
    assert client.post("/v1/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/predict", json=body, headers=H).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").json()["ready"] is True


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"symbols": ["AAPL"]}, 422),  # as_of missing
        ({"as_of": "2019-06-03"}, 422),  # neither symbols nor instances
        ({"symbols": ["AAPL"], "as_of": "not-a-date"}, 422),
        ({"symbols": ["NOPE"], "as_of": "2019-06-03"}, 422),  # unknown symbol
        ({"symbols": "AAPL", "as_of": "2019-06-03"}, 422),
        ({"symbols": [], "as_of": "2019-06-03"}, 422),
        ({"symbols": ["AA PL"], "as_of": "2019-06-03"}, 422),
        ({"symbols": ["AAPL"], "as_of": "1990-01-02"}, 422),  # before the panel
        ({"symbols": ["AAPL"], "as_of": "2099-01-01"}, 422),  # after the served data's last session
        ({"symbols": ["AAPL"], "as_of": "2019-06-01"}, 422),  # a Saturday: not a session
        ({"symbols": ["AAPL"], "as_of": "2019-07-04"}, 422),  # a holiday: not a session
        ({"symbols": ["AAPL"], "as_of": "2019-06-03", "allow_stale": "maybe"}, 422),
        ({"symbols": ["AAPL"], "as_of": "2019-06-03", "surprise": 1}, 422),
        ({"instances": [{"key": "a", "window": [[1.0, 2.0]]}]}, 422),  # wrong window shape
        ({"instances": [{"key": "a", "window": [[1.0], [1.0, 2.0]]}]}, 422),  # ragged
        ({"symbols": ["AAPL"], "as_of": "2019-06-03", "model": "other:7"}, 404),
        ({"symbols": ["AAPL"] * 51, "as_of": "2019-06-03"}, 413),  # over max_symbols
        ({"symbols": ["AAPL"] * 2000, "as_of": "2019-06-03"}, 413),  # over max_body_bytes
    ],
)
def test_malformed_requests_get_4xx_not_5xx(served, body, status):
    client, _, _ = served
    r = client.post("/v1/predict", json=body, headers=H)
    assert r.status_code == status, r.text
    assert "detail" in r.json()


@pytest.mark.parametrize(
    ("as_of", "last_session"),
    [("2099-01-01", "2024-06-28"), ("2024-06-29", "2024-06-28"), ("2019-06-01", "2019-05-31")],
)
def test_stale_and_non_session_dates_name_the_last_session_unless_allowed(served, as_of, last_session):
    """The old server answered 2099-01-01 or a Saturday with 200 and an old forecast, unflagged."""
    client, _, _ = served
    body = {"symbols": ["AAPL", "JPM"], "as_of": as_of, "model": "lstm_returns:1"}
    r = client.post("/v1/predict", json=body, headers=H)
    assert r.status_code == 422 and last_session in r.json()["detail"], r.text
    r = client.post("/v1/predict", json=body | {"allow_stale": True}, headers=H)
    got = r.json()
    assert r.status_code == 200 and got["stale"] is True and got["as_of"] == last_session, r.text
    assert got["data_as_of"] == "2024-06-28" and got["stale_sessions"] > 0  # the sample ends 2024-06-28
    fresh = client.post("/v1/predict", json=body | {"as_of": last_session}, headers=H).json()
    assert fresh["stale"] is False and [p["pred"] for p in fresh["predictions"]] == [
        p["pred"] for p in got["predictions"]
    ]


def test_non_json_body_is_422(served):
    client, _, _ = served
    r = client.post("/v1/predict", content=b"{not json", headers=H | {"Content-Type": "application/json"})
    assert r.status_code == 422


def test_ab_split_follows_weights_and_is_sticky(served):
    client, _, root = served
    n = 300
    log = root / "predictions.jsonl"
    logged_before = len(log.read_text().splitlines()) if log.exists() else 0  # other tests share the server
    versions = Counter()
    for i in range(n):
        r = client.post(
            "/v1/predict",
            json={"symbols": ["JPM"], "as_of": "2019-06-03", "request_key": f"client-{i}"},
            headers=H,
        )
        versions[r.json()["version"]] += 1
    share_b = versions[2] / n
    assert set(versions) == {1, 2} and abs(share_b - 0.2) < 0.08, versions  # 3.5 binomial s.d.
    during = [json.loads(x) for x in log.read_text().splitlines()[logged_before:]]
    sticky = {
        client.post(
            "/v1/predict",
            json={"symbols": ["JPM"], "as_of": "2019-06-03", "request_key": "client-7"},
            headers=H,
        ).json()["version"]
        for _ in range(10)
    }
    assert len(sticky) == 1
    # every prediction logged with its version; the shadow predicted the same requests
    roles = Counter((x["role"], x["model"]) for x in during)
    assert roles[("shadow", "lstm_returns:3")] == n and roles[("primary", "lstm_returns:2")] == versions[2]


def test_models_and_metrics_endpoints(served, oof):
    client, _, _ = served
    # this test's own traffic for the counters below (under xdist the other tests may run elsewhere)
    body = {"symbols": ["AAPL"], "as_of": str(pd.Timestamp(sorted(oof["date"].unique())[-1]).date())}
    assert client.post("/v1/predict", json=body).status_code == 401
    assert client.post("/v1/predict", json=body, headers=H).status_code == 200
    models = client.get("/v1/models", headers=H).json()
    refs = {m["ref"]: m for m in models["models"]}
    assert (
        set(refs) == {"lstm_returns:1", "lstm_returns:2", "lstm_returns:3"}
        and models["shadow"] == "lstm_returns:3"
    )
    assert refs["lstm_returns:1"]["weight"] == 0.8 and len(refs["lstm_returns:1"]["features"]) == 32
    text = client.get("/metrics").text
    assert 'deepq_predictions_total{model="lstm_returns:3",role="shadow"}' in text
    assert 'deepq_requests_total{endpoint="/v1/predict",status="401"}' in text
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_prices_after_as_of_do_not_change_the_prediction(served, oof):
    """Serving computes features over the whole panel once; with causal features that must equal computing them
    over the panel truncated at as_of (what 'features up to the as-of date' means)."""
    _, service, root = served
    d = str(pd.Timestamp(sorted(oof["date"].unique())[5]).date())
    symbols = ["AAPL", "JPM", "XOM", "NFLX"]
    full, _ = service.predict(lambda b: b.for_symbols(symbols, d), pinned="lstm_returns:1")
    cut = PredictionService(
        ServeSettings(
            registry=str(root / "registry"), routes={"lstm_returns:1": 1.0}, data_overrides={"end": d}
        )
    )
    assert cut.models["lstm_returns:1"].builder.source.panel.dates[-1] == np.datetime64(d)
    truncated, _ = cut.predict(lambda b: b.for_symbols(symbols, d))
    assert [p["pred"] for p in truncated["predictions"]] == pytest.approx(
        [p["pred"] for p in full["predictions"]], abs=1e-6
    )
