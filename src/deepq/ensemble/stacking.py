"""Stacking and averaging of FoldModels, themselves a FoldModel.

For each fold the stacker fits its members on the fold's training window, predicts the fold's test block,
and keeps those out-of-fold predictions. The meta-learner for fold k is trained on the out-of-fold rows of
earlier folds only, and only on rows whose labels were fully known before fold k's test block began
(decision date + label span < first test row): it never sees a prediction or a label from the period it
predicts. The first fold has no history, so it falls back to the plain average of its members.

meta: `ridge` (linear on the members' forecasts: non-negative weights by default, Breiman 1996, since
unconstrained weights on collinear members cancel each other and blow up out of sample), `lightgbm` (a small booster), `mean` (plain
average) or `rank_mean` (average of per-date cross-sectional ranks of the members' scores, ties broken by their
mean per-date z-score).
Members that do not support the task are dropped with a note in `skipped`; at least one must remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from deepq.baselines.common import SIGNAL_CLASSES, TaskNotSupported, from_point, from_probs
from deepq.dataset.context import FoldModel, PanelData, Predictions, direction_from_score
from deepq.dataset.folds import Fold
from deepq.dataset.labels import label_span

Meta = Literal["ridge", "lightgbm", "mean", "rank_mean"]


@dataclass(frozen=True)
class OOF:
    """One fold's out-of-fold member outputs: cells, member design matrix, scores, labels."""

    fold: int
    index: np.ndarray  # [M, 2]
    x: np.ndarray  # [M, D] the members' forecasts (class probabilities for signal)
    scores: np.ndarray  # [M, K] the members' ranking scores
    y: np.ndarray  # [M]


def member_design(task: str, preds: list[Predictions]) -> np.ndarray:
    """[M, D]: each member's forecast on the label's scale; for signal its three class probabilities."""
    if task == "signal":
        cols = [p.extra[f"p_{c}"] for p in preds for c in SIGNAL_CLASSES if p.extra]
        if len(cols) != 3 * len(preds):
            raise ValueError("every signal member must give p_sell, p_hold and p_buy in its extra outputs")
        return np.stack(cols, axis=1)
    return np.stack([p.pred for p in preds], axis=1)


