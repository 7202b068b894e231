"""The risk-aware plug-ins run end to end through `deepq train model=X task=...` on tiny real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import compose_cfg


@pytest.mark.slow  # about 10-20 s each: a full (tiny) walk-forward run with evaluation and report
@pytest.mark.parametrize(
    ("model", "task", "extra"),
    [("regime_lightgbm", "direction", "p_high_vol"), ("tail_risk", "returns", "es050")],
)
def test_risk_model_trains_through_train(model, task, extra, tmp_path):
    from deepq.tasks.train import train

    overrides = [f"model={model}", f"task={task}", "debug=tiny", "export=false", "registry.enabled=false"]
    if model == "regime_lightgbm":
        overrides += ["model.plugin.n_estimators=30", "model.plugin.max_train_rows=5000"]
    cfg = compose_cfg(tmp_path, overrides)
    result = train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert model in {r["model"] for r in metrics["by_model"]}
    oof = pd.read_parquet(tmp_path / "predictions.parquet")
    mine = oof[oof["model"] == model] if "model" in oof else oof
    assert len(mine) > 0
    col = f"out_{extra}"  # train writes a plug-in's extra outputs as out_<name> columns
    assert col in mine.columns and np.isfinite(mine[col]).mean() > 0.95
    if model == "regime_lightgbm":  # a probability that is not constant across the test dates
        assert mine[col].between(0, 1).all() and mine[col].std() > 0
        assert 0 <= result[f"{model}/dir_acc"] <= 1
    else:  # expected shortfall is a loss beyond the VaR, both negative log returns
        es, var = mine["out_es050"], mine["out_var050"]
        assert (es <= var + 1e-12).all() and (var < 0).all()
