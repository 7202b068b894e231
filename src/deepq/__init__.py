"""deepq: deep-learning forecasting for equity markets.

The Python API (docs/python.md): `train`, `load_run`, `load_model`, `panel`, `features.compute`. They are
resolved on first use, so `import deepq` loads neither torch nor Hydra.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "features", "load_model", "load_run", "panel", "train"]

_API = {"train", "load_run", "load_model", "panel", "Run", "Model"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("deepq.api"), name)
    if name == "features":
        return importlib.import_module("deepq.features")
    raise AttributeError(f"module 'deepq' has no attribute {name!r}")
