"""Per-date rank IC: what early stopping and sweeps judge a return model on, and what evaluation reports.

Validation MSE of a raw daily return rewards a model that predicts the date's market move and says nothing
about the stocks (most of the variance is the market's); the mean over dates of the Spearman correlation
between scores and outcomes within each date measures only the ranking.

One convention, shared by the boosters' early stopping and by evaluation (deepq.evaluation.metrics):
- ties take their average rank;
- a date whose scores (or outcomes) are all tied has no ranking: its IC is 0 and it counts in the mean, so
  a model that ranks nothing cannot score well by being silent on the dates it would lose (the number of
  such dates is reported beside the IC);
- a date with fewer than MIN_NAMES names scored and realised is no cross-section: it is NaN and left out
  of the mean (a property of the data, not of the model, so leaving it out rewards nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepq.dataset.targets import MIN_NAMES, row_mean

IC_CONVENTION = (
    "ties at average rank; a date with all scores (or outcomes) tied scores 0 and counts; "
    f"dates with fewer than {MIN_NAMES} names are left out"
)


@dataclass(frozen=True)
class DateGroups:
    """Rows of a flat sample laid out as a padded [D, n_max] grid of dates (built once, reused per round)."""

    rows: np.ndarray  # int [D, n_max]: row of the flat sample, -1 for padding
    keys: np.ndarray  # [D] the distinct dates, sorted, one per grid row

    @classmethod
    def of(cls, dates: np.ndarray) -> DateGroups:
        dates = np.asarray(dates)
        order = np.argsort(dates, kind="stable")
        uniq, start, counts = np.unique(dates[order], return_index=True, return_counts=True)
        rows = np.full((len(uniq), int(counts.max()) if len(uniq) else 0), -1, np.int64)
        col = np.arange(len(order)) - np.repeat(start, counts)
        rows[np.repeat(np.arange(len(uniq)), counts), col] = order
        return cls(rows, uniq)

    def grid(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rows >= 0, np.asarray(values, np.float64)[np.maximum(self.rows, 0)], np.nan)


@dataclass(frozen=True)
class DailyIC:
    """Per-date IC under IC_CONVENTION: `ic` [D] (NaN on dates with too few names), `tied` [D] (all scores
    or all outcomes tied on a date with enough names: scored 0)."""

    ic: np.ndarray
    tied: np.ndarray

    @property
    def n_dates(self) -> int:
        return int(np.isfinite(self.ic).sum())

    @property
    def n_tied(self) -> int:
        return int(self.tied.sum())


def daily_ic_of(
    groups: DateGroups, score: np.ndarray, outcome: np.ndarray, method: str = "spearman"
) -> DailyIC:
    """Spearman (rank IC) or Pearson (IC) correlation of score and outcome within each date."""
    if method not in ("spearman", "pearson"):
        raise ValueError(f"IC method must be 'spearman' or 'pearson', got {method!r}")
    s, y = groups.grid(score), groups.grid(outcome)
    both = np.isfinite(s) & np.isfinite(y)
    a, b = (np.where(both, v, np.nan) for v in (s, y))
    enough = both.sum(axis=1) >= MIN_NAMES
    # tied by value, not by a variance near 0: demeaning equal floats leaves rounding residue
    with np.errstate(invalid="ignore"):
        spread = [np.fmax.reduce(v, axis=1) > np.fmin.reduce(v, axis=1) for v in (a, b)]
    ranked = enough & spread[0] & spread[1]
    if method == "spearman":
        a, b = (pd.DataFrame(v).rank(axis=1).to_numpy() for v in (a, b))
    a, b = a - row_mean(a)[:, None], b - row_mean(b)[:, None]  # NaN outside `both`
    cov = np.nansum(a * b, axis=1)
    var = np.sqrt(np.nansum(a**2, axis=1) * np.nansum(b**2, axis=1))
    ic = np.where(enough, np.where(ranked, cov / np.where(ranked, var, 1.0), 0.0), np.nan)
    return DailyIC(ic, enough & ~ranked)


def daily_rank_ic(groups: DateGroups, score: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """[D] Spearman correlation of score and outcome within each date (IC_CONVENTION)."""
    return daily_ic_of(groups, score, outcome, "spearman").ic


def mean_rank_ic(groups: DateGroups, score: np.ndarray, outcome: np.ndarray) -> float:
    ic = daily_rank_ic(groups, score, outcome)
    return float(np.nanmean(ic)) if np.isfinite(ic).any() else 0.0
