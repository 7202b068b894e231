"""Sweeps: a two-trial optuna sweep completes on CPU; the pruner stops trials worse than the sweep's median."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from deepq.tasks.pruning import MedianFoldPruner
from tests.conftest import ROOT


def test_two_trial_optuna_sweep_completes(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "deepq.tasks.train",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "debug=fdr",
        "data.start=2016-01-01",  # the sweep machinery is under test, not the data volume
        "split.max_folds=2",
        "export=false",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and set(best["best_params"]) >= {
        "model.hidden_size",
        "model.optimizer.lr",
    }
    trials = [json.loads((tmp_path / j / "metrics.json").read_text()) for j in ("0", "1")]
    assert best["best_value"] == min(t["summary"]["val_loss"] for t in trials)
    for j in ("0", "1"):
        cfg = yaml.safe_load((tmp_path / j / "config.yaml").read_text())
        assert cfg["n_trials"] == 2  # reaches the evaluation (deflated Sharpe)
        assert (tmp_path / j / "progress.json").exists()


def _trial(sweep, name, losses):
    run = sweep / name
    run.mkdir(parents=True)
    (run / "progress.json").write_text(json.dumps({"running_val_loss": losses}))


def test_median_pruner(tmp_path):
    _trial(tmp_path, "0", [1.0, 1.0, 1.0])
    _trial(tmp_path, "1", [2.0, 2.0, 2.0])
    _trial(tmp_path, "2", [3.0, 3.0, 3.0])
    good = MedianFoldPruner(str(tmp_path), str(tmp_path / "3"), n_startup_trials=2)
    assert good.report(0, 1.5) is False  # better than the median 2.0
    bad = MedianFoldPruner(str(tmp_path), str(tmp_path / "4"), n_startup_trials=2)
    assert bad.report(0, 2.5) is True
    saved = json.loads((tmp_path / "4" / "progress.json").read_text())
    assert saved == {"running_val_loss": [2.5], "pruned": True}


def test_pruner_waits_for_startup_trials(tmp_path):
    _trial(tmp_path, "0", [1.0])
    p = MedianFoldPruner(str(tmp_path), str(tmp_path / "1"), n_startup_trials=2)
    assert p.report(0, 100.0) is False
