"""The fused CPU training path of the grouped per-variable GRNs (models/grouped_grn.py) computes the same
function and the same gradients as the plain path that inference and every export format use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepq.models.layers import GroupedScalarGRN
from deepq.models.tft import TFTNet


def _grn(n_vars: int, d: int, seed: int = 0) -> GroupedScalarGRN:
    torch.manual_seed(seed)
    m = GroupedScalarGRN(n_vars, d, d)
    with torch.no_grad():  # move off the init (zeros, ones) so every parameter's gradient is exercised
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.train()


def _features(sample_panel, n_rows: int, n_vars: int) -> torch.Tensor:
    """Real scalars: standardised daily log returns and log volumes of the sample, one variable per column."""
    close = np.log(sample_panel["close"])
    ret = np.diff(close, axis=0)
    ret = ret[np.isfinite(ret)]
    z = (ret - ret.mean()) / ret.std()
    x = np.resize(z, n_rows * n_vars).reshape(n_rows, n_vars)
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("n_rows, chunk, grad_x", [(1000, 256, False), (257, 64, True), (50, 256, True)])
def test_fused_equals_plain_values_and_gradients(sample_panel, n_rows, chunk, grad_x):
    m = _grn(7, 8)
    m.chunk = chunk  # rows not a multiple of the chunk: the last, shorter block is covered
    x = _features(sample_panel, n_rows, 7).requires_grad_(grad_x)
    w = torch.softmax(torch.randn(n_rows, 7), dim=-1).requires_grad_()
    g_out = torch.randn(n_rows, 8)
    inputs = [x, w] if grad_x else [w]
    assert m.fused_applies(x)
    fused = m.combine(x, w)
    plain = m.combine_plain(x, w)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    wrt = [*inputs, *m.parameters()]
    g_fused = torch.autograd.grad(fused, wrt, g_out)
    g_plain = torch.autograd.grad(plain, wrt, g_out)
    names = [n for n, _ in [("x", 0), ("w", 0)][2 - len(inputs) :]] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, g_fused, g_plain, strict=True):
        scale = b.abs().max().item()
        assert (a - b).abs().max().item() <= 1e-4 * max(scale, 1.0), f"gradient of {name} differs"


def test_two_forwards_in_flight_do_not_share_buffers():
    """The buffer pool hands a buffer out again only after its backward returned it."""
    m = _grn(5, 8, seed=1)
    x1, x2 = torch.randn(300, 5), torch.randn(300, 5) * 2
    w = torch.softmax(torch.randn(300, 5), dim=-1).requires_grad_()
    out = (m.combine(x1, w) ** 2).sum() + (m.combine(x2, w) ** 2).sum()  # both forwards before any backward
    ref = (m.combine_plain(x1, w) ** 2).sum() + (m.combine_plain(x2, w) ** 2).sum()
    g = torch.autograd.grad(out, [w, m.w2])
    g_ref = torch.autograd.grad(ref, [w, m.w2])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # and a third step reuses the pool's buffers without changing results
    again = torch.autograd.grad((m.combine(x1, w) ** 2).sum(), [m.w2])[0]
    first = torch.autograd.grad((m.combine_plain(x1, w) ** 2).sum(), [m.w2])[0]
    torch.testing.assert_close(again, first, atol=1e-4, rtol=1e-4)


def test_fused_path_only_where_it_applies():
    m = _grn(3, 4)
    x = torch.randn(10, 3)
    assert m.fused_applies(x)
    with torch.no_grad():
        assert not m.fused_applies(x)  # inference
    assert not m.eval().fused_applies(x)  # export runs in eval mode
    m.train()
    assert not m.fused_applies(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not m.fused_applies(x)


def test_tft_training_gradients_match_plain_path(sample_panel):
    """A whole TFT step (dropout off): the same loss and parameter gradients with and without the fused path."""
    torch.manual_seed(0)
    net = TFTNet(n_features=6, n_outputs=1, lookback=20, n_known=4, n_symbols=5, n_sectors=2, dropout=0.0)
    net.train()
    B = 16
    x = _features(sample_panel, B * 20, 6).view(B, 20, 6)
    static = torch.stack([torch.arange(B) % 5, torch.arange(B) % 2], dim=1)
    known = torch.randn(B, 21, 4)
    y = torch.randn(B)

    def grads(fused: bool) -> tuple[float, list[torch.Tensor]]:
        net.past_select.vars.fused = net.future_select.vars.fused = fused
        loss = ((net(x, static, known)[:, 0] - y) ** 2).mean()
        return loss.item(), list(torch.autograd.grad(loss, list(net.parameters()), allow_unused=True))

    loss_f, g_f = grads(True)
    loss_p, g_p = grads(False)
    assert loss_f == pytest.approx(loss_p, rel=1e-5)
    for (name, _), a, b in zip(net.named_parameters(), g_f, g_p, strict=True):
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        assert (a - b).abs().max().item() <= 1e-4 * max(b.abs().max().item(), 1e-3), name


def test_cpu_inference_in_row_blocks_equals_one_pass(sample_panel):
    """Eager no-grad CPU inference runs in cache-sized row blocks: the same numbers as one plain pass (the
    path TorchScript tracing and every export take), including a last partial block."""
    m = _grn(5, 8).eval()
    m.chunk = 64
    x = _features(sample_panel, 1000, 5)
    w = torch.softmax(_features(sample_panel, 1000, 5).flip(0), dim=-1)
    with torch.no_grad():
        assert m.chunked_applies(x) and not m.chunked_applies(x[:64])
        blocked = m.combine(x, w)
        torch.testing.assert_close(blocked, m.combine_plain(x, w), rtol=0, atol=1e-6)
    assert not m.chunked_applies(x)  # with gradients: the training paths


def test_tft_inference_computes_each_distinct_window_step_once(sample_panel, monkeypatch):
    """Overlapping windows (one symbol, consecutive dates) share steps; eager inference runs the past
    variable selection once per distinct (step inputs, static ids) row and gives the plain pass's outputs
    and weights. Export tracing takes the plain pass."""
    from deepq.models import layers
    from deepq.models.layers import unique_rows

    torch.manual_seed(0)
    net = TFTNet(n_features=6, n_outputs=2, lookback=20, n_known=4, future_days=3, n_symbols=4, n_sectors=2)
    with torch.no_grad():
        net.proj.weight.normal_()  # the zero-initialised head would make any two paths agree
    net.eval()
    T, N, L = 80, 4, 20
    cells = _features(sample_panel, T * N, 6).view(T, N, 6)
    calendar = torch.randn(T + 4, 4)
    t = torch.arange(L - 1, T).repeat(N)
    s = torch.arange(N).repeat_interleave(T - L + 1)  # symbol by symbol, in date order
    x = cells[t[:, None] + torch.arange(-L + 1, 1), s[:, None]]
    static = torch.stack([s, s % 2], dim=1)
    known = calendar[t[:, None] + torch.arange(-L + 1, 4)]

    calls: list[int] = []
    real = net.past_select.forward
    monkeypatch.setattr(
        net.past_select, "forward", lambda inp, c: calls.append(inp.numel() // inp.shape[-1]) or real(inp, c)
    )
    with torch.no_grad():
        out, weights = net._run(x, static, known)
        assert calls == [T * N]  # one row per panel cell, not per (window, step): 80 x 4 vs 244 x 20
        net.distinct_rows = False
        out_p, weights_p = net._run(x, static, known)
    net.distinct_rows = True
    net._run(x[:8], static[:8], known[:8])  # gradients on (saliency): every (window, step) row, plain
    assert calls[-1] == 8 * L
    torch.testing.assert_close(out, out_p, rtol=0, atol=1e-6)
    torch.testing.assert_close(weights["past"], weights_p["past"], rtol=0, atol=1e-6)
    assert out.abs().max() > 0.1

    keys = torch.tensor([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], dtype=torch.int32)
    first, inverse = unique_rows(keys)
    assert torch.equal(keys[first[inverse]], keys) and sorted(first.tolist()) == [0, 1, 3]

    monkeypatch.setitem(layers._MULTIPLIERS, (2, "cpu"), torch.zeros(2, dtype=torch.int64))
    assert unique_rows(keys) is None  # every row hashes alike: the check refuses rather than merge them
