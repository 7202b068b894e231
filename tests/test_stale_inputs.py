"""A reference series that stops is caught, never filled silently (the freshness issue): SPY cut short in a
copy of the sample is listed by `deepq data quality`, blocks `deepq train` with a message naming it, its
features and the dates, and with `freshness.allow_stale=true` trains on NaN market features (no samples
there), never on flat ones, and the run says so. The sample's own SPY ends five sessions before its stocks,
like the shared data's: a warning within the limit, not a failure."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from deepq.features.freshness import StaleInputError
from deepq.tasks.common import build_panel_data
from deepq.tasks.data import run as data_cli
from deepq.tasks.train import train
from tests.conftest import SAMPLE, compose_cfg

CUT = "2024-05-31"  # SPY's last bar in the copy: 19 sessions before the stocks' 2024-06-28
MARKET = ("mkt_ret_1", "mkt_ret_21", "mkt_vol_21", "rel_strength_21", "beta_63")
FAST = ["model=lightgbm", "debug=fdr", "data.start=2016-01-01", "split.max_folds=1", "feature_cache_dir=null"]


@pytest.fixture(scope="module")
def cut_prices(tmp_path_factory) -> str:
    df = pd.read_parquet(SAMPLE / "prices.parquet")
    df = df[~((df["symbol"] == "SPY") & (pd.to_datetime(df["date"]) > pd.Timestamp(CUT)))]
    path = tmp_path_factory.mktemp("stale") / "prices.parquet"
    df.to_parquet(path, index=False)
    return str(path)


def test_quality_lists_the_stopped_series_and_how_far_it_lags(cut_prices, tmp_path):
    out = tmp_path / "q.json"
    assert data_cli(["quality", "--path", cut_prices, "--json", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    lag = {r["symbol"]: r for r in s["lagging"]}
    assert s["last_session"] == "2024-06-28"
    assert lag["SPY"]["last"] == CUT and lag["SPY"]["lag_sessions"] == 19 and lag["SPY"]["past_fill_limit"]
    assert "SPY" in s["stale"]
    # the sample's sector ETFs end 2024-06-21 like the shared data's: listed, within the limit
    assert lag["XLK"]["lag_sessions"] == 5 and not lag["XLK"]["past_fill_limit"] and "XLK" not in s["stale"]


def test_train_refuses_naming_the_symbol_the_features_and_the_dates(cut_prices, tmp_path):
    cfg = compose_cfg(tmp_path, [*FAST, f"data.prices={cut_prices}"])
    with pytest.raises(StaleInputError) as err:
        train(cfg)
    msg = str(err.value)
    assert f"SPY: last value {CUT}, 19 session(s) before the panel's last session 2024-06-28" in msg
    assert all(f in msg for f in ("mkt_ret_1", "beta_63"))
    assert "NaN from 2024-06-10 to 2024-06-28" in msg  # held over the 5-session limit, then NaN
    assert "freshness.allow_stale=true" in msg
    assert not list(tmp_path.glob("**/metrics.json"))  # refused before anything was trained or written


def test_accepted_stale_series_gives_nan_market_features_no_samples_and_says_so(cut_prices, tmp_path):
    cfg = compose_cfg(tmp_path, [*FAST, f"data.prices={cut_prices}", "freshness.allow_stale=true"])
    data = build_panel_data(cfg)
    p, names = data.panel, list(data.feature_names)
    stocks = np.flatnonzero(p.mask(("stock",)))
    last = p.date_index(CUT)
    cols = [names.index(f) for f in MARKET]
    held = data.features[last + 1 : last + 6][:, stocks][..., cols]
    after = data.features[last + 6 :][:, stocks][..., cols]
    assert np.isnan(after).all()  # never a flat 0 return / decaying volatility
    assert np.isfinite(held[..., [0, 1, 2]]).all() and (held[..., 0] == 0).all()  # held: the limit's cost
    assert not data.sample_ok[last + 6 :].any()  # and no window there is a sample
    assert data.sample_ok[last - 5 : last + 1, stocks].any()
    [lag] = [g for g in data.lagging if g.series == "SPY"]
    assert lag.stale and lag.nan_from == "2024-06-10"

    result_dir = tmp_path / "run"
    cfg.output_dir = str(result_dir)
    train(cfg)
    meta = json.loads((result_dir / "metrics.json").read_text())["run"]
    spy = [g for g in meta["inputs_lagging"] if g["series"] == "SPY"]
    assert spy and spy[0]["stale"] and spy[0]["last"] == CUT
    assert "STALE INPUTS ACCEPTED (freshness.allow_stale): SPY since 2024-05-31" in meta["verdict"]
    assert "STALE INPUTS ACCEPTED" in (result_dir / "report.html").read_text()


def test_the_samples_spy_lag_is_a_warning_within_the_limit(tmp_path, caplog):
    cfg = compose_cfg(tmp_path, ["data.start=2023-01-01", "feature_cache_dir=null"])
    with caplog.at_level(logging.WARNING, logger="deepq.features.freshness"):
        data = build_panel_data(cfg)
    [spy] = [g for g in data.lagging if g.series == "SPY"]
    assert spy.last == "2024-06-21" and spy.lag_sessions == 5 and not spy.stale
    assert (
        "SPY: last value 2024-06-21, 5 session(s)" in caplog.text and "within the fill limit" in caplog.text
    )
    t = data.panel.date_index("2024-06-28")
    assert np.isfinite(data.features[t, :, list(data.feature_names).index("mkt_vol_21")]).any()


def test_a_lower_fill_limit_turns_the_same_lag_into_a_refusal(tmp_path):
    cfg = compose_cfg(
        tmp_path, ["data.start=2023-01-01", "feature_cache_dir=null", "freshness.fill_limit_sessions=3"]
    )
    with pytest.raises(StaleInputError, match="SPY: last value 2024-06-21"):
        build_panel_data(cfg)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from tests.serve.fdr import fdr_run_dir, registry_with_run

    root = tmp_path_factory.mktemp("stale_registry") / "registry"
    registry_with_run(root, fdr_run_dir(tmp_path_factory))
    return root


def test_predict_refuses_a_stale_series_unless_accepted_and_flags_every_row(cut_prices, registry):
    from deepq.tasks.predict import predict

    with pytest.raises(StaleInputError, match=f"SPY: last value {CUT}"):
        predict(
            "lstm_returns:1", dates=["2024-06-28"], registry=registry, overrides=[f"data.prices={cut_prices}"]
        )
    got = predict(
        "lstm_returns:1",
        dates=["2024-05-31", "2024-06-28"],
        registry=registry,
        overrides=[f"data.prices={cut_prices}"],
        allow_stale_inputs=True,
    )
    assert set(got["stale_inputs"]) == {"SPY"}
    on = got.groupby(got["date"].dt.strftime("%Y-%m-%d"))["in_universe"].sum()
    assert on["2024-05-31"] > 0 and on["2024-06-28"] == 0  # NaN market features: no window is scored


def test_serve_refuses_to_start_on_a_stale_series_unless_accepted(cut_prices, registry):
    from deepq.serve.service import PredictionService, ServeSettings

    settings = dict(
        registry=str(registry), routes={"lstm_returns:1": 1.0}, data_overrides={"prices": cut_prices}
    )
    with pytest.raises(StaleInputError, match="SPY"):
        PredictionService(ServeSettings(**settings), api_key="k")
    service = PredictionService(ServeSettings(**settings, allow_stale_inputs=True), api_key="k")
    assert service.state.data_as_of == "2024-06-28"
