"""Callbacks the training path uses."""

from __future__ import annotations

import copy
import math

import lightning as L


class RestoreBestWeights(L.Callback):
    """Keep the weights of the epoch with the best monitored validation metric (`val_loss`, or `val_rank_ic`
    with mode max) in memory and load them when fitting ends; `metrics` holds every val_ metric of that epoch.

    EarlyStopping only stops; without this the model returned is the last (worse) epoch's.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0
        self.best = math.inf * self.sign
        self.metrics: dict[str, float] = {}
        self.state: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"early stopping monitors {self.monitor!r}, which validation does not log; it logs "
                f"{sorted(k for k in trainer.callback_metrics if k.startswith('val_'))}"
            )
        if math.isfinite(float(value)) and self.sign * float(value) < self.sign * self.best:
            self.best = float(value)
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)
