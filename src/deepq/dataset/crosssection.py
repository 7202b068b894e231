"""Per-date rank IC as a selection metric: what early stopping and sweeps judge a return model on.

Validation MSE of a raw daily return rewards a model that predicts the date's market move and says nothing
about the stocks (most of the variance is the market's); the mean over dates of the Spearman correlation
between scores and outcomes within each date measures only the ranking. Ties take their average rank, and a
date whose scores are all tied (or with fewer than MIN_NAMES names) has no IC and counts as 0, so a model
that ranks nothing cannot score well by being silent on the dates it would lose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepq.dataset.targets import MIN_NAMES, row_mean


@dataclass(frozen=True)
class DateGroups:
    """Rows of a flat sample laid out as a padded [D, n_max] grid of dates (built once, reused per round)."""

    rows: np.ndarray  # int [D, n_max]: row of the flat sample, -1 for padding

    @classmethod
    def of(cls, dates: np.ndarray) -> DateGroups:
        order = np.argsort(dates, kind="stable")
        uniq, start, counts = np.unique(dates[order], return_index=True, return_counts=True)
        rows = np.full((len(uniq), int(counts.max()) if len(uniq) else 0), -1, np.int64)
        col = np.arange(len(order)) - np.repeat(start, counts)
        rows[np.repeat(np.arange(len(uniq)), counts), col] = order
        return cls(rows)

    def grid(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rows >= 0, np.asarray(values, np.float64)[np.maximum(self.rows, 0)], np.nan)


def daily_rank_ic(groups: DateGroups, score: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """[D] Spearman correlation of score and outcome within each date; 0 where scores are all tied."""
    s, y = groups.grid(score), groups.grid(outcome)
    both = np.isfinite(s) & np.isfinite(y)
    rs, ry = (pd.DataFrame(np.where(both, a, np.nan)).rank(axis=1).to_numpy() for a in (s, y))
    rs, ry = rs - row_mean(rs)[:, None], ry - row_mean(ry)[:, None]  # NaN outside `both`
    cov = np.nansum(rs * ry, axis=1)
    var = np.sqrt(np.nansum(rs**2, axis=1) * np.nansum(ry**2, axis=1))
    ok = (var > 0) & (both.sum(axis=1) >= MIN_NAMES)
    return np.where(ok, cov / np.where(ok, var, 1.0), 0.0)


def mean_rank_ic(groups: DateGroups, score: np.ndarray, outcome: np.ndarray) -> float:
    return float(daily_rank_ic(groups, score, outcome).mean()) if len(groups.rows) else 0.0
