"""Fit one fold and predict its test block: the training path, top to bottom."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from deepq.dataset.datamodule import PanelDataModule
from deepq.dataset.folds import Fold
from deepq.training.module import ForecastModule


@dataclass(frozen=True)
class FoldPredictions:
    t: np.ndarray  # [M] date rows
    s: np.ndarray  # [M] symbol columns
    y: np.ndarray  # [M] labels
    out: np.ndarray  # [M, K] head outputs in their domain
    score: np.ndarray  # [M] ranking score


def predict(
    trainer: L.Trainer, module: ForecastModule, loader: torch.utils.data.DataLoader
) -> FoldPredictions:
    parts: list[dict[str, torch.Tensor]] = trainer.predict(module, dataloaders=loader) or []  # type: ignore[assignment]
    cat = (
        {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in ("t", "s", "y", "out", "score")}
        if parts
        else {}
    )
    if not cat:
        empty = np.zeros(0)
        return FoldPredictions(empty.astype(int), empty.astype(int), empty, np.zeros((0, 1)), empty)
    return FoldPredictions(cat["t"], cat["s"], cat["y"], cat["out"], cat["score"])


def fit_fold(
    dm: PanelDataModule,
    fold: Fold,
    build_module: Callable[[], ForecastModule],
    make_trainer: Callable[[Fold], L.Trainer],
) -> tuple[ForecastModule, FoldPredictions]:
    """Fit normalisation and a fresh model on the fold's training window, then predict its test block."""
    dm.set_fold(fold)
    module = build_module()
    trainer = make_trainer(fold)
    trainer.fit(module, datamodule=dm)
    module.eval()
    return module, predict(trainer, module, dm.test_dataloader())
