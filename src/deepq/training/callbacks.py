"""Callbacks the training path uses."""

from __future__ import annotations

import copy
import math

import lightning as L


class RestoreBestWeights(L.Callback):
    """Keep the weights of the epoch with the best validation loss in memory and load them when fitting ends.

    EarlyStopping only stops; without this the model returned is the last (worse) epoch's.
    """

    def __init__(self, monitor: str = "val_loss"):
        self.monitor = monitor
        self.best = math.inf
        self.state: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)
