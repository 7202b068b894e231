"""ForecastModule: the one LightningModule. It owns a network and a head; the loss comes from the head.

The network declares which Batch fields it reads (`net.inputs`); the module feeds exactly those, so the same
module trains an LSTM on x alone and a TFT on (x, static, known). Networks with `sequence_training` (DeepAR)
are trained on every step of the window; a head with `needs_dates` (a ranking loss) also gets each sample's
date row. Validation logs `val_rank_ic`, the mean per-date rank IC of the scores against what the task
orders stocks by (deepq.dataset.crosssection; ties at their average rank, an all-tied date scores 0): the
realised raw forward return, or for risk the realised volatility label. It can be the early-stopping monitor
and the sweep objective. `compile=True` trains through `torch.compile` while the eager
`Forecaster` stays the thing that is exported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
import torchmetrics as tm
from torch import nn

from deepq.dataset.crosssection import DateGroups, mean_rank_ic
from deepq.dataset.datamodule import Batch
from deepq.models import net_inputs
from deepq.models.heads import ClassHead, Head


class Forecaster(nn.Module):
    """Network + head: the network's inputs -> predictions in the head's domain. This is what is exported."""

    def __init__(self, net: nn.Module, head: Head):
        super().__init__()
        self.net, self.head = net, head
        self.inputs = net_inputs(net)

    def forward(
        self,
        x: torch.Tensor,
        in1: torch.Tensor | None = None,
        in2: torch.Tensor | None = None,
        in3: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # explicit positional inputs, not *args: torch.export and ONNX name and shape each one
        inputs = [t for t in (x, in1, in2, in3) if t is not None]
        return self.head(self.net(*inputs))


def batch_inputs(batch: Batch, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(getattr(batch, n) for n in names)


def task_metrics(task: str, head: Head) -> tm.MetricCollection:
    """Validation metrics on the head's point forecast (or probabilities), per task."""
    if isinstance(head, ClassHead) and head.n_classes == 2:
        return tm.MetricCollection(
            {"acc": tm.classification.BinaryAccuracy(), "auc": tm.classification.BinaryAUROC()}
        )
    if isinstance(head, ClassHead):
        k = head.n_classes
        return tm.MetricCollection(
            {
                "acc": tm.classification.MulticlassAccuracy(k, average="micro"),
                "f1": tm.classification.MulticlassF1Score(k, average="macro"),
            }
        )
    return tm.MetricCollection(
        {"mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError(), "corr": tm.PearsonCorrCoef()}
    )


class ForecastModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        head: Head,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        task: str = "returns",
        compile: bool = False,
    ):
        super().__init__()
        self.model = Forecaster(net, head)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.inputs = self.model.inputs
        self.sequence_training = bool(getattr(net, "sequence_training", False))
        self.val_metrics = task_metrics(task, head).clone(prefix="val_")
        self.risk = task == "risk"  # a risk score orders stocks by volatility, not by return
        self._val_rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.use_compile = compile  # (nn.Module.compile is a method: do not shadow it)
        self._train_net: Callable[..., torch.Tensor] | None = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs)

    def _raw(self, batch: Batch, sequence: bool) -> torch.Tensor:
        net = self.model.net
        fn: Callable[..., torch.Tensor] = net.forward_sequence if sequence else net  # type: ignore[assignment]
        if self.training and self.use_compile:
            if self._train_net is None:
                self._train_net = torch.compile(fn)
            fn = self._train_net
        return fn(*batch_inputs(batch, self.inputs))

    def _loss(self, batch: Batch) -> torch.Tensor:
        head = self.model.head
        if self.sequence_training:
            raw = self._raw(batch, sequence=True)  # [B, L, P]
            ok = torch.isfinite(batch.y_seq)
            aux = batch.aux_seq[ok] if head.needs_aux else None
            return head.loss(raw[ok].float(), batch.y_seq[ok], aux)
        return self._head_loss(self._raw(batch, sequence=False).float(), batch)

    def _head_loss(self, raw: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The head's loss on the decision date. Date batches also hold unlabelled windows (the date's whole
        universe, as context for cross-stock networks): they carry no loss."""
        head = self.model.head
        aux = batch.aux_seq[:, -1] if head.needs_aux else None
        if head.needs_dates:  # ranking losses skip unlabelled rows themselves
            return head.loss(raw, batch.y, aux, t=batch.t)  # type: ignore[call-arg]
        ok = torch.isfinite(batch.y)
        if bool(ok.all()):
            return head.loss(raw, batch.y, aux)
        return head.loss(raw[ok], batch.y[ok], None if aux is None else aux[ok])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch.y))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # validation scores the decision date only, whatever the network trains on
        raw = self.model.net(*batch_inputs(batch, self.inputs)).float()
        loss = self._head_loss(raw, batch)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch.y), sync_dist=True)
        out = self.model.head(raw)
        head = self.model.head
        outcome = batch.y if self.risk else batch.aux_seq[:, -1]
        self._val_rows.append((head.score(out).detach().cpu(), outcome.cpu(), batch.t.cpu()))
        ok = torch.isfinite(batch.y)
        if not bool(ok.any()):
            return
        out, y = out[ok], batch.y[ok]
        if isinstance(head, ClassHead):
            pred = out[:, 0] if head.n_classes == 2 else out
            self.val_metrics.update(pred, y.long())
        else:
            self.val_metrics.update(head.point(out), y)

    def on_validation_epoch_end(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):  # e.g. a one-class validation slice has no AUC
            self.log_dict(self.val_metrics.compute(), sync_dist=True)
        self.val_metrics.reset()
        if self._val_rows:
            score, outcome, t = (torch.cat(c).double().numpy() for c in zip(*self._val_rows, strict=True))
            self._val_rows.clear()
            ok = np.isfinite(outcome)
            ic = mean_rank_ic(DateGroups.of(t[ok]), score[ok], outcome[ok]) if ok.any() else 0.0
            self.log("val_rank_ic", float(ic), prog_bar=True, sync_dist=True)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self.model(*batch_inputs(batch, self.inputs))
        return {"out": out, "score": self.model.head.score(out), "y": batch.y, "t": batch.t, "s": batch.s}

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "monitor": "val_loss"},
        }
