"""The model registry: versioned artifacts on the filesystem, their metadata and stages in SQLite.

Layout under the registry root (default `registry/` in the project, `$DEEPQ_REGISTRY` overrides):

    registry.db                         versions, artifacts (sha256), stage events
    models/<name>/v<version>/model.pt   the files as registered (model.pt, model.json, config.yaml, ...)

Paths in the database are relative to the root, so a registry copied or restored elsewhere still works.
Every artifact's sha256 is recorded at registration and verified on load: a modified file is refused.
Stages: candidate -> staging -> production -> archived; promoting to production archives the previous one.
`mirror_to_mlflow` copies a version into an MLflow model registry when one is wanted as well.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepq.export.torchscript import load_torchscript
from deepq.utils.io import sha256_file

STAGES = ("candidate", "staging", "production", "archived")
RUN_FILES = ("model.pt", "model.json", "config.yaml", "metrics.json")  # what a train run contributes
OPTIONAL_FILES = ("model.pt2", "model.pt2.json", "model.onnx", "model.onnx.json")  # torch.export / ONNX twins

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, stage TEXT NOT NULL, created_at REAL NOT NULL,
    source TEXT, meta TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS artifacts (
    name TEXT NOT NULL, version INTEGER NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL, PRIMARY KEY (name, version, file));
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL,
    from_stage TEXT, to_stage TEXT);
"""


