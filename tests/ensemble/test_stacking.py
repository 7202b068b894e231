"""The stacker never sees its own test period, and its averaging modes are what they say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepq.baselines.naive import HistoricalMean, Naive
from deepq.dataset.context import FoldModel, PanelData, Predictions
from deepq.ensemble.stacking import Stack
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


def test_members_without_the_task_are_dropped(sample_panel):
    data = make_data(sample_panel, "risk", 5)
    folds = make_folds(data, 1)
    stack = Stack([Naive("momentum_20"), Naive("rw_vol"), Naive("ewma_vol")], meta="mean")
    p = run(stack, data, folds)[0]
    assert set(stack.skipped) == {"momentum_20"} and np.isfinite(p.pred).all()


class Noisy:
    """last_return plus a little fixed noise: a member nearly collinear with last_return itself."""

    def __init__(self, seed: int):
        self.inner, self.name, self.seed = Naive("last_return"), f"noisy_{seed}", seed

    def fit(self, data: PanelData, fold) -> None:
        self.inner.fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        p = self.inner.predict(data, index)
        noise = np.random.default_rng(self.seed).normal(0, 1e-4, len(index))
        return Predictions(p.pred + noise, p.score + noise, p.up, p.extra)


def test_nonnegative_weights_keep_collinear_members_from_blowing_up(returns_data):
    """Two near-copies of one member: unconstrained weights may cancel each other; Breiman's non-negative
    weights cannot, so the stack's forecasts stay within the members' own spread."""
    folds = make_folds(returns_data)
    stack = Stack([Naive("last_return"), Noisy(1), HistoricalMean()], meta="ridge")
    outs = run(stack, returns_data, folds)
    _, _, beta, _ = stack._meta_model  # type: ignore[misc]
    assert (beta >= 0).all()
    member_spread = np.nanstd(
        Naive("last_return").predict(returns_data, returns_data.split_index(folds[-1], "test")).pred
    )
    assert np.nanstd(outs[-1].pred) <= 1.05 * member_spread
