"""Peer adapters: other libraries' models run on exactly our folds and cells, so comparisons use identical data.

`GluonDeepAR` trains GluonTS's torch DeepAR per fold on every symbol's series up to the end of the training
window (the series are those of the classical models: daily log returns for returns, trailing log realised
vol for risk; see classical.py), then forecasts each scored cell from that symbol's history up to its
decision date only. Sessions are treated as consecutive steps (the calendar's gaps carry no information
here), so the frequency GluonTS sees is a placeholder. Optional: it needs `gluonts[torch]`.

`PFTemporalFusion` does the same with pytorch-forecasting's TemporalFusionTransformer (`model=tft_pf`),
with deepq's features as observed covariates, so it can be read beside deepq's own TFT (`model=tft`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

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


class PFTemporalFusion:
    """pytorch-forecasting's TemporalFusionTransformer on our folds and cells.

    Per fold it trains on every symbol's series (the classical models' series, as for `GluonDeepAR`) with
    deepq's own features as observed (unknown-future) covariates, over the rows of the training window only,
    then forecasts each scored cell (t, s) from the `context_length` sessions up to t: one window whose
    encoder ends at t. TFT feeds the decoder known inputs only (here pytorch-forecasting's relative time
    index), never the target or the observed covariates, and the target and feature scalers are fitted on
    the training window, so rows after t cannot reach a forecast made at t (tested). Fixed epochs, no early
    stopping. Point forecast: the RMSE-trained mean, summed over the label's steps. Needs pytorch-forecasting.
    """

    def __init__(
        self,
        name: str = "tft_pf",
        context_length: int = 32,
        hidden_size: int = 16,
        attention_head_size: int = 2,
        hidden_continuous_size: int = 8,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 3,
        limit_train_batches: int | None = 100,
        use_features: bool = True,
        seed: int = 0,
        root_dir: str = "/tmp/deepq_pf_tft",
    ):
        self.name, self.context_length, self.hidden_size = name, context_length, hidden_size
        self.attention_head_size, self.hidden_continuous_size = attention_head_size, hidden_continuous_size
        self.dropout, self.learning_rate, self.batch_size = dropout, learning_rate, batch_size
        self.max_epochs, self.limit_train_batches = max_epochs, limit_train_batches
        self.use_features, self.seed, self.root_dir = use_features, seed, root_dir
        self.model: Any = None
        self.training: Any = None
        self._ks: list[int] = []

    def _frame(self, data: PanelData, symbols: np.ndarray, lo: int, hi: int) -> pd.DataFrame:
        """Long frame of rows [lo, hi) for `symbols`, from each symbol's first defined value of the series;
        gaps in the series are filled (0 for returns, the last value for log vol) so time_idx is contiguous."""
        series = symbol_series(data)
        frames = []
        for s in symbols:
            y = series[lo:hi, s]
            first = np.flatnonzero(np.isfinite(y))
            if not len(first):
                continue
            y = pd.Series(y[first[0] :])
            y = (y.fillna(0.0) if data.task.name == "returns" else y.ffill()).to_numpy(np.float32)
            f = {"time_idx": np.arange(lo + first[0], hi), "sym": str(s), "y": y}
            if self.use_features:
                x = np.nan_to_num(data.features[lo + first[0] : hi, s], nan=0.0, posinf=0.0, neginf=0.0)
                f |= {f"f{j}": x[:, j].astype(np.float32) for j in range(x.shape[1])}
            frames.append(pd.DataFrame(f))
        if not frames:
            raise ValueError(f"{self.name}: no symbol has a defined series in rows {lo}..{hi}")
        return pd.concat(frames, ignore_index=True)

    def fit(self, data: PanelData, fold: Fold) -> None:
        import lightning as L
        from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
        from pytorch_forecasting.data.encoders import TorchNormalizer
        from pytorch_forecasting.metrics import RMSE

        check_task(self.name, data.task.name, ("returns", "risk"))
        self._ks = steps(data.task.name, data.task.horizon_days)
        symbols = np.unique(data.split_index(fold, "train")[:, 1])
        frame = self._frame(data, symbols, fold.train[0], fold.train[1])
        reals = [c for c in frame.columns if c.startswith("f")]
        L.seed_everything(self.seed + fold.index, workers=False, verbose=False)
        self.training = TimeSeriesDataSet(
            frame,
            time_idx="time_idx",
            target="y",
            group_ids=["sym"],
            max_encoder_length=self.context_length,
            min_encoder_length=self.context_length,
            max_prediction_length=max(self._ks),
            min_prediction_length=max(self._ks),
            static_categoricals=["sym"],
            time_varying_unknown_reals=["y", *reals],
            target_normalizer=TorchNormalizer(method="standard"),
            add_relative_time_idx=True,
        )
        self.model = TemporalFusionTransformer.from_dataset(
            self.training,
            hidden_size=self.hidden_size,
            attention_head_size=self.attention_head_size,
            hidden_continuous_size=self.hidden_continuous_size,
            dropout=self.dropout,
            learning_rate=self.learning_rate,
            loss=RMSE(),
            log_interval=-1,
        )
        trainer = L.Trainer(
            max_epochs=self.max_epochs,
            limit_train_batches=self.limit_train_batches,
            accelerator="cpu",
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            logger=False,
            default_root_dir=self.root_dir,
            gradient_clip_val=0.1,
        )
        loader = self.training.to_dataloader(train=True, batch_size=self.batch_size, num_workers=0)
        trainer.fit(self.model, train_dataloaders=loader)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        from pytorch_forecasting import TimeSeriesDataSet

        if self.model is None or self.training is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        out = np.full(len(index), np.nan)
        if not len(index):
            return from_point(data.task.name, out)
        T = data.labels.shape[0]
        t0, t1 = int(index[:, 0].min()), int(index[:, 0].max())
        lo, hi = max(0, t0 - self.context_length - 1), min(T, t1 + max(self._ks) + 1)
        frame = self._frame(data, np.unique(index[:, 1]), lo, hi)
        # windows whose encoder ends at a decision date in [t0, t1] (the first decoder step is t + 1)
        frame = frame[
            frame["sym"].isin(self.training.get_parameters()["categorical_encoders"]["sym"].classes_)
        ]
        ds = TimeSeriesDataSet.from_dataset(
            self.training, frame, predict=False, stop_randomization=True, min_prediction_idx=t0 + 1
        )
        res = self.model.predict(
            ds.to_dataloader(train=False, batch_size=1024, num_workers=0),
            mode="prediction",
            return_index=True,
            trainer_kwargs={"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        )
        value = res.output.detach().cpu().numpy()[:, [k - 1 for k in self._ks]].sum(axis=1)
        decision = res.index["time_idx"].to_numpy() - 1
        sym = res.index["sym"].astype(int).to_numpy()
        where = {(int(t), int(s)): i for i, (t, s) in enumerate(zip(decision, sym, strict=True))}
        for row, (t, s) in enumerate(index):
            i = where.get((int(t), int(s)))
            if i is not None:
                out[row] = value[i]
        return from_point(data.task.name, out)
