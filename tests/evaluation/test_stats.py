"""Honest-uncertainty statistics against statsmodels, scipy, Monte Carlo and known behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from deepq.evaluation import stats as S


@pytest.fixture(scope="module")
def correct(sample_run):
    _, _, oof = sample_run
    g = oof[(oof["model"] == "momentum_20") & oof["up"].notna()]
    return ((g["up"] > 0.5) == (g["y_ret"] > 0)).to_numpy(float), g["date"].to_numpy()


def test_clustered_se_matches_statsmodels(correct):
    x, dates = correct
    mean, se, lo, hi = S.clustered_mean_ci(x, dates)
    codes = np.unique(dates, return_inverse=True)[1]
    fit = sm.OLS(x, np.ones((len(x), 1))).fit(cov_type="cluster", cov_kwds={"groups": codes})
    assert mean == pytest.approx(fit.params[0])
    assert se == pytest.approx(fit.bse[0], rel=1e-9)
    assert lo < mean < hi


def test_clustering_by_date_widens_the_interval(correct, sample_run):
    """Stocks move together: the date-clustered SE is far wider than the iid binomial one."""
    x, dates = correct
    _, se, _, _ = S.clustered_mean_ci(x, dates)
    iid = np.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert se > 1.3 * iid  # 33 names here; the ratio grows with the width of the cross-section
    _, _, oof = sample_run
    g = oof[oof["model"] == "always_up"]
    up = (g["y_ret"] > 0).to_numpy(float)
    _, se_up, _, _ = S.clustered_mean_ci(up, g["date"].to_numpy())
    assert se_up > 2.0 * np.sqrt(up.mean() * (1 - up.mean()) / len(up))  # always-up: one bet per day


def test_newey_west_matches_statsmodels_hac(spy_returns):
    x = spy_returns.to_numpy()
    for lags in (0, 5):
        _, se, _, _ = S.newey_west_mean_ci(x, lags)
        fit = sm.OLS(x, np.ones((len(x), 1))).fit(
            cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}
        )
        assert se == pytest.approx(fit.bse[0], rel=1e-9)


def test_stationary_bootstrap_blocks_and_coverage():
    rng = np.random.default_rng(0)
    idx = S.stationary_bootstrap_indices(500, 200, 10.0, rng)
    steps = np.diff(idx, axis=1)
    new_block = steps != 1
    new_block &= ~((idx[:, :-1] == 499) & (idx[:, 1:] == 0))
    assert 1 / new_block.mean() == pytest.approx(10.0, rel=0.1)  # mean block length
    # an AR(1) series: the bootstrap CI of its mean covers the truth and is wider than the iid one
    e = rng.normal(size=3000)
    x = np.empty(3000)
    x[0] = e[0]
    for t in range(1, 3000):
        x[t] = 0.8 * x[t - 1] + e[t]
    _, lo, hi = S.stationary_bootstrap_ci(x, S.mean_stat, 400, 30.0)
    iid = 2 * 1.96 * x.std() / np.sqrt(len(x))
    assert lo < 0 < hi and (hi - lo) > 2 * iid


def test_sharpe_bootstrap_ci_contains_point(spy_returns):
    point, lo, hi = S.stationary_bootstrap_ci(spy_returns.to_numpy(), S.sharpe_stat(), 300, 10.0)
    assert lo < point < hi
    assert point == pytest.approx(spy_returns.mean() / spy_returns.std() * np.sqrt(252))


def test_expected_max_sharpe_matches_monte_carlo():
    rng = np.random.default_rng(1)
    for n in (10, 100):
        sims = rng.normal(0, 0.1, size=(20000, n)).max(axis=1).mean()
        assert S.expected_max_sharpe(n, 0.01) == pytest.approx(sims, rel=0.03)


def test_deflated_sharpe_falls_with_trials(spy_returns):
    r = spy_returns.to_numpy()
    psr = S.probabilistic_sharpe_ratio(r)
    d1, sr0_1 = S.deflated_sharpe_ratio(r, 1)
    d100, sr0_100 = S.deflated_sharpe_ratio(r, 100)
    assert d1 == pytest.approx(psr) and sr0_1 == 0.0
    assert d100 < d1 and sr0_100 > 0
    # PSR against the normal-returns formula when skew=0, kurtosis=3 (large-sample check on simulated data)
    z = np.random.default_rng(2).normal(0.05, 1, 20000)
    sr = z.mean() / z.std(ddof=1)
    assert S.probabilistic_sharpe_ratio(z) == pytest.approx(
        stats.norm.cdf(sr * np.sqrt(len(z) - 1) / np.sqrt(1 + sr**2 / 2)), abs=2e-3
    )


def test_pbo_noise_is_half_and_skill_is_low():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, size=(1200, 20))
    assert 0.3 < S.pbo_cscv(noise, 10) < 0.7
    skill = noise.copy()
    skill[:, 0] += 0.004
    assert S.pbo_cscv(skill, 10) < 0.05


def test_binomial_tests():
    c = np.array([1] * 60 + [0] * 40, dtype=bool)
    u = np.array([1] * 50 + [0] * 10 + [1] * 20 + [0] * 20, dtype=bool)
    out = S.binomial_tests(c, u)
    assert out["p_vs_50"] == pytest.approx(stats.binomtest(60, 100, 0.5, alternative="greater").pvalue)
    # discordant: model right & up wrong = 10, model wrong & up right = 20
    assert out["n_discordant"] == 30
    assert out["p_vs_always_up"] == pytest.approx(stats.binomtest(10, 30, 0.5, alternative="greater").pvalue)
