"""Heads: losses match their definitions, quantiles never cross, VaR/CVaR are ordered, samples follow the
predicted distribution (what DeepAR's sampled forecasts rely on), and TFT exposes variable importances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from deepq.models.heads import ClassHead, DistributionHead, PointHead, QuantileHead, RiskHead, pinball
from deepq.models.tft import TFTNet


def test_pinball_matches_definition():
    y = torch.tensor([0.0, 1.0])
    q = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    levels = torch.tensor([0.1, 0.9])
    # y=0: over-forecast by 0.5 -> (1-tau)*0.5; y=1: under-forecast by 0.5 -> tau*0.5
    expected = np.mean([0.9 * 0.5, 0.1 * 0.5, 0.1 * 0.5, 0.9 * 0.5])
    assert pinball(q, y, levels).item() == pytest.approx(expected)


def test_quantiles_never_cross_and_start_gaussian():
    head = QuantileHead((0.05, 0.25, 0.5, 0.75, 0.95))
    head.calibrate(0.001, 0.02)
    raw = torch.randn(5000, 5) * 10  # wild raw outputs
    out = head(raw)
    assert (out[:, 1:] >= out[:, :-1]).all()  # non-crossing (float32 may round a tiny gap to 0)
    moderate = head(torch.randn(5000, 5))
    assert (moderate[:, 1:] > moderate[:, :-1]).all()
    zero = head(torch.zeros(1, 5))[0]
    expected = 0.001 + 0.02 * stats.norm.ppf([0.05, 0.25, 0.5, 0.75, 0.95])
    np.testing.assert_allclose(zero.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert head.point(out).shape == (5000,)


def test_quantile_head_learns_the_quantiles():
    torch.manual_seed(0)
    head = QuantileHead((0.1, 0.5, 0.9))
    raw = torch.zeros(1, 3, requires_grad=True)
    y = torch.randn(4000) * 2.0 + 1.0
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        head.loss(raw.expand(len(y), 3), y).backward()
        opt.step()
    got = head(raw)[0].detach().numpy()
    np.testing.assert_allclose(got, np.quantile(y.numpy(), [0.1, 0.5, 0.9]), atol=0.08)


def test_risk_head_var_cvar_ordered_and_gaussian_at_start():
    head = RiskHead(alpha=0.05, n_tail=8, horizon_days=1)
    head.calibrate(np.log(0.02), 0.3)
    out = head(torch.randn(1000, head.n_params) * 3)
    assert (out[:, 2] >= out[:, 1]).all()  # CVaR >= VaR always
    zero = head(torch.zeros(1, head.n_params))[0]
    assert zero[0].item() == pytest.approx(np.log(0.02), rel=1e-6)
    assert zero[1].item() == pytest.approx(0.02 * -stats.norm.ppf(0.05), rel=1e-4)  # VaR of N(0, 0.02)
    es = 0.02 * stats.norm.pdf(stats.norm.ppf(0.05)) / 0.05
    assert zero[2].item() == pytest.approx(es, rel=0.03)  # the grid's CVaR is close to the Gaussian ES
    loss = head.loss(
        torch.zeros(4, head.n_params),
        torch.full((4,), np.log(0.02)),
        torch.tensor([0.01, -0.02, float("nan"), 0.0]),
    )
    assert torch.isfinite(loss)


@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_distribution_nll_and_samples_follow_the_distribution(family):
    torch.manual_seed(0)
    head = DistributionHead(family)
    head.calibrate(0.0, 0.01)
    raw = torch.tensor([[0.003, 0.2, 0.5]])[:, : head.n_params]
    out = head(raw)
    y = torch.tensor([0.01])
    assert head.loss(raw, y).item() == pytest.approx(-head.distribution(out).log_prob(y).item(), rel=1e-6)
    draws = head.sample(out, 20000)[:, 0].numpy()
    loc, scale = out[0, 0].item(), out[0, 1].item()
    ref = stats.norm(loc, scale) if family == "gaussian" else stats.t(out[0, 2].item(), loc, scale)
    assert stats.kstest(draws, ref.cdf).pvalue > 1e-3
    other = stats.norm(loc + 0.5 * scale, scale)  # the test has power: a shifted law is rejected
    assert stats.kstest(draws, other.cdf).pvalue < 1e-6


def test_point_and_class_heads():
    p = PointHead()
    p.calibrate(-4.0, 1.0)
    assert p(torch.zeros(2, 1))[0, 0].item() == -4.0
    c = ClassHead(3)
    out = c(torch.randn(6, 3))
    torch.testing.assert_close(out.sum(1), torch.ones(6))
    assert set(c.point(out).tolist()) <= {0.0, 1.0, 2.0}


def test_tft_exposes_variable_importances():
    torch.manual_seed(0)
    net = TFTNet(
        n_features=5,
        n_outputs=1,
        lookback=12,
        n_known=4,
        future_days=2,
        n_symbols=3,
        n_sectors=2,
        hidden_size=8,
    )
    x, st, kn = torch.randn(4, 12, 5), torch.randint(0, 2, (4, 2)), torch.randn(4, 14, 4)
    w = net.interpret(x, st, kn)
    for name, n in (("static", 2), ("past", 9), ("future", 4)):
        assert w[name].shape == (4, n)
        torch.testing.assert_close(w[name].sum(1), torch.ones(4))
    assert w["attention"].shape == (4, 2, 14)
    assert w["attention"][:, 0, -1].abs().max() == 0  # decoder step 0 cannot see decoder step 1
