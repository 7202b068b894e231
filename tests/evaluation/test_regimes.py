"""Regime labels are causal and stress windows slice the right dates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepq.evaluation.regimes import DEFAULT_STRESS, by_stress, market_close, regime_labels, stress_mask


def test_regime_labels_are_causal(sample_run):
    data, _, _ = sample_run
    close = market_close(data.panel)
    assert close.name == "SPY"
    t = close.index.get_loc(pd.Timestamp("2016-06-30"))
    shocked = close.copy()
    shocked.iloc[t + 1 :] *= np.random.default_rng(0).lognormal(0, 0.2, len(close) - t - 1)
    a, b = regime_labels(close).iloc[: t + 1], regime_labels(shocked).iloc[: t + 1]
    pd.testing.assert_frame_equal(a, b)
    assert not regime_labels(close).iloc[t + 1 :].equals(regime_labels(shocked).iloc[t + 1 :])


def test_known_regimes(sample_run):
    data, _, _ = sample_run
    lab = regime_labels(market_close(data.panel))
    assert lab.loc["2009-03-09", "trend"] == "bear" and lab.loc["2009-03-09", "volatility"] == "high vol"
    assert lab.loc["2017-06-30", "trend"] == "bull" and lab.loc["2017-06-30", "volatility"] == "low vol"


def test_stress_windows(sample_run):
    data, _, _ = sample_run
    dates = pd.DatetimeIndex(pd.to_datetime(data.panel.dates))
    covid = next(w for w in DEFAULT_STRESS if w.start == "2020-02-19")
    import exchange_calendars as xc

    sessions = xc.get_calendar("XNYS").sessions_in_range("2020-02-19", "2020-04-30")
    assert stress_mask(dates, covid).sum() == len(sessions)
    frame = pd.DataFrame({"date": dates, "x": 1.0})
    t = by_stress(frame, DEFAULT_STRESS, lambda p: {"n": float(len(p))})
    assert set(t["window"]) == {w.name for w in DEFAULT_STRESS}
    assert t.set_index("start").loc["2010-05-06", "days"] == 1
