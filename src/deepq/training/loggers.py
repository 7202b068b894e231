"""Lightning loggers for the training curves, one per fold so every fold's curves stay separate.

W&B groups a run's folds (and a sweep's runs); MLflow tags them. The run as a whole (config, metrics,
report, model) is recorded by the run trackers in deepq.tasks.tracking.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger


def csv_logger(save_dir: str, fold: int, run_name: str) -> Logger:
    return CSVLogger(save_dir=save_dir, name="logs", version=f"fold_{fold}")


def wandb_logger(
    save_dir: str,
    fold: int,
    run_name: str,
    project: str = "deepq",
    offline: bool = True,
    tags: list[str] | None = None,
    group: str | None = None,
) -> Logger:
    """Offline unless the user is logged in and sets offline=false; needs no key and no network offline."""
    from lightning.pytorch.loggers import WandbLogger

    if offline:
        os.environ["WANDB_MODE"] = "offline"
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=project,
        name=f"{run_name}-fold{fold}",
        group=group or run_name,
        job_type="fold",
        save_dir=save_dir,
        offline=offline,
        tags=list(tags or []),
        reinit="finish_previous",
    )


def mlflow_logger(
    save_dir: str,
    fold: int,
    run_name: str,
    tracking_uri: str,
    experiment: str = "deepq",
    artifact_location: str | None = None,
) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MLFlowLogger(
        experiment_name=experiment,
        run_name=f"{run_name}-fold{fold}",
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        tags={"fold": str(fold), "run": run_name},
    )
