"""Pruning of bad sweep trials, fold by fold.

Hydra's optuna sweeper (1.3) gives the task no handle on the optuna trial, so deepq prunes on its own terms,
with optuna's median rule: after each walk-forward fold a trial writes its running validation loss to
`progress.json`; if, after `min_folds` folds, it is worse than the median of the earlier trials of the same
sweep at the same fold, the remaining folds are skipped and the trial reports what it has. Only validation
losses from inside the training windows are compared — test folds never steer a sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepq.utils.io import write_json_atomic


class MedianFoldPruner:
    def __init__(self, sweep_dir: str, run_dir: str, n_startup_trials: int = 2, min_folds: int = 1):
        self.sweep_dir, self.run_dir = Path(sweep_dir), Path(run_dir)
        self.n_startup_trials, self.min_folds = n_startup_trials, min_folds
        self.val_losses: list[float] = []

    def _others(self) -> list[list[float]]:
        runs = []
        for path in sorted(self.sweep_dir.glob("*/progress.json")):
            if path.parent.resolve() == self.run_dir.resolve():
                continue
            runs.append(json.loads(path.read_text())["running_val_loss"])
        return runs

    def report(self, fold: int, val_loss: float) -> bool:
        """Record this fold's validation loss; True if the trial should stop here."""
        self.val_losses.append(val_loss)
        running = [float(np.nanmean(self.val_losses[: i + 1])) for i in range(len(self.val_losses))]
        pruned = False
        others = [r for r in self._others() if len(r) > fold]
        if len(self.val_losses) >= self.min_folds and len(others) >= self.n_startup_trials:
            pruned = running[-1] > float(np.median([r[fold] for r in others]))
        write_json_atomic({"running_val_loss": running, "pruned": pruned}, self.run_dir / "progress.json")
        return pruned
