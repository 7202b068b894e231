"""Feature sources: recorded responses replayed offline; every join is point-in-time on publication."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yfinance
from hypothesis import given, settings
from hypothesis import strategies as st

from deepq.data.panel import load_panel
from deepq.features.sources import (
    FredCsv,
    NewsSentimentCsv,
    OptionsFlowCsv,
    YahooEarnings,
    YahooInsider,
    YahooRatings,
    asof_join,
    available_date,
    source_features,
)
from tests.conftest import SAMPLE

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "features"


class Recorded:
    """What yfinance reads from a response: .text, .json() (a fresh copy: yfinance mutates it), status."""

    def __init__(self, text: str, url: str):
        self.text, self.url, self.status_code = text, url, 200

    def json(self):
        return copy.deepcopy(json.loads(self.text))

    def raise_for_status(self):
        return None


def replay(self, url, params=None, timeout=30):
    modules = (params or {}).get("modules", "")
    if "calendar/earnings" in url:
        return Recorded((FIX / "yahoo" / "AAPL_earnings.html").read_text(), url)
    if "quoteSummary" in url and "upgradeDowngradeHistory" in modules:
        return Recorded((FIX / "yahoo" / "AAPL_upgrades.json").read_text(), url)
    if "quoteSummary" in url and "insiderTransactions" in modules:
        return Recorded((FIX / "yahoo" / "AAPL_holders.json").read_text(), url)
    raise AssertionError(f"unexpected request {url} {params}")


@pytest.fixture
def offline_yahoo():
    with (
        mock.patch.object(yfinance.data.YfData, "get", autospec=True, side_effect=replay),
        mock.patch.object(yfinance.data.YfData, "cache_get", autospec=True, side_effect=replay),
        mock.patch.object(
            yfinance.base.TickerBase, "_get_ticker_tz", autospec=True, return_value="America/New_York"
        ),
    ):
        yield


@pytest.fixture(scope="module")
def panel_2024():
    return load_panel(
        SAMPLE / "prices.parquet",
        SAMPLE / "sectors.parquet",
        SAMPLE / "nyse_sessions.parquet",
        symbols=["AAPL", "JPM", "SPY"],
        start="2017-06-01",
        end="2024-06-28",
    )


def test_available_date_close_rule():
    stamps = pd.Series(
        pd.to_datetime(["2024-05-02 16:00", "2024-05-02 15:59", "2024-05-03 02:00"]).tz_localize(
            "America/New_York"
        )
    )
    assert list(available_date(stamps).dt.date.astype(str)) == ["2024-05-03", "2024-05-02", "2024-05-03"]
    assert str(available_date(pd.Series(["2024-04-01"]), lag_days=4).iloc[0].date()) == "2024-04-05"


@settings(max_examples=30, deadline=None)
@given(
    ev_days=st.lists(st.integers(0, 400), min_size=1, max_size=30),
    q_days=st.lists(st.integers(-20, 420), min_size=1, max_size=30),
)
def test_asof_join_never_returns_information_after_the_query_date(ev_days, q_days):
    base = pd.Timestamp("2020-01-01")
    events = pd.DataFrame(
        {
            "symbol": "X",
            "available": [base + pd.Timedelta(days=d) for d in ev_days],
            "v": np.arange(len(ev_days), dtype=float),
        }
    )
    dates = [base + pd.Timedelta(days=d) for d in q_days]
    out = asof_join(events, ["X"] * len(dates), dates, ["v"])
    for i, d in enumerate(dates):
        usable = events[events["available"] <= d]
        if usable.empty:
            assert np.isnan(out["v"].iloc[i])
        else:
            assert out["event_available"].iloc[i] <= d
            assert out["event_available"].iloc[i] == usable["available"].max()


def test_yahoo_earnings_replayed(offline_yahoo, panel_2024):
    ev = YahooEarnings().events(["AAPL"])
    assert len(ev) == 4  # the scheduled Aug 2024 date has no reported EPS and is not an event yet
    # reported at 4 PM New York time: usable from the next day, never on the announcement day
    assert list(ev["available"].dt.date.astype(str)) == [
        "2023-08-04",
        "2023-11-03",
        "2024-02-02",
        "2024-05-03",
    ]
    feats = source_features(panel_2024, [YahooEarnings()])
    j = panel_2024.symbol_index("AAPL")
    t = panel_2024.date_index("2024-05-02")
    surprise = feats["eps_surprise_last"][:, j]
    assert surprise[t] == pytest.approx(0.038) and surprise[t + 1] == pytest.approx(0.0204)
    assert feats["days_since_earnings"][t + 1, j] == 0 and feats["days_since_earnings"][t, j] > 50
    assert np.isnan(surprise[: panel_2024.date_index("2023-08-03") + 1]).all()


def test_yahoo_ratings_and_insider_replayed(offline_yahoo, panel_2024):
    ratings = YahooRatings().events(["AAPL"])
    assert sorted(ratings["rating_change"]) == [-1.0, -1.0, 0.0, 0.0, 1.0]
    late = ratings[ratings["firm"] == "Firm B"]  # 21:05 UTC = 17:05 New York, after the close
    assert str(late["available"].iloc[0].date()) == "2024-04-16"
    insider = YahooInsider().events(["AAPL"])
    assert list(insider["available"].dt.date.astype(str)) == [
        "2023-12-05",
        "2024-02-05",
        "2024-03-19",
        "2024-04-05",
    ]
    assert list(np.sign(insider["insider_net_value"])) == [0.0, -1.0, 1.0, -1.0]
    feats = source_features(panel_2024, [YahooRatings(), YahooInsider()])
    j = panel_2024.symbol_index("AAPL")
    r = feats["rating_net_63"][:, j]
    assert r[panel_2024.date_index("2024-04-15")] == 0 and r[panel_2024.date_index("2024-04-16")] == -1
    assert r[panel_2024.date_index("2024-05-03")] == 0  # -1 (Apr 16) + 1 (May 3)
    net = feats["insider_net_126"][:, j]
    before = -3_700_000 + 1_720_000  # the February sale and the March purchase
    assert net[panel_2024.date_index("2024-04-04")] == pytest.approx(-np.log1p(-before))
    assert net[panel_2024.date_index("2024-04-05")] == pytest.approx(-np.log1p(-before + 8_500_000))
    assert net[panel_2024.date_index("2024-03-18")] == pytest.approx(-np.log1p(3_700_000))


def test_fred_release_lag_and_alfred_vintages(panel_2024):
    dgs = FredCsv(FIX / "csv" / "DGS10.csv", release_lag_days=1).events()
    out = asof_join(dgs, ["*"] * 3, ["2018-01-08", "2018-01-09", "2018-01-16"], ["dgs10"])
    assert list(out["dgs10"]) == [
        2.47,
        2.49,
        2.55,
    ]  # the 8th's value is published on the 9th; '.' is no value
    un = FredCsv(FIX / "csv" / "UNRATE_vintages.csv").events()
    out = asof_join(un, ["*"] * 4, ["2018-02-01", "2018-02-02", "2018-06-01", "2019-01-11"], ["unrate"])
    # January's rate is unknown before its release, then 4.1 as first published, the revision only from 2019
    assert np.isnan(out["unrate"].iloc[0])
    assert list(out["unrate"].iloc[1:]) == [4.1, 4.1, 4.0]
    feats = source_features(panel_2024, [FredCsv(FIX / "csv" / "DGS10.csv", name="macro")])
    col = feats["macro_dgs10"][:, 0]
    assert (
        col[panel_2024.date_index("2018-01-05")] == 2.46 and col[panel_2024.date_index("2018-01-16")] == 2.55
    )


def test_news_and_options_timing(panel_2024):
    feats = source_features(
        panel_2024,
        [
            NewsSentimentCsv(FIX / "csv" / "news_sentiment.csv"),
            OptionsFlowCsv(FIX / "csv" / "options_flow.csv"),
        ],
    )
    j = panel_2024.symbol_index("AAPL")
    t = panel_2024.date_index("2018-01-08")
    # the after-close headline of the 8th counts from the 9th
    assert feats["news_sentiment_5"][t, j] == pytest.approx(0.6)
    assert feats["news_sentiment_5"][t + 1, j] == pytest.approx(-0.1)
    assert feats["news_count_5"][t + 1, j] == 2
    # end-of-day options of the 8th are usable on the 9th
    assert np.isnan(feats["put_call_volume"][t, j])
    assert feats["put_call_volume"][t + 1, j] == pytest.approx(np.log1p(180000) - np.log1p(250000))
    assert feats["iv_30"][t + 2, j] == pytest.approx(0.20)


def test_options_schema_errors_name_the_row(tmp_path):
    bad = tmp_path / "o.csv"
    bad.write_text("date,symbol,call_volume,put_volume,call_oi,put_oi\n2018-01-08,AAPL,-5,1,1,1\n")
    with pytest.raises(ValueError, match="AAPL.*2018-01-08"):
        OptionsFlowCsv(bad).events()
    with pytest.raises(ValueError, match="put_oi"):
        (tmp_path / "p.csv").write_text("date,symbol,call_volume,put_volume,call_oi\n")
        OptionsFlowCsv(tmp_path / "p.csv").events()


def test_source_features_ignore_events_published_later(panel_2024, tmp_path):
    """Adding news published after t changes no feature value at or before t."""
    src = FIX / "csv" / "news_sentiment.csv"
    more = tmp_path / "news.csv"
    more.write_text(src.read_text() + "2018-01-10T15:00:00-05:00,AAPL,Late news,-1.0,3.0\n")
    a = source_features(panel_2024, [NewsSentimentCsv(src)])
    b = source_features(panel_2024, [NewsSentimentCsv(more)])
    t = panel_2024.date_index("2018-01-09")
    for k in a:
        np.testing.assert_array_equal(a[k][: t + 1], b[k][: t + 1])
    assert not np.array_equal(a["news_sentiment_5"][t + 1], b["news_sentiment_5"][t + 1])
