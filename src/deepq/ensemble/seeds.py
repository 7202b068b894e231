"""Seed ensembles (`ensemble.seeds=N`): N copies of one model trained per fold with seeds seed, seed+1, ...,
their forecasts averaged. Networks and boosters alike; Qlib reports its benchmark as mean ± std over seeds, and
a seed average is the cheapest variance cut a ranking model gets.

Each member keeps its own out-of-sample forecasts, so the run can report the per-seed spread (`seed_spread`:
every seed's rank IC on the same test rows) beside the ensemble's. A neural ensemble exports as one module
whose output is the mean of its members' outputs (`MeanOfNets`), so serving sees the same average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepq.dataset.context import FoldModel, PanelData, Predictions, direction_from_score
from deepq.dataset.crosssection import DateGroups, daily_ic_of
from deepq.dataset.folds import Fold
from deepq.utils.seed import seed_everything


class MeanOfNets(nn.Module):
    """The members' outputs averaged: one traceable module for TorchScript / ONNX export."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.inputs = tuple(getattr(members[0], "inputs", ("x",)))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(*inputs) for m in self.members]).mean(0)


def _mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Cell-wise mean over members, NaN where no member has a value (no 'mean of empty slice' warning)."""
    stack = np.stack([np.asarray(a, np.float64) for a in arrays])
    n = np.isfinite(stack).sum(axis=0)
    total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


class SeedEnsemble:
    """`make(seed)` builds one member; `seeds` are the members' seeds (the first is the run's own)."""

    def __init__(self, make: Callable[[int], FoldModel], seeds: Sequence[int], task: str = "returns"):
        if len(seeds) < 2:
            raise ValueError(f"a seed ensemble needs at least 2 seeds, got {list(seeds)}")
        self.seeds = [int(s) for s in seeds]
        self.members = [make(s) for s in self.seeds]
        self.name = self.members[0].name
        self.task = task
        self.member_predictions: list[list[tuple[np.ndarray, Predictions]]] = [[] for _ in self.seeds]

    def fit(self, data: PanelData, fold: Fold) -> None:
        self.task = data.task.name
        for seed, member in zip(self.seeds, self.members, strict=True):
            seed_everything(seed + fold.index)
            member.fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        preds = [m.predict(data, index) for m in self.members]
        for kept, p in zip(self.member_predictions, preds, strict=True):
            kept.append((index, p))
        score = _mean([p.score for p in preds])
        extra_keys = sorted(set.intersection(*(set(p.extra or {}) for p in preds)))
        extra = {k: _mean([(p.extra or {})[k] for p in preds]) for k in extra_keys}
        return Predictions(
            _mean([p.pred for p in preds]), score, direction_from_score(self.task, score), extra
        )

    # what the training loop reads from a model: the members' mean per fold
    @property
    def best_val_loss(self) -> dict[int, float]:
        return _fold_mean([getattr(m, "best_val_loss", {}) for m in self.members])

    @property
    def val_scores(self) -> dict[int, dict[str, float]]:
        per = [getattr(m, "val_scores", {}) for m in self.members]
        folds = sorted(set().union(*per))
        out: dict[int, dict[str, float]] = {}
        for f in folds:
            keys = sorted(set().union(*(p.get(f, {}) for p in per)))
            out[f] = {k: float(np.nanmean([p.get(f, {}).get(k, np.nan) for p in per])) for k in keys}
        return out

    @property
    def exportable(self) -> Callable[[np.ndarray], tuple[nn.Module, Any, dict[str, Any]]] | None:
        """What the training loop exports: the members' networks as one module, or None for members that
        export nothing (boosters), as a plain model of their kind would have no `exportable`."""
        return self._export if callable(getattr(self.members[0], "exportable", None)) else None

    def _export(self, index: np.ndarray) -> tuple[nn.Module, Any, dict[str, Any]]:
        """The members' last-fold networks as one `MeanOfNets` (same inputs, normaliser and outputs)."""
        parts = [m.exportable(index) for m in self.members]  # type: ignore[attr-defined]
        net = MeanOfNets([p[0] for p in parts])
        return net, parts[0][1], parts[0][2] | {"ensemble_seeds": self.seeds}

    def seed_spread(self, data: PanelData) -> dict[str, Any]:
        """Each member's mean daily rank IC (IC_CONVENTION) against the realised raw return over every test
        row it scored, and their mean ± std: how much of a single run's figure is its seed."""
        ics = []
        for kept in self.member_predictions:
            if not kept:
                continue
            index = np.concatenate([i for i, _ in kept])
            score = np.concatenate([p.score for _, p in kept])
            outcome = data.y_ret[index[:, 0], index[:, 1]]
            ok = np.isfinite(score) & np.isfinite(outcome)
            daily = daily_ic_of(DateGroups.of(index[ok, 0]), score[ok], outcome[ok]).ic
            ics.append(float(np.nanmean(daily)) if np.isfinite(daily).any() else float("nan"))
        return {
            "seeds": self.seeds,
            "rank_ic": ics,
            "rank_ic_mean": float(np.nanmean(ics)) if ics else float("nan"),
            "rank_ic_std": float(np.nanstd(ics, ddof=1)) if len(ics) > 1 else float("nan"),
        }


def _fold_mean(per_member: Sequence[dict[int, float]]) -> dict[int, float]:
    folds = sorted(set().union(*per_member))
    return {f: float(np.nanmean([m.get(f, np.nan) for m in per_member])) for f in folds}


def seeds_for(base: int, n: int) -> list[int]:
    """The members' seeds: the run's seed, then the next n-1 integers (a 1-seed run is the plain run)."""
    return [base + k for k in range(int(n))]
