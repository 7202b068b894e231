"""The shared datamodule: the panel as one tensor, windows gathered by integer (date, symbol) index.

No window is ever materialised ahead of time: memory is the panel's size ([T, N, F] float32 plus a few
[T, N] label planes), and a batch of B windows of length L is one advanced-indexing gather. The tensors
move to the training device once (`setup`), so on a GPU the gather runs there and no batch crosses the bus.
Normalisation is fitted per fold on training rows only (see normalize.py) and applied inside the gather.

Two batching modes over the same tensors and index:
- `window` (default): a batch is B random (date, stock) windows.
- `date`: a batch is whole cross-sections, every usable stock of `dates_per_batch` dates, rows ordered
  date by date (`Batch.t` groups them). It is the ragged form of a `[k, N, L, F]` batch with a mask
  (`deepq.models.ranking.dense_by_date` gives that view), without padding a date's missing stocks through the network. Ranking
  losses compare the stocks of one date, and cross-stock networks attend across them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepq.dataset.context import window_ends
from deepq.dataset.covariates import CALENDAR_CHANNELS, calendar_features, extend_sessions
from deepq.dataset.folds import Fold
from deepq.dataset.normalize import (
    Method,
    Normalizer,
    cross_sectional_rank,
    fit_label_scale,
    fit_normalizer,
)


class Batch(NamedTuple):
    x: torch.Tensor  # [B, L, F] normalised features, oldest first
    y: torch.Tensor  # [B] label (NaN when unknown, e.g. at the live edge)
    t: torch.Tensor  # [B] date row of the decision date
    s: torch.Tensor  # [B] symbol column
    static: torch.Tensor  # [B, 2] int64: symbol id, sector id (for embeddings)
    known: torch.Tensor  # [B, L + K, C] calendar of the window's sessions and the K sessions after t
    y_past: torch.Tensor  # [B, L] the label lagged by its span (known at t), normalised, 0 where unknown
    y_seq: torch.Tensor  # [B, L] labels of every step of the window (DeepAR's per-step targets), NaN if none
    aux_seq: torch.Tensor  # [B, L] auxiliary target per step (forward return, for the risk head), NaN if none


BATCH_INPUTS = ("x", "static", "known", "y_past", "t")  # the fields a network may declare in `net.inputs`


class WindowGather:
    """Gathers normalised windows from the panel tensors. Shared by every split of a fold."""

    def __init__(self, dm: PanelDataModule, normalizer: Normalizer, label_center: float, label_scale: float):
        dev = dm.features.device
        self.dm, self.lookback, self.clip = dm, dm.lookback, normalizer.clip
        self.center = torch.as_tensor(normalizer.center, dtype=torch.float32, device=dev)
        self.scale = torch.as_tensor(normalizer.scale, dtype=torch.float32, device=dev)
        self.label_center, self.label_scale = label_center, label_scale
        self.offsets = torch.arange(-dm.lookback + 1, 1, device=dev)
        self.known_offsets = torch.arange(-dm.lookback + 1, dm.future_days + 1, device=dev)

    def __call__(self, t: torch.Tensor, s: torch.Tensor) -> Batch:
        dm = self.dm
        T, N, F = dm.features.shape
        # one flat cell index per (window, step): rows of F contiguous floats are copied with index_select,
        # ~3x faster than advanced indexing with two broadcast index tensors; labels are `take`n likewise
        cells = (t[:, None] + self.offsets) * N + s[:, None]  # [B, L]
        x = dm.features.view(T * N, F).index_select(0, cells.reshape(-1)).view(*cells.shape, F)
        x.sub_(self.center).div_(self.scale).clamp_(-self.clip, self.clip)
        x = torch.nan_to_num_(x, nan=0.0)
        y_seq = torch.take(dm.labels, cells)
        y_past = torch.take(dm.labels_lagged, cells).sub_(self.label_center).div_(self.label_scale)
        y_past = torch.nan_to_num_(y_past, 0.0).clamp_(-self.clip, self.clip)
        static = torch.stack([s, dm.sector_of[s]], dim=1)
        known = dm.calendar[t[:, None] + self.known_offsets]
        return Batch(x, y_seq[:, -1], t, s, static, known, y_past, y_seq, torch.take(dm.aux, cells))


class WindowDataset(Dataset):
    """Indexed by a tensor of positions (a whole batch at once), not by one sample."""

    def __init__(self, index: np.ndarray, gather: WindowGather, device: torch.device):
        self.t = torch.as_tensor(index[:, 0], dtype=torch.long, device=device)
        self.s = torch.as_tensor(index[:, 1], dtype=torch.long, device=device)
        self.gather = gather

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, positions: torch.Tensor | list[int]) -> Batch:  # type: ignore[override]
        p = torch.as_tensor(positions, dtype=torch.long, device=self.t.device)
        return self.gather(self.t[p], self.s[p])


def seeded_order(n: int, keep: int, seed: int, epoch: int) -> torch.Tensor:
    """The first `keep` of a permutation of range(n), fixed by (seed, epoch): one shuffle per epoch."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)[:keep]


