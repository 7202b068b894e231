"""The vectorised rolling operators against pandas' rolling windows on real prices (with listing gaps, a
halted stretch and zero-volume days), and their causality: appending or changing later rows moves nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.features import ops


@pytest.fixture(scope="module")
def prices(sample_panel) -> np.ndarray:
    """Real closes of the sample with NaN gaps, a constant (halted) stretch and an infinity."""
    a = sample_panel["close"][:, :12].astype(np.float64).copy()
    a[300:340, 2] = a[299, 2]  # halted: 40 equal closes
    a[500:503, 3] = np.nan  # a three-day gap inside the history
    a[800, 4] = np.inf  # a bad value counts as missing
    return a


@pytest.fixture(scope="module")
def volume(sample_panel) -> np.ndarray:
    v = np.log1p(sample_panel["volume"][:, :12].astype(np.float64))
    v[600:620, 5] = 0.0  # a zero-volume stretch
    return v


def _same(ours: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = np.isfinite(ref)
    assert ok.sum() > 1000
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("w", [1, 2, 5, 21, 60, 252])
def test_rolling_moments_and_extremes_match_pandas(prices, w):
    a = np.where(np.isfinite(prices), prices, np.nan)  # pandas' view: the infinity as missing
    r = pd.DataFrame(a).rolling(w, min_periods=w)
    _same(ops.rolling_mean(prices, w), r.mean().to_numpy(), 1e-10)
    _same(ops.rolling_sum(prices, w), r.sum().to_numpy(), 1e-10)
    _same(ops.rolling_max(a, w), r.max().to_numpy(), 0)
    _same(ops.rolling_min(a, w), r.min().to_numpy(), 0)
    if w > 1:
        _same(ops.rolling_std(prices, w), r.std().to_numpy(), 1e-6 if w > 2 else 1e-4)


def test_constant_windows_have_zero_variance_and_undefined_correlation(prices, volume):
    w = 20
    std = ops.rolling_std(prices, w)[:, 2]
    assert (std[320:340] == 0.0).all()  # exactly 0, not rounding noise
    assert (std[300:318] > 0).all()
    corr = ops.rolling_cov_corr(prices, volume, w)[1]
    assert np.isnan(corr[320:340, 2]).all()
    assert np.isnan(corr[619, 5])  # volume constant (zero) over the window
    assert np.isfinite(corr[650, 5])


@pytest.mark.parametrize("w", [5, 20, 60])
def test_correlation_rank_and_quantiles_match_pandas(prices, volume, w):
    a = np.where(np.isfinite(prices), prices, np.nan)
    both = np.isfinite(a) & np.isfinite(volume)
    ref = (
        pd.DataFrame(np.where(both, a, np.nan))
        .rolling(w, min_periods=w)
        .corr(pd.DataFrame(np.where(both, volume, np.nan)))
        .to_numpy()
    )
    ref = np.where(np.isfinite(ref) & (np.abs(ref) <= 1 + 1e-9), np.clip(ref, -1, 1), np.nan)
    _same(ops.rolling_cov_corr(prices, volume, w)[1], ref, 1e-6)
    r = pd.DataFrame(a).rolling(w, min_periods=w)
    _same(ops.rolling_rank_pct(prices, w), r.rank(pct=True).to_numpy(), 1e-12)
    q8, q2 = ops.rolling_quantiles(prices, w, (0.8, 0.2))
    _same(q8, r.quantile(0.8).to_numpy(), 1e-12)
    _same(q2, r.quantile(0.2).to_numpy(), 1e-12)
    _same(ops.rolling_median(prices, w + 1), pd.DataFrame(a).rolling(w + 1).median().to_numpy(), 1e-12)


def test_min_periods_counts_partial_windows_like_pandas(prices):
    ref = pd.DataFrame(np.where(np.isfinite(prices), prices, np.nan)).rolling(21, min_periods=10).mean()
    _same(ops.rolling_mean(prices, 21, min_periods=10), ref.to_numpy(), 1e-10)


@pytest.mark.parametrize(
    "op",
    [
        lambda a: ops.rolling_mean(a, 21),
        lambda a: ops.rolling_std(a, 5),
        lambda a: ops.rolling_max(a, 63),
        lambda a: ops.rolling_min(a, 7),
        lambda a: ops.rolling_zscore(a, 252),
        lambda a: ops.rolling_rank_pct(a, 20),
        lambda a: ops.rolling_quantiles(a, 60, (0.8,))[0],
        lambda a: ops.rolling_cov_corr(a, np.sqrt(np.abs(a)) + np.arange(len(a))[:, None], 20)[1],
    ],
)
def test_values_at_or_before_t_ignore_later_rows(prices, op):
    """Bit-identical on the prefix whether later rows change or the history ends at t."""
    t = 1000
    later = prices.copy()
    later[t + 1 :] *= np.random.default_rng(0).lognormal(0, 0.3, later[t + 1 :].shape)
    full = op(prices)
    np.testing.assert_array_equal(full[: t + 1], op(later)[: t + 1])
    np.testing.assert_array_equal(full[: t + 1], op(prices[: t + 1]))
