"""The Python face of deepq: the names `import deepq` exposes, over the very code the CLI runs.

    run = deepq.train(overrides=["debug=fdr", "data.symbols=[AAPL,JPM,XOM,SPY]"])
    run.metrics, run.predictions, run.portfolios, run.report
    model = deepq.load_model("lstm_returns:1")
    model.predict(as_of="2024-06-28", symbols=["AAPL"])

Kept out of `deepq/__init__.py` so `import deepq` stays cheap: the package resolves these names lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from deepq.data.panel import Panel


@dataclass(frozen=True)
class Run:
    """A finished `deepq train` output folder."""

    path: Path

    @cached_property
    def config(self) -> DictConfig:
        cfg = OmegaConf.load(self.path / "config.yaml")
        assert isinstance(cfg, DictConfig)
        return cfg

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: `summary` (model/metric -> value), `per_fold`, `by_model`, `folds`, `run`."""
        import json

        return json.loads((self.path / "metrics.json").read_text())

    @property
    def predictions(self) -> pd.DataFrame:
        """Out-of-fold predictions of the model and its baselines (date, symbol, fold, model, y, pred, ...)."""
        return pd.read_parquet(self.path / "predictions.parquet")

    @property
    def portfolios(self) -> pd.DataFrame:
        """Daily portfolio returns after costs (empty when the run built none)."""
        path = self.path / "portfolio_returns.parquet"
        return pd.read_parquet(path) if path.is_file() else pd.DataFrame()

    @property
    def report(self) -> Path:
        return self.path / "report.html"


def train(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> Run:
    """`deepq train <overrides>` in this process; returns the run. Default output: outputs/api/<timestamp>."""
    import time

    from deepq.tasks.hydra_utils import compose_run, project_root
    from deepq.tasks.train import train as train_task

    out = Path(
        output_dir or project_root() / "outputs" / "api" / time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime())
    ).resolve()
    train_task(compose_run(overrides, out))
    return Run(out)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"{path} is not a finished deepq run (no metrics.json)")
    return Run(path)


@dataclass(frozen=True)
class Model:
    """A registered version: `predict` scores it on the data as it is now (deepq.tasks.predict)."""

    ref: str | None
    registry: str | Path | None = None

    def predict(
        self,
        as_of: str | Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        since_training_end: bool = False,
        data: str | Mapping[str, Any] | None = None,
        overrides: Sequence[str] = (),
    ) -> pd.DataFrame:
        from deepq.tasks.predict import predict

        dates = [as_of] if isinstance(as_of, str) else list(as_of or [])
        return predict(
            self.ref, dates, start, end, since_training_end, symbols, self.registry, data, overrides
        )


def load_model(ref: str | None = None, registry: str | Path | None = None) -> Model:
    """A registry reference ('lstm_returns:1', 'lstm_returns:production'; None = production, else the
    latest candidate). Checked now, so a wrong reference fails here rather than at predict."""
    from deepq.export.registry import Registry, default_root

    mv = Registry(registry or default_root()).resolve(ref)
    return Model(mv.ref, registry)


def panel(
    data: str = "sample",
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    **fields: Any,
) -> Panel:
    """The price panel of a conf/data config (sample, cache, shared), cut to symbols and dates."""
    from hydra.utils import instantiate

    from deepq.tasks.hydra_utils import CONFIG_DIR

    node = OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{data}.yaml")
    picked = {"symbols": list(symbols) if symbols else None, "start": start, "end": end}
    node = OmegaConf.merge(node, {k: v for k, v in picked.items() if v is not None}, fields)
    return instantiate(node)
