"""Every config in conf/ composes: experiments, debug modes, loggers, launchers whose plugin is installed."""

from __future__ import annotations

import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from deepq.tasks.hydra_utils import CONFIG_DIR, project_root

CONF = project_root() / "conf"


def _compose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiment_composes(name):
    cfg = _compose([f"experiment={name}"])
    if name != "shared_panel":
        model, task = name.split("_", 1)
        assert cfg.model.name == model and cfg.task.name == task
        assert "shared" in cfg.data.prices and cfg.split.train_years == 10


@pytest.mark.parametrize(
    "group", ["debug", "logger", "model", "task", "split", "trainer", "features", "data"]
)
def test_group_options_compose(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        _compose([f"{group}={path.stem}"])


@pytest.mark.parametrize(
    "launcher,plugin",
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("local_parallel", "hydra_plugins.hydra_submitit_launcher"),
        ("ray", "hydra_plugins.hydra_ray_launcher"),
    ],
)
def test_launcher_composes_when_installed(launcher, plugin):
    if importlib.util.find_spec(plugin) is None:
        pytest.skip(f"{plugin} not installed (optional extra)")
    cfg = _compose(["-m" if False else f"launcher={launcher}"])
    assert "launcher" in cfg.hydra


def test_optuna_search_space_and_objective():
    cfg = _compose(["hparams_search=optuna"])
    assert cfg.hydra.sweeper.direction == "minimize" and cfg.optimized_metric == "val_loss"
    assert "model.hidden_size" in cfg.hydra.sweeper.params