def rank_by_date(dates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-date percentile rank in (0, 1] of each column (NaN stays NaN)."""
    import pandas as pd

    frame = pd.DataFrame(values)
    frame["_d"] = dates
    return frame.groupby("_d").rank(pct=True).to_numpy()


def zscore_by_date(dates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-date z-score of each column (NaN stays NaN; a constant column on a date gives NaN)."""
    import pandas as pd

    frame = pd.DataFrame(values)
    by = frame.groupby(dates)
    return ((frame - by.transform("mean")) / by.transform("std")).to_numpy()


def rank_mean_score(dates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The members' mean per-date percentile rank, its ties broken by their mean per-date z-score, as a centred
    per-date percentile in (-0.5, 0.5]. Sums of K integer ranks collide often (three boosters over ~480 names:
    no date kept 95 % distinct scores, the degeneracy guard's ties); the order of distinct mean ranks never
    changes (equal up to 1e-9, float noise of equal rank sums, counts as tied)."""
    import pandas as pd

    mean_rank = np.round(np.asarray(np.nanmean(rank_by_date(dates, scores), axis=1)), 9)
    mean_z = np.nan_to_num(np.asarray(np.nanmean(zscore_by_date(dates, scores), axis=1)))

    def dense(v: np.ndarray) -> np.ndarray:
        return pd.Series(v).groupby(dates).rank(method="dense").to_numpy()

    lexicographic = dense(mean_rank) * (len(dates) + 1) + dense(mean_z)  # integers, exact in float64
    return rank_by_date(dates, lexicographic[:, None])[:, 0] - 0.5


class Stack:
    def __init__(
        self,
        members: list[FoldModel],
        name: str = "stack",
        meta: Meta = "ridge",
        ridge_alpha: float = 1.0,
        max_meta_rows: int = 200_000,
        seed: int = 0,
        nonneg: bool = True,
    ):
        if not members:
            raise ValueError(f"{name}: a stack needs at least one member")
        if meta not in ("ridge", "lightgbm", "mean", "rank_mean"):
            raise ValueError(f"{name}: unknown meta {meta!r}; use ridge, lightgbm, mean or rank_mean")
        self.name, self.meta, self.ridge_alpha = name, meta, ridge_alpha
        self.max_meta_rows, self.seed, self.nonneg = max_meta_rows, seed, nonneg
        self.members = list(members)
        self.skipped: dict[str, str] = {}
        self.history: dict[int, OOF] = {}
        self.fold: Fold | None = None
        self._cache: tuple[np.ndarray, list[Predictions]] | None = None
        self._meta_model: object | None = None
        self._center: np.ndarray | None = None

    # -- members --------------------------------------------------------------------------------------
    def _fit_members(self, data: PanelData, fold: Fold) -> None:
        kept = []
        for m in self.members:
            try:
                m.fit(data, fold)
            except TaskNotSupported as err:
                self.skipped[m.name] = str(err)
                continue
            kept.append(m)
        if not kept:
            raise TaskNotSupported(f"{self.name}: no member supports task {data.task.name!r}: {self.skipped}")
        self.members = kept

    def _member_predictions(self, data: PanelData, index: np.ndarray) -> list[Predictions]:
        if self._cache is not None and np.array_equal(self._cache[0], index):
            return self._cache[1]
        preds = [m.predict(data, index) for m in self.members]
        self._cache = (index.copy(), preds)
        return preds

    # -- meta-learner ---------------------------------------------------------------------------------
    def _training_rows(self, data: PanelData, fold: Fold) -> OOF | None:
        """Earlier folds' OOF rows whose labels ended before this fold's first test row."""
        cutoff = fold.test[0] - label_span(data.task.horizon_days, data.task.name)
        parts = []
        for k, h in sorted(self.history.items()):
            if k >= fold.index:
                continue
            keep = h.index[:, 0] < cutoff
            parts.append((h.index[keep], h.x[keep], h.scores[keep], h.y[keep]))
        if not parts or sum(len(p[0]) for p in parts) == 0:
            return None
        idx, x, sc, y = (np.concatenate([p[i] for p in parts]) for i in range(4))
        return OOF(-1, idx, x, sc, y)

    def _fit_meta(self, task: str, rows: OOF) -> None:
        x, y = rows.x, rows.y
        self._center = np.nanmean(x, axis=0)
        x = np.where(np.isfinite(x), x, self._center)
        if len(y) > self.max_meta_rows:  # most recent rows: the regime the next fold is closest to
            x, y = x[-self.max_meta_rows :], y[-self.max_meta_rows :]
        if self.meta == "ridge":
            targets = np.eye(3)[y.astype(int)] if task == "signal" else y[:, None]
            mu_x, mu_y = x.mean(axis=0), targets.mean(axis=0)
            xc, yc = x - mu_x, targets - mu_y
            if self.nonneg:  # members' forecasts on the label's scale, weights >= 0 (one fit per class)
                from scipy.optimize import nnls

                scale = np.ones(x.shape[1])
                beta = np.column_stack([nnls(xc, yc[:, k])[0] for k in range(yc.shape[1])])
            else:
                scale = np.maximum(xc.std(axis=0), 1e-12)
                xs = xc / scale
                beta = np.linalg.solve(
                    xs.T @ xs + self.ridge_alpha * len(y) * 1e-3 * np.eye(x.shape[1]), xs.T @ yc
                )
            self._meta_model = (mu_x, scale, beta, mu_y)
        else:
            import lightgbm as lgb

            params: dict[str, Any] = {
                "n_estimators": 100,
                "learning_rate": 0.05,
                "num_leaves": 7,
                "min_child_samples": 500,
                "verbose": -1,
                "n_jobs": 1,
            }
            cls = lgb.LGBMClassifier if task in ("direction", "signal") else lgb.LGBMRegressor
            yy = y.astype(int) if task in ("direction", "signal") else y
            self._meta_model = cls(random_state=self.seed, **params).fit(x, yy)

    def _apply_meta(self, task: str, x: np.ndarray) -> np.ndarray:
        assert self._center is not None
        x = np.where(np.isfinite(x), x, self._center)
        if self.meta == "ridge":
            mu_x, scale, beta, mu_y = self._meta_model  # type: ignore[misc]
            out = ((x - mu_x) / scale) @ beta + mu_y
            if task == "signal":
                out = np.clip(out, 1e-4, None)
                return out / out.sum(axis=1, keepdims=True)
            return np.clip(out[:, 0], 1e-4, 1 - 1e-4) if task == "direction" else out[:, 0]
        model = self._meta_model
        if task == "direction":
            return model.predict_proba(x)[:, 1]  # type: ignore[union-attr]
        if task == "signal":
            return model.predict_proba(x)  # type: ignore[union-attr]
        return np.asarray(model.predict(x))  # type: ignore[union-attr]

    # -- the FoldModel surface ------------------------------------------------------------------------
    def fit(self, data: PanelData, fold: Fold) -> None:
        self._fit_members(data, fold)
        self._cache = None
        test = data.split_index(fold, "test")
        preds = self._member_predictions(data, test)
        self.history[fold.index] = OOF(
            fold.index,
            test,
            member_design(data.task.name, preds),
            np.stack([p.score for p in preds], axis=1),
            data.labels[test[:, 0], test[:, 1]],
        )
        self._meta_model = None
        if self.meta in ("ridge", "lightgbm"):
            rows = self._training_rows(data, fold)
            if rows is not None:
                self._fit_meta(data.task.name, rows)
        self.fold = fold

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.fold is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        task = data.task.name
        preds = self._member_predictions(data, index)
        x = member_design(task, preds)
        if self._meta_model is not None:
            out = self._apply_meta(task, x)
        elif task == "signal":  # plain average of class probabilities
            out = np.nanmean(x.reshape(len(x), -1, 3), axis=1)
        else:
            out = np.nanmean(x, axis=1)
        if self.meta == "rank_mean":
            scores = np.stack([p.score for p in preds], axis=1)
            score = rank_mean_score(index[:, 0], scores)
            base = from_probs(task, out) if task in ("direction", "signal") else from_point(task, out)
            return _with_score(base, score, task)
        if task in ("direction", "signal"):
            return from_probs(task, out)
        return from_point(task, out)


def _with_score(p: Predictions, score: np.ndarray, task: str) -> Predictions:
    """Replace the ranking score, keeping the direction of the averaged forecast."""
    up = p.up if task != "direction" else direction_from_score(task, p.pred)
    return Predictions(p.pred, score, up, p.extra)
