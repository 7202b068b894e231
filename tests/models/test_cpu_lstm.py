"""The compiled CPU LSTM layer (models/cpu_lstm.py + cpu_lstm.cc) computes nn.LSTM's function and gradients,
trains DeepAR along the same loss curve as nn.LSTM, and falls back to nn.LSTM where its kernel cannot build."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from deepq.models import cpu_lstm
from deepq.models.deepar import DeepARNet
from deepq.models.heads import DistributionHead
from deepq.models.layers import lstm_sequence

pytestmark = pytest.mark.skipif(cpu_lstm.compiler() is None, reason="no C++ compiler to build the kernel")


def _returns(sample_panel, shape: tuple[int, ...]) -> torch.Tensor:
    """Real inputs: the sample's standardised daily log returns, tiled to `shape`."""
    ret = np.diff(np.log(sample_panel["close"]), axis=0)
    ret = ret[np.isfinite(ret)]
    return torch.tensor(np.resize((ret - ret.mean()) / ret.std(), int(np.prod(shape))).reshape(shape)).float()


def _lstm(n_in: int, hidden: int, layers: int, dropout_p: float = 0.0, seed: int = 0) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(n_in, hidden, num_layers=layers, batch_first=True, dropout=dropout_p).train()


def test_kernel_builds_here():
    """CI's machines have g++: the fast path must be what they test, not the fallback."""
    assert cpu_lstm.kernel(32) is not None
    assert cpu_lstm.kernel(16).lstm_hidden_size() == 16


@pytest.mark.parametrize("batch, hidden, layers", [(7, 32, 2), (64, 16, 1), (3, 64, 3)])
def test_layers_equal_nn_lstm_values_and_gradients(sample_panel, batch, hidden, layers):
    """Odd batches run the kernel's one-window tail; the static input's gradient flows through its bias."""
    rnn = _lstm(13, hidden, layers)
    x = _returns(sample_panel, (batch, 30, 9)).requires_grad_()
    static = torch.randn(batch, 4, requires_grad=True)
    out = lstm_sequence(rnn, x, static)
    upstream = torch.randn_like(out)
    inputs = [x, static, *rnn.parameters()]
    got = torch.autograd.grad((out * upstream).sum(), inputs)
    want_out = rnn(torch.cat([x, static[:, None].expand(-1, 30, -1)], dim=-1))[0]
    want = torch.autograd.grad((want_out * upstream).sum(), inputs)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