class RegistryError(ValueError):
    """A missing version, a bad stage, or an artifact whose checksum does not match."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    stage: str
    created_at: float
    path: Path  # the version's folder
    artifacts: Mapping[str, str]  # file name -> sha256
    meta: Mapping[str, Any]  # features, lookback, normalizer, metrics, config, data fingerprint, ...
    source: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def summary(self) -> dict[str, Any]:
        metrics = self.meta.get("metrics") or {}
        return {
            "name": self.name,
            "version": self.version,
            "stage": self.stage,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "task": self.meta.get("task"),
            "horizon_days": self.meta.get("horizon_days"),
            "lookback": self.meta.get("lookback"),
            "n_features": len(self.meta.get("features") or []),
            "data_fingerprint": self.meta.get("data_fingerprint"),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
            "source": self.source,
        }


def default_root(project_root: str | Path | None = None) -> Path:
    env = os.environ.get("DEEPQ_REGISTRY")
    if env:
        return Path(env)
    return Path(project_root or Path.cwd()) / "registry"


def parse_ref(ref: str) -> tuple[str | None, int | str | None]:
    """'lstm_returns:3' -> (name, 3); 'lstm_returns:production' -> (name, 'production'); 'production' ->
    (None, 'production'); 'lstm_returns' -> (name, None)."""
    if ":" in ref:
        name, sel = ref.split(":", 1)
        return name or None, int(sel) if sel.isdigit() else sel
    return (None, ref) if ref in STAGES or ref == "latest" else (ref, None)


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # one short-lived connection per operation: safe across processes and threads (uvicorn workers)
        with closing(sqlite3.connect(self.root / "registry.db", timeout=30)) as db, db:
            yield db

    # -- writing ---------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        files: Mapping[str, str | Path],
        meta: Mapping[str, Any],
        stage: str = "candidate",
        source: str = "",
    ) -> ModelVersion:
        """Copy `files` (name in the version folder -> source path) into a new version of `name`."""
        if stage not in STAGES:
            raise RegistryError(f"stage {stage!r} is not one of {STAGES}")
        if not name or "/" in name or ":" in name:
            raise RegistryError(f"model name {name!r} must be non-empty without '/' or ':'")
        missing = [str(p) for p in files.values() if not Path(p).is_file()]
        if missing:
            raise RegistryError(f"cannot register {name}: missing file(s) {missing}")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            sums = {}
            for fname, src in files.items():
                shutil.copy2(src, staging / fname)
                sums[fname] = sha256_file(staging / fname)
            with self._db() as db:
                db.execute("BEGIN IMMEDIATE")  # the version number is allocated under the write lock
                row = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()
                version = int(row[0] or 0) + 1
                rel = Path("models") / name / f"v{version}"
                (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, self.root / rel)
                now = time.time()
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                    (name, version, stage, now, source, json.dumps(dict(meta), default=str)),
                )
                db.executemany(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?)",
                    [(name, version, f, s, (self.root / rel / f).stat().st_size) for f, s in sums.items()],
                )
                db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, 'register', NULL, ?)", (now, name, version, stage)
                )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(name, version)

    def register_run(
        self, run_dir: str | Path, name: str | None = None, stage: str = "candidate"
    ) -> ModelVersion:
        """Register a `deepq train` output folder (model.pt + model.json, with its config and metrics)."""
        run_dir = Path(run_dir)
        model_json = run_dir / "model.json"
        if not model_json.is_file():
            raise RegistryError(f"{run_dir} has no model.json: was the run exported (export=true)?")
        meta: dict[str, Any] = json.loads(model_json.read_text())
        metrics_path = run_dir / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            meta["metrics"] = metrics.get("summary", {})
            run = metrics.get("run", {})
            meta["data_fingerprint"] = run.get("data_fingerprint")
            meta["git_commit"] = run.get("git_commit")
        if (run_dir / "config.yaml").is_file():
            meta["config"] = (run_dir / "config.yaml").read_text()
        files = {f: run_dir / f for f in (*RUN_FILES, *OPTIONAL_FILES) if (run_dir / f).is_file()}
        return self.register(
            name or str(meta.get("name") or "model"), files, meta, stage, source=str(run_dir)
        )

    def set_stage(self, name: str, version: int, stage: str) -> ModelVersion:
        if stage not in STAGES:
            raise RegistryError(f"stage {stage!r} is not one of {STAGES}")
        current = self.get(name, version)
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            if stage == "production":  # one production version per model name
                for (v,) in db.execute(
                    "SELECT version FROM versions WHERE name = ? AND stage = 'production' AND version != ?",
                    (name, version),
                ).fetchall():
                    db.execute(
                        "UPDATE versions SET stage = 'archived' WHERE name = ? AND version = ?", (name, v)
                    )
                    db.execute(
                        "INSERT INTO events VALUES (?, ?, ?, 'stage', 'production', 'archived')",
                        (now, name, v),
                    )
            db.execute("UPDATE versions SET stage = ? WHERE name = ? AND version = ?", (stage, name, version))
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, 'stage', ?, ?)",
                (now, name, version, current.stage, stage),
            )
        return self.get(name, version)

    # -- reading ---------------------------------------------------------------------------------------
    def _row_to_version(self, db: sqlite3.Connection, row: tuple) -> ModelVersion:
        name, version, stage, created_at, source, meta = row
        arts = dict(
            db.execute(
                "SELECT file, sha256 FROM artifacts WHERE name = ? AND version = ? ORDER BY file",
                (name, version),
            ).fetchall()
        )
        path = self.root / "models" / name / f"v{version}"
        return ModelVersion(
            name, int(version), stage, float(created_at), path, arts, json.loads(meta), source or ""
        )

    def versions(self, name: str | None = None, stage: str | None = None) -> list[ModelVersion]:
        """Oldest first."""
        sql, args = "SELECT * FROM versions WHERE 1=1", list[str]()
        if name:
            sql, args = sql + " AND name = ?", [*args, name]
        if stage:
            sql, args = sql + " AND stage = ?", [*args, stage]
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY created_at, name, version", args).fetchall()
            return [self._row_to_version(db, r) for r in rows]

    def get(self, name: str, version: int) -> ModelVersion:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if row is None:
                known = [f"{n}:{v}" for n, v in db.execute("SELECT name, version FROM versions").fetchall()]
                raise RegistryError(f"no model version {name}:{version} in {self.root} (have {known})")
            return self._row_to_version(db, row)

    def resolve(self, ref: str | None = None) -> ModelVersion:
        """A version by reference: 'name:3', 'name:production', 'production', 'name', or None (= the default:
        the latest production version, else the latest candidate)."""
        name, sel = parse_ref(ref) if ref else (None, None)
        if isinstance(sel, int):
            assert name is not None
            return self.get(name, sel)
        stages: tuple[str | None, ...] = ("production", "candidate") if sel is None else (sel,)
        for stage in stages:
            found = self.versions(name, None if stage == "latest" else stage)
            if found:
                return found[-1]
        raise RegistryError(
            f"no model version matches {ref or '<default: latest production, else candidate>'} in {self.root}"
        )

    def history(self, name: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE name = ?" if name else "") + " ORDER BY ts"
        with self._db() as db:
            rows = db.execute(sql, (name,) if name else ()).fetchall()
        keys = ("ts", "name", "version", "action", "from_stage", "to_stage")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- integrity and loading -------------------------------------------------------------------------
    def verify(self, mv: ModelVersion) -> None:
        """Raise RegistryError naming the first artifact that is missing or whose sha256 differs."""
        for fname, expected in mv.artifacts.items():
            path = mv.path / fname
            if not path.is_file():
                raise RegistryError(f"{mv.ref}: artifact {path} is missing")
            if sha256_file(path) != expected:
                raise RegistryError(
                    f"{mv.ref}: sha256 of {path} does not match the registry: the artifact was modified"
                )

    def load(self, mv: ModelVersion) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
        """The verified TorchScript module and its model.json."""
        self.verify(mv)
        return load_torchscript(mv.path / "model.pt", verify=True)


def mirror_to_mlflow(mv: ModelVersion, tracking_uri: str, model_name: str | None = None) -> str:
    """Log a version's files to MLflow and register them under `model_name` in MLflow's model registry
    (the MLflow option; the embedded registry stays the source of truth). Returns the MLflow version."""
    import mlflow  # optional path: imported only when used

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_name=mv.ref) as run:
        mlflow.set_tags({"deepq.ref": mv.ref, "deepq.stage": mv.stage})
        numeric = {
            k: float(v) for k, v in (mv.meta.get("metrics") or {}).items() if isinstance(v, int | float)
        }
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in numeric.items() if v == v})
        mlflow.log_artifacts(str(mv.path), artifact_path="model")
        artifact_uri = mlflow.get_artifact_uri("model")
    # the files are plain artifacts, not an MLflow "logged model": register them by source URI
    client = mlflow.MlflowClient(tracking_uri)
    name = model_name or mv.name
    if not client.search_registered_models(filter_string=f"name='{name}'"):
        client.create_registered_model(name, description=f"mirrored from the deepq registry ({mv.name})")
    version = client.create_model_version(
        name, source=artifact_uri, run_id=run.info.run_id, tags={"deepq.ref": mv.ref}
    )
    return str(version.version)