class PositionBatches(Sampler[torch.Tensor]):
    """Yields whole batches of positions as tensors: a seeded permutation per epoch (train) or in order.

    Slicing one permutation tensor replaces a Python loop over ints (RandomSampler + BatchSampler), which
    costs more than the gather itself at these batch sizes.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, max_samples: int | None = None):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.max_samples = min(n, max_samples) if max_samples else n
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.max_samples // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = seeded_order(self.n, self.max_samples, self.seed, self.epoch)
            self.epoch += 1
        else:
            order = torch.arange(self.n)
        yield from order.split(self.batch_size)


class DateBatches(Sampler[torch.Tensor]):
    """Yields whole dates: the positions of every window of `dates_per_batch` dates per batch.

    `t` is the date row of each position, sorted ascending (the date-major index). Training shuffles the
    dates each epoch (seeded); evaluation keeps them in order. `max_dates` caps the dates per epoch.
    """

    def __init__(
        self, t: np.ndarray, dates_per_batch: int, shuffle: bool, seed: int = 0, max_dates: int | None = None
    ):
        if len(t) and np.any(np.diff(t) < 0):
            raise ValueError("DateBatches needs positions sorted by date (a date-major index)")
        if dates_per_batch < 1:
            raise ValueError(f"dates_per_batch must be >= 1, got {dates_per_batch}")
        _, starts, counts = np.unique(t, return_index=True, return_counts=True)
        self.starts, self.counts = torch.as_tensor(starts), torch.as_tensor(counts)
        self.k, self.shuffle, self.seed = dates_per_batch, shuffle, seed
        self.n_dates = min(len(starts), max_dates) if max_dates else len(starts)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.n_dates // self.k)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = seeded_order(len(self.starts), self.n_dates, self.seed, self.epoch)
            self.epoch += 1
        else:
            order = torch.arange(self.n_dates)
        for chunk in order.split(self.k):
            chunk = chunk.sort().values  # rows of a batch stay in date order
            yield torch.cat(
                [
                    torch.arange(a, a + c)
                    for a, c in zip(self.starts[chunk].tolist(), self.counts[chunk].tolist(), strict=True)
                ]
            )


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
        max_val_samples: int | None = None,
        seed: int = 0,
        dates: np.ndarray | None = None,
        sector_ids: np.ndarray | None = None,
        aux: np.ndarray | None = None,
        label_span: int = 2,
        future_days: int = 1,
        batching: str = "window",
        dates_per_batch: int = 4,
    ):
        super().__init__()
        T, N, F = features.shape
        for name, arr in (("labels", labels), ("tradable", tradable), ("aux", aux)):
            if arr is not None and arr.shape != (T, N):
                raise ValueError(f"{name} has shape {arr.shape}, expected {(T, N)} like features[:, :, 0]")
        self.lookback, self.batch_size, self.eval_batch_size = lookback, batch_size, eval_batch_size
        self.normalization, self.clip, self.seed = normalization, clip, seed
        self.max_train_samples, self.label_span, self.future_days = max_train_samples, label_span, future_days
        self.max_val_samples = max_val_samples
        if batching not in ("window", "date"):
            raise ValueError(f"datamodule.batching must be 'window' or 'date', got {batching!r}")
        self.batching, self.dates_per_batch = batching, dates_per_batch
        self.tradable = tradable
        present = np.isfinite(features).any(axis=2) if present is None else present
        if normalization == "rank":
            features = cross_sectional_rank(features, tradable)
        self.features_np = features
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.device = torch.device("cpu")
        self._set_labels(labels)
        self.aux = torch.from_numpy(
            np.full((T, N), np.nan, np.float32) if aux is None else aux.astype(np.float32)
        )
        if dates is None:  # synthetic panels: consecutive weekdays ending today are as good as any
            dates = np.busday_offset(np.datetime64("2000-01-03"), np.arange(T))
        self.calendar = torch.from_numpy(calendar_features(extend_sessions(dates, future_days)))
        self.sector_of = torch.as_tensor(np.zeros(N, np.int64) if sector_ids is None else sector_ids)
        self.n_symbols, self.n_sectors = N, int(self.sector_of.max()) + 1 if N else 1
        self.window_ok = window_ends(present, lookback) & tradable
        self.fold: Fold | None = None
        self.normalizer: Normalizer | None = None
        self.label_stats: tuple[float, float] = (0.0, 1.0)
        self.gather: WindowGather | None = None

    # ---- shapes a network is built from -------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.features.shape[-1]

    def input_spec(self) -> dict[str, int]:
        """Keyword arguments a network factory may take (NeuralModel passes those it accepts)."""
        return {
            "n_features": self.n_features,
            "lookback": self.lookback,
            "n_known": len(CALENDAR_CHANNELS),
            "future_days": self.future_days,
            "n_symbols": self.n_symbols,
            "n_sectors": self.n_sectors,
        }

    # ---- device and fold ----------------------------------------------------------------------------
    def to_device(self, device: torch.device | str) -> PanelDataModule:
        """Move the panel tensors once; every later gather runs on `device`."""
        device = torch.device(device)
        if device != self.device:
            for name in ("features", "labels", "labels_lagged", "aux", "calendar", "sector_of"):
                setattr(self, name, getattr(self, name).to(device))
            self.device = device
            if self.normalizer is not None:
                self.gather = WindowGather(self, self.normalizer, *self.label_stats)
        return self

    def setup(self, stage: str) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.to_device(trainer.strategy.root_device)

    def index(self, start: int, stop: int, require_label: bool = True) -> np.ndarray:
        """[M, 2] (date row, symbol col) of usable windows with decision dates in [start, stop), symbol by
        symbol in date order: consecutive windows then overlap, which evaluation can exploit (TFT). In
        date batching the index is date-major instead (each date's stocks together)."""
        ok = self.window_ok[start:stop]
        if require_label:
            ok = ok & np.isfinite(self.labels_np[start:stop])
        if self.batching == "date":
            t, s = np.nonzero(ok)
        else:
            s, t = np.nonzero(ok.T)
        return np.stack([t + start, s], axis=1)

    def eval_order(self, index: np.ndarray) -> np.ndarray:
        """The order evaluation runs the rows of `index` in: symbol-major (overlapping windows together), or
        date-major in date batching (each batch whole dates: a cross-stock network sees the full date)."""
        if self.batching == "date":
            return np.lexsort((index[:, 1], index[:, 0]))
        return np.lexsort((index[:, 0], index[:, 1]))

    def _set_labels(self, labels: np.ndarray) -> None:
        """The training target every split reads (and its copy lagged by the label span, a past input)."""
        T, N = labels.shape
        self.labels_np = labels
        self.labels = torch.from_numpy(labels.astype(np.float32)).to(self.device)
        lagged = np.full((T, N), np.nan, np.float32)  # label of t - span, the latest one fully known at t
        if self.label_span < T:
            lagged[self.label_span :] = labels[: T - self.label_span]
        self.labels_lagged = torch.from_numpy(lagged).to(self.device)

    def set_fold(self, fold: Fold, labels: np.ndarray | None = None) -> None:
        """Fit the fold's normaliser and label scale on its training rows. `labels`: the fold's training
        target (`PanelData.fold_labels`, e.g. a per-date rank), replacing the one the datamodule holds."""
        if labels is not None:
            if labels.shape != self.labels_np.shape:
                raise ValueError(f"fold labels have shape {labels.shape}, expected {self.labels_np.shape}")
            self._set_labels(labels)
        self.fold = fold
        rows = np.arange(*fold.train)
        self.normalizer = fit_normalizer(
            self.features_np, rows, self.window_ok, self.normalization, self.clip, seed=self.seed
        )
        self.label_stats = fit_label_scale(self.labels_np, rows, self.window_ok)
        self.gather = WindowGather(self, self.normalizer, *self.label_stats)

    # ---- loaders -------------------------------------------------------------------------------------
    def _shard(self, index: np.ndarray, contiguous: bool = False) -> np.ndarray:
        """Under DDP each process reads its own slice of the windows (same seed, disjoint rows): every
        world-th row, or for evaluation a contiguous block (consecutive windows stay together)."""
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        if trainer is None or world <= 1:
            return index
        if self.batching == "date":  # whole dates per process, so every batch stays a full cross-section
            dates = np.unique(index[:, 0])
            return index[np.isin(index[:, 0], dates[trainer.global_rank :: world])]
        if contiguous:
            return np.array_split(index, world)[trainer.global_rank]
        return index[trainer.global_rank :: world]

    def _loader(self, index: np.ndarray, train: bool) -> DataLoader:
        assert self.gather is not None, "call set_fold(fold) before asking for data"
        ds = WindowDataset(index, self.gather, self.device)
        fold = self.fold.index if self.fold else 0
        if self.batching == "date":
            return DataLoader(
                ds,
                sampler=self._date_batches(index, train, seed=self.seed + fold),
                batch_size=None,
                num_workers=0,
            )
        batches = PositionBatches(
            len(ds),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed + fold,
            max_samples=self.max_train_samples if train else None,
        )
        return DataLoader(ds, sampler=batches, batch_size=None, num_workers=0)

    def _date_batches(self, index: np.ndarray, train: bool, seed: int) -> DateBatches:
        """Whole dates per batch: `dates_per_batch` for training; for evaluation as many dates as fill about
        `eval_batch_size` rows. `max_train_samples` caps the windows per epoch as in window mode."""
        t = index[:, 0]
        n_dates = max(len(np.unique(t)), 1)
        per_date = max(len(t) / n_dates, 1.0)
        if train:
            cap = -(-self.max_train_samples // int(per_date)) if self.max_train_samples else None
            return DateBatches(t, self.dates_per_batch, shuffle=True, seed=seed, max_dates=cap)
        return DateBatches(t, max(1, int(self.eval_batch_size // per_date)), shuffle=False)

    def split_index(self, split: str) -> np.ndarray:
        assert self.fold is not None
        seg = {"train": self.fold.train, "val": self.fold.val, "test": self.fold.test}[split]
        # date batching keeps every usable window of a date, labelled or not: whether a stock's next return
        # exists (a delisting) is future information, and a cross-stock network must see the date's whole
        # universe. Rows without a label carry no loss.
        return self.index(*seg, require_label=self.batching != "date")

    def loader_for(self, index: np.ndarray) -> DataLoader:
        """Sequential batches of exactly these (date row, symbol column) cells, e.g. a fold's scored rows."""
        return self._loader(index, train=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._shard(self.split_index("train")), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._shard(self.val_index(), contiguous=True), train=False)

    def val_index(self) -> np.ndarray:
        """The validation windows, or with `max_val_samples` those of a seeded random subset of symbols
        (fixed per fold, so every epoch's val_loss is over the same rows; whole symbols keep consecutive
        windows together for evaluation that exploits their overlap): at least `max_val_samples` windows, at
        most one symbol's more."""
        index = self.split_index("val")
        if not self.max_val_samples or len(index) <= self.max_val_samples:
            return index
        fold = self.fold.index if self.fold else 0
        symbols, counts = np.unique(index[:, 1], return_counts=True)
        order = np.random.default_rng(self.seed * 1_000_003 + fold).permutation(len(symbols))
        n = int(np.searchsorted(np.cumsum(counts[order]), self.max_val_samples)) + 1
        return index[np.isin(index[:, 1], symbols[order[:n]])]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split_index("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
