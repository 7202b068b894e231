"""The shared datamodule: the panel as one tensor, windows gathered by integer (date, symbol) index.

No window is ever materialised ahead of time: memory is the panel's size ([T, N, F] float32), and a batch
of B windows of length L is one advanced-indexing gather. Normalisation is fitted per fold on training
rows only (see normalize.py) and applied inside the gather.
"""

from __future__ import annotations

from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from deepq.dataset.folds import Fold
from deepq.dataset.normalize import Method, Normalizer, cross_sectional_rank, fit_normalizer


class Batch(NamedTuple):
    x: torch.Tensor  # [B, L, F] normalised features, oldest first
    y: torch.Tensor  # [B] label (NaN when unknown, e.g. at the live edge)
    t: torch.Tensor  # [B] date row of the decision date
    s: torch.Tensor  # [B] symbol column


class WindowGather:
    """Gathers normalised windows from the panel tensor. Shared by every split of a fold."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, lookback: int, normalizer: Normalizer):
        self.features, self.labels, self.lookback = features, labels, lookback
        self.center = torch.as_tensor(normalizer.center, dtype=features.dtype, device=features.device)
        self.scale = torch.as_tensor(normalizer.scale, dtype=features.dtype, device=features.device)
        self.clip = normalizer.clip
        self.offsets = torch.arange(-lookback + 1, 1, device=features.device)

    def __call__(self, t: torch.Tensor, s: torch.Tensor) -> Batch:
        rows = t[:, None] + self.offsets  # [B, L]
        x = self.features[rows, s[:, None]]  # [B, L, F]
        x = ((x - self.center) / self.scale).clamp_(-self.clip, self.clip)
        x = torch.nan_to_num_(x, nan=0.0)
        return Batch(x, self.labels[t, s], t, s)


class WindowDataset(Dataset):
    """Indexed by a list of positions (a whole batch at once), not by one sample."""

    def __init__(self, index: np.ndarray, gather: WindowGather):
        self.t = torch.as_tensor(index[:, 0], dtype=torch.long)
        self.s = torch.as_tensor(index[:, 1], dtype=torch.long)
        self.gather = gather

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, positions: list[int]) -> Batch:  # type: ignore[override]
        p = torch.as_tensor(positions, dtype=torch.long)
        return self.gather(self.t[p], self.s[p])


class PanelDataModule(L.LightningDataModule):
    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        tradable: np.ndarray,
        present: np.ndarray | None = None,
        lookback: int = 60,
        batch_size: int = 512,
        eval_batch_size: int = 4096,
        normalization: Method = "robust",
        clip: float = 5.0,
        max_train_samples: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        T, N, F = features.shape
        if labels.shape != (T, N) or tradable.shape != (T, N):
            raise ValueError(f"labels {labels.shape} and tradable {tradable.shape} must be {(T, N)}")
        self.lookback, self.batch_size, self.eval_batch_size = lookback, batch_size, eval_batch_size
        self.normalization, self.clip, self.seed = normalization, clip, seed
        self.max_train_samples = max_train_samples
        self.tradable = tradable
        present = np.isfinite(features).any(axis=2) if present is None else present
        if normalization == "rank":
            features = cross_sectional_rank(features, tradable)
        self.features_np = features
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.labels_np = labels
        self.labels = torch.from_numpy(labels.astype(np.float32))
        # a window is usable when the symbol has a bar at both its first and last session
        window_ok = np.zeros((T, N), dtype=bool)
        if lookback <= T:
            window_ok[lookback - 1 :] = present[lookback - 1 :] & present[: T - lookback + 1]
        self.window_ok = window_ok & tradable
        self.fold: Fold | None = None
        self.normalizer: Normalizer | None = None
        self.gather: WindowGather | None = None

    @property
    def n_features(self) -> int:
        return self.features.shape[-1]

    def index(self, start: int, stop: int, require_label: bool = True) -> np.ndarray:
        """[M, 2] (date row, symbol col) of usable windows with decision dates in [start, stop)."""
        ok = self.window_ok[start:stop]
        if require_label:
            ok = ok & np.isfinite(self.labels_np[start:stop])
        t, s = np.nonzero(ok)
        return np.stack([t + start, s], axis=1)

    def set_fold(self, fold: Fold) -> None:
        self.fold = fold
        rows = np.arange(*fold.train)
        self.normalizer = fit_normalizer(
            self.features_np, rows, self.window_ok, self.normalization, self.clip, seed=self.seed
        )
        self.gather = WindowGather(self.features, self.labels, self.lookback, self.normalizer)

    def _loader(self, index: np.ndarray, train: bool) -> DataLoader:
        assert self.gather is not None, "call set_fold(fold) before asking for data"
        ds = WindowDataset(index, self.gather)
        if train:
            g = torch.Generator().manual_seed(self.seed + (self.fold.index if self.fold else 0))
            n = min(len(ds), self.max_train_samples) if self.max_train_samples else None
            sampler: RandomSampler | SequentialSampler = RandomSampler(ds, num_samples=n, generator=g)
            batches = BatchSampler(sampler, self.batch_size, drop_last=False)
        else:
            batches = BatchSampler(SequentialSampler(ds), self.eval_batch_size, drop_last=False)
        return DataLoader(ds, sampler=batches, batch_size=None, num_workers=0)

    def split_index(self, split: str) -> np.ndarray:
        assert self.fold is not None
        seg = {"train": self.fold.train, "val": self.fold.val, "test": self.fold.test}[split]
        return self.index(*seg)

    def loader_for(self, index: np.ndarray) -> DataLoader:
        """Sequential batches of exactly these (date row, symbol column) cells, e.g. a fold's scored rows."""
        return self._loader(index, train=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split_index("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split_index("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split_index("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
