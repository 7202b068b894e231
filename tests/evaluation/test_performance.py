"""Portfolio statistics equal quantstats' on the same real returns (SPY and a long-short of the sample)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import quantstats as qs

from deepq.evaluation.performance import drawdown, performance, yearly_returns
from deepq.evaluation.portfolio import PortfolioSpec, backtest


@pytest.fixture(scope="module")
def strategy(sample_run) -> pd.Series:
    data, _, oof = sample_run
    g = oof[oof["model"] == "momentum_20"]
    scores = g.pivot_table(index="date", columns="symbol", values="score")
    close = data.panel["close"]
    fwd = pd.DataFrame(np.r_[close[1:] / close[:-1] - 1, np.full((1, close.shape[1]), np.nan)],
                       index=pd.to_datetime(data.panel.dates), columns=list(data.panel.symbols))  # fmt: skip
    fwd = fwd.reindex(index=scores.index, columns=scores.columns)
    return backtest(scores, fwd, PortfolioSpec("ls", quantile=0.2, holding_days=5)).daily["net"]


@pytest.mark.parametrize("which", ["spy", "strategy"])
def test_matches_quantstats(which, spy_returns, strategy):
    r = spy_returns if which == "spy" else strategy
    bench = spy_returns.reindex(r.index).fillna(0.0)
    p = performance(r, bench)
    assert p["sharpe"] == pytest.approx(qs.stats.sharpe(r), rel=1e-9)
    assert p["sortino"] == pytest.approx(qs.stats.sortino(r), rel=1e-9)
    assert p["cagr"] == pytest.approx(qs.stats.cagr(r), rel=1e-6)
    assert p["ann_vol"] == pytest.approx(qs.stats.volatility(r), rel=1e-9)
    assert p["max_drawdown"] == pytest.approx(qs.stats.max_drawdown(r), rel=1e-9)
    assert p["calmar"] == pytest.approx(qs.stats.calmar(r), rel=1e-6)
    assert p["hit_rate"] == pytest.approx(qs.stats.win_rate(r), rel=1e-9)
    greeks = qs.stats.greeks(r, bench)
    assert p["beta"] == pytest.approx(greeks["beta"], rel=1e-9)
    assert p["alpha"] == pytest.approx(greeks["alpha"], rel=1e-9)
    if which == "strategy":
        assert p["info_ratio"] / np.sqrt(252) == pytest.approx(qs.stats.information_ratio(r, bench), rel=1e-9)
    assert drawdown(r).min() == pytest.approx(p["max_drawdown"])


def test_yearly_returns_compound(spy_returns):
    y = yearly_returns(spy_returns)
    assert y.loc[2013] == pytest.approx(np.prod(1 + spy_returns[spy_returns.index.year == 2013]) - 1)
    assert y.loc[2013] > 0.2 and y.loc[2022] < -0.1  # SPY's real history: +30 % in 2013, -18 % in 2022
