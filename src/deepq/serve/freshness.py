"""How fresh the served data is, and a cheap signature of the files it is built from.

The served panel is the run's `data` config read again at startup (serve/inputs.py). The signature (size and
mtime of every file the config names) lets the refresher notice new bars in the cache without rebuilding the
features every interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

FRESHNESS_TTL = timedelta(seconds=60)  # of clock time: how long a computed Freshness is reused


class ReloadError(RuntimeError):
    """A reload that failed; the previous panel is still served."""


@dataclass(frozen=True)
class Freshness:
    data_as_of: str  # the served data's last session
    stale_sessions: int  # exchange sessions completed after it (0 = up to date)
    last_completed_session: str  # the exchange's latest session whose close has passed, at the clock's now


def _skipped(path: Path) -> bool:
    # lock files and temp files of an atomic write in progress are not data
    return path.name.startswith(".") or path.suffix in (".lock", ".tmp")


def source_signature(config: str, data_overrides: Mapping[str, Any]) -> str:
    """sha256 over (path, size, mtime) of every file or folder the run's `data` config (with the serve
    overrides) names at its top level: the price file or cache root, sessions, sectors, constituents."""
    cfg = OmegaConf.create(config)
    assert isinstance(cfg, DictConfig), "a run config is a mapping"
    data = OmegaConf.merge(cfg.data, dict(data_overrides))
    try:
        values = OmegaConf.to_container(data, resolve=True)
    except Exception:  # an unresolvable interpolation: the literal text still names the file or nothing
        values = OmegaConf.to_container(data, resolve=False)
    assert isinstance(values, dict)
    parts: list[str] = []
    for key in sorted(values):
        v = values[key]
        if key == "_target_" or not isinstance(v, str) or "/" not in v:
            continue
        p = Path(v)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not _skipped(f))
        elif p.is_file():
            files = [p]
        else:
            parts.append(f"{key}={v}:absent")
            continue
        for f in files:
            st = f.stat()
            parts.append(f"{key}={f}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
