"""torch.export and ONNX export of a Forecaster, beside TorchScript (which upstream now marks deprecated).

Both fix the sequence length at export time (an LSTM's time dimension cannot be left dynamic) and leave the
batch dimension dynamic. Each artifact gets a sidecar `<artifact>.json` with the same metadata as TorchScript's
`model.json` (features, lookback, normaliser, input names and shapes, output names) plus its sha256.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepq.export.torchscript import Example, as_tuple, export_torchscript, input_shapes
from deepq.utils.io import atomic_path, sha256_file, write_json_atomic

FORMATS = ("torchscript", "torch_export", "onnx")
SUFFIX = {"torchscript": ".pt", "torch_export": ".pt2", "onnx": ".onnx"}


def sidecar(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def _input_names(model: nn.Module, n: int) -> list[str]:
    names = list(getattr(model, "inputs", ()))
    return names if len(names) == n else [f"input_{i}" for i in range(n)]


def _write_meta(path: Path, meta: dict[str, Any], fmt: str, model: nn.Module, example: Example) -> None:
    shapes = input_shapes(example)
    meta = dict(meta) | {
        "format": fmt,
        "input_names": _input_names(model, len(shapes)),
        "input_shape": shapes[0],
        "input_shapes": shapes,
        "sha256": sha256_file(path),
    }
    write_json_atomic(meta, sidecar(path))


def _read_meta(path: Path, verify: bool) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(sidecar(path).read_text())
    if verify and meta.get("sha256") and sha256_file(path) != meta["sha256"]:
        raise ValueError(f"{path}: sha256 does not match {sidecar(path)}: the artifact was modified")
    return meta


def _dynamic_batch(example: Example) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    return tuple({0: batch} for _ in as_tuple(example))


def export_program(model: nn.Module, example: Example, path: str | Path, meta: dict[str, Any]) -> Path:
    """A `torch.export` ExportedProgram (.pt2), batch dynamic."""
    path = Path(path)
    model = model.eval()
    with torch.no_grad():
        program = torch.export.export(model, as_tuple(example), dynamic_shapes=_dynamic_batch(example))
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp))
    _write_meta(path, meta, "torch_export", model, example)
    return path


def load_program(path: str | Path, verify: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    path = Path(path)
    meta = _read_meta(path, verify)
    return torch.export.load(str(path)).module(), meta


def export_onnx(
    model: nn.Module, example: Example, path: str | Path, meta: dict[str, Any], dynamo: bool = True
) -> Path:
    """ONNX, batch dynamic. `dynamo=True` goes through torch.export (upstream's default); `dynamo=False` is the
    TorchScript-based exporter, ~50x faster here and used by the quick conformance tests."""
    path = Path(path)
    model = model.eval()
    args = as_tuple(example)
    names = _input_names(model, len(args))
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        if dynamo:
            torch.onnx.export(
                model, args, str(tmp), dynamo=True, input_names=names, output_names=["out"],
                dynamic_shapes=_dynamic_batch(example), verbose=False,
            )  # fmt: skip
        else:
            axes = {n: {0: "batch"} for n in [*names, "out"]}
            torch.onnx.export(
                model, args, str(tmp), dynamo=False, input_names=names, output_names=["out"],
                dynamic_axes=axes, opset_version=17,
            )  # fmt: skip
    _write_meta(path, meta, "onnx", model, example)
    return path


class OnnxModel:
    """An onnxruntime session called like the torch model: tensors in, a tensor out."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            n: np.ascontiguousarray(t.detach().cpu().numpy()) for n, t in zip(self.names, inputs, strict=True)
        }
        return torch.from_numpy(self.session.run(None, feed)[0])


def load_onnx(path: str | Path, verify: bool = True) -> tuple[OnnxModel, dict[str, Any]]:
    path = Path(path)
    meta = _read_meta(path, verify)
    return OnnxModel(path), meta


def export_all(
    model: nn.Module,
    example: Example,
    stem: str | Path,
    meta: dict[str, Any],
    formats: Sequence[str] = FORMATS,
    onnx_dynamo: bool = True,
) -> dict[str, Path]:
    """Every requested format as `<stem>.pt` (+ `<stem>.json`), `<stem>.pt2`, `<stem>.onnx` (+ `<...>.json`)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {FORMATS}")
    stem = Path(stem)
    out: dict[str, Path] = {}
    for fmt in formats:
        path = stem.with_name(stem.name + SUFFIX[fmt])
        if fmt == "torchscript":
            out[fmt] = export_torchscript(model, example, path, meta)
        elif fmt == "torch_export":
            out[fmt] = export_program(model, example, path, meta)
        else:
            out[fmt] = export_onnx(model, example, path, meta, dynamo=onnx_dynamo)
    return out
