"""Learning-to-rank for the boosters: dates as query groups, per-date relevance grades, rank-IC stopping.

A ranking objective (LightGBM `lambdarank` / `rank_xendcg`, XGBoost `rank:pairwise` / `rank:ndcg`, CatBoost
`YetiRank`) compares only rows of the same query group, so each date's tradable stocks form one group and
the model never spends capacity on the date's market move, only on ordering its stocks. The libraries want
the rows of one group contiguous: `date_order` sorts a flat sample date-major and `group_sizes` gives the
group lengths in that order. LightGBM's lambdarank needs non-negative integer labels: `relevance` grades
each date's (already transformed) training target into `levels` equal-count buckets by its within-date rank,
0 for the date's worst names up to levels - 1 for its best. Predictions are plain scores, one per row, with
no groups; only their order within a date means anything.

Early stopping on rank IC, for XGBoost and CatBoost as LightGBM has it in boosting.py: the validation rows'
per-date Spearman IC against the realised raw return (`DateGroups`, `mean_rank_ic`), evaluated each round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepq.dataset.crosssection import DateGroups, daily_rank_ic, mean_rank_ic

RANK_OBJECTIVES = {
    "lightgbm": ("lambdarank", "rank_xendcg"),
    "xgboost": ("rank:pairwise", "rank:ndcg"),
    "catboost": ("YetiRank",),
}


def is_ranking(objective: str | None) -> bool:
    return any(objective in names for names in RANK_OBJECTIVES.values())


def check_objective(name: str, library: str, objective: str | None) -> None:
    """Only the library's own ranking objectives (or None: the task's default loss) are accepted."""
    if objective is None or objective in RANK_OBJECTIVES[library]:
        return
    raise ValueError(
        f"{name}: objective {objective!r} is not a ranking objective of {library}; "
        f"use one of {list(RANK_OBJECTIVES[library])} or null (the task's default loss)"
    )


def date_order(index: np.ndarray) -> np.ndarray:
    """Permutation that makes an [M, 2] (t, s) sample date-major (stable: symbol order kept within a date)."""
    return np.argsort(index[:, 0], kind="stable")


def group_sizes(dates: np.ndarray) -> np.ndarray:
    """[G] rows per date, in order, for date-sorted `dates` (the libraries' `group`)."""
    if len(dates) and np.any(np.diff(dates) < 0):
        raise ValueError("group_sizes needs rows sorted by date (see date_order)")
    _, counts = np.unique(dates, return_counts=True)
    return counts.astype(np.int64)


def relevance(y: np.ndarray, dates: np.ndarray, levels: int) -> np.ndarray:
    """[M] int grade 0..levels-1 per row: the bucket of its within-date percentile rank of `y` (ties at
    their average rank). A date with a single row gets the middle grade; NaN targets are an error."""
    if levels < 2:
        raise ValueError(f"rank_levels must be >= 2, got {levels}")
    y = np.asarray(y, np.float64)
    if not np.isfinite(y).all():
        raise ValueError("relevance: the training target has non-finite values")
    frame = pd.DataFrame({"d": dates, "y": y})
    g = frame.groupby("d")["y"]
    rank, n = g.rank(method="average").to_numpy(), g.transform("size").to_numpy()
    pct = np.where(n > 1, (rank - 1) / np.maximum(n - 1, 1), 0.5)  # 0 worst .. 1 best
    return np.minimum((pct * levels).astype(np.int64), levels - 1)


class XGBRankIC:
    """Sklearn-signature XGBoost eval metric: mean per-date rank IC of the eval rows (name: rank_ic)."""

    __name__ = "rank_ic"

    def __init__(self, groups: DateGroups, outcome: np.ndarray):
        self.groups, self.outcome = groups, outcome

    def __call__(self, _y: np.ndarray, pred: np.ndarray) -> float:
        return mean_rank_ic(self.groups, np.asarray(pred).reshape(-1), self.outcome)


def one_date_rank_ic(outcome: np.ndarray, score: np.ndarray) -> float:
    """Rank IC of one date's rows, with daily_rank_ic's conventions. XGBRanker evaluates a callable metric
    per query group as f(labels, scores) and averages over groups, so with the validation rows' raw returns
    as their eval labels this is the same mean per-date rank IC as XGBRankIC."""
    one = DateGroups.of(np.zeros(len(score), np.int64))
    ic = daily_rank_ic(one, np.asarray(score).reshape(-1), outcome)
    return float(ic[0]) if len(ic) and np.isfinite(ic[0]) else 0.0


one_date_rank_ic.__name__ = "rank_ic"


class CatBoostRankIC:
    """CatBoost user metric (is_max_optimal): the mean per-date rank IC of the eval set's raw approxes."""

    def __init__(self, groups: DateGroups, outcome: np.ndarray):
        self.groups, self.outcome = groups, outcome

    def is_max_optimal(self) -> bool:
        return True

    def evaluate(self, approxes: Any, target: Any, weight: Any) -> tuple[float, float]:
        ic = mean_rank_ic(self.groups, np.asarray(approxes[0], np.float64), self.outcome)
        return ic, 1.0  # (sum, weight): the final error is sum / weight = the IC itself

    def get_final_error(self, error: float, weight: float) -> float:
        return error
