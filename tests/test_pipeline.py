"""The spine end to end: compose the real config, run walk-forward with debug=fdr on the sample."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from deepq.export.torchscript import load_torchscript
from deepq.tasks.train import train

from .conftest import ROOT, compose_cfg


@pytest.fixture(scope="module")
def fdr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fdr")
    cfg = compose_cfg(out, ["debug=fdr"])
    result = train(cfg)
    return out, result


def test_outputs_exist_and_metrics_finite(fdr_run):
    out, result = fdr_run
    for name in (
        "config.yaml",
        "metrics.json",
        "predictions.parquet",
        "report.html",
        "model.pt",
        "model.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["summary"]["val_loss"])
    for key in (
        "lstm/dir_acc",
        "lstm/rank_ic",
        "lstm/mse",
        "always_up/dir_acc",
        "zero_return/mse",
        "momentum_20/rank_ic",
    ):
        assert math.isfinite(result[key]), key
    assert {r["model"] for r in metrics["by_model"]} == {"lstm", "zero_return", "always_up", "momentum_20"}
    assert len({r["fold"] for r in metrics["per_fold"]}) == 3
    html = (out / "report.html").read_text()
    assert "always_up" in html and "data:image/png;base64" in html


def test_predictions_are_out_of_fold_and_aligned(fdr_run):
    out, _ = fdr_run
    oof = pd.read_parquet(out / "predictions.parquet")
    # every model scored exactly the same rows
    keys = {m: set(zip(g["date"], g["symbol"], strict=True)) for m, g in oof.groupby("model")}
    assert len({frozenset(v) for v in keys.values()}) == 1
    folds = json.loads((out / "metrics.json").read_text())["folds"]
    for f in folds:
        lo, hi = (pd.Timestamp(x) for x in f["test"].split(" .. "))
        rows = oof[oof["fold"] == f["fold"]]
        assert rows["date"].between(lo, hi).all()


def test_exported_model_reproduces_predictions(fdr_run):
    out, _ = fdr_run
    model, meta = load_torchscript(out / "model.pt")
    assert meta["task"] == "returns" and len(meta["features"]) == 32
    x = torch.randn(5, meta["lookback"], len(meta["features"]))
    assert model(x).shape == (5, 1)


def test_two_point_multirun_sweep(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "deepq.tasks.train",
        "-m",
        "model.hidden_size=8,16",
        "debug=fdr",
        "data.start=2016-01-01",  # the sweep machinery is under test, not the data volume
        "split.max_folds=1",
        "export=false",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "metrics.json").is_file()
    hidden = {json.loads((tmp_path / j / "metrics.json").read_text())["run"]["name"] for j in ("0", "1")}
    assert hidden == {"lstm_returns"}
    assert "hidden_size: 8" in (tmp_path / "0" / "config.yaml").read_text()
    assert "hidden_size: 16" in (tmp_path / "1" / "config.yaml").read_text()


def test_risk_run_is_judged_against_volatility_baselines(tmp_path):
    """A risk run's bars are the random walk of realised vol, EWMA and HAR, fitted on each fold's training
    rows, and its verdict speaks of the log-vol R^2 and QLIKE, not of return direction."""
    cfg = compose_cfg(tmp_path, ["debug=fdr", "task=risk", "split.max_folds=2"])
    result = train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {r["model"] for r in metrics["by_model"]} == {"lstm", "rw_vol", "ewma_vol", "har"}
    for name in ("rw_vol", "ewma_vol", "har"):
        assert math.isfinite(result[f"{name}/r2_log_vol"]), name
    # the random walk of realised vol explains some of next week's log vol on real data
    assert result["rw_vol/r2_log_vol"] > 0.05
    assert "r2_log_vol" in metrics["run"]["verdict"] and "dir_acc" not in metrics["run"]["verdict"]


def test_baselines_follow_the_task_and_skip_the_model_itself(tmp_path):
    from deepq.tasks.train import build_baselines

    cfg = compose_cfg(tmp_path, ["debug=fdr"])
    assert [b.name for b in build_baselines(cfg, "signal")] == ["majority"]
    assert [b.name for b in build_baselines(cfg, "direction")] == ["always_up", "majority", "momentum_sign"]
    cfg = compose_cfg(tmp_path, ["debug=fdr", "baselines.risk=[rw_vol]"])
    assert [b.name for b in build_baselines(cfg, "risk")] == ["rw_vol"]
    flat = OmegaConf.create({"baselines": ["always_up"]})  # a plain list applies to every task
    assert [b.name for b in build_baselines(flat, "risk")] == ["always_up"]