@pytest.fixture
def same_dropout(monkeypatch):
    """One dropout for both paths, its mask independent of memory layout: the compiled path draws its masks
    from a hash (tested below), the plain one from a uniform fill in memory order of nn.LSTM's strided
    output, so under one seed the two would drop different units."""

    def drop(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
        return x * (torch.rand(x.shape) >= p) / (1 - p) if training and p else x

    monkeypatch.setattr("deepq.models.layers.dropout", drop)
    monkeypatch.setattr("deepq.models.cpu_lstm.dropout", lambda lib, x, p: drop(x, p))


def test_dropout_between_layers_matches_the_layered_nn_lstm(sample_panel, monkeypatch, same_dropout):
    """With dropout, the same masks in the same order: the compiled path equals nn.LSTM run layer by layer."""
    rnn = _lstm(8, 32, 3, dropout_p=0.3)
    x = _returns(sample_panel, (10, 20, 8))
    torch.manual_seed(1)
    got = lstm_sequence(rnn, x)
    monkeypatch.setenv("DEEPQ_CPU_LSTM", "0")
    torch.manual_seed(1)
    want = lstm_sequence(rnn, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_deepar_trains_along_the_same_loss_curve(sample_panel, monkeypatch, same_dropout):
    """Twenty Adam steps of DeepAR (Student-t NLL on every step, dropout on) from the same seed: the compiled
    layer and nn.LSTM give the same losses step by step."""
    B, L, F = 32, 40, 6
    x = _returns(sample_panel, (B, L, F))
    y = _returns(sample_panel, (B, L + 1))[:, 1:] * 0.01
    y_past = torch.cat([torch.zeros(B, 1), y[:, :-1]], dim=1)
    static = torch.stack([torch.arange(B) % 5, torch.arange(B) % 3], dim=1)

    def curve() -> list[float]:
        torch.manual_seed(0)
        net, head = DeepARNet(F, 3, n_symbols=5, n_sectors=3, dropout=0.1).train(), DistributionHead()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        losses = []
        for _ in range(20):
            raw = net.forward_sequence(x, y_past, static)
            loss = head.loss(raw.reshape(-1, 3), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    fast = curve()
    monkeypatch.setenv("DEEPQ_CPU_LSTM", "0")
    plain = curve()
    assert fast[-1] < fast[0]  # it learns
    np.testing.assert_allclose(fast, plain, rtol=1e-4)


def test_only_float32_cpu_training_takes_the_kernel(monkeypatch):
    rnn = _lstm(5, 32, 2)
    x = torch.randn(4, 6, 5)
    calls: list[int] = []
    real = cpu_lstm.lstm_layer
    monkeypatch.setattr(cpu_lstm, "lstm_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    lstm_sequence(rnn, x)
    assert len(calls) == 2  # training: both layers
    with torch.no_grad():
        lstm_sequence(rnn, x)
    lstm_sequence(rnn.eval(), x)
    lstm_sequence(rnn.train().double(), x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lstm_sequence(rnn.float(), x)
    monkeypatch.setenv("DEEPQ_CPU_LSTM", "0")
    lstm_sequence(rnn, x)
    assert len(calls) == 2
    assert cpu_lstm.kernel(24) is None  # not a multiple of the kernel's vector width
    assert lstm_sequence(_lstm(5, 24, 2), x).shape == (4, 6, 24)


def test_the_build_is_cached_and_leaves_no_partial_file(tmp_path):
    lib = cpu_lstm.build(16, cpu_lstm.compiler(), tmp_path)
    assert lib is not None
    (built,) = tmp_path.iterdir()
    assert built.suffix == ".so" and built.name.startswith("cpu_lstm_h16_")
    stamp = built.stat().st_mtime_ns
    cpu_lstm.build.cache_clear()  # a new process: finds the file, does not compile again
    assert cpu_lstm.build(16, cpu_lstm.compiler(), tmp_path) is not None
    assert built.stat().st_mtime_ns == stamp and list(tmp_path.iterdir()) == [built]


def test_a_failed_build_falls_back_to_nn_lstm(tmp_path, caplog, monkeypatch):
    broken = tmp_path / "broken-cxx"
    broken.write_text("#!/bin/sh\necho 'error: this compiler is broken' >&2\nexit 1\n")
    broken.chmod(0o755)
    folder = tmp_path / "kernels"
    with caplog.at_level(logging.WARNING, logger=cpu_lstm.__name__):
        assert cpu_lstm.build(32, str(broken), folder) is None
        assert cpu_lstm.build(32, str(tmp_path / "missing-cxx"), folder) is None
        assert cpu_lstm.build(32, None, folder) is None
    assert "this compiler is broken" in caplog.text and "no C++ compiler" in caplog.text
    assert not folder.exists() or not list(folder.iterdir())  # no partial .so left behind
    monkeypatch.setenv("CXX", str(broken))
    monkeypatch.setenv("DEEPQ_KERNEL_DIR", str(folder))
    rnn = _lstm(5, 32, 2)
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(lstm_sequence(rnn, x), rnn(x)[0], rtol=0, atol=0)  # nn.LSTM itself


def test_a_second_backward_is_refused_not_computed_from_reused_buffers():
    rnn = _lstm(5, 32, 1)
    out = lstm_sequence(rnn, torch.randn(3, 4, 5))
    loss = out.square().sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="differentiate it once"):
        loss.backward()


def test_the_kernels_dropout_keeps_1_minus_p_scaled_and_backs_through_the_same_mask():
    lib = cpu_lstm.kernel(32)
    x = torch.rand(1000, 1000) + 0.5  # no zeros: a zero in the output is a dropped unit
    torch.manual_seed(3)
    out = cpu_lstm.dropout(lib, x.requires_grad_(), 0.3)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.002)
    torch.testing.assert_close(out[kept], x[kept] / 0.7)
    assert (
        abs(np.corrcoef(kept[:, :-1].flatten(), kept[:, 1:].flatten())[0, 1]) < 0.01
    )  # neighbours independent
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, kept.float() / 0.7)  # the backward recomputes the same mask
    torch.manual_seed(3)
    torch.testing.assert_close(cpu_lstm.dropout(lib, x, 0.3), out)  # torch's seed fixes the mask
    assert not torch.equal(cpu_lstm.dropout(lib, x, 0.3) != 0, kept)  # and the next draw is another mask
    assert cpu_lstm.dropout(lib, x, 0.0) is x
