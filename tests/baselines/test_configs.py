"""Every plug-in model config composes, names itself, and builds a FoldModel; one runs through `train`."""

from __future__ import annotations

import json

import pytest

from deepq.dataset.context import FoldModel
from deepq.tasks.common import build_model
from deepq.tasks.hydra_utils import CONFIG_DIR
from tests.conftest import compose_cfg

PLUGINS = [
    "naive",
    "lightgbm",
    "xgboost",
    "catboost",
    "lightgbm_quantile",
    "regime_lightgbm",
    "tail_risk",
    "arima",
    "ets",
    "mstl",
    "har",
    "garch",
    "ewma",
    "stack",
    "booster_blend",
    "deepar_gluonts",
    "tft_pf",
]


def test_every_plugin_config_is_listed():
    from pathlib import Path

    plugin_files = {
        p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml") if "\nplugin:" in p.read_text()
    }
    assert set(PLUGINS) <= plugin_files


@pytest.mark.parametrize("model", PLUGINS)
def test_plugin_config_builds(model, tmp_path):
    cfg = compose_cfg(tmp_path, [f"model={model}"])
    assert cfg.model.name
    m = build_model(cfg)
    assert isinstance(m, FoldModel) and m.name == cfg.model.name


@pytest.mark.slow
def test_stack_runs_through_train(tmp_path):
    from deepq.tasks.train import train

    cfg = compose_cfg(tmp_path, ["model=stack", "debug=fdr", "split.max_folds=2", "export=false"])
    result = train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "stack" in {r["model"] for r in metrics["by_model"]}
    assert result["stack/mse"] == result["stack/mse"]  # finite, not NaN
