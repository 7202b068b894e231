"""VaR backtests and volatility-forecast losses against independent formulas on real SPY returns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deepq.evaluation.risk import christoffersen_test, kupiec_test, qlike, var_backtest


def test_kupiec_equals_binomial_likelihood_ratio(spy_returns):
    r = spy_returns.to_numpy()
    sigma = spy_returns.rolling(21).std().shift(1).to_numpy()
    var = -1.645 * sigma
    ok = np.isfinite(var)
    b = (r[ok] < var[ok]).astype(int)
    lr, p = kupiec_test(b, 0.05)
    n, x = len(b), int(b.sum())
    ref = 2 * (stats.binom.logpmf(x, n, x / n) - stats.binom.logpmf(x, n, 0.05))
    assert lr == pytest.approx(ref, rel=1e-9)
    assert p == pytest.approx(stats.chi2.sf(ref, 1))
    # fat tails: a normal 21-day VaR is breached more often than 5 % on SPY
    assert b.mean() > 0.05


def test_christoffersen_detects_clustered_breaches():
    iid = (np.random.default_rng(0).random(4000) < 0.05).astype(int)
    clustered = np.repeat(iid[:800], 5)  # every breach lasts five days
    assert christoffersen_test(iid)[1] > 0.01
    assert christoffersen_test(clustered)[1] < 1e-6


def test_christoffersen_hand_computed():
    b = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    # transitions: 00=4, 01=2, 10=2, 11=1
    p01, p11, p = 2 / 6, 1 / 3, 3 / 9
    ll1 = 4 * np.log(1 - p01) + 2 * np.log(p01) + 2 * np.log(1 - p11) + np.log(p11)
    ll0 = 6 * np.log(1 - p) + 3 * np.log(p)
    assert christoffersen_test(b)[0] == pytest.approx(max(-2 * (ll0 - ll1), 0.0), abs=1e-12)


def test_qlike_is_zero_for_perfect_forecast_and_penalises_underprediction(spy_returns):
    v = (spy_returns.rolling(21).std() ** 2).dropna().to_numpy()
    assert qlike(v, v) == pytest.approx(0.0, abs=1e-12)
    assert qlike(v * 0.5, v) > qlike(v * 2.0, v) > 0


def test_var_backtest_fields(spy_returns):
    r = spy_returns.to_numpy()
    out = var_backtest(np.full(len(r), np.quantile(r, 0.05)), r, 0.05)
    assert out["breach_rate"] == pytest.approx(0.05, abs=0.002)
    assert out["kupiec_p"] > 0.5
