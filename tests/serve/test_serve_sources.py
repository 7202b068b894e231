"""A run trained with alternative-data columns (`features.sources`) is served with the same columns: the
server rebuilds its features with the training run's own builder (deepq.dataset.build.run_features)."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf, open_dict

from deepq.serve.inputs import InputBuilder, load_panel_features
from deepq.tasks.common import build_panel_data
from tests.conftest import compose_cfg
from tests.features.test_panel_sources import BASE, FIX, _sources


def test_served_features_include_the_runs_source_columns(tmp_path):
    cfg = compose_cfg(tmp_path, BASE)
    with open_dict(cfg):
        cfg.features.sources = OmegaConf.create(_sources(FIX))
    data = build_panel_data(cfg)
    source_cols = [n for n in data.feature_names if n.startswith("macro_") or "sentiment" in n]
    assert source_cols, data.feature_names  # the fixture's columns are there to be served

    served = load_panel_features(OmegaConf.to_yaml(cfg, resolve=True), lookback=5, rank=False)
    assert served.feature_names == tuple(data.feature_names)
    np.testing.assert_array_equal(served.features.numpy(), data.features.astype(np.float32))
    assert not (served.window_ok & ~data.sample_ok).any()  # a served cell is a sample cell of the run

    n = len(data.feature_names)
    meta = {"lookback": 5, "features": list(data.feature_names), "normalizer": None}
    builder = InputBuilder(served, meta)  # model.json's feature list matches: no InputError
    t = int(np.flatnonzero(served.window_ok.any(axis=1))[-1])
    j = int(np.flatnonzero(served.window_ok[t])[0])
    (x,) = builder.model_inputs(np.array([t]), np.array([j]))
    assert x.shape == (1, 5, n)
    k = data.feature_names.index(source_cols[0])
    window = data.features[t - 4 : t + 1, j, k]
    np.testing.assert_allclose(x[0, :, k].numpy(), np.nan_to_num(window), equal_nan=True)
