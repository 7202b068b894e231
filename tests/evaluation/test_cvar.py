"""The Rockafellar-Uryasev LP: its CVaR is the empirical CVaR of its weights, and it beats a brute-force grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.evaluation.cvar import empirical_cvar, mean_cvar_weights
from deepq.evaluation.portfolio import PortfolioSpec, backtest


@pytest.fixture(scope="module")
def scenarios(sample_run):
    data, _, _ = sample_run
    close = data.panel["close"]
    names = [data.panel.symbol_index(s) for s in ("AAPL", "JPM", "XOM", "JNJ", "WMT", "NEE")]
    r = close[1:, names] / close[:-1, names] - 1
    return r[-500:]


def test_lp_cvar_is_the_empirical_cvar_of_its_weights(scenarios):
    mu = scenarios.mean(axis=0)
    sol = mean_cvar_weights(scenarios, mu, beta=0.95, risk_aversion=1.0, max_weight=0.4)
    assert (
        sol.weights.sum() == pytest.approx(1)
        and (sol.weights <= 0.4 + 1e-9).all()
        and (sol.weights >= 0).all()
    )
    assert sol.cvar == pytest.approx(empirical_cvar(-scenarios @ sol.weights, 0.95), rel=1e-6)


def test_lp_beats_every_point_of_a_grid(scenarios):
    R = scenarios[:, :3]
    mu = R.mean(axis=0)
    sol = mean_cvar_weights(R, mu, beta=0.9, risk_aversion=2.0, max_weight=1.0)

    def objective(w: np.ndarray) -> float:
        return -mu @ w + 2.0 * empirical_cvar(-R @ w, 0.9)

    best = min(
        objective(np.array([a, b, 1 - a - b]))
        for a in np.linspace(0, 1, 41)
        for b in np.linspace(0, 1, 41)
        if a + b <= 1
    )
    assert objective(sol.weights) <= best + 1e-9


def test_turnover_limit_holds(scenarios):
    mu = scenarios.mean(axis=0)
    prev = np.full(6, 1 / 6)
    sol = mean_cvar_weights(scenarios, mu * 50, 0.95, 1.0, 0.5, w_prev=prev, max_turnover=0.2)
    assert np.abs(sol.weights - prev).sum() <= 0.2 + 1e-7
    free = mean_cvar_weights(scenarios, mu * 50, 0.95, 1.0, 0.5)
    assert np.abs(free.weights - prev).sum() > 0.2


def test_cvar_backtest_runs_on_real_scores(sample_run):
    data, _, oof = sample_run
    g = oof[oof["model"] == "momentum_20"]
    scores = g.pivot_table(index="date", columns="symbol", values="score").iloc[:300]
    close = data.panel["close"]
    idx = pd.to_datetime(data.panel.dates)
    past = pd.DataFrame(np.r_[np.full((1, close.shape[1]), np.nan), close[1:] / close[:-1] - 1], index=idx,
                        columns=list(data.panel.symbols))  # fmt: skip
    fwd = past.shift(-1).reindex(index=scores.index, columns=scores.columns)
    mu = scores.sub(scores.mean(axis=1), axis=0) * 1e-3
    spec = PortfolioSpec(
        "cvar", "cvar", holding_days=21, max_turnover=0.5, cvar_candidates=10, cvar_max_weight=0.2
    )
    res = backtest(scores, fwd, spec, mu=mu, past_ret=past)
    rebal = res.daily["turnover"].iloc[21::21]
    assert (rebal <= 0.5 + 1e-7).all() and res.daily["n_long"].iloc[-1] >= 5
