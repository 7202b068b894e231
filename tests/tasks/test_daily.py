"""`deepq daily` end to end on a cache built from the sample: a tiny model trained on the cache cut at
2024-06-25, then the sample's last three sessions arrive one by one through a local feed (the offline update
source) and `daily` runs after each. Each new date is scored as an offline `predict` scores it, a real server
on 127.0.0.1 answers for it after the reload, and a fourth run with no new data changes nothing. A run stopped
right after predict wrote finishes next time without duplicate rows; a failed quality gate stops the run."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import deepq.tasks.predict as predict_mod
from deepq.data.sources.local import LocalSource
from deepq.tasks.daily import STEPS, daily, load_daily_config, main
from deepq.tasks.daily_steps import KEY
from deepq.tasks.predict import predict
from tests.conftest import SAMPLE, compose_cfg

SYMBOLS = ["AAPL", "JPM", "XOM", "JNJ", "WMT", "GE", "NEE", "AMT", "NFLX", "SPY", "^GSPC"]
CUT = "2024-06-25"
NEW = ["2024-06-26", "2024-06-27", "2024-06-28"]
API_KEY = "daily-key"


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(sample rows, the cache at CUT, the registry of a model trained on that cache)."""
    from deepq.tasks.data import copy_meta, load_config, store_and_sessions, syncer
    from deepq.tasks.train import train

    base = tmp_path_factory.mktemp("daily")
    prices = pd.read_parquet(SAMPLE / "prices.parquet")
    prices["date"] = pd.to_datetime(prices["date"])
    prices = prices[prices["symbol"].isin(SYMBOLS) & (prices["date"] >= "2018-01-01")]
    feed = base / "feed.parquet"
    _write(prices[prices["date"] <= CUT], feed)
    cache = base / "cache"
    cfg = load_config([f"data.root={cache}", "sources=local", f"sources.chain.0.path={feed}"])
    store, days = store_and_sessions(cfg)
    copy_meta({n: SAMPLE / n for n in ("sectors.parquet", "constituents.parquet")}, store)
    syncer(cfg, store, days, None).import_local(LocalSource(feed))  # `deepq data import`
    names = "[" + ",".join(f"'{s}'" for s in SYMBOLS) + "]"
    overrides = ["debug=fdr", "data=cache", f"data.root={cache}", "data.start=2018-01-01", "split.max_folds=1",
                 f"data.symbols={names}", "datamodule.lookback=20", "model.hidden_size=8",
                 "registry.enabled=true", f"registry.root={base / 'registry'}"]  # fmt: skip
    train(compose_cfg(base / "run", overrides))
    return prices, cache, base / "registry"


@pytest.fixture
def setup(world, tmp_path):
    """A fresh copy of the cache at CUT, its feed, and the daily config over them."""
    prices, cache, registry = world
    mine, feed = tmp_path / "cache", tmp_path / "feed.parquet"
    shutil.copytree(cache, mine)
    _write(prices[prices["date"] <= CUT], feed)
    cfg = load_daily_config([f"registry={registry}", f"out={tmp_path / 'daily'}"])
    cfg = OmegaConf.merge(cfg, {
        "data_overrides": {"root": str(mine)},
        "update": {"overrides": ["sources=local", f"sources.chain.0.path={feed}"]},
        "monitor": {"overrides": {"importance_samples": 0}},
    })  # fmt: skip
    return cfg, prices, mine, feed, registry, tmp_path / "daily"


def _offline(registry: Path, cache: Path, day: str) -> pd.DataFrame:
    return predict("lstm_returns:1", dates=[day], registry=registry, overrides=[f"data.root={cache}"])


def _statuses(results) -> dict[str, str]:
    assert [r.step for r in results] == list(STEPS)
    return {r.step: r.status for r in results}


