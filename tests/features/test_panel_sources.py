"""Alternative-data sources configured under `features.sources` enter the training panel as extra features,
as of each session's close: recorded fixtures, and a perturbation of everything published later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from deepq.features.freshness import StaleInputError
from deepq.tasks.common import build_panel_data
from tests.conftest import compose_cfg

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "features" / "csv"
BASE = [
    "data.symbols=[AAPL,JPM,SPY]",
    "data.start=2017-06-01",
    "data.end=2018-01-19",  # the fixtures end 2018-01-16: every source within the 5-session fill limit
    "feature_cache_dir=null",
]


def _sources(csv: Path) -> list[dict]:
    return [
        {"_target_": "deepq.features.sources.FredCsv", "path": str(csv / "DGS10.csv"), "release_lag_days": 1},
        {"_target_": "deepq.features.sources.NewsSentimentCsv", "path": str(csv / "news_sentiment.csv")},
        {"_target_": "deepq.features.sources.OptionsFlowCsv", "path": str(csv / "options_flow.csv")},
    ]


def _panel_data(tmp_path: Path, csv: Path, overrides: tuple[str, ...] = ()):
    cfg = compose_cfg(tmp_path, [*BASE, *overrides])
    with open_dict(cfg):
        cfg.features.sources = OmegaConf.create(_sources(csv))
    return build_panel_data(cfg)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _panel_data(tmp_path_factory.mktemp("base"), FIX)


def test_default_config_adds_no_source_columns(tmp_path):
    data = build_panel_data(compose_cfg(tmp_path, BASE))
    assert data.features.shape[2] == len(data.feature_names)
    assert not {"macro_dgs10", "news_sentiment_5", "put_call_volume"} & set(data.feature_names)


def test_source_columns_enter_the_panel_as_of_each_close(base):
    data = base
    names = list(data.feature_names)
    assert data.features.shape[2] == len(names)
    assert {"macro_dgs10", "news_sentiment_5", "news_count_5", "put_call_volume", "iv_30"} <= set(names)
    p = data.panel

    def col(name: str, symbol: str) -> np.ndarray:
        return data.features[:, p.symbol_index(symbol), names.index(name)]

    # DGS10 of 2018-01-05 (2.47) is published on the 8th: the 5th's close still sees the 4th's 2.46
    assert col("macro_dgs10", "JPM")[p.date_index("2018-01-05")] == pytest.approx(2.46)
    assert col("macro_dgs10", "AAPL")[p.date_index("2018-01-16")] == pytest.approx(2.55)
    # the after-close headline of the 8th counts from the 9th; options of the 8th are usable on the 9th
    t = p.date_index("2018-01-08")
    assert col("news_sentiment_5", "AAPL")[t] == pytest.approx(0.6)
    assert col("news_sentiment_5", "AAPL")[t + 1] == pytest.approx(-0.1)
    assert np.isnan(col("put_call_volume", "AAPL")[t])
    assert col("put_call_volume", "AAPL")[t + 1] == pytest.approx(
        np.log1p(180000) - np.log1p(250000), rel=1e-6
    )
    # before any publication: undefined, not zero
    assert np.isnan(col("macro_dgs10", "AAPL")[: p.date_index("2018-01-02")]).all()


def _perturb_after(csv: Path, out: Path, day: str) -> None:
    """Copies of the fixtures in which every record dated on or after `day` is changed, plus new ones."""
    out.mkdir()
    cut = pd.Timestamp(day)
    fred = pd.read_csv(csv / "DGS10.csv", na_values=["."])
    later = pd.to_datetime(fred["observation_date"]) >= cut
    fred.loc[later, "DGS10"] = fred.loc[later, "DGS10"] * 3 + 1
    fred.to_csv(out / "DGS10.csv", index=False)
    news = pd.read_csv(csv / "news_sentiment.csv")
    later = pd.to_datetime(news["published_at"], utc=True) >= cut.tz_localize("America/New_York")
    news.loc[later, "sentiment"] = -news.loc[later, "sentiment"]
    extra = pd.DataFrame(
        [
            {
                "published_at": f"{day}T09:31:00-05:00",
                "symbol": "JPM",
                "headline": "x",
                "sentiment": -1.0,
                "relevance": 5.0,
            }
        ]
    )
    pd.concat([news, extra]).to_csv(out / "news_sentiment.csv", index=False)
    opts = pd.read_csv(csv / "options_flow.csv")
    later = pd.to_datetime(opts["date"]) >= cut
    opts.loc[later, "put_volume"] = opts.loc[later, "put_volume"] * 7
    opts.to_csv(out / "options_flow.csv", index=False)


@pytest.mark.parametrize("day", ["2018-01-08", "2018-01-10"])
def test_source_columns_never_use_information_dated_after_the_row(base, tmp_path, day):
    _perturb_after(FIX, tmp_path / "later", day)
    other = _panel_data(tmp_path, tmp_path / "later")
    assert base.feature_names == other.feature_names
    t = base.panel.date_index(day) - 1  # the last session before anything changed was published
    np.testing.assert_array_equal(base.features[: t + 1], other.features[: t + 1])
    # the perturbation is visible from the day it became usable on (the check has teeth)
    assert not np.array_equal(base.features[t + 1 : t + 4], other.features[t + 1 : t + 4], equal_nan=True)


def test_a_source_that_stopped_blocks_the_run_and_is_never_carried_on(tmp_path):
    """Ten weeks after the fixtures' last publication: the gate names each source, its features and the
    dates; accepted with freshness.allow_stale, its columns are NaN past the limit, not the last value."""
    later = ("data.end=2018-03-29",)
    with pytest.raises(StaleInputError) as err:
        _panel_data(tmp_path / "a", FIX, later)
    msg = str(err.value)
    assert "source:macro: last value 2018-01-16" in msg and "macro_dgs10" in msg
    assert "source:options_flow" in msg and "put_call_volume" in msg
    assert "NaN from 2018-01-24 to 2018-03-29" in msg  # 01-16 + 5 sessions held, then NaN
    assert "freshness.allow_stale=true" in msg

    data = _panel_data(tmp_path / "b", FIX, (*later, "freshness.allow_stale=true"))
    p, names = data.panel, list(data.feature_names)
    macro = data.features[:, p.symbol_index("AAPL"), names.index("macro_dgs10")]
    last = p.date_index("2018-01-16")
    assert np.isfinite(macro[last : last + 6]).all()  # held over the 5-session limit ...
    assert np.isnan(macro[last + 6 :]).all()  # ... then NaN, never the stale 2.55 carried to March


def test_a_source_within_the_limit_is_held_and_listed(base):
    p, names = base.panel, list(base.feature_names)
    macro = base.features[:, p.symbol_index("JPM"), names.index("macro_dgs10")]
    assert macro[-1] == pytest.approx(macro[p.date_index("2018-01-16")])
    assert np.isfinite(macro[-1])
