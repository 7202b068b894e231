"""Walk-forward folds over the panel's date axis.

Each fold is a training window, a validation slice at its end (for early stopping), and a test block.
Indices are decision dates (rows of the panel). Between every pair of consecutive segments sits a purge
of `purge_days` sessions, the label span, so no training or validation label reaches into what follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[int, int]  # [start, stop) rows of the panel
    val: tuple[int, int]
    test: tuple[int, int]

    def describe(self, dates: np.ndarray) -> dict[str, str | int]:
        def span(seg: tuple[int, int]) -> str:
            return f"{dates[seg[0]]} .. {dates[seg[1] - 1]}" if seg[1] > seg[0] else "-"

        return {
            "fold": self.index,
            "train": span(self.train),
            "val": span(self.val),
            "test": span(self.test),
            "train_days": self.train[1] - self.train[0],
            "test_days": self.test[1] - self.test[0],
        }


def _row(dates: np.ndarray, when: pd.Timestamp) -> int:
    return int(np.searchsorted(dates, np.datetime64(when.date(), "D"), side="left"))


def walk_forward(
    dates: np.ndarray,
    train_years: float = 5,
    test_years: float = 1,
    step_years: float | None = None,
    mode: Literal["rolling", "expanding"] = "rolling",
    purge_days: int = 2,
    embargo_days: int = 0,
    val_days: int = 126,
    first_test: str | None = None,
    last_date: str | None = None,
    max_folds: int | None = None,
    min_history_days: int = 0,
) -> list[Fold]:
    """Folds whose test blocks tile [first_test, last_date] in steps of `step_years` (default test_years).

    rolling: the training window is the `train_years` before the test block; expanding: from the start.
    `min_history_days` keeps the first rows (where features are still warming up) out of every window.
    `embargo_days` drops that many sessions after each test block from the start of the next one,
    a buffer against serial correlation between adjacent test blocks' labels and features.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    step_years = step_years or test_years
    start = pd.Timestamp(dates[0])
    end = pd.Timestamp(last_date) if last_date else pd.Timestamp(dates[-1])
    first_row = min_history_days
    test_start = (
        pd.Timestamp(first_test)
        if first_test
        else pd.Timestamp(dates[first_row]) + pd.DateOffset(months=round(12 * train_years))
    )
    folds: list[Fold] = []
    while test_start <= end and (max_folds is None or len(folds) < max_folds):
        t0 = _row(dates, test_start)
        t1 = min(
            _row(dates, test_start + pd.DateOffset(months=round(12 * test_years))),
            _row(dates, end + pd.Timedelta(days=1)),
        )
        if folds and embargo_days:
            t0 = max(t0, folds[-1].test[1] + embargo_days)
        if t1 <= t0:
            break
        val_stop = t0 - purge_days
        val_start = max(val_stop - val_days, 0)
        train_stop = val_start - purge_days if val_days > 0 else val_stop
        if mode == "rolling":
            train_start = _row(dates, test_start - pd.DateOffset(months=round(12 * train_years)))
        elif mode == "expanding":
            train_start = 0
        else:
            raise ValueError(f"split mode must be 'rolling' or 'expanding', got {mode!r}")
        train_start = max(train_start, first_row)
        if train_stop - train_start < max(val_days, 20):
            raise ValueError(
                f"fold {len(folds)}: training window {dates[train_start]}..{dates[max(train_stop - 1, 0)]} "
                f"is too short; move split.first_test later or shrink split.val_days"
            )
        folds.append(
            Fold(
                len(folds),
                (train_start, train_stop),
                (val_start, val_stop) if val_days else (val_stop, val_stop),
                (t0, t1),
            )
        )
        test_start = test_start + pd.DateOffset(months=round(12 * step_years))
    if not folds:
        raise ValueError(
            f"no walk-forward fold fits between {start.date()} and {end.date()} with train_years={train_years}"
        )
    return folds
