"""The datamodule's fast paths against their plain definitions on the shipped sample: the normaliser's
block-wise quantiles equal numpy's nanpercentile over the training cells, and a gathered batch equals
advanced indexing of the panel, normalised by hand."""

from __future__ import annotations

import numpy as np
import torch

from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.dataset.normalize import fit_normalizer


def _sample_features(sample_panel) -> tuple[np.ndarray, np.ndarray]:
    close = np.log(sample_panel["close"])
    ret1 = np.full_like(close, np.nan)
    ret1[1:] = close[1:] - close[:-1]
    ret5 = np.full_like(close, np.nan)
    ret5[5:] = close[5:] - close[:-5]
    vol = np.log(sample_panel["volume"] + 1.0)
    x = np.stack([ret1, ret5, vol, np.full_like(close, np.nan)], axis=2).astype(np.float32)  # last: all NaN
    return x, np.isfinite(close)


def test_normalizer_equals_nanpercentile_on_training_cells(sample_panel):
    x, ok = _sample_features(sample_panel)
    rows = np.arange(100, 900)
    norm = fit_normalizer(x, rows, ok, max_samples=10**9, block=3)  # no subsample, blocks not dividing F
    cells = x[rows][ok[rows]]
    q25, med, q75 = np.nanpercentile(cells[:, :3], [25, 50, 75], axis=0)
    np.testing.assert_allclose(norm.center[:3], med, rtol=1e-6)
    np.testing.assert_allclose(norm.scale[:3], (q75 - q25) / 1.349, rtol=1e-5)
    assert norm.center[3] == 0.0 and norm.scale[3] == 1.0  # never finite: identity
    # a subsample is close to the full quantiles, and does not look outside the training rows
    sub = fit_normalizer(x, rows, ok, max_samples=20_000, seed=1)
    np.testing.assert_allclose(sub.center[:3], med, atol=0.05 * norm.scale[:3].max())
    x_future = x.copy()
    x_future[900:] = 1e6
    assert np.array_equal(fit_normalizer(x_future, rows, ok).center, fit_normalizer(x, rows, ok).center)


def test_gathered_batch_equals_advanced_indexing(sample_panel):
    x, ok = _sample_features(sample_panel)
    x = x[:, :, :3]
    T = x.shape[0]
    labels = np.where(ok, np.arange(T, dtype=np.float32)[:, None] * 1e-3, np.nan).astype(np.float32)
    dm = PanelDataModule(x, labels, ok, ok, lookback=15, batch_size=64, label_span=2)
    dm.set_fold(Fold(0, (0, T - 200), (T - 190, T - 100), (T - 90, T)))
    batch = next(iter(dm.train_dataloader()))
    assert dm.normalizer is not None
    rows = batch.t[:, None] + torch.arange(-14, 1)
    ref = torch.from_numpy(x)[rows, batch.s[:, None]]
    center, scale = (torch.from_numpy(a) for a in (dm.normalizer.center, dm.normalizer.scale))
    ref = torch.nan_to_num(((ref - center) / scale).clamp(-dm.clip, dm.clip), nan=0.0)
    torch.testing.assert_close(batch.x, ref, rtol=0, atol=0)
    torch.testing.assert_close(batch.y_seq, torch.from_numpy(labels)[rows, batch.s[:, None]], equal_nan=True)
    assert torch.equal(batch.y, batch.y_seq[:, -1]) and torch.isfinite(batch.y).all()
    lagged_panel = np.full_like(labels, np.nan)
    lagged_panel[2:] = labels[:-2]  # the label of t - span: the latest one fully known at t
    lagged = torch.from_numpy(lagged_panel)[rows, batch.s[:, None]]
    c, s = dm.label_stats
    ref_past = torch.nan_to_num((lagged - c) / s, nan=0.0).clamp(-dm.clip, dm.clip)
    torch.testing.assert_close(batch.y_past, ref_past)
