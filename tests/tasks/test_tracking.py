"""W&B (offline) and MLflow (local directory) record whole runs with no network and no account."""

from __future__ import annotations

import json

import pytest

from deepq.tasks.train import train
from tests.conftest import compose_cfg

FAST = ["debug=fdr", "split.max_folds=1", "export=true"]


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg(tmp_path, [*FAST, "logger=wandb"])
    train(cfg)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # one run for the fold's training curves, one summary run for the whole run
    assert len(runs) == 2, runs
    # offline runs keep everything in the run's protobuf log (.wandb): look for what the summary run logged
    logs = [next(r.glob("run-*.wandb")).read_bytes() for r in runs]
    summary = [b for b in logs if b"lstm/rank_ic" in b]
    assert len(summary) == 1
    fingerprint = json.loads((tmp_path / "metrics.json").read_text())["run"]["data_fingerprint"]
    for needle in (
        b"data_fingerprint",
        fingerprint.encode(),
        b"git_commit",
        b"report.html",
        b"model.pt",
        b"per_fold",
    ):
        assert needle in summary[0], needle
    fold_log = next(b for b in logs if b"lstm/rank_ic" not in b)
    assert b"train_loss" in fold_log or b"val_loss" in fold_log


def test_mlflow_run_has_params_metrics_tags_and_artifacts(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        tmp_path,
        [
            *FAST,
            "logger=mlflow",
            f"logger.tracking_uri={uri}",
            f"logger.artifact_location={tmp_path / 'artifacts'}",
        ],
    )
    result = train(cfg)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("deepq")
    runs = client.search_runs([exp.experiment_id])
    summary = [r for r in runs if "lstm.rank_ic" in r.data.metrics]
    assert len(summary) == 1 and len(runs) == 2  # the fold's curves + the run's summary
    run = summary[0]
    assert run.data.metrics["val_loss"] == pytest.approx(result["val_loss"])
    assert run.data.params["model.hidden_size"] == "32"
    assert run.data.tags["model"] == "lstm" and len(run.data.tags["data_fingerprint"]) == 16
    assert "pkg.torch" in run.data.tags and run.data.tags["git_commit"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "model.pt", "metrics.json"} <= artifacts
    fold_runs = [r for r in runs if r.info.run_id != run.info.run_id]
    assert "train_loss" in fold_runs[0].data.metrics or "val_loss" in fold_runs[0].data.metrics
    mlflow.set_tracking_uri("")  # leave no global state behind
