"""Fixtures for the evaluation tests: a real OOF frame from the shipped sample and the naive baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.baselines.naive import Naive
from deepq.dataset.context import PanelData
from deepq.dataset.folds import Fold
from deepq.tasks.common import build_panel_data
from deepq.tasks.train import oof_frame
from tests.conftest import compose_cfg


@pytest.fixture(scope="package")
def sample_run(tmp_path_factory) -> tuple[PanelData, list[Fold], pd.DataFrame]:
    """PanelData of the shipped sample (33 stocks, SPY, ETFs), three 1-year folds, OOF of three baselines."""
    from hydra.utils import instantiate

    out = tmp_path_factory.mktemp("eval")
    cfg = compose_cfg(
        out,
        [
            "split.train_years=3",
            "split.test_years=1",
            "split.step_years=1",
            "split.first_test=2016-01-01",
            "split.max_folds=4",
        ],
    )
    data = build_panel_data(cfg)
    folds = instantiate(cfg.split)(dates=data.panel.dates, purge_days=2, min_history_days=252)
    frames = []
    for fold in folds:
        index = data.split_index(fold, "test")
        for name in ("momentum_20", "last_return", "always_up"):
            frames.append(oof_frame(data, fold, name, index, Naive(name).predict(data, index)))
    return data, folds, pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="package")
def spy_returns(sample_run) -> pd.Series:
    data, _, _ = sample_run
    close = data.panel["close"][:, data.panel.symbol_index("SPY")]
    r = pd.Series(close, index=pd.to_datetime(data.panel.dates)).pct_change(fill_method=None).dropna()
    return r[r.index >= "2010-01-01"]


@pytest.fixture
def rng_local() -> np.random.Generator:
    return np.random.default_rng(7)
