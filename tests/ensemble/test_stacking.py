"""The stacker never sees its own test period, and its averaging modes are what they say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepq.baselines.naive import HistoricalMean, Naive
from deepq.dataset.context import FoldModel, PanelData, Predictions
from deepq.ensemble.stacking import Stack, rank_by_date, rank_mean_score, zscore_by_date
from tests.baselines.helpers import make_data, make_folds


class Shifted:
    """A member whose forecasts are moved by `shift` on cells dated at or after row `from_row`."""

    def __init__(self, inner: FoldModel, from_row: int, shift: float):
        self.inner, self.from_row, self.shift = inner, from_row, shift
        self.name = f"shifted_{inner.name}"

    def fit(self, data: PanelData, fold) -> None:
        self.inner.fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        p = self.inner.predict(data, index)
        bump = np.where(index[:, 0] >= self.from_row, self.shift, 0.0)
        return Predictions(p.pred + bump, p.score + bump, p.up, p.extra)


def members():
    return [HistoricalMean(), Naive("momentum_20"), Naive("last_return")]


def run(stack: Stack, data: PanelData, folds) -> list[Predictions]:
    out = []
    for f in folds:
        stack.fit(data, f)
        out.append(stack.predict(data, data.split_index(f, "test")))
    return out


@pytest.fixture(scope="module")
def returns_data(sample_panel):
    return make_data(sample_panel, "returns", 1)


@pytest.mark.parametrize("meta", ["ridge", "lightgbm"])
def test_perturbed_later_labels_do_not_change_earlier_stacked_outputs(meta, returns_data):
    folds = make_folds(returns_data, 3)
    base = run(Stack(members(), meta=meta), returns_data, folds)
    labels = returns_data.labels.copy()
    later = folds[1].test[0]
    rng = np.random.default_rng(0)
    labels[later:] = labels[later:] + rng.normal(0, 0.05, labels[later:].shape)
    perturbed = dataclasses.replace(returns_data, labels=labels)
    again = run(Stack(members(), meta=meta), perturbed, folds)
    for k in (0, 1):  # fold 1's own test labels changed: its stacked forecast must not
        np.testing.assert_array_equal(base[k].pred, again[k].pred)
    # and the test can fail: fold 2's meta-learner is trained on fold 1's (now perturbed) labels
    assert not np.allclose(base[2].pred, again[2].pred)


def test_perturbed_later_member_predictions_do_not_change_earlier_outputs(returns_data):
    folds = make_folds(returns_data, 3)
    cut = folds[2].test[0]
    base = run(Stack(members(), meta="ridge"), returns_data, folds)
    shifted = [Shifted(m, cut, 0.5) for m in members()]
    again = run(Stack(shifted, meta="ridge"), returns_data, folds)
    for k in (0, 1):
        np.testing.assert_array_equal(base[k].pred, again[k].pred)
    assert not np.allclose(base[2].pred, again[2].pred)


def test_meta_learner_uses_only_rows_labelled_before_the_fold(returns_data):
    folds = make_folds(returns_data, 3)
    stack = Stack(members(), meta="ridge")
    run(stack, returns_data, folds)
    rows = stack._training_rows(returns_data, folds[2])
    assert rows is not None and rows.index[:, 0].max() + 2 <= folds[2].test[0]
    assert stack._training_rows(returns_data, folds[0]) is None  # fold 0 falls back to the plain mean


def test_mean_and_rank_mean(returns_data):
    folds = make_folds(returns_data, 1)
    idx = returns_data.split_index(folds[0], "test")
    mean = run(Stack(members(), meta="mean"), returns_data, folds)[0]
    preds = []
    for m in members():
        m.fit(returns_data, folds[0])
        preds.append(m.predict(returns_data, idx).pred)
    np.testing.assert_allclose(mean.pred, np.nanmean(np.stack(preds, axis=1), axis=1))
    ranked = run(Stack(members(), meta="rank_mean"), returns_data, folds)[0]
    np.testing.assert_allclose(ranked.pred, mean.pred)
    assert np.nanmin(ranked.score) >= -0.5 and np.nanmax(ranked.score) <= 0.5
    assert isinstance(Stack(members()), FoldModel)


def test_rank_mean_breaks_rank_sum_ties_without_reordering_distinct_mean_ranks():
    """Rank sums of three members collide; the blend keeps their order and tells the tied names apart by the
    members' mean z-score (dates 20..39: a member missing some names)."""
    rng = np.random.default_rng(0)
    dates = np.repeat(np.arange(40), 480)
    scores = rng.normal(size=(len(dates), 3))
    scores[(dates >= 20) & (rng.random(len(dates)) < 0.05), 1] = np.nan
    ranks = np.nanmean(rank_by_date(dates, scores), axis=1)
    z = np.nanmean(zscore_by_date(dates, scores), axis=1)
    got = rank_mean_score(dates, scores)
    assert np.nanmin(got) > -0.5 and np.nanmax(got) <= 0.5
    for d in range(40):
        r, g, zd = ranks[dates == d], got[dates == d], z[dates == d]
        if d < 20:
            assert len(np.unique(r)) < 0.95 * len(r)  # the plain rank mean ties
        assert len(np.unique(g)) == len(g)  # the blend does not
        order = np.lexsort((zd, np.round(r, 9)))  # equal up to float noise counts as tied
        assert (np.diff(g[order]) > 0).all()  # ordered by mean rank, then mean z-score
