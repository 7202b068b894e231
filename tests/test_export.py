"""TorchScript export parity: the reloaded artifact gives the Lightning model's outputs."""

from __future__ import annotations

import pytest
import torch

from deepq.export.torchscript import export_torchscript, load_torchscript
from deepq.models.heads import ClassHead, PointHead
from deepq.models.lstm import LSTMNet
from deepq.training.module import ForecastModule


@pytest.mark.parametrize(
    "head", [PointHead(), ClassHead(2), ClassHead(3)], ids=["point", "direction", "signal"]
)
def test_torchscript_parity(tmp_path, head):
    torch.manual_seed(0)
    net = LSTMNet(n_features=7, n_outputs=head.n_params, hidden_size=16)
    for p in net.parameters():  # the zero-initialised output layer would make parity trivial
        torch.nn.init.normal_(p, std=0.3)
    module = ForecastModule(net, head, optimizer=lambda p: torch.optim.Adam(p)).eval()
    x = torch.randn(4, 20, 7)
    path = export_torchscript(module.model, x, tmp_path / "m.pt", {"task": "t"})
    loaded, meta = load_torchscript(path)
    x2 = torch.randn(33, 20, 7)  # another batch size than the trace's
    with torch.no_grad():
        expected = module(x2)
    torch.testing.assert_close(loaded(x2), expected, atol=1e-5, rtol=0)
    assert expected.abs().sum() > 0 and meta["input_shape"] == ["batch", 20, 7]


def test_tampered_artifact_is_rejected(tmp_path):
    net = LSTMNet(3, 1, hidden_size=4)
    path = export_torchscript(
        ForecastModule(net, PointHead(), torch.optim.Adam).model, torch.randn(2, 5, 3), tmp_path / "m.pt", {}
    )
    with open(path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        load_torchscript(path)
