"""Every metric formula against a reference implementation on real rows (sklearn, scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from deepq.evaluation import metrics as M


@pytest.fixture(scope="module")
def rows(sample_run) -> pd.DataFrame:
    _, _, oof = sample_run
    g = oof[oof["model"] == "momentum_20"].dropna(subset=["score", "y_ret"]).reset_index(drop=True)
    # a probability-like forecast from the real score, to exercise the classification metrics
    g["p"] = 1 / (1 + np.exp(-g["score"].to_numpy() * 8))
    return g


def test_regression_metrics_match_sklearn(rows):
    y, p = rows["y"].to_numpy(), rows["pred"].to_numpy()
    assert M.mse(p, y) == pytest.approx(sk.mean_squared_error(y, p), rel=1e-12)
    assert M.mae(p, y) == pytest.approx(sk.mean_absolute_error(y, p), rel=1e-12)
    assert M.r2(p, y) == pytest.approx(sk.r2_score(y, p), rel=1e-10)
    for tau in (0.05, 0.5, 0.9):
        assert M.pinball_loss(p, y, tau) == pytest.approx(sk.mean_pinball_loss(y, p, alpha=tau), rel=1e-10)


def test_nan_pairs_are_dropped(rows):
    y, p = rows["y"].to_numpy().copy(), rows["pred"].to_numpy().copy()
    y[::7] = np.nan
    ok = np.isfinite(y)
    assert M.mse(p, y) == pytest.approx(sk.mean_squared_error(y[ok], p[ok]))


def test_classification_metrics_match_sklearn(rows):
    y = (rows["y_ret"] > 0).astype(float).to_numpy()
    p = rows["p"].to_numpy()
    got = M.classification_metrics(y, p)
    hard = (p > 0.5).astype(float)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, hard))
    assert got["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, hard))
    assert got["f1"] == pytest.approx(sk.f1_score(y, hard))
    assert got["log_loss"] == pytest.approx(sk.log_loss(y, p), rel=1e-9)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, p), rel=1e-9)
    assert got["brier"] == pytest.approx(sk.brier_score_loss(y, p), rel=1e-9)
    np.testing.assert_array_equal(
        M.confusion(y, hard, [0.0, 1.0]), sk.confusion_matrix(y, hard, labels=[0.0, 1.0])
    )


def test_calibration_table_matches_sklearn_curve(rows):
    from sklearn.calibration import calibration_curve

    y = (rows["y_ret"] > 0).astype(float).to_numpy()
    p = rows["p"].to_numpy()
    table = M.calibration_table(y, p, 10)
    frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(table["frac_up"], frac, rtol=1e-12)
    np.testing.assert_allclose(table["mean_pred"], mean_pred, rtol=1e-12)


def test_daily_ic_matches_scipy_per_date(rows):
    for method, ref in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        ic = M.daily_ic(rows, method=method)
        assert len(ic) > 500
        for d in ic.index[:: max(len(ic) // 25, 1)]:
            g = rows[rows["date"] == d]
            assert ic.loc[d] == pytest.approx(ref(g["score"], g["y_ret"])[0], abs=1e-12), (method, d)


def test_one_ic_convention_for_evaluation_and_early_stopping(rows):
    """Evaluation's daily IC and the boosters' early-stopping IC are one function: ties at average rank, an
    all-tied date scores 0 and counts, a date with too few names is left out."""
    from deepq.dataset.crosssection import DateGroups
    from deepq.dataset.crosssection import daily_rank_ic as selection_ic

    g = rows.copy()
    dates = np.sort(g["date"].unique())
    tied, thin = dates[3], dates[10]
    g.loc[g["date"] == tied, "score"] = 0.1 * 3  # equal floats whose demeaned residue is not exactly 0
    g = g[(g["date"] != thin) | (g.groupby("date").cumcount() < M.MIN_NAMES_FOR_IC - 1)]
    g.loc[g.index[:40], "score"] = g.loc[g.index[:40], "score"].round(2)  # partial ties: average ranks
    for method, ref in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        ic, n_tied = M.ic_by_date(g, method=method)
        assert n_tied == 1 and ic.loc[tied] == 0.0 and thin not in ic.index, method
        assert len(ic) == len(dates) - 1
        first = g[g["date"] == dates[0]]
        assert ic.loc[dates[0]] == pytest.approx(ref(first["score"], first["y_ret"])[0], abs=1e-12)
    sel = selection_ic(DateGroups.of(g["date"].to_numpy()), g["score"].to_numpy(), g["y_ret"].to_numpy())
    ours = M.daily_rank_ic(g)
    np.testing.assert_allclose(sel[np.isfinite(sel)], ours.to_numpy(), atol=1e-12)
    assert np.isnan(sel).sum() == 1  # the thin date: no cross-section, not a zero


def test_icir_and_rank_ic_t(rows):
    ic = M.daily_rank_ic(rows)
    s = M.summarize(rows)
    assert s["icir"] == pytest.approx(ic.mean() / ic.std(ddof=1))
    assert s["rank_ic_t"] == pytest.approx(stats.ttest_1samp(ic, 0).statistic)


def test_direction_accuracy_and_crps(rows):
    up, r = rows["up"].to_numpy(), rows["y_ret"].to_numpy()
    assert M.direction_accuracy(up, r) == pytest.approx(np.mean((up > 0.5) == (r > 0)))
    # CRPS of a point forecast (all quantiles equal) is its absolute error
    y, p = rows["y"].to_numpy(), rows["pred"].to_numpy()
    taus = np.linspace(0.005, 0.995, 199)
    q = np.repeat(p[:, None], len(taus), axis=1)
    assert M.crps_from_quantiles(q, taus, y) == pytest.approx(M.mae(p, y), rel=1e-3)
    assert M.interval_coverage(p - 1, p + 1, y) == 1.0
