"""NeuralModel: any network + head, trained per fold by the one ForecastModule, as a FoldModel plug-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from deepq.dataset.context import PanelData, Predictions, direction_from_score
from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.models.heads import Head
from deepq.training.callbacks import RestoreBestWeights
from deepq.training.module import ForecastModule


class NeuralModel:
    def __init__(
        self,
        name: str,
        net: Callable[..., nn.Module],  # partial: net(n_features=, n_outputs=)
        head: Callable[[], Head],  # factory: a fresh head per fold
        optimizer: Callable[..., torch.optim.Optimizer],
        trainer: Callable[..., L.Trainer],  # partial: trainer(callbacks=, logger=)
        datamodule: Callable[
            ..., PanelDataModule
        ],  # partial: datamodule(features=, labels=, tradable=, present=, seed=)
        scheduler: Callable[..., Any] | None = None,
        callbacks: Callable[[], list[L.Callback]]
        | None = None,  # extra callbacks per fold (early stopping, progress)
        logger: Callable[..., Any] | None = None,  # partial: logger(fold=, run_name=)
        run_name: str = "run",
        seed: int = 0,
    ):
        self.name, self.run_name, self.seed = name, run_name, seed
        self.net_factory, self.head_factory, self.optimizer, self.scheduler = net, head, optimizer, scheduler
        self.trainer_factory, self.datamodule_factory = trainer, datamodule
        self.callbacks_factory, self.logger_factory = callbacks, logger
        self.dm: PanelDataModule | None = None
        self.module: ForecastModule | None = None
        self.best_val_loss: dict[int, float] = {}

    def _datamodule(self, data: PanelData) -> PanelDataModule:
        if self.dm is None:  # built once per run: the panel tensor is shared by every fold
            present = np.isfinite(data.panel["close"])
            self.dm = self.datamodule_factory(
                features=data.features,
                labels=data.labels,
                tradable=data.sample_ok,
                present=present,
                seed=self.seed,
            )
        return self.dm

    def fit(self, data: PanelData, fold: Fold) -> None:
        dm = self._datamodule(data)
        dm.set_fold(fold)
        head = self.head_factory()
        net = self.net_factory(n_features=dm.n_features, n_outputs=head.n_params)
        self.module = ForecastModule(net, head, self.optimizer, self.scheduler)
        restore = RestoreBestWeights("val_loss")
        callbacks = [*(self.callbacks_factory() if self.callbacks_factory else []), restore]
        logger = (
            self.logger_factory(fold=fold.index, run_name=self.run_name) if self.logger_factory else False
        )
        trainer = self.trainer_factory(callbacks=callbacks, logger=logger)
        trainer.fit(self.module, datamodule=dm)
        self.module.eval()
        self.best_val_loss[fold.index] = restore.best

    @torch.no_grad()
    def predict_outputs(self, index: np.ndarray) -> np.ndarray:
        assert self.module is not None and self.dm is not None, "fit before predict"
        outs = [self.module.model(batch.x) for batch in self.dm.loader_for(index)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, len(self.module.model.head.output_names)))

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        assert self.module is not None
        out = self.predict_outputs(index)
        head = self.module.model.head
        score = head.score(torch.from_numpy(out)).numpy().astype(np.float64)
        names = head.output_names
        extra = {n: out[:, k].astype(np.float64) for k, n in enumerate(names)} if len(names) > 1 else None
        return Predictions(
            out[:, 0].astype(np.float64), score, direction_from_score(data.task.name, score), extra
        )

    def exportable(self, index: np.ndarray) -> tuple[nn.Module, torch.Tensor, dict[str, Any]]:
        """The last fitted fold's network + head, a few real normalised windows from `index` to trace with,
        and what a consumer needs to rebuild the inputs (lookback, normaliser, output names)."""
        assert self.module is not None and self.dm is not None and self.dm.gather is not None
        sel = index[:8]
        example = self.dm.gather(torch.as_tensor(sel[:, 0]), torch.as_tensor(sel[:, 1])).x
        meta = {
            "lookback": self.dm.lookback,
            "normalizer": self.dm.normalizer.to_dict() if self.dm.normalizer else None,
            "outputs": list(self.module.model.head.output_names),
        }
        return self.module.model, example, meta
