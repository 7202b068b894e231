"""The cross-sectional path end to end on the real sample: a MASTER-style network trained on whole dates
with a ranking loss, selected on validation rank IC, registered, then scored by `deepq predict` and by the
server. Its score for a stock does not depend on which symbols a request asks for (the whole date is run),
and it equals the training run's out-of-fold prediction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from deepq.export.registry import Registry
from deepq.serve.app import create_app
from deepq.serve.service import PredictionService, ServeSettings
from deepq.tasks.predict import predict
from deepq.tasks.train import train
from tests.conftest import compose_cfg
from tests.serve.fdr import SYMBOLS

MASTER = [
    "debug=fdr",
    "model=master",
    "ranking=ic",
    "target=cs_rank",
    "data.start=2012-01-01",
    f"data.symbols={SYMBOLS}",
    "datamodule.lookback=20",
    "datamodule.dates_per_batch=8",
    "model.hidden_size=8",
    "split.max_folds=1",
    "registry.enabled=true",
]


@pytest.fixture(scope="module")
def master_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("master")
    result = train(compose_cfg(out / "run", [*MASTER, f"registry.root={out / 'registry'}"]))
    return out / "run", out / "registry", result


def test_trained_on_dates_selected_on_rank_ic_and_it_ranks(master_run):
    run, _, result = master_run
    assert np.isfinite(result["val_rank_ic"]) and "val_loss" in result
    logged = pd.concat(pd.read_csv(p) for p in run.glob("logs/**/metrics.csv"))
    assert "val_rank_ic" in logged and logged["val_rank_ic"].notna().any()
    oof = pd.read_parquet(run / "predictions.parquet")
    oof = oof[oof["model"] == "master"]
    distinct = oof.groupby("date")["score"].agg(lambda s: s.nunique() / len(s))
    assert distinct.median() > 0.95, "the cross-stock network gives the stocks of a date the same score"
    meta = json.loads((run / "metrics.json").read_text())["run"]
    assert "cs_rank" in meta["target"] and meta["verdict"]


def test_predict_equals_the_out_of_fold_scores_and_ignores_the_symbol_subset(master_run):
    run, registry, _ = master_run
    oof = pd.read_parquet(run / "predictions.parquet")
    oof = oof[(oof["model"] == "master") & (oof["fold"] == oof["fold"].max())]
    days = sorted(oof["date"].unique())
    picked = [str(pd.Timestamp(d).date()) for d in (days[0], days[-1])]
    got = predict("master_returns:1", dates=picked, registry=registry)
    scored = got[got["in_universe"]]
    want = oof[oof["date"].isin(pd.to_datetime(picked))]
    merged = want.merge(scored, on=["date", "symbol"], suffixes=("_oof", ""), validate="one_to_one")
    assert len(merged) == len(want) > 10
    np.testing.assert_allclose(merged["score"], merged["score_oof"], rtol=0, atol=1e-6)
    two = predict("master_returns:1", dates=picked, symbols=["AAPL", "XOM"], registry=registry)
    full = scored.set_index(["date", "symbol"])["score"]
    np.testing.assert_allclose(
        two.set_index(["date", "symbol"])["score"],
        full.loc[two.set_index(["date", "symbol"]).index],
        atol=1e-6,
    )


def test_the_server_runs_the_whole_date_and_answers_the_asked_symbols(master_run):
    _, registry, _ = master_run
    Registry(registry).resolve("master_returns:1")
    clock = lambda: datetime(2024, 6, 28, 21, tzinfo=UTC)  # noqa: E731
    service = PredictionService(
        ServeSettings(registry=str(registry), routes={"master_returns:1": 1.0}), "k", clock
    )
    client = TestClient(create_app(service))
    ask = {"as_of": "2024-06-28"}
    one = client.post("/v1/predict", json=ask | {"symbols": ["AAPL"]}, headers={"X-API-Key": "k"})
    many = client.post(
        "/v1/predict", json=ask | {"symbols": ["JPM", "AAPL", "XOM"]}, headers={"X-API-Key": "k"}
    )
    assert one.status_code == many.status_code == 200, one.text
    by = {p["key"]: p["score"] for p in many.json()["predictions"]}
    assert one.json()["predictions"][0]["score"] == pytest.approx(by["AAPL"], abs=1e-6)
    assert len(set(by.values())) == 3
    offline = predict("master_returns:1", dates=["2024-06-28"], symbols=["AAPL"], registry=registry)
    assert offline["score"].iloc[0] == pytest.approx(by["AAPL"], abs=1e-5)


def test_ranking_losses_train_the_lstm_and_need_whole_dates(tmp_path):
    tiny = ["debug=tiny", "model.hidden_size=8", "registry.enabled=false", "export=false"]
    result = train(compose_cfg(tmp_path / "a", [*tiny, "ranking=listnet"]))
    assert np.isfinite(result["val_rank_ic"]) and np.isfinite(result["lstm/rank_ic"])
    oof = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    oof = oof[oof["model"] == "lstm"]
    assert oof.groupby("date")["score"].nunique().min() > 1
    with pytest.raises(ValueError, match="datamodule.batching=date"):
        train(compose_cfg(tmp_path / "b", [*tiny, "ranking=pairwise", "datamodule.batching=window"]))
