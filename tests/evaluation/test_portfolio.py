"""Portfolio construction and the cost-aware backtest on the sample's real scores and returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.dataset.labels import forward_return
from deepq.evaluation.portfolio import PortfolioSpec, backtest, cap_turnover, quantile_long_short, top_k_long


@pytest.fixture(scope="module")
def inputs(sample_run):
    data, _, oof = sample_run
    g = oof[oof["model"] == "momentum_20"]
    scores = g.pivot_table(index="date", columns="symbol", values="score")
    fwd1 = np.expm1(forward_return(data.panel, 1, data.task.execution))
    fwd = pd.DataFrame(fwd1, index=pd.to_datetime(data.panel.dates), columns=list(data.panel.symbols))
    return scores, fwd.reindex(index=scores.index, columns=scores.columns)


def test_fwd_return_is_the_one_day_label(sample_run, inputs):
    """The backtest earns exactly the return the h=1 label measures (same execution, same session)."""
    data, _, oof = sample_run
    scores, fwd = inputs
    g = oof[oof["model"] == "momentum_20"].dropna(subset=["y_ret"])
    got = fwd.stack().reindex(pd.MultiIndex.from_arrays([g["date"], g["symbol"]]))
    np.testing.assert_allclose(np.log1p(got.to_numpy()), g["y_ret"].to_numpy(), rtol=1e-12)


def test_long_short_legs_and_buffer():
    score = np.arange(20, dtype=float)
    w = quantile_long_short(score, np.zeros(20), 0.1, 0.0)
    assert w.sum() == pytest.approx(0) and w[w > 0].sum() == pytest.approx(1) and (w > 0).sum() == 2
    # a held long that slipped just below the cut stays with a buffer, leaves without one
    held = w.copy()
    score2 = score.copy()
    score2[18], score2[17] = 16.5, 18.5
    assert quantile_long_short(score2, held, 0.1, 0.1)[18] > 0
    assert quantile_long_short(score2, held, 0.1, 0.0)[18] == 0
    top = top_k_long(score, np.zeros(20), 5, 0.0)
    assert top.sum() == pytest.approx(1) and set(np.flatnonzero(top)) == {15, 16, 17, 18, 19}


def test_turnover_cap():
    old, new = np.array([0.5, 0.5, 0, 0]), np.array([0, 0, 0.5, 0.5])
    capped = cap_turnover(new, old, 0.5)
    assert np.abs(capped - old).sum() == pytest.approx(0.5)


def test_costs_are_turnover_times_bps(inputs):
    scores, fwd = inputs
    a = backtest(scores, fwd, PortfolioSpec("a", cost_bps=0.0)).daily
    b = backtest(scores, fwd, PortfolioSpec("b", cost_bps=5.0, slippage_bps=2.0)).daily
    np.testing.assert_allclose(a["gross"], b["gross"])
    np.testing.assert_allclose(b["cost"], b["turnover"] * 7e-4)
    np.testing.assert_allclose(b["net"], b["gross"] - b["cost"])
    assert (b["n_long"] > 0).all() and (b["n_short"] > 0).all()


def test_holding_period_buffer_and_cap_cut_turnover(inputs):
    scores, fwd = inputs
    daily = backtest(scores, fwd, PortfolioSpec("d")).daily["turnover"].mean()
    held = backtest(scores, fwd, PortfolioSpec("h", holding_days=5)).daily["turnover"].mean()
    buffered = (
        backtest(scores, fwd, PortfolioSpec("hb", holding_days=5, rank_buffer=0.15)).daily["turnover"].mean()
    )
    capped = backtest(scores, fwd, PortfolioSpec("c", max_turnover=0.5)).daily
    assert held < daily / 2 and buffered < held
    assert capped["turnover"].iloc[1:].max() <= 0.5 + 1e-12


def test_perfect_foresight_wins_and_costs_bite(inputs):
    scores, fwd = inputs
    oracle = fwd.where(scores.notna())
    res = backtest(oracle, fwd, PortfolioSpec("o", cost_bps=5))
    assert res.daily["net"].mean() > 0 and res.win_rate > 0.8
    expensive = backtest(oracle, fwd, PortfolioSpec("o", cost_bps=500))
    assert expensive.daily["net"].mean() < 0


def test_no_lookahead_in_weights(inputs):
    """Changing scores and returns after date d leaves every row up to d unchanged."""
    scores, fwd = inputs
    d = len(scores) // 2
    s2, f2 = scores.copy(), fwd.copy()
    rng = np.random.default_rng(0)
    s2.iloc[d + 1 :] = rng.normal(size=s2.iloc[d + 1 :].shape)
    f2.iloc[d + 1 :] = rng.normal(0, 0.05, size=f2.iloc[d + 1 :].shape)
    for spec in (PortfolioSpec("ls", holding_days=3, rank_buffer=0.1), PortfolioSpec("t", "top_k", top_k=5)):
        a = backtest(scores, fwd, spec).daily.iloc[: d + 1]
        b = backtest(s2, f2, spec).daily.iloc[: d + 1]
        pd.testing.assert_frame_equal(a, b)
