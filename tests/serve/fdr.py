"""One small real training run (debug=fdr on a slice of the sample), shared by tests/serve, tests/monitor
and tests/export within a pytest session: it is trained once, then registered into fresh registries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deepq.export.registry import Registry

SYMBOLS = "[AAPL,JPM,XOM,JNJ,WMT,GE,NEE,AMT,NFLX,SPY,'^GSPC']"
OVERRIDES = [
    "debug=fdr",
    "data.start=2012-01-01",
    f"data.symbols={SYMBOLS}",
    "datamodule.lookback=20",
    "model.hidden_size=8",
    "registry.enabled=true",  # train registers its export as a candidate (root set per session below)
]
# a TFT (inputs x, static ids, known calendar) as small and short as still trains: the multi-input path
TFT_OVERRIDES = [
    "debug=fdr",
    "model=tft",
    "model.hidden_size=8",
    "data.start=2014-01-01",
    f"data.symbols={SYMBOLS}",
    "datamodule.lookback=10",
    "split.max_folds=1",
    "registry.enabled=true",
]
_RUN: dict[str, Path] = {}


def fdr_run_dir(factory: pytest.TempPathFactory) -> Path:
    if "dir" not in _RUN:
        from deepq.tasks.train import train
        from tests.conftest import compose_cfg

        out = factory.mktemp("serve_fdr")
        train(compose_cfg(out / "run", [*OVERRIDES, f"registry.root={out / 'registry'}"]))
        _RUN["dir"] = out / "run"
        _RUN["registry"] = out / "registry"
    return _RUN["dir"]


def train_registry(factory: pytest.TempPathFactory) -> Path:
    """The registry the training run registered itself into."""
    fdr_run_dir(factory)
    return _RUN["registry"]


def registry_with_run(root: Path, run_dir: Path) -> Registry:
    reg = Registry(root)
    reg.register_run(run_dir)
    return reg


def tft_run_dir(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run dir, the registry the run registered itself into) of the tiny TFT run, trained once per session."""
    if "tft" not in _RUN:
        from deepq.tasks.train import train
        from tests.conftest import compose_cfg

        out = factory.mktemp("serve_tft")
        train(compose_cfg(out / "run", [*TFT_OVERRIDES, f"registry.root={out / 'registry'}"]))
        _RUN["tft"], _RUN["tft_registry"] = out / "run", out / "registry"
    return _RUN["tft"], _RUN["tft_registry"]


def exported_fold_oof(run_dir: Path) -> pd.DataFrame:
    """The run's out-of-fold LSTM predictions on the last fold: the fold its exported model was fitted on."""
    frame = pd.read_parquet(run_dir / "predictions.parquet")
    lstm = frame[frame["model"] == "lstm"]
    return lstm[lstm["fold"] == lstm["fold"].max()]
