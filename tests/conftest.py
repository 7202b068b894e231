"""Shared fixtures: the shipped sample, composed configs, and one thread for torch (2 cores; see STACK.md)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# train registers its exported model: keep test runs out of the project's registry/
os.environ.setdefault("DEEPQ_REGISTRY", tempfile.mkdtemp(prefix="deepq-test-registry-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from deepq.data.panel import Panel, load_panel  # noqa: E402
from deepq.tasks.hydra_utils import compose_run, project_root  # noqa: E402

torch.set_num_threads(1)

ROOT = project_root()
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_panel() -> Panel:
    """A slice of the shipped real sample: 10 symbols (incl. SPY), 2015-2019."""
    return sample_slice(SLICE_SYMBOLS)


SLICE_SYMBOLS = ["AAPL", "JPM", "XOM", "JNJ", "WMT", "GE", "NEE", "AMT", "FCX", "NFLX", "SPY"]


def sample_slice(symbols: list[str], start: str = "2015-01-01", end: str = "2019-12-31") -> Panel:
    """The shipped sample, cut to `symbols` over [start, end]."""
    return load_panel(
        SAMPLE / "prices.parquet",
        SAMPLE / "sectors.parquet",
        SAMPLE / "nyse_sessions.parquet",
        symbols=symbols,
        start=start,
        end=end,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "prices.parquet").exists():
        pytest.skip("../shared/data is not present")
    return SHARED


def compose_cfg(tmp_path: Path, overrides: list[str]) -> DictConfig:
    return compose_run(overrides, tmp_path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
