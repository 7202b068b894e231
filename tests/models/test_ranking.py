"""Date-batched sampling, the per-date ranking losses and the cross-stock network's defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepq.dataset.datamodule import DateBatches
from deepq.models.heads import RankHead
from deepq.models.master import MasterNet
from deepq.models.ranking import dense_by_date, ranking_loss


def _dates(rng: np.random.Generator, n_dates: int = 6) -> np.ndarray:
    return np.sort(np.repeat(np.arange(100, 100 + n_dates), rng.integers(5, 12, n_dates)))


def test_date_batches_hold_whole_dates_each_once_per_epoch_seeded(rng):
    t = _dates(rng, 11)
    sampler = DateBatches(t, dates_per_batch=3, shuffle=True, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    seen = np.concatenate([b.numpy() for b in batches])
    assert sorted(seen) == list(range(len(t)))  # every window exactly once
    for b in batches:
        dates = t[b.numpy()]
        assert np.all(np.diff(dates) >= 0) and len(np.unique(dates)) <= 3
        for d in np.unique(dates):  # a date is never split across batches
            assert (dates == d).sum() == (t == d).sum()
    again = [b.numpy() for b in DateBatches(t, 3, shuffle=True, seed=7)]
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(again, batches, strict=True))
    assert not all(np.array_equal(a, b.numpy()) for a, b in zip(list(sampler), batches, strict=True))
    capped = list(DateBatches(t, 3, shuffle=True, seed=7, max_dates=4))
    assert len(np.unique(t[np.concatenate(capped)])) == 4
    with pytest.raises(ValueError, match="sorted by date"):
        DateBatches(t[::-1].copy(), 3, shuffle=False)


def test_dense_by_date_is_the_padded_view_of_a_ragged_batch(rng):
    t = torch.as_tensor(rng.permutation(_dates(rng)))
    v = torch.randn(len(t), 3)
    dense, mask = dense_by_date(v, t)
    dates = torch.unique(t)
    assert dense.shape[:2] == mask.shape == (len(dates), int(torch.bincount(t - 100).max()))
    for i, d in enumerate(dates):
        torch.testing.assert_close(dense[i][mask[i]], v[t == d])  # rows keep their order within a date
    assert (dense[~mask] == 0).all()


def _per_date_pearson(s: np.ndarray, y: np.ndarray, t: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(s[t == d], y[t == d])[0, 1] for d in np.unique(t)]))


def test_losses_see_only_the_order_within_each_date(rng):
    t = torch.as_tensor(_dates(rng))
    y = torch.as_tensor(rng.normal(size=len(t)))
    s = (0.5 * y + torch.as_tensor(rng.normal(size=len(t)))).requires_grad_()
    ic = ranking_loss("ic", s, y, t)
    assert float(ic.detach()) == pytest.approx(
        -_per_date_pearson(s.detach().numpy(), y.numpy(), t.numpy()), abs=1e-6
    )
    market = torch.as_tensor(rng.normal(size=int(t.max()) + 1) * 10)[t]  # a different shift per date
    for name in ("ic", "listnet", "pairwise"):
        base = ranking_loss(name, s, y, t)
        assert float(ranking_loss(name, s + market, y, t)) == pytest.approx(float(base), abs=1e-9), name
        perfect, reversed_ = ranking_loss(name, y, y, t), ranking_loss(name, -y, y, t)
        assert float(perfect) < float(base) < float(reversed_), name
        (g,) = torch.autograd.grad(base, s)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_losses_are_finite_at_the_zero_start_and_skip_unlabelled_rows(rng):
    t = torch.as_tensor(_dates(rng))
    y = torch.as_tensor(rng.normal(size=len(t)), dtype=torch.float32)
    y[::4] = float("nan")  # rows of a date batch without a label (the date's whole universe is kept)
    zero = torch.zeros(len(t), requires_grad=True)
    for name in ("ic", "listnet", "pairwise"):
        loss = ranking_loss(name, zero, y, t)
        (g,) = torch.autograd.grad(loss, zero)
        assert torch.isfinite(loss) and torch.isfinite(g).all(), name
        assert (g[::4] == 0).all(), f"{name}: an unlabelled row got a gradient"
    head = RankHead("ic")
    with pytest.raises(ValueError, match="date row"):
        head.loss(zero[:, None], y)
    with pytest.raises(ValueError, match="rank head loss"):
        RankHead("lambda")


def _master() -> MasterNet:
    torch.manual_seed(0)
    net = MasterNet(n_features=6, n_outputs=2, hidden_size=8, n_heads=2).eval()
    for p in net.parameters():  # the zero-initialised output would make every property trivially true
        torch.nn.init.normal_(p, std=0.3)
    return net


def test_master_is_equivariant_within_a_date_and_dates_are_independent():
    net = _master()
    x = torch.randn(12, 5, 6)
    t = torch.tensor([3] * 7 + [9] * 5)
    with torch.no_grad():
        out = net(x, t)
        perm = torch.randperm(12)
        torch.testing.assert_close(net(x[perm], t[perm]), out[perm], atol=1e-5, rtol=0)
        x2 = x.clone()
        x2[7:] = torch.randn(5, 5, 6)  # another cross-section on the other date
        torch.testing.assert_close(net(x2, t)[:7], out[:7], atol=1e-6, rtol=0)
        assert not torch.allclose(net(x2, t)[7:], out[7:])
        alone = net(x[:7], t[:7])  # date 3 scored on its own, as the server scores one date
        torch.testing.assert_close(alone, out[:7], atol=1e-5, rtol=0)
        x3 = x.clone()
        x3[0] = torch.randn(5, 6)  # one stock changes: the other stocks of its date see it
        assert not torch.allclose(net(x3, t)[1:7], out[1:7])


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_cross_layers_make_an_encoder_a_cross_stock_network(name):
    from deepq.models.lstm import LSTMNet
    from deepq.models.transformer import TransformerNet

    torch.manual_seed(0)
    make = {"lstm": LSTMNet, "transformer": TransformerNet}[name]
    kwargs = {"lookback": 5, "patch_len": 1, "d_model": 8} if name == "transformer" else {"hidden_size": 8}
    plain, cross = make(6, 1, **kwargs), make(6, 1, cross_layers=1, **kwargs)
    assert plain.inputs == ("x",) and cross.inputs == ("x", "t")
    for net in (plain, cross):  # from the zero forecast the outputs are flat: give the head weights
        torch.nn.init.normal_(net.proj[-1].weight if name == "lstm" else net.proj.weight)
    x, t = torch.randn(12, 5, 6), torch.tensor([3] * 7 + [9] * 5)
    x3 = x.clone()
    x3[0] = torch.randn(5, 6)  # one stock changes
    with torch.no_grad():
        assert torch.allclose(plain(x3)[1:], plain(x)[1:])  # alone: the others do not see it
        out = cross(x, t)
        assert not torch.allclose(cross(x3, t)[1:7], out[1:7])  # its date's stocks see it ...
        torch.testing.assert_close(cross(x3, t)[7:], out[7:], atol=1e-6, rtol=0)  # ... the other date not
        perm = torch.randperm(12)
        torch.testing.assert_close(cross(x[perm], t[perm]), out[perm], atol=1e-5, rtol=0)
        traced = torch.jit.trace(cross.eval(), (x, t))
        torch.testing.assert_close(traced(x[:7], t[:7]), cross(x[:7], t[:7]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="need t"):
        cross(x)


def test_per_date_attention_and_market_mean_equal_the_whole_batch_form_traced_and_eager():
    """Eager training runs the cross-stock attention and MASTER's market mean per date (each date's own block);
    graph capture records the [B, B] same-date form. Same outputs and gradients, on a ragged, shuffled batch."""
    import deepq.models.layers as layers

    net = _master().train()
    net.cross.layers[0].drop.p = net.out[1].p = 0.0  # dropout off, gradients on
    t = torch.tensor([4] * 9 + [1] * 3 + [7] * 6)[torch.randperm(18)]
    x = torch.randn(18, 5, 6)
    grads = {}
    for form in ("per_date", "whole_batch"):
        net.zero_grad()
        with pytest.MonkeyPatch.context() as mp:
            if form == "whole_batch":  # what tracing and export see
                mp.setattr(layers, "_capturing_graph", lambda: True)
            out = net(x, t)
            out.pow(2).sum().backward()
        grads[form] = (out.detach(), [p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(grads["per_date"][0], grads["whole_batch"][0], atol=1e-6, rtol=1e-5)
    for a, b in zip(grads["per_date"][1], grads["whole_batch"][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    g, pos, d, n = layers.date_slots(t)
    slots = set(zip(g.tolist(), pos.tolist(), strict=True))
    assert (d, n) == (3, 9) and len(slots) == 18  # every row its own slot
    traced = torch.jit.trace(net.eval(), (x, t))
    with torch.no_grad():
        torch.testing.assert_close(traced(x, t), net(x, t), atol=1e-5, rtol=0)
