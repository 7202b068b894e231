"""ForecastModule: the one LightningModule. It owns a network and a head; the loss comes from the head."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from deepq.dataset.datamodule import Batch
from deepq.models.heads import Head


class Forecaster(nn.Module):
    """Network + head: features [B, L, F] -> predictions in the head's domain. This is what is exported."""

    def __init__(self, net: nn.Module, head: Head):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))


class ForecastModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        head: Head,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ):
        super().__init__()
        self.model = Forecaster(net, head)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, batch: Batch) -> torch.Tensor:
        return self.model.head.loss(self.model.net(batch.x), batch.y)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch.y))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True, batch_size=len(batch.y))

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self.model(batch.x)
        return {"out": out, "score": self.model.head.score(out), "y": batch.y, "t": batch.t, "s": batch.s}

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "monitor": "val_loss"},
        }
