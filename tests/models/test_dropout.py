"""The CPU dropout (a uniform fill instead of aten::bernoulli_) and the layer-by-layer nn.LSTM it feeds: the same
distribution as F.dropout, the same function and gradients as nn.LSTM given the same masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepq.models.layers import Dropout, dropout, lstm_sequence


def test_dropout_keeps_1_minus_p_scaled_and_is_the_identity_in_eval():
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = dropout(x, 0.3)
    kept = y > 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.003)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))  # survivors scaled by 1 / (1 - p)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d y / d x is the scaled mask itself
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    module = Dropout(0.3)
    assert repr(module) == repr(nn.Dropout(0.3)) and module.state_dict() == {}
    assert module.eval()(x) is x
    a, b = dropout(torch.ones(1000), 0.5), dropout(torch.ones(1000), 0.5)
    assert not torch.equal(a, b)  # a fresh mask per call


def single_layers(rnn: nn.LSTM) -> list[nn.LSTM]:
    """nn.LSTM's layers as one-layer LSTMs sharing its weights."""
    layers = []
    for k in range(rnn.num_layers):
        one = nn.LSTM(rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(one, f"{name}_l0", getattr(rnn, f"{name}_l{k}"))
        layers.append(one)
    return layers


def test_lstm_sequence_runs_the_layers_with_dropout_between_them():
    torch.manual_seed(0)
    rnn = nn.LSTM(10, 8, num_layers=3, batch_first=True, dropout=0.3).train()
    x = torch.randn(5, 7, 10)
    layers = single_layers(rnn)  # before the seed: building modules draws random numbers too
    torch.manual_seed(1)
    got = lstm_sequence(rnn, x)
    torch.manual_seed(1)  # the same masks, drawn in the same order
    want = x
    for k, layer in enumerate(layers):
        want = layer(dropout(want, 0.3) if k else want)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in rnn.named_parameters()}
    rnn.zero_grad()
    want.square().sum().backward()  # the single layers share rnn's parameters: same gradients again
    for n, p in rnn.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-6, atol=1e-7)


def test_lstm_sequence_is_nn_lstm_outside_cpu_training_with_dropout():
    torch.manual_seed(0)
    rnn = nn.LSTM(6, 4, num_layers=2, batch_first=True, dropout=0.2)
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(lstm_sequence(rnn.eval(), x), rnn(x)[0], rtol=0, atol=0)
    rnn.train().dropout = 1e-12  # the layered path, no unit dropped: exactly nn.LSTM
    torch.testing.assert_close(lstm_sequence(rnn, x), rnn.eval()(x)[0], rtol=0, atol=0)
