"""Where the configs live, the resolvers they use, and composing a run's config in-process."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict


def project_root() -> Path:
    """The checkout's root (src/deepq/tasks -> root), or $DEEPQ_ROOT."""
    return Path(os.environ.get("DEEPQ_ROOT") or Path(__file__).resolve().parents[3])


CONFIG_DIR = str(project_root() / "conf")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("deepq_root"):
        OmegaConf.register_new_resolver("deepq_root", lambda: str(project_root()))


register_resolvers()


def compose_run(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The training config for `overrides`, composed in-process as the Hydra app composes it: the hydra node
    included and set as the current HydraConfig, the run folder `output_dir` (loggers and callbacks
    interpolate it). The Python API and the tests run `train` on this."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg
