"""The router on its own (many keys, no HTTP) and the gRPC service on a loopback port."""

from __future__ import annotations

from collections import Counter

import grpc
import pandas as pd
import pytest

from deepq.export.registry import Registry
from deepq.serve.grpc_server import start_grpc
from deepq.serve.pb import deepq_pb2, deepq_pb2_grpc
from deepq.serve.routing import Router
from deepq.serve.service import PredictionService, ServeSettings


def test_router_split_and_stickiness():
    router = Router.from_weights({"a": 0.7, "b": 0.2, "c": 0.1})
    counts = Counter(router.choose(f"k{i}") for i in range(50_000))
    assert abs(counts["a"] / 50_000 - 0.7) < 0.01 and abs(counts["c"] / 50_000 - 0.1) < 0.01
    assert all(router.choose("k42") == router.choose("k42") for _ in range(5))
    assert Router.from_weights({"a": 0.0, "b": 1.0}).choose("anything") == "b"
    with pytest.raises(ValueError, match="weights"):
        Router.from_weights({"a": -1.0})


def test_grpc_round_trip_matches_offline(fdr_run, tmp_path):
    Registry(tmp_path / "reg").register_run(fdr_run)
    service = PredictionService(ServeSettings(registry=str(tmp_path / "reg")), api_key="k")
    server, port = start_grpc(service, "127.0.0.1:0")
    try:
        oof = pd.read_parquet(fdr_run / "predictions.parquet")
        oof = oof[(oof["model"] == "lstm") & (oof["fold"] == oof["fold"].max())]
        d = oof["date"].max()
        rows = oof[oof["date"] == d].sort_values("symbol")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = deepq_pb2_grpc.PredictorStub(channel)
            req = deepq_pb2.PredictRequest(symbols=list(rows["symbol"]), as_of=str(pd.Timestamp(d).date()))
            resp = stub.Predict(req, metadata=[("x-api-key", "k")], timeout=30)
            assert resp.model == "lstm_returns" and resp.version == 1
            got = [p.pred for p in resp.predictions]
            assert got == pytest.approx(list(rows["pred"]), abs=1e-6)
            assert [
                m.ref
                for m in stub.ListModels(deepq_pb2.ListModelsRequest(), metadata=[("x-api-key", "k")]).models
            ] == ["lstm_returns:1"]
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(req, timeout=30)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(
                    deepq_pb2.PredictRequest(symbols=["NOPE"], as_of="2019-06-03"),
                    metadata=[("x-api-key", "k")],
                )
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # freshness as in REST: data_as_of on every answer, stale and non-session dates refused
            assert (resp.data_as_of, resp.stale) == ("2024-06-28", False) and resp.stale_sessions > 0
            listed = stub.ListModels(deepq_pb2.ListModelsRequest(), metadata=[("x-api-key", "k")])
            assert listed.data_as_of == listed.models[0].data_as_of == "2024-06-28"
            for day in ("2099-01-01", "2019-06-01"):  # after the data; a Saturday
                with pytest.raises(grpc.RpcError) as e:
                    stub.Predict(
                        deepq_pb2.PredictRequest(symbols=["AAPL"], as_of=day), metadata=[("x-api-key", "k")]
                    )
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "2024-06-28" in e.value.details() or "2019-05-31" in e.value.details()
            stale = stub.Predict(
                deepq_pb2.PredictRequest(symbols=["AAPL"], as_of="2099-01-01", allow_stale=True),
                metadata=[("x-api-key", "k")],
            )
            assert (stale.as_of, stale.stale) == ("2024-06-28", True)
    finally:
        server.stop(grace=None)