@pytest.fixture
def server(world, setup):
    """The real app over the test's cache, on 127.0.0.1 in a thread."""
    import uvicorn

    from deepq.serve.app import create_app
    from deepq.serve.service import PredictionService, ServeSettings

    _, _, registry = world
    cache = setup[2]
    settings = ServeSettings(
        registry=str(registry), routes={"lstm_returns:1": 1.0}, data_overrides={"root": str(cache)}
    )
    service = PredictionService(settings, API_KEY, lambda: datetime(2024, 6, 28, 21, tzinfo=UTC))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_three_new_sessions_one_by_one_then_a_no_op(setup, server, monkeypatch):
    cfg, prices, cache, feed, registry, out = setup
    cfg = OmegaConf.merge(cfg, {"server": {"url": server}})
    monkeypatch.setenv("DEEPQ_API_KEY", API_KEY)
    ask = {"symbols": ["AAPL", "JPM", "XOM", "NFLX", "JNJ"]}
    for day in NEW:
        _write(prices[prices["date"] <= day], feed)  # the vendor's new session
        results = daily(cfg)
        assert set(_statuses(results).values()) == {"done"}, results
        preds = pd.read_parquet(out / "predictions.parquet")
        assert not preds.duplicated(list(KEY)).any()
        assert sorted(str(d.date()) for d in preds["date"].unique()) == NEW[: NEW.index(day) + 1]
        got = preds[preds["date"] == day].set_index("symbol")
        want = _offline(registry, cache, day).set_index("symbol")
        assert list(got.index) == list(want.index) and got["in_universe"].sum() > 5
        np.testing.assert_allclose(got["pred"], want["pred"], rtol=0, atol=1e-6)
        assert np.nanstd(got["pred"]) > 0  # a constant model would make parity trivial
        r = httpx.post(f"{server}/v1/predict", json=ask | {"as_of": day}, headers={"X-API-Key": API_KEY})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["as_of"], body["data_as_of"]) == (day, day)
        served = [p["pred"] for p in body["predictions"]]
        np.testing.assert_allclose(served, want.loc[ask["symbols"], "pred"], rtol=0, atol=1e-6)

    state, table = out / "state.json", out / "predictions.parquet"
    report = out / "monitor" / "monitor_report.json"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (state, table, report)}
    manifest = (cache / "manifest.parquet").read_bytes() if (cache / "manifest.parquet").exists() else None
    results = daily(cfg)  # no new session: nothing to do
    st = _statuses(results)
    assert st["update"] == "done" and all(st[s] == "skipped" for s in STEPS[1:]), results
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    if manifest is not None:
        assert (cache / "manifest.parquet").read_bytes() == manifest


def test_a_run_stopped_after_predict_wrote_finishes_without_duplicates(setup, monkeypatch):
    cfg, prices, cache, feed, registry, out = setup
    _write(prices[prices["date"] <= NEW[0]], feed)
    real = predict_mod.write_predictions

    def write_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt("killed after predict wrote")

    monkeypatch.setattr(predict_mod, "write_predictions", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        daily(cfg)
    written = pd.read_parquet(out / "predictions.parquet")
    assert set(written["date"]) == {pd.Timestamp(NEW[0])}
    monkeypatch.setattr(predict_mod, "write_predictions", real)

    st = _statuses(daily(cfg))
    assert (st["update"], st["quality"], st["predict"], st["monitor"]) == ("done", "skipped", "done", "done")
    assert st["reload"] == "skipped"  # no server configured
    again = pd.read_parquet(out / "predictions.parquet")
    assert len(again) == len(written) and not again.duplicated(list(KEY)).any()
    want = _offline(registry, cache, NEW[0])
    np.testing.assert_allclose(again["pred"], want["pred"], rtol=0, atol=1e-6)


def test_a_failed_quality_gate_stops_the_run_naming_the_missing_symbols(setup, capsys):
    cfg, prices, cache, feed, registry, out = setup
    gone = ["AAPL", "JPM", "XOM"]
    feed_rows = prices[
        (prices["date"] <= NEW[0]) & ~((prices["date"] == NEW[0]) & prices["symbol"].isin(gone))
    ]
    _write(feed_rows, feed)
    overrides = [f"registry={registry}", f"out={out}", f"data_overrides.root={cache}",
                 f"update.overrides=[sources=local,sources.chain.0.path={feed}]"]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(overrides)
    assert e.value.code == 1
    text = capsys.readouterr().out
    # SPY stops on 2024-06-21 in the sample: not live on the previous session, so not expected today
    assert "only 7/10 symbols have a bar on 2024-06-26" in text and "AAPL" in text
    assert "not run" in text and not (out / "predictions.parquet").exists()
