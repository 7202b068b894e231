"""TorchScript export of a Forecaster, with the metadata a consumer needs to reproduce offline predictions.

The sequence length is fixed at export time (LSTM traces do not generalise over it reliably); the batch
dimension is free. `model.pt` sits beside `model.json` (features, lookback, normaliser, head outputs).
`example` is one tensor (networks reading x only) or a tuple of tensors in the order of `net.inputs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepq.utils.io import atomic_path, sha256_file, write_json_atomic

Example = torch.Tensor | tuple[torch.Tensor, ...]


def as_tuple(example: Example) -> tuple[torch.Tensor, ...]:
    return example if isinstance(example, tuple) else (example,)


def input_shapes(example: Example) -> list[list[int | str]]:
    return [["batch", *t.shape[1:]] for t in as_tuple(example)]


def export_torchscript(model: nn.Module, example: Example, path: str | Path, meta: dict[str, Any]) -> Path:
    path = Path(path)
    model = model.eval()
    with torch.no_grad():
        scripted = torch.jit.trace(model, as_tuple(example), check_trace=True)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp))
    shapes = input_shapes(example)
    meta = dict(meta) | {
        "format": "torchscript",
        "input_shape": shapes[0],
        "input_shapes": shapes,
        "sha256": sha256_file(path),
    }
    write_json_atomic(meta, path.with_suffix(".json"))
    return path


def load_torchscript(path: str | Path, verify: bool = True) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if verify and meta.get("sha256") and sha256_file(path) != meta["sha256"]:
        raise ValueError(
            f"{path}: sha256 does not match {path.with_suffix('.json')}: the artifact was modified"
        )
    model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    return model, meta
