"""Seed ensembles (`ensemble.seeds=N`): N copies of one model trained per fold with seeds seed, seed+1, ...,
their forecasts averaged. Networks and boosters alike; Qlib reports its benchmark as mean ± std over seeds, and
a seed average is the cheapest variance cut a ranking model gets.

Each member keeps its own out-of-sample forecasts, so the run can report the per-seed spread (`seed_spread`:
every seed's rank IC on the same test rows) beside the ensemble's. A neural ensemble exports as one module
whose output is the weighted mean of its members' outputs (`MeanOfNets`), so serving sees the same average.

How returns members are combined (`ensemble.combine`): `scaled` (the default) weighs each member by 1 / its
cross-sectional spread, the mean over dates of the per-date std of its scores on the fold's validation rows. A
network trained with a per-date IC or ranking loss has no fixed output scale: two seeds can land an order of
magnitude apart, and a plain mean would be the larger one's ranking. The weights are fitted on validation rows
only and are fixed per fold, so the exported module applies the same ones; a fold without validation rows
weighs its members equally. `mean` is the plain average. Other tasks (probabilities, volatilities) share one
scale and always take the plain mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deepq.dataset.context import FoldModel, PanelData, Predictions, direction_from_score
from deepq.dataset.crosssection import DateGroups, daily_ic_of
from deepq.dataset.folds import Fold
from deepq.utils.seed import seed_everything

Combine = Literal["scaled", "mean"]


class MeanOfNets(nn.Module):
    """The members' outputs averaged with fixed weights (summing to 1; equal by default): one traceable module
    for TorchScript / ONNX export."""

    weights: torch.Tensor  # [K] buffer

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.inputs = tuple(getattr(members[0], "inputs", ("x",)))
        w = torch.ones(len(members)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w / w.sum())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(*inputs) for m in self.members])  # [K, ...] whatever shape a member gives
        return (outs * self.weights.view([-1] + [1] * (outs.dim() - 1))).sum(0)


def _mean(arrays: Sequence[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """Cell-wise (weighted) mean over members, over the members that have a value; NaN where none has one
    (no 'mean of empty slice' warning)."""
    stack = np.stack([np.asarray(a, np.float64) for a in arrays])
    w = np.ones(len(stack)) if weights is None else np.asarray(weights, np.float64)
    w = np.where(np.isfinite(stack), w.reshape((-1,) + (1,) * (stack.ndim - 1)), 0.0)
    total = (np.where(np.isfinite(stack), stack, 0.0) * w).sum(axis=0)
    n = w.sum(axis=0)
    return np.where(n > 0, total / np.where(n > 0, n, 1.0), np.nan)


def cross_sectional_spread(dates: np.ndarray, score: np.ndarray) -> float:
    """Mean over dates of the per-date std of `score` (dates with fewer than 2 finite scores skipped)."""
    grid = DateGroups.of(dates).grid(np.asarray(score, np.float64))
    ok = np.isfinite(grid).sum(axis=1) >= 2
    if not ok.any():
        return float("nan")
    return float(np.nanmean(np.nanstd(grid[ok], axis=1)))


class SeedEnsemble:
    """`make(seed)` builds one member; `seeds` are the members' seeds (the first is the run's own)."""

    def __init__(
        self,
        make: Callable[[int], FoldModel],
        seeds: Sequence[int],
        task: str = "returns",
        combine: Combine = "scaled",
    ):
        if len(seeds) < 2:
            raise ValueError(f"a seed ensemble needs at least 2 seeds, got {list(seeds)}")
        if combine not in ("scaled", "mean"):
            raise ValueError(f"ensemble.combine must be 'scaled' or 'mean', got {combine!r}")
        self.seeds = [int(s) for s in seeds]
        self.members = [make(s) for s in self.seeds]
        self.name = self.members[0].name
        self.task = task
        self.combine = combine
        self.weights = np.ones(len(self.seeds))  # the last fitted fold's; equal until a scaled fit
        self.member_spread: dict[int, list[float]] = {}  # per fold: each member's validation spread
        self.member_predictions: list[list[tuple[np.ndarray, Predictions]]] = [[] for _ in self.seeds]

    def fit(self, data: PanelData, fold: Fold) -> None:
        self.task = data.task.name
        for seed, member in zip(self.seeds, self.members, strict=True):
            seed_everything(seed + fold.index)
            member.fit(data, fold)
        self.weights = np.ones(len(self.members))
        val = data.split_index(fold, "val")
        if self.combine == "scaled" and self.task == "returns" and len(val):
            spread = [cross_sectional_spread(val[:, 0], m.predict(data, val).score) for m in self.members]
            self.member_spread[fold.index] = spread
            if all(np.isfinite(s) and s > 0 for s in spread):
                self.weights = 1.0 / np.asarray(spread)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        preds = [m.predict(data, index) for m in self.members]
        for kept, p in zip(self.member_predictions, preds, strict=True):
            kept.append((index, p))
        w = self.weights
        score = _mean([p.score for p in preds], w)
        extra_keys = sorted(set.intersection(*(set(p.extra or {}) for p in preds)))
        extra = {k: _mean([(p.extra or {})[k] for p in preds], w) for k in extra_keys}
        return Predictions(
            _mean([p.pred for p in preds], w), score, direction_from_score(self.task, score), extra
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
        """The members' last-fold networks as one `MeanOfNets` with the last fold's weights (same inputs,
        normaliser and outputs)."""
        parts = [m.exportable(index) for m in self.members]  # type: ignore[attr-defined]
        net = MeanOfNets([p[0] for p in parts], self.weights.tolist())
        meta = {
            "ensemble_seeds": self.seeds,
            "ensemble_weights": net.weights.tolist(),
        }  # as the module applies them
        return net, parts[0][1], parts[0][2] | meta

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
            "combine": self.combine,
            "validation_spread": {str(f): s for f, s in self.member_spread.items()},
        }


def _fold_mean(per_member: Sequence[dict[int, float]]) -> dict[int, float]:
    folds = sorted(set().union(*per_member))
    return {f: float(np.nanmean([m.get(f, np.nan) for m in per_member])) for f in folds}


def seeds_for(base: int, n: int) -> list[int]:
    """The members' seeds: the run's seed, then the next n-1 integers (a 1-seed run is the plain run)."""
    return [base + k for k in range(int(n))]
