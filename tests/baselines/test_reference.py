"""The volatility, quantile and tail models against independent references on real series."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deepq.baselines.boosting import Boosted, quantile_names
from deepq.baselines.classical import arma_forecasts
from deepq.baselines.common import cvar_from_quantiles, daily_log_returns
from deepq.baselines.risk import (
    QuantileCVaR,
    TailRisk,
    christoffersen_independence,
    kupiec_pof,
    market_returns,
    regime_probabilities,
)
from deepq.baselines.volatility import HAR, arch_backcast, garch_variance_path

from .helpers import make_data, make_folds

FAST = dict(n_estimators=30, max_train_rows=5000, n_jobs=1)


@pytest.fixture(scope="module")
def risk_data(sample_panel):
    return make_data(sample_panel, "risk", 5)


@pytest.fixture(scope="module")
def returns_data(sample_panel):
    return make_data(sample_panel, "returns", 1)


def test_har_equals_statsmodels_ols(risk_data):
    import statsmodels.api as sm

    fold = make_folds(risk_data, 1)[0]
    har = HAR()
    har.fit(risk_data, fold)
    idx = risk_data.split_index(fold, "train")
    x = har.design(risk_data)[idx[:, 0], idx[:, 1]]
    y = risk_data.labels[idx[:, 0], idx[:, 1]]
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    ref = sm.OLS(y[ok], x[ok]).fit()
    np.testing.assert_allclose(har.coef, ref.params, rtol=1e-8, atol=1e-10)
    # persistence: the daily, weekly and monthly terms together carry most of today's level
    assert 0.5 < har.coef[1:].sum() < 1.1


def test_garch_forecast_equals_arch(sample_panel, returns_data):
    from arch import arch_model

    r = daily_log_returns(returns_data)[:, sample_panel.symbol_index("AAPL")]
    y = r[np.isfinite(r)][:1000] * 100
    res = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    mu, omega, alpha, beta = (float(res.params[k]) for k in ("mu", "omega", "alpha[1]", "beta[1]"))
    h = 5
    mine = garch_variance_path(y - mu, omega, alpha, beta, arch_backcast(y - mu), h)
    ref = res.forecast(horizon=h, start=0, reindex=False).variance.to_numpy()
    np.testing.assert_allclose(mine, ref, rtol=1e-6)


def test_arma_filter_matches_statsforecast_forecast(sample_panel, returns_data):
    from statsforecast.models import ARIMA as SFARIMA

    r = daily_log_returns(returns_data)[:, sample_panel.symbol_index("JPM")]
    y = r[np.isfinite(r)][:1000]
    m = SFARIMA(order=(1, 0, 1), include_mean=True).fit(y)
    coef = m.model_["coef"]
    mine = arma_forecasts(y, coef["intercept"], np.array([coef["ar1"]]), np.array([coef["ma1"]]), [1])
    ref = m.predict(1)["mean"][0]
    # our residuals start from zero, theirs from the exact likelihood; after 1000 steps they agree
    assert mine[-1] == pytest.approx(ref, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost", pytest.param("catboost", marks=pytest.mark.slow)])
def test_quantiles_never_cross(library, returns_data):
    fold = make_folds(returns_data, 1)[0]
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    m = Boosted(library, library, quantiles=levels, **FAST)
    m.fit(returns_data, fold)
    idx = returns_data.split_index(fold, "test")
    p = m.predict(returns_data, idx)
    q = np.stack([p.extra[n] for n in quantile_names(levels)], axis=1)
    assert (np.diff(q, axis=1) >= 0).all()
    np.testing.assert_array_equal(p.pred, p.extra["q500"])
    # calibration, loosely: the 5-95 % band of next-day returns holds well over half the outcomes
    y = returns_data.labels[idx[:, 0], idx[:, 1]]
    assert 0.6 < np.mean((y >= q[:, 0]) & (y <= q[:, -1])) <= 1.0


def test_cvar_from_quantiles_of_a_normal():
    levels = np.linspace(0.0005, 0.9995, 1999)
    q = stats.norm.ppf(levels)[None, :]
    es = cvar_from_quantiles(levels, q, 0.05)[0]
    exact = -stats.norm.pdf(stats.norm.ppf(0.05)) / 0.05
    assert es == pytest.approx(exact, rel=2e-3)
    assert es < stats.norm.ppf(0.05)


def test_quantile_cvar_is_below_its_var(returns_data):
    fold = make_folds(returns_data, 1)[0]
    m = QuantileCVaR(**FAST)
    m.fit(returns_data, fold)
    p = m.predict(returns_data, returns_data.split_index(fold, "test"))
    assert (p.extra["cvar050"] <= p.extra["q050"] + 1e-12).all()


def test_kupiec_and_christoffersen_on_known_sequences():
    exact = np.zeros(1000, dtype=bool)
    exact[::20] = True  # 5 % breaches, evenly spaced
    lr, p = kupiec_pof(exact, 0.05)
    assert lr == pytest.approx(0.0, abs=1e-9) and p == pytest.approx(1.0)
    lr_bad, p_bad = kupiec_pof(np.r_[np.ones(150, bool), np.zeros(850, bool)], 0.05)
    assert p_bad < 1e-6
    clustered = np.zeros(1000, dtype=bool)
    clustered[100:150] = True  # the same 5 % rate, all in one run
    assert christoffersen_independence(clustered)[1] < 1e-6
    iid = np.random.default_rng(7).random(1000) < 0.05
    assert christoffersen_independence(iid)[1] > 0.05
    # evenly spaced breaches never follow one another: that is dependence too (of the opposite sign)
    assert christoffersen_independence(exact)[1] < 0.05


@pytest.mark.parametrize("tail", ["student_t", "gpd"])
def test_tail_var_breaches_near_their_level(tail, returns_data):
    fold = make_folds(returns_data, 1)[0]
    m = TailRisk(tail=tail)
    m.fit(returns_data, fold)
    idx = returns_data.split_index(fold, "test")
    p = m.predict(returns_data, idx)
    y = returns_data.labels[idx[:, 0], idx[:, 1]]
    assert (p.extra["es050"] < p.extra["var050"]).all() and (p.extra["var010"] < p.extra["var050"]).all()
    rate = np.mean(y < p.extra["var050"])
    assert 0.015 < rate < 0.10, rate
    assert np.isfinite(kupiec_pof(y < p.extra["var050"], 0.05)[0])


def test_regime_probabilities_are_causal(returns_data):
    r = market_returns(returns_data)
    fold = make_folds(returns_data, 1)[0]
    p = regime_probabilities(r, fold.train)
    assert ((p >= 0) & (p <= 1)).all()
    cut = fold.test[0]
    shocked = r.copy()
    shocked[cut:] = shocked[cut:] * 5 + 0.02
    q = regime_probabilities(shocked, fold.train)
    np.testing.assert_allclose(q[:cut], p[:cut])
    assert not np.allclose(q[cut:], p[cut:])
