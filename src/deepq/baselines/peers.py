"""Peer adapters: other libraries' models run on exactly our folds and cells, so comparisons use identical data.

`GluonDeepAR` trains GluonTS's torch DeepAR per fold on every symbol's series up to the end of the training
window (the series are those of the classical models: daily log returns for returns, trailing log realised
vol for risk; see classical.py), then forecasts each scored cell from that symbol's history up to its
decision date only. Sessions are treated as consecutive steps (the calendar's gaps carry no information
here), so the frequency GluonTS sees is a placeholder. Optional: it needs `gluonts[torch]`.
"""

from __future__ import annotations

import numpy as np

from deepq.baselines.classical import steps, symbol_series
from deepq.baselines.common import check_task, from_point
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold


class GluonDeepAR:
    def __init__(
        self,
        name: str = "deepar_gluonts",
        context_length: int = 32,
        max_epochs: int = 3,
        num_batches_per_epoch: int = 50,
        num_samples: int = 50,
        hidden_size: int = 16,
        seed: int = 0,
        root_dir: str = "/tmp/deepq_gluonts",
    ):
        self.name, self.context_length, self.max_epochs = name, context_length, max_epochs
        self.num_batches_per_epoch, self.num_samples, self.hidden_size = (
            num_batches_per_epoch,
            num_samples,
            hidden_size,
        )
        self.seed, self.root_dir = seed, root_dir
        self.predictor = None
        self.series: np.ndarray | None = None

    def fit(self, data: PanelData, fold: Fold) -> None:
        import lightning as L
        from gluonts.dataset.common import ListDataset
        from gluonts.torch.model.deepar import DeepAREstimator

        check_task(self.name, data.task.name, ("returns", "risk"))
        self.series = symbol_series(data)
        ks = steps(data.task.name, data.task.horizon_days)
        stop = fold.train[1]
        entries = []
        for s in np.unique(data.split_index(fold, "train")[:, 1]):
            y = self.series[fold.train[0] : stop, s]
            y = y[np.isfinite(y)]
            if len(y) > self.context_length + max(ks):
                entries.append({"start": "2000-01-03", "target": y.astype(np.float32), "item_id": str(s)})
        if not entries:
            raise ValueError(f"{self.name}: fold {fold.index} has no symbol with enough training history")
        L.seed_everything(self.seed + fold.index, workers=False, verbose=False)
        estimator = DeepAREstimator(
            freq="D",
            prediction_length=max(ks),
            context_length=self.context_length,
            hidden_size=self.hidden_size,
            num_layers=1,
            num_batches_per_epoch=self.num_batches_per_epoch,
            trainer_kwargs={
                "max_epochs": self.max_epochs,
                "accelerator": "cpu",
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "logger": False,
                "default_root_dir": self.root_dir,
            },
        )
        self.predictor = estimator.train(ListDataset(entries, freq="D"))
        self._ks = ks

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        from gluonts.dataset.common import ListDataset

        if self.predictor is None or self.series is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        out = np.full(len(index), np.nan)
        need = self.context_length * 4  # enough history for the lags DeepAR adds to its context
        entries, rows = [], []
        for i, (t, s) in enumerate(index):
            y = self.series[max(0, t + 1 - need) : t + 1, s]
            y = y[np.isfinite(y)]
            if len(y) >= self.context_length:
                entries.append({"start": "2000-01-03", "target": y.astype(np.float32)})
                rows.append(i)
        if entries:
            forecasts = self.predictor.predict(ListDataset(entries, freq="D"), num_samples=self.num_samples)
            means = np.stack([f.mean for f in forecasts])  # [M, prediction_length]
            out[rows] = means[:, [k - 1 for k in self._ks]].sum(axis=1)
        return from_point(data.task.name, out)
