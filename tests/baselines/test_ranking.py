"""Booster ranking (deepq.baselines.ranking): dates as query groups, per-date relevance grades, plain-score
predictions, and rank-IC early stopping for XGBoost and CatBoost checked against a recomputation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from deepq.baselines.boosting import Boosted
from deepq.baselines.ranking import date_order, group_sizes, one_date_rank_ic, relevance
from deepq.dataset.crosssection import DateGroups, daily_rank_ic, mean_rank_ic
from tests.baselines.helpers import make_data, make_folds
from tests.conftest import ROOT, sample_slice

WIDE = [
    "AAPL",
    "JPM",
    "XOM",
    "JNJ",
    "WMT",
    "GE",
    "NEE",
    "AMT",
    "FCX",
    "NFLX",
    "CVX",
    "SLB",
    "BAC",
    "C",
    "PFE",
]
WIDE += ["MRK", "SPY"]


@pytest.fixture(scope="module")
def setup():
    data = make_data(sample_slice(WIDE, start="2012-01-01", end="2016-12-31"), "returns")
    return data, make_folds(data, 1)[0]


def val_rows(data, fold) -> np.ndarray:
    """The validation rows Boosted.fit stops on: finite training labels, date-major."""
    v = data.split_index(fold, "val")
    v = v[np.isfinite(data.labels[v[:, 0], v[:, 1]])]
    return v[date_order(v)]


def test_relevance_grades_each_date_by_rank():
    dates = np.array([3, 3, 3, 3, 3, 7, 7, 7, 9])
    y = np.array([0.5, -1.0, 2.0, 0.5, 9.0, 1.0, 3.0, 2.0, 4.0])
    # date 3: ranks 2.5, 1, 4, 2.5, 5 -> pct .375, 0, .75, .375, 1 -> 5 levels: 1, 0, 3, 1, 4
    np.testing.assert_array_equal(relevance(y, dates, 5), [1, 0, 3, 1, 4, 0, 4, 2, 2])
    with pytest.raises(ValueError, match="non-finite"):
        relevance(np.array([np.nan, 1.0]), np.array([0, 0]), 5)
    with pytest.raises(ValueError, match="rank_levels"):
        relevance(y, dates, 1)
    with pytest.raises(ValueError, match="sorted by date"):
        group_sizes(np.array([2, 1]))


def test_query_groups_are_the_dates_row_counts_in_order(setup, monkeypatch):
    """What LightGBM receives: one group per training date, its size that date's rows, dates ascending, and
    labels graded within each date; the same for the validation dates."""
    import lightgbm as lgb

    data, fold = setup
    seen = {}
    real_fit = lgb.LGBMRanker.fit

    def spy(self, x, y, **kw):
        seen.update(x=x, y=y, **kw)
        return real_fit(self, x, y, **kw)

    monkeypatch.setattr(lgb.LGBMRanker, "fit", spy)
    model = Boosted("r", objective="lambdarank", rank_levels=5, n_estimators=5, max_train_rows=None, n_jobs=1)
    model.fit(data, fold)
    idx = data.split_index(fold, "train")
    idx = idx[np.isfinite(data.labels[idx[:, 0], idx[:, 1]])]
    counts = pd.Series(idx[:, 0]).value_counts().sort_index()
    np.testing.assert_array_equal(seen["group"], counts.to_numpy())
    assert seen["group"].sum() == len(seen["x"]) == len(idx)
    vcounts = pd.Series(val_rows(data, fold)[:, 0]).value_counts().sort_index()
    np.testing.assert_array_equal(seen["eval_group"][0], vcounts.to_numpy())
    # the grades of the first date are its rows' within-date ranks of the label, in 5 buckets
    first = np.sort(idx[idx[:, 0] == counts.index[0]], axis=0)
    grades = relevance(data.labels[first[:, 0], first[:, 1]], first[:, 0], 5)
    np.testing.assert_array_equal(seen["y"][: counts.iloc[0]], grades)
    assert set(np.unique(seen["y"])) <= set(range(5))


def test_predictions_are_plain_scores_without_groups(setup):
    data, fold = setup
    model = Boosted("r", library="xgboost", objective="rank:pairwise", n_estimators=30, n_jobs=1)
    model.fit(data, fold)
    test = data.split_index(fold, "test")
    perm = np.random.default_rng(0).permutation(len(test))
    a, b = model.predict(data, test).score, model.predict(data, test[perm]).score
    np.testing.assert_allclose(a[perm], b)  # a row's score does not depend on which rows come with it
    with pytest.raises(ValueError, match="ranks stocks; use task=returns"):
        Boosted("r", objective="lambdarank").fit(make_data(data.panel, "direction"), fold)
    with pytest.raises(ValueError, match="not a ranking objective of catboost"):
        Boosted("r", library="catboost", objective="lambdarank")
    with pytest.raises(ValueError, match="exclude each other"):
        Boosted("r", objective="lambdarank", quantiles=(0.1, 0.9))


def test_one_date_metric_is_daily_rank_ic():
    rng = np.random.default_rng(1)
    dates = np.repeat(np.arange(6), 12)
    score, outcome = rng.normal(size=72), rng.normal(size=72)
    score[:12] = 1.0  # an all-tied date counts 0 in both
    per_date = [one_date_rank_ic(outcome[dates == d], score[dates == d]) for d in range(6)]
    np.testing.assert_allclose(per_date, daily_rank_ic(DateGroups.of(dates), score, outcome))


def ic_curve(groups: DateGroups, outcome: np.ndarray, staged) -> np.ndarray:
    return np.array([mean_rank_ic(groups, np.asarray(p).reshape(-1), outcome) for p in staged])


@pytest.mark.parametrize("objective", [None, "rank:pairwise"], ids=["xgboost-mse", "xgboost-pairwise"])
def test_xgboost_rank_ic_stopping_keeps_the_best_validation_iteration(setup, objective):
    data, fold = setup
    model = Boosted(
        "x", library="xgboost", objective=objective, n_estimators=80, early_stopping_rounds=15,
        early_stopping_metric="rank_ic", learning_rate=0.1, n_jobs=1,
    )  # fmt: skip
    model.fit(data, fold)
    vidx = val_rows(data, fold)
    xv, outcome, groups = (
        model.design(data, vidx),
        data.y_ret[vidx[:, 0], vidx[:, 1]],
        DateGroups.of(vidx[:, 0]),
    )
    m = model.models[0]
    n_trees = m.get_booster().num_boosted_rounds()
    curve = ic_curve(groups, outcome, (m.predict(xv, iteration_range=(0, i + 1)) for i in range(n_trees)))
    best = model.best_iteration[fold.index]
    assert best == int(np.argmax(curve)), curve
    assert n_trees == min(80, best + 1 + 15)  # it did stop early, 15 rounds past the best
    np.testing.assert_allclose(
        m.evals_result()["validation_0"]["rank_ic"], curve, atol=1e-6
    )  # logged to 6 digits
    np.testing.assert_allclose(model.predict(data, vidx).score, m.predict(xv, iteration_range=(0, best + 1)))


@pytest.mark.parametrize("objective", [None, "YetiRank"], ids=["catboost-rmse", "catboost-yetirank"])
def test_catboost_rank_ic_stopping_keeps_the_best_validation_iteration(setup, objective):
    data, fold = setup
    kw = dict(
        library="catboost", objective=objective, n_estimators=80, early_stopping_rounds=15,
        early_stopping_metric="rank_ic", learning_rate=0.1, n_jobs=1,
    )  # fmt: skip
    full = Boosted("c", params={"use_best_model": False}, **kw)  # keeps the trees past the best to recompute
    full.fit(data, fold)
    vidx = val_rows(data, fold)
    x = full.design(data, vidx)
    xv = full._cat_frame(x, [x.shape[1] - 1])  # the sector, last, as CatBoost's integer categorical
    outcome, groups = data.y_ret[vidx[:, 0], vidx[:, 1]], DateGroups.of(vidx[:, 0])
    m = full.models[0]
    raw = (
        {} if objective else {"prediction_type": "RawFormulaVal"}
    )  # a ranker's staged scores are raw already
    curve = ic_curve(groups, outcome, m.staged_predict(xv, **raw))
    best = full.best_iteration[fold.index]
    assert best == int(np.argmax(curve)), curve
    assert m.tree_count_ == min(80, best + 1 + 15)  # it did stop early
    # the model fit keeps (use_best_model) is cut at that iteration and predicts its scores
    kept = Boosted("c", **kw)
    kept.fit(data, fold)
    assert kept.best_iteration[fold.index] == best and kept.models[0].tree_count_ == best + 1
    np.testing.assert_allclose(
        kept.predict(data, vidx).score, list(m.staged_predict(xv, **raw))[best], atol=1e-9
    )


FAST = ["model.plugin.n_estimators=60", "evaluation.n_boot=20"]  # speed


@pytest.mark.parametrize(
    "model,extra",
    [
        ("lightgbm_rank", []),
        ("lightgbm_rank", ["model.plugin.objective=rank_xendcg"]),
        ("xgboost_rank", []),
        ("catboost_rank", ["model.plugin.max_train_rows=8000"]),  # YetiRank is the slowest
    ],
    ids=["lambdarank", "rank_xendcg", "rank:pairwise", "YetiRank"],
)
def test_each_ranking_objective_walks_forward_and_tells_stocks_apart(tmp_path, model, extra):
    """`deepq train` end to end on the sample: the presets rank each date's stocks (a constant score per
    date would give 1 / names distinct values), and the run is scored on realised raw returns."""
    from deepq.tasks.train import train
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        tmp_path, ["debug=fdr", f"model={model}", "split.max_folds=1", "export=false", *FAST, *extra]
    )
    result = train(cfg)
    assert np.isfinite(result[f"{model}/rank_ic"])
    oof = pd.read_parquet(tmp_path / "predictions.parquet")
    mine = oof[oof["model"] == model]
    distinct = mine.groupby("date")["score"].nunique() / mine.groupby("date")["score"].size()
    # early stopping on the small sample's noisy validation IC keeps few trees; on the full panel see README
    assert distinct.median() >= 0.3, distinct.describe()
    assert (mine.groupby("date")["score"].nunique() > 1).mean() > 0.95
    # scripts/rank_table.py reads the same run folder to the same rank IC and distinct share
    row = rank_table().rank_row(tmp_path)
    assert row["model"] == model and row["rank_ic"] == pytest.approx(result[f"{model}/rank_ic"], abs=1e-12)
    assert row["distinct"] == pytest.approx(distinct.median())
    assert row["dates"] == mine["date"].nunique() and set(row["by_year"]) == {2009}


def rank_table():
    spec = importlib.util.spec_from_file_location("rank_table", ROOT / "scripts" / "rank_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "library,objective",
    [
        ("lightgbm", None), ("xgboost", None), ("catboost", None),
        ("lightgbm", "lambdarank"), ("xgboost", "rank:pairwise"), ("catboost", "YetiRank"),
    ],
)  # fmt: skip
def test_min_trees_keeps_the_best_validation_rank_ic_among_enough_trees(setup, library, objective):
    """A noisy validation IC that peaks at tree 1 or 2 would leave a model that ties most stocks (regressor
    or ranker alike): min_trees picks the best count at or past the floor (from the curve the library logged)
    and predicts with that many trees, which the model keeps."""
    data, fold = setup
    kw = dict(
        library=library, n_estimators=120, early_stopping_rounds=20, early_stopping_metric="rank_ic",
        learning_rate=0.1, n_jobs=1, objective=objective,
    )  # fmt: skip
    plain = Boosted("m", **kw)
    plain.fit(data, fold)
    floor = Boosted("m", min_trees=int(plain.best_iteration[fold.index]) + 25, **kw)  # past the plain best
    floor.fit(data, fold)
    m = floor.models[0]
    if library == "lightgbm":
        logged = np.asarray(m.evals_result_["valid_0"]["rank_ic"])
        n = m.best_iteration_
        assert m.booster_.num_trees() == n  # LightGBM keeps the trees up to its best iteration
    elif library == "xgboost":
        logged = np.asarray(m.evals_result()["validation_0"]["rank_ic"])
        n = m.best_iteration + 1
    else:
        logged = np.asarray(m.get_evals_result()["validation"]["CatBoostRankIC"])
        n = m.tree_count_  # CatBoost's model was shrunk to the floor's best
        assert floor.best_iteration[fold.index] == n - 1
    assert n >= floor.min_trees and len(logged) == min(120, n + 20)  # patience counted from the floor's best
    assert logged[n - 1] == logged[floor.min_trees - 1 :].max()  # the best at or past the floor
    vidx = val_rows(data, fold)
    xv = floor.design(data, vidx)
    if library == "catboost":
        xv, trees = floor._cat_frame(xv, [xv.shape[1] - 1]), {}
    else:
        trees = {"num_iteration": n} if library == "lightgbm" else {"iteration_range": (0, n)}
    np.testing.assert_allclose(floor.predict(data, vidx).score, m.predict(xv, **trees))
    assert not np.allclose(floor.predict(data, vidx).score, plain.predict(data, vidx).score)
    with pytest.raises(ValueError, match="min_trees applies"):
        Boosted("m", early_stopping_metric="rank_ic", min_trees=20, quantiles=(0.1, 0.9))
    with pytest.raises(ValueError, match="min_trees applies"):
        Boosted("m", library="lightgbm", min_trees=20)  # stopped on the loss: no rank IC curve
