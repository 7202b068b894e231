"""pytorch-forecasting's TFT as a peer on our folds: finite forecasts on exactly our cells, and causal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepq.baselines.common import TaskNotSupported

from .helpers import make_data, make_folds

TINY = dict(max_epochs=1, limit_train_batches=5, hidden_size=8, context_length=16, batch_size=64)


def perturbed_after(data, t0: int, rng: np.random.Generator):
    """The same PanelData with every price and feature after row t0 scrambled (the future changes)."""
    fields = dict(data.panel.fields)
    for k in ("open", "high", "low", "close"):
        v = fields[k].copy()
        v[t0 + 1 :] *= np.exp(rng.normal(0, 0.05, v[t0 + 1 :].shape))
        fields[k] = v
    features = data.features.copy()
    features[t0 + 1 :] += rng.normal(0, 1, features[t0 + 1 :].shape).astype(features.dtype)
    return dataclasses.replace(data, panel=dataclasses.replace(data.panel, fields=fields), features=features)


@pytest.mark.slow  # trains a (tiny) TFT: about 10 s of CPU
@pytest.mark.parametrize("task", ["returns", "risk"])
def test_pf_tft_peer_on_our_fold_is_causal(task, sample_panel, rng):
    from deepq.baselines.peers import PFTemporalFusion

    data = make_data(sample_panel, task, 5 if task == "risk" else 1)
    fold = make_folds(data, 1)[0]
    model = PFTemporalFusion(**TINY)
    model.fit(data, fold)
    index = data.split_index(fold, "test")
    p = model.predict(data, index)
    assert p.pred.shape == (len(index),) and np.isfinite(p.pred).mean() > 0.95
    assert np.nanstd(p.pred) > 0  # not a constant: it reads each cell's own history

    # scramble everything after the middle of the test block: forecasts made up to then must not move
    t0 = int(np.median(index[:, 0]))
    q = model.predict(perturbed_after(data, t0, rng), index)
    before, after = index[:, 0] <= t0, index[:, 0] > t0
    np.testing.assert_array_equal(p.pred[before], q.pred[before])
    assert not np.allclose(p.pred[after], q.pred[after], equal_nan=True)

    with pytest.raises(TaskNotSupported):
        PFTemporalFusion(**TINY).fit(make_data(sample_panel, "direction"), fold)
