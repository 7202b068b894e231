"""Where the configs live, and the resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> Path:
    """The checkout's root (src/deepq/tasks -> root), or $DEEPQ_ROOT."""
    return Path(os.environ.get("DEEPQ_ROOT") or Path(__file__).resolve().parents[3])


CONFIG_DIR = str(project_root() / "conf")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("deepq_root"):
        OmegaConf.register_new_resolver("deepq_root", lambda: str(project_root()))


register_resolvers()
