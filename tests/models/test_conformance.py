"""Conformance: every registered network x every task, through the real configs:
fast_dev_run-sized fit -> predict -> export -> reload -> the same outputs.

Quick (default): all 20 pairs fit, predict and round-trip TorchScript; one pair per network (each task
covered once) also round-trips ONNX (TorchScript-based exporter, ~50x faster here), and the two pure-RNN
networks (the export trap STACK.md names) round-trip torch.export; torch.export of a TFT alone takes ~15 s.
Slow (-m slow): every pair through all three formats, ONNX through the dynamo exporter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepq.dataset.context import PanelData
from deepq.dataset.folds import Fold
from deepq.export.program import export_all, load_onnx, load_program
from deepq.export.torchscript import as_tuple, load_torchscript
from deepq.models import NETWORKS
from deepq.tasks.common import build_model, build_panel_data
from deepq.training.module import batch_inputs
from deepq.training.neural import NeuralModel
from tests.conftest import compose_cfg

TASKS = ("returns", "returns_quantile", "direction", "signal", "risk")
DIAGONAL = {
    ("lstm", "returns"),
    ("transformer", "direction"),
    ("tft", "risk"),
    ("deepar", "signal"),
    ("master", "returns_quantile"),
}
FOLD = Fold(0, (100, 400), (402, 440), (442, 520))
TINY = [
    "debug=tiny",
    "features.names=[ret_1,ret_5,ret_21,vol_21,rsi_14,ma_gap_20,volume_z_21]",
    "datamodule.lookback=20",
    "datamodule.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "+trainer.enable_progress_bar=false",
    "model.hidden_size=8",
    "logger=csv",
]
_DATA: dict[str, PanelData] = {}


def _build(tmp: Path, model: str, task: str, extra: tuple[str, ...] = ()) -> tuple[NeuralModel, PanelData]:
    cfg = compose_cfg(tmp, [*TINY, f"model={model}", f"task={task}", *extra])
    if task not in _DATA:
        _DATA[task] = build_panel_data(cfg)
    nm = build_model(cfg)
    assert isinstance(nm, NeuralModel)
    nm.callbacks_factory = None  # no progress bar, no early stopping: one epoch
    return nm, _DATA[task]


def _fit_predict_export(
    tmp_path: Path, model: str, task: str, formats: tuple[str, ...], dynamo: bool, extra: tuple[str, ...] = ()
) -> None:
    torch.manual_seed(0)
    nm, data = _build(tmp_path, model, task, extra)
    nm.fit(data, FOLD)
    assert np.isfinite(nm.best_val_loss[0]), "validation loss is not finite"
    index = data.split_index(FOLD, "test")[:64]
    assert len(index) == 64
    p = nm.predict(data, index)
    head = nm.module.model.head  # type: ignore[union-attr]
    assert p.pred.shape == (64,) and np.isfinite(p.pred).all() and np.isfinite(p.score).all()
    out = nm.predict_outputs(index)
    assert out.shape == (64, len(head.output_names)) and np.isfinite(out).all()
    if task == "returns_quantile" and model != "deepar":
        assert (np.diff(out, axis=1) >= 0).all(), "quantiles cross"
    if task == "risk":
        assert (out[:, 2] >= out[:, 1]).all() and (out[:, 1] > 0).all(), "CVaR >= VaR > 0"
    if task in ("direction", "signal"):
        assert ((out >= 0) & (out <= 1)).all()

    net, example, meta = nm.exportable(index)
    paths = export_all(net, example, tmp_path / "model", meta | {"task": task}, formats, onnx_dynamo=dynamo)
    other = index[-37:]  # another batch size than the one traced
    assert nm.dm is not None
    batch = nm.dm.gather(torch.as_tensor(other[:, 0]), torch.as_tensor(other[:, 1]))
    inputs = batch_inputs(batch, net.inputs)
    with torch.no_grad():
        expected = net(*inputs)
    loaders = {"torchscript": load_torchscript, "torch_export": load_program, "onnx": load_onnx}
    for fmt, path in paths.items():
        loaded, loaded_meta = loaders[fmt](path)
        with torch.no_grad():
            got = loaded(*inputs)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=f"{model}/{task}/{fmt}")
        assert loaded_meta["inputs"] == list(net.inputs) and loaded_meta["outputs"] == list(head.output_names)
        assert loaded_meta["input_shapes"] == [["batch", *t.shape[1:]] for t in as_tuple(example)]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", sorted(NETWORKS))
def test_fit_predict_export(tmp_path, model, task):
    formats: tuple[str, ...] = ("torchscript",)
    if (model, task) in DIAGONAL:
        formats = (
            ("torchscript", "onnx", "torch_export")
            if model in ("lstm", "deepar")
            else ("torchscript", "onnx")
        )
    _fit_predict_export(tmp_path, model, task, formats, dynamo=False)


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_the_cross_stock_option_fits_predicts_and_exports(tmp_path, model):
    """`model.net.cross_layers=1`: the encoder gains set-attention across each date's stocks (reads t)."""
    extra = ("model.net.cross_layers=1", "datamodule.batching=date", "ranking=ic")
    _fit_predict_export(tmp_path, model, "returns", ("torchscript", "onnx"), dynamo=False, extra=extra)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", sorted(NETWORKS))
def test_fit_predict_export_all_formats(tmp_path, model, task):
    _fit_predict_export(tmp_path, model, task, ("torchscript", "torch_export", "onnx"), dynamo=True)


def test_every_task_has_a_diagonal_export():
    assert {t for _, t in DIAGONAL} | {"returns_quantile"} >= set(TASKS) - {"returns_quantile"}
    assert {m for m, _ in DIAGONAL} == set(NETWORKS)
