"""Walk-forward folds: segments never overlap, the purge gap holds, test blocks move forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.dataset.folds import walk_forward

DATES = pd.bdate_range("2005-01-03", "2024-06-28").to_numpy().astype("datetime64[D]")


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
@pytest.mark.parametrize("purge", [2, 6, 22])
def test_folds_are_disjoint_and_purged(mode, purge):
    folds = walk_forward(
        DATES, train_years=5, test_years=1, mode=mode, purge_days=purge, val_days=63, min_history_days=252
    )
    assert len(folds) >= 3
    for f in folds:
        assert f.train[0] < f.train[1] <= f.val[0] - purge
        assert f.val[1] <= f.test[0] - purge
        assert f.train[0] >= 252
    for a, b in zip(folds, folds[1:], strict=False):
        assert a.test[1] <= b.test[0], "test blocks overlap"
    if mode == "rolling":
        lengths = [f.train[1] - f.train[0] for f in folds]
        assert max(lengths) - min(lengths) < 15  # ~ the same 5 years each time
    else:
        assert len({f.train[0] for f in folds}) == 1


def test_embargo_leaves_a_gap_between_test_blocks():
    folds = walk_forward(DATES, train_years=3, test_years=1, purge_days=2, embargo_days=5, val_days=0)
    for a, b in zip(folds, folds[1:], strict=False):
        assert b.test[0] - a.test[1] >= 5


def test_training_window_too_short_is_a_clear_error():
    with pytest.raises(ValueError, match="too short"):
        walk_forward(
            DATES[:400], train_years=0.1, test_years=0.5, purge_days=2, val_days=126, first_test="2005-03-01"
        )


def test_no_fold_fits():
    with pytest.raises(ValueError, match="no walk-forward fold"):
        walk_forward(DATES[:300], train_years=5, test_years=1)


def test_label_span_purge_leaves_no_label_overlap():
    """A training label at row t reads prices up to t + span; it must end before the test block starts."""
    from deepq.dataset.labels import label_span

    span = label_span(5, "returns")
    folds = walk_forward(DATES, train_years=4, test_years=1, purge_days=span, val_days=63)
    for f in folds:
        last_train_label_end = f.train[1] - 1 + span
        last_val_label_end = f.val[1] - 1 + span
        assert last_train_label_end < f.test[0] and last_val_label_end < f.test[0]
    assert np.all(np.diff([f.test[0] for f in folds]) > 0)
