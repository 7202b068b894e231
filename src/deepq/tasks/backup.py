"""`deepq backup PATH` / `deepq restore PATH`: versioned, checksummed snapshots of the price cache, the
feature store and the model registry.

    deepq backup /backups/deepq                        # -> /backups/deepq/20261126T010203Z/
    deepq restore /backups/deepq --into /srv/deepq     # latest snapshot -> /srv/deepq/{registry,prices,features}
    deepq restore /backups/deepq --snapshot 20261126T010203Z --force   # back to the recorded locations

A snapshot is a folder named by its UTC time holding one folder per component and `manifest.json` (sha256
and size of every file). The manifest is written last, so a snapshot without one is incomplete and ignored.
SQLite files are copied with SQLite's online backup API, so a registry being written to is still consistent.
Restore verifies every checksum before it writes anything, and refuses non-empty targets unless --force.
Locks (`locks/`, `*.lock`) and temporary files are not backed up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console

from deepq.export.registry import default_root
from deepq.tasks.hydra_utils import project_root
from deepq.utils.io import sha256_file, write_json_atomic

console = Console()
FORMAT = 1


def default_components() -> dict[str, Path]:
    root = project_root()
    return {
        "registry": default_root(root),
        "prices": Path(os.environ.get("DEEPQ_CACHE") or root / "cache"),
        "features": Path(os.environ.get("DEEPQ_FEATURE_CACHE") or root / "cache" / "features"),
    }


def _skip(rel: Path) -> bool:
    return "locks" in rel.parts or rel.suffix in (".lock", ".tmp") or rel.name.startswith(".")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".db":  # a consistent copy even while a writer holds the database
        with closing(sqlite3.connect(src)) as s, closing(sqlite3.connect(dst)) as d:
            s.backup(d)
    else:
        shutil.copy2(src, dst)


def backup(dest: str | Path, components: Mapping[str, str | Path]) -> Path:
    """Write a new snapshot under `dest`; returns its folder."""
    snap_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    snap = Path(dest) / snap_id
    if snap.exists():
        raise FileExistsError(f"snapshot {snap} already exists; wait a second and retry")
    manifest: dict[str, Any] = {"format": FORMAT, "id": snap_id, "created_at": time.time(), "components": {}}
    for name, src in components.items():
        src = Path(src)
        files: dict[str, dict[str, Any]] = {}
        # the feature store may live inside the price cache folder: each file belongs to one component
        nested = [
            Path(p).resolve()
            for n, p in components.items()
            if n != name and Path(p).resolve() != src.resolve()
        ]
        if src.is_dir():
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                rel = path.relative_to(src)
                if _skip(rel) or any(
                    path.resolve().is_relative_to(n) for n in nested if n.is_relative_to(src.resolve())
                ):
                    continue
                _copy(path, snap / name / rel)
                files[rel.as_posix()] = {
                    "sha256": sha256_file(snap / name / rel),
                    "bytes": (snap / name / rel).stat().st_size,
                }
        manifest["components"][name] = {"source": str(src.resolve()), "files": files}
    write_json_atomic(manifest, snap / "manifest.json")
    return snap


def find_snapshot(path: str | Path, snapshot: str | None = None) -> Path:
    path = Path(path)
    if (path / "manifest.json").is_file():  # PATH is a snapshot folder itself
        return path
    complete = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file()) if path.is_dir() else []
    if snapshot:
        complete = [p for p in complete if p.name == snapshot]
    if not complete:
        raise FileNotFoundError(f"no complete snapshot{' ' + snapshot if snapshot else ''} under {path}")
    return complete[-1]


def verify(snap: Path) -> dict[str, Any]:
    """The manifest, after checking every file's sha256; raises naming the first bad file."""
    manifest = json.loads((snap / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{snap}: snapshot format {manifest.get('format')} is not {FORMAT}")
    for name, comp in manifest["components"].items():
        for rel, info in comp["files"].items():
            f = snap / name / rel
            if not f.is_file():
                raise ValueError(f"{snap}: {name}/{rel} is missing")
            if sha256_file(f) != info["sha256"]:
                raise ValueError(
                    f"{snap}: sha256 of {name}/{rel} does not match the manifest: the snapshot is corrupt"
                )
    return manifest


def restore(
    path: str | Path, into: str | Path | None = None, snapshot: str | None = None, force: bool = False
) -> dict[str, Path]:
    """Restore a snapshot: into `into/<component>`, or to the recorded source locations. Returns the targets."""
    snap = find_snapshot(path, snapshot)
    manifest = verify(snap)  # all or nothing: nothing is written from a corrupt snapshot
    targets = {
        name: (Path(into) / name if into else Path(comp["source"]))
        for name, comp in manifest["components"].items()
    }
    busy = [str(t) for t in targets.values() if t.is_dir() and any(t.iterdir())]
    if busy and not force:
        raise FileExistsError(f"restore targets are not empty: {busy} (use --force to overwrite)")
    for name, comp in manifest["components"].items():
        for rel in comp["files"]:
            _copy(snap / name / rel, targets[name] / rel)
    return targets


def main() -> None:
    import sys

    command = sys.argv[0].split()[-1] if sys.argv and " " in sys.argv[0] else "backup"
    p = argparse.ArgumentParser(
        prog=f"deepq {command}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("path", help="the backup folder (snapshots are created inside it)")
    defaults = default_components()
    if command == "restore":
        p.add_argument("--snapshot", default=None, help="snapshot id (default: the latest complete one)")
        p.add_argument(
            "--into", default=None, help="restore under this folder instead of the recorded locations"
        )
        p.add_argument("--force", action="store_true", help="overwrite non-empty targets")
        args = p.parse_args()
        try:
            targets = restore(args.path, args.into, args.snapshot, args.force)
        except (FileNotFoundError, FileExistsError, ValueError) as e:
            raise SystemExit(f"deepq restore: {e}") from None
        for name, t in targets.items():
            console.print(f"restored {name} -> {t}")
        return
    for name, src in defaults.items():
        p.add_argument(f"--{name}", default=str(src), help=f"{name} folder (default {src})")
    args = p.parse_args()
    snap = backup(args.path, {name: getattr(args, name) for name in defaults})
    manifest = json.loads((snap / "manifest.json").read_text())
    for name, comp in manifest["components"].items():
        size = sum(f["bytes"] for f in comp["files"].values())
        console.print(f"{name}: {len(comp['files'])} files, {size / 1e6:.1f} MB from {comp['source']}")
    console.print(f"snapshot {snap}")


if __name__ == "__main__":
    main()
