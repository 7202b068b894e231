"""Run-level experiment tracking: one record per run with the resolved config, per-fold and aggregate metrics,
the HTML report and the exported model as artifacts, and tags for model, task and data fingerprint.

Lightning's loggers (deepq.training.loggers) record the training curves of each fold; these trackers record
the run as a whole. W&B runs offline unless told otherwise; MLflow writes to a local tracking directory.
Runs of one Hydra multirun share a group (W&B) / a `sweep` tag (MLflow) so a sweep compares as one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd


def sweep_group(default: str) -> str:
    """The multirun's folder name when inside a sweep, else `default` (the run name)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return f"sweep-{Path(hc.sweep.dir).parent.name}-{Path(hc.sweep.dir).name}"
    except (ValueError, ImportError):
        pass
    return default


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
        else:
            out[key] = v
    return out


def _artifacts(out_dir: Path) -> list[Path]:
    return [
        p
        for p in (out_dir / n for n in ("report.html", "model.pt", "model.json", "metrics.json"))
        if p.exists()
    ]


class WandbTracker:
    def __init__(
        self,
        project: str = "deepq",
        offline: bool = True,
        entity: str | None = None,
        save_dir: str | None = None,
    ):
        self.project, self.offline, self.entity, self.save_dir = project, offline, entity, save_dir

    def log_run(
        self,
        config: dict[str, Any],
        meta: dict[str, Any],
        result: dict[str, float],
        per_fold: pd.DataFrame,
        out_dir: Path,
    ) -> str:
        import wandb

        if self.offline:
            os.environ["WANDB_MODE"] = "offline"
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=str(meta["name"]),
            group=sweep_group(str(meta["name"])),
            job_type="summary",
            tags=[
                str(meta.get("model")),
                str(config.get("task", {}).get("name")),
                f"data:{meta['data_fingerprint']}",
            ],
            config=config
            | {"run": {k: meta[k] for k in ("git_commit", "data_fingerprint", "packages") if k in meta}},
            dir=self.save_dir or str(out_dir),
            mode="offline" if self.offline else "online",
            reinit="finish_previous",
        )
        run.log({k: v for k, v in result.items() if isinstance(v, int | float)})
        run.log(
            {
                "per_fold": wandb.Table(
                    dataframe=per_fold.astype(
                        {c: str for c in per_fold.columns if per_fold[c].dtype == object}
                    )
                )
            }
        )
        artifact = wandb.Artifact(f"{meta['name']}-outputs", type="run-outputs")
        for path in _artifacts(out_dir):
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        run_dir = str(run.dir)
        run.finish()
        return run_dir


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str = "deepq", artifact_location: str | None = None):
        self.tracking_uri, self.experiment, self.artifact_location = (
            tracking_uri,
            experiment,
            artifact_location,
        )

    def log_run(
        self,
        config: dict[str, Any],
        meta: dict[str, Any],
        result: dict[str, float],
        per_fold: pd.DataFrame,
        out_dir: Path,
    ) -> str:
        import mlflow

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
        mlflow.set_experiment(self.experiment)
        tags = {
            "model": str(meta.get("model")),
            "task": str(config.get("task", {}).get("name")),
            "data_fingerprint": str(meta["data_fingerprint"]),
            "git_commit": str(meta["git_commit"]),
            "sweep": sweep_group(str(meta["name"])),
        } | {f"pkg.{k}": v for k, v in meta.get("packages", {}).items()}
        with mlflow.start_run(run_name=str(meta["name"]), tags=tags) as run:
            params = {k: str(v)[:500] for k, v in _flatten(config).items() if not k.startswith("hydra.")}
            items = list(params.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                mlflow.log_params(dict(items[i : i + 100]))
            safe = {k.replace("/", "."): float(v) for k, v in result.items() if v == v}  # drop NaN
            mlflow.log_metrics(safe)
            for row in per_fold.to_dict("records"):
                for key, value in row.items():
                    if key not in ("fold", "model") and isinstance(value, int | float) and value == value:
                        mlflow.log_metric(f"fold.{row['model']}.{key}", float(value), step=int(row["fold"]))
            for path in _artifacts(out_dir):
                mlflow.log_artifact(str(path))
            return str(run.info.run_id)
