"""`deepq train` writes every configured export format beside TorchScript, each with the feature list and the
normaliser's parameters, and the artifacts agree with each other on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepq.export.program import load_onnx, load_program
from deepq.export.torchscript import load_torchscript
from deepq.tasks.train import train
from tests.conftest import compose_cfg


def _run(tmp_path, formats: str) -> dict:
    overrides = ["debug=fdr", "split.max_folds=1", "registry.enabled=false", f"export_formats={formats}"]
    train(compose_cfg(tmp_path, overrides))
    return json.loads((tmp_path / "model.json").read_text())


def _check(tmp_path, meta: dict, twins: list[str]) -> None:
    scripted, _ = load_torchscript(tmp_path / "model.pt")
    assert len(meta["features"]) == 32 and len(meta["normalizer"]["center"]) == 32
    x = torch.randn(7, meta["lookback"], len(meta["features"]))  # another batch size than the export's
    with torch.no_grad():
        ref = scripted(x)
    for fmt in twins:
        path = tmp_path / {"torch_export": "model.pt2", "onnx": "model.onnx"}[fmt]
        model, side = load_program(path) if fmt == "torch_export" else load_onnx(path)
        assert side["format"] == fmt and side["features"] == meta["features"]
        assert side["normalizer"] == meta["normalizer"]
        with torch.no_grad():
            np.testing.assert_allclose(model(x).numpy(), ref.numpy(), atol=1e-5)


def test_train_exports_torchscript_and_torch_export(tmp_path):
    meta = _run(tmp_path, "[torch_export]")  # TorchScript is always written: the registry reads model.pt
    assert not (tmp_path / "model.onnx").exists()
    _check(tmp_path, meta, ["torch_export"])


@pytest.mark.slow
def test_train_exports_all_three_formats(tmp_path):
    meta = _run(tmp_path, "[torchscript,torch_export,onnx]")
    _check(tmp_path, meta, ["torch_export", "onnx"])
