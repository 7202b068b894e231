"""The datamodule gathers windows by index: same values as slicing by hand, train-only normalisation."""

from __future__ import annotations

import numpy as np
import torch

from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.dataset.normalize import fit_normalizer


def _dm(rng, lookback=5, normalization="robust"):
    T, N, F = 200, 6, 3
    x = rng.normal(size=(T, N, F)).astype(np.float32)
    x[:10, 2] = np.nan  # symbol 2 lists late
    labels = rng.normal(size=(T, N))
    labels[-2:] = np.nan
    present = np.isfinite(x).all(axis=2)
    return (
        PanelDataModule(
            x, labels, present, present, lookback=lookback, batch_size=16, normalization=normalization
        ),
        x,
        labels,
    )


def test_window_gather_matches_manual_slice(rng):
    dm, x, labels = _dm(rng)
    fold = Fold(0, (0, 120), (122, 150), (152, 200))
    dm.set_fold(fold)
    batch = next(iter(dm.train_dataloader()))
    t, s = batch.t.numpy(), batch.s.numpy()
    norm = dm.normalizer
    for i in range(len(t)):
        manual = (x[t[i] - 4 : t[i] + 1, s[i]] - norm.center) / norm.scale
        np.testing.assert_allclose(batch.x[i].numpy(), np.clip(manual, -5, 5), rtol=1e-6, atol=1e-6)
        assert batch.y[i].item() == np.float32(labels[t[i], s[i]])
    assert batch.x.shape[1:] == (5, 3)


def test_windows_need_full_history_and_a_label(rng):
    dm, _, _ = _dm(rng)
    idx = dm.index(0, 200)
    assert idx[:, 0].min() >= 4  # lookback 5
    late = idx[idx[:, 1] == 2]
    assert late[:, 0].min() >= 14  # symbol 2 starts at row 10
    assert idx[:, 0].max() <= 197  # last two rows have no label
    assert len(dm.index(0, 200, require_label=False)) > len(idx)


def test_normaliser_uses_training_rows_only(rng):
    dm, x, _ = _dm(rng)
    x_shift = x.copy()
    x_shift[150:] += 100.0  # the test period moves a lot
    present = np.isfinite(x).all(axis=2)
    dm2 = PanelDataModule(x_shift, dm.labels_np, present, present, lookback=5)
    fold = Fold(0, (0, 120), (122, 150), (152, 200))
    dm.set_fold(fold)
    dm2.set_fold(fold)
    np.testing.assert_array_equal(dm.normalizer.center, dm2.normalizer.center)
    direct = fit_normalizer(x, np.arange(0, 120), dm.window_ok)
    np.testing.assert_array_equal(direct.center, dm.normalizer.center)


def test_rank_normalisation_is_per_date(rng):
    dm, _, _ = _dm(rng, normalization="rank")
    dm.set_fold(Fold(0, (0, 120), (122, 150), (152, 200)))
    ranked = dm.features[50, :, 0]
    assert torch.all((ranked >= -1) & (ranked <= 1))


def test_memory_is_the_panel_not_the_windows(rng):
    dm, x, _ = _dm(rng, lookback=30)
    dm.set_fold(Fold(0, (0, 120), (122, 150), (152, 200)))
    loader = dm.train_dataloader()
    assert dm.features.untyped_storage().nbytes() == x.nbytes  # one copy of the panel, nothing per window
    assert len(loader.dataset) > 0


def test_known_future_calendar_follows_the_exchange_past_the_panel_edge(sample_panel):
    """Past the last session the decoder's calendar is the NYSE's own sessions: New Year's Day is skipped
    (the fixture ends on Tuesday 2019-12-31), as the recorded sessions skip every holiday inside the panel."""
    from deepq.dataset.covariates import extend_sessions

    dates = sample_panel.dates
    assert str(dates[-1]) == "2019-12-31"
    ext = extend_sessions(dates, 5)
    np.testing.assert_array_equal(ext[: len(dates)], np.asarray(dates, dtype="datetime64[D]"))
    assert [str(d) for d in ext[len(dates) :]] == [
        "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08"
    ]  # fmt: skip
    weekdays = extend_sessions(dates, 5, exchange=None)[len(dates) :]
    assert "2020-01-01" in [str(d) for d in weekdays]  # what the weekday fallback would have fed the decoder


def test_validation_subset_is_whole_symbols_fixed_per_fold(rng):
    T, N, F = 300, 12, 3
    feats = rng.normal(size=(T, N, F)).astype(np.float32)
    labels = rng.normal(size=(T, N)).astype(np.float32)
    fold = Fold(0, (0, 200), (200, 260), (260, 300))
    full = PanelDataModule(feats, labels, np.ones((T, N), bool), lookback=20)
    full.set_fold(fold)
    dm = PanelDataModule(feats, labels, np.ones((T, N), bool), lookback=20, max_val_samples=150)
    dm.set_fold(fold)
    idx = dm.val_index()
    assert 150 <= len(idx) < len(full.val_index()) == 60 * N
    kept = np.unique(idx[:, 1])
    assert len(idx) == 60 * len(kept)  # every window of a chosen symbol, none of the others
    np.testing.assert_array_equal(dm.val_index(), idx)  # the same rows every epoch
    assert sum(len(b.y) for b in dm.val_dataloader()) == len(idx)
