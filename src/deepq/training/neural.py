"""NeuralModel: any network + head, trained per fold by the one ForecastModule, as a FoldModel plug-in."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from deepq.dataset.context import PanelData, Predictions, direction_from_score
from deepq.dataset.covariates import CALENDAR_CHANNELS, sector_ids
from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.models import net_inputs
from deepq.models.heads import DistributionHead, Head
from deepq.training.callbacks import RestoreBestWeights
from deepq.training.module import ForecastModule, batch_inputs


def accepted_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of kwargs a factory (a class or a functools.partial of one) takes by name."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


class NeuralModel:
    def __init__(
        self,
        name: str,
        net: Callable[..., nn.Module],  # partial: net(n_features=, n_outputs=, [lookback=, n_symbols=, ...])
        head: Callable[[], Head],  # factory: a fresh head per fold
        optimizer: Callable[..., torch.optim.Optimizer],
        trainer: Callable[..., L.Trainer],  # partial: trainer(callbacks=, logger=)
        datamodule: Callable[..., PanelDataModule],  # partial: datamodule(features=, labels=, ...)
        scheduler: Callable[..., Any] | None = None,
        callbacks: Callable[[], list[L.Callback]] | None = None,  # extra callbacks per fold
        logger: Callable[..., Any] | None = None,  # partial: logger(fold=, run_name=)
        run_name: str = "run",
        seed: int = 0,
        module_kwargs: dict[str, Any] | None = None,  # ForecastModule options: compile
        n_samples: int = 200,  # draws per forecast for distribution heads (DeepAR's sampled quantiles)
        monitor: str = "val_loss",  # the validation metric whose best epoch is kept (early_stopping.monitor)
        mode: str = "min",
    ):
        self.name, self.run_name, self.seed = name, run_name, seed
        self.net_factory, self.head_factory, self.optimizer, self.scheduler = net, head, optimizer, scheduler
        self.trainer_factory, self.datamodule_factory = trainer, datamodule
        self.callbacks_factory, self.logger_factory = callbacks, logger
        self.module_kwargs, self.n_samples = dict(module_kwargs or {}), n_samples
        self.dm: PanelDataModule | None = None
        self.module: ForecastModule | None = None
        self.monitor, self.mode = monitor, mode
        self.best_val_loss: dict[int, float] = {}
        self.val_scores: dict[int, dict[str, float]] = {}  # every val_ metric at each fold's kept epoch
        self.sectors: tuple[str, ...] = ()
        self.symbols: tuple[str, ...] = ()
        self.task = "returns"

    def _datamodule(self, data: PanelData) -> PanelDataModule:
        if self.dm is None:  # built once per run: the panel tensor is shared by every fold
            self.symbols = tuple(data.panel.symbols)
            ids, self.sectors = sector_ids(data.panel.symbols, data.panel.sectors)
            span = data.target_span  # the training target's span (a multi-horizon target reaches further)
            self.dm = self.datamodule_factory(
                features=data.features,
                labels=data.labels,
                tradable=data.sample_ok,
                present=np.isfinite(data.panel["close"]),
                seed=self.seed,
                dates=data.panel.dates,
                sector_ids=ids,
                aux=data.y_ret,
                label_span=span,
                future_days=span,  # the sessions the label covers are known-future calendar steps
            )
        return self.dm

    def build(self, dm: PanelDataModule) -> ForecastModule:
        """A fresh network + head sized from the datamodule (used per fold, and by tests)."""
        head = self.head_factory()
        head.calibrate(*dm.label_stats)  # the fold's training labels: median and robust spread
        spec = dm.input_spec() | {"n_outputs": head.n_params}
        net = self.net_factory(**accepted_kwargs(self.net_factory, spec))
        needs = [
            why
            for why, on in (
                (f"the {type(head).__name__}'s ranking loss compares the stocks of a date", head.needs_dates),
                (f"{type(net).__name__} attends across the stocks of a date", "t" in net_inputs(net)),
            )
            if on
        ]
        if needs and dm.batching != "date":
            raise ValueError(f"{'; '.join(needs)}: set datamodule.batching=date (whole dates per batch)")
        return ForecastModule(net, head, self.optimizer, self.scheduler, task=self.task, **self.module_kwargs)

    def fit(self, data: PanelData, fold: Fold) -> None:
        dm = self._datamodule(data)
        dm.set_fold(fold, None if not data.target.steps else data.fold_labels(fold))
        self.task = data.task.name
        self.module = self.build(dm)
        restore = RestoreBestWeights(self.monitor, self.mode)
        callbacks = [*(self.callbacks_factory() if self.callbacks_factory else []), restore]
        logger = (
            self.logger_factory(fold=fold.index, run_name=self.run_name) if self.logger_factory else False
        )
        trainer = self.trainer_factory(callbacks=callbacks, logger=logger)
        trainer.fit(self.module, datamodule=dm)
        self.module.eval()
        self.val_scores[fold.index] = restore.metrics
        self.best_val_loss[fold.index] = restore.metrics.get("val_loss", float("nan"))

    @torch.no_grad()
    def predict_outputs(self, index: np.ndarray) -> np.ndarray:
        """Raw head outputs for the (date row, symbol col) rows of `index`, in its order. Windows are run in
        the datamodule's evaluation order (symbol by symbol, so overlapping windows batch together; or whole
        dates in date batching) and put back. A cross-stock network (one reading `t`) is run over every usable
        window of the asked dates, labelled or not, as the server runs a date: its score for a stock does not
        depend on which other rows were asked for."""
        assert self.module is not None and self.dm is not None, "fit before predict"
        if "t" not in self.module.model.inputs:
            return self._outputs(index)
        dates = np.unique(index[:, 0])
        t, s = np.nonzero(self.dm.window_ok[dates])
        context = np.stack([dates[t], s], axis=1)  # date-major, so its flat keys are sorted
        n = self.dm.n_symbols
        keys, want = context[:, 0] * n + context[:, 1], index[:, 0] * n + index[:, 1]
        pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        if len(index) and not np.array_equal(keys[pos], want):
            raise ValueError("asked to predict a (date, symbol) cell that has no usable window")
        return self._outputs(context)[pos]

    def _outputs(self, index: np.ndarray) -> np.ndarray:
        assert self.module is not None and self.dm is not None
        model = self.module.model.eval()
        device = next(model.parameters()).device
        order = self.dm.eval_order(index)
        outs = [
            model(*(v.to(device) for v in batch_inputs(batch, model.inputs))).float().cpu()
            for batch in self.dm.loader_for(index[order])
        ]
        if not outs:
            return np.zeros((0, len(model.head.output_names)))
        out = np.empty((len(index), outs[0].shape[1]), dtype=np.float32)
        out[order] = torch.cat(outs).numpy()
        return out

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        assert self.module is not None
        out = self.predict_outputs(index)
        head = self.module.model.head
        t_out = torch.from_numpy(out)
        score = head.score(t_out).numpy().astype(np.float64)
        pred = head.point(t_out).numpy().astype(np.float64)
        names = head.output_names
        extra = {n: out[:, k].astype(np.float64) for k, n in enumerate(names)} if len(names) > 1 else {}
        if isinstance(head, DistributionHead) and len(out):  # sampled forecasts (DeepAR)
            draws = head.sample(t_out, self.n_samples)
            for q in (0.1, 0.5, 0.9):
                extra[f"sample_q{round(q * 100):02d}"] = (
                    torch.quantile(draws, q, dim=0).numpy().astype(np.float64)
                )
        return Predictions(pred, score, direction_from_score(data.task.name, score), extra or None)

    def exportable(
        self, index: np.ndarray
    ) -> tuple[nn.Module, torch.Tensor | tuple[torch.Tensor, ...], dict[str, Any]]:
        """The last fitted fold's network + head, a few real windows from `index` to trace with, and what a
        consumer needs to rebuild the inputs (lookback, normaliser, static ids, calendar, output names)."""
        assert self.module is not None and self.dm is not None and self.dm.gather is not None
        sel = index[:8]
        batch = self.dm.gather(
            torch.as_tensor(sel[:, 0], device=self.dm.device),
            torch.as_tensor(sel[:, 1], device=self.dm.device),
        )
        model = self.module.model.cpu().eval()
        inputs = tuple(v.cpu() for v in batch_inputs(batch, net_inputs(model.net)))
        meta = {
            "lookback": self.dm.lookback,
            "inputs": list(model.inputs),
            "normalizer": self.dm.normalizer.to_dict() if self.dm.normalizer else None,
            "outputs": list(model.head.output_names),
            "label_center_scale": list(self.dm.label_stats),
            "label_span": self.dm.label_span,
            "future_days": self.dm.future_days,
            "calendar_channels": list(CALENDAR_CHANNELS),
            "symbols": list(self.symbols),
            "sectors": list(self.sectors),
            "sector_of_symbol": self.dm.sector_of.cpu().tolist(),
        }
        return model, inputs[0] if len(inputs) == 1 else inputs, meta
