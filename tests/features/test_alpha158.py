"""Alpha158 features against Qlib's published expressions evaluated directly on one symbol's series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import percentileofscore

from deepq.features.registry import compute_features, resolve


@pytest.fixture(scope="module")
def one(sample_panel):
    j = sample_panel.symbol_index("JNJ")
    df = pd.DataFrame({k: sample_panel[k][:, j] for k in ("open", "high", "low", "close", "volume")})
    return sample_panel, j, df


def _first_argmax_unique(x):
    # Qlib's np.argmax takes the first of tied maxima, TA-Lib MAXINDEX the last (documented): compare untied windows
    return np.argmax(x) + 1.0 if (x == x.max()).sum() == 1 else np.nan


def _ours(panel, j, name):
    return compute_features(panel, resolve([name]))[:, j, 0].astype(np.float64)


@pytest.mark.parametrize("d", [5, 20, 60])
def test_rolling_operators_match_qlib_expressions(one, d):
    panel, j, df = one
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    ref = {
        f"a158_roc_{d}": c.shift(d) / c,
        f"a158_ma_{d}": c.rolling(d).mean() / c,
        f"a158_std_{d}": c.rolling(d).std() / c,
        f"a158_max_{d}": h.rolling(d).max() / c,
        f"a158_min_{d}": lo.rolling(d).min() / c,
        f"a158_qtlu_{d}": c.rolling(d).quantile(0.8) / c,
        f"a158_rank_{d}": c.rolling(d).apply(
            lambda x: percentileofscore(x, x[-1]) / 100, raw=True
        ),  # Qlib Rank
        f"a158_rsv_{d}": (c - lo.rolling(d).min()) / (h.rolling(d).max() - lo.rolling(d).min() + 1e-12),
        f"a158_corr_{d}": c.rolling(d).corr(np.log(v + 1)),
        f"a158_cntp_{d}": (c > c.shift(1)).astype(float).where(c.shift(1).notna()).rolling(d).mean(),
        f"a158_sump_{d}": (c - c.shift(1)).clip(lower=0).rolling(d).sum()
        / ((c - c.shift(1)).abs().rolling(d).sum() + 1e-12),
        f"a158_vma_{d}": v.rolling(d).mean() / (v + 1e-12),
        f"a158_imax_{d}": h.rolling(d).apply(_first_argmax_unique, raw=True) / d,
    }
    for name, expected in ref.items():
        ours = _ours(panel, j, name)
        e = expected.to_numpy()
        ok = np.isfinite(e)
        assert ok.sum() > 1000, name
        np.testing.assert_allclose(ours[ok], e[ok], rtol=1e-5, atol=1e-6, err_msg=name)


def test_regression_features_match_polyfit(one):
    panel, j, df = one
    c = df["close"].to_numpy()
    beta, rsqr, resi = (_ours(panel, j, n) for n in ("a158_beta_20", "a158_rsqr_20", "a158_resi_20"))
    x = np.arange(20)
    for t in (100, 500, 1200):
        w = c[t - 19 : t + 1]
        slope, icpt = np.polyfit(x, w, 1)
        assert beta[t] == pytest.approx(slope / c[t], rel=1e-6)
        assert rsqr[t] == pytest.approx(np.corrcoef(x, w)[0, 1] ** 2, rel=1e-6)
        assert resi[t] == pytest.approx((w[-1] - (slope * 19 + icpt)) / c[t], rel=1e-5, abs=1e-9)


def test_kbar_definitions(one):
    panel, j, df = one
    o, h, lo, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
    np.testing.assert_allclose(_ours(panel, j, "a158_kmid"), (c - o) / o, rtol=1e-6)
    np.testing.assert_allclose(
        _ours(panel, j, "a158_ksft2"), (2 * c - h - lo) / (h - lo + 1e-12), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(_ours(panel, j, "a158_kup"), (h - np.maximum(o, c)) / o, rtol=1e-5, atol=1e-7)
