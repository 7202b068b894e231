"""Output heads, in the spirit of GluonTS's DistributionOutput.

A head says how many raw outputs it needs from a network (`n_params`), maps them into their domain
(`forward`, the part that is exported with the network), gives the training loss, and names its outputs.
`point` is the forecast on the label's scale; a head with `needs_dates` (RankHead) also takes each sample's
date row `t` and compares the stocks of one date, so it needs date-batched training; `score` reduces a prediction to one number per sample,
larger = more bullish (or more risk), for ranking. `loss(raw, y, aux)`: `aux` is an auxiliary target
(the forward return, for the risk head's VaR/CVaR quantiles); other heads ignore it.
All `loss` methods take raw outputs [M, n_params] and labels [M], so a network can be trained on every
step of its window (DeepAR) by flattening steps into M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepq.models.ranking import LOSSES, ranking_loss


class Head(nn.Module):
    n_params: int = 1
    output_names: tuple[str, ...] = ("pred",)
    needs_aux: bool = False
    needs_dates: bool = False
    center: torch.Tensor
    spread: torch.Tensor
    levels: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        # the training labels' median and robust std, set per fold (`calibrate`): a zero-initialised network
        # then starts at the typical label instead of 0 (log volatility is ~ -4) and at its typical spread
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("spread", torch.ones(()))

    def calibrate(self, center: float, spread: float) -> None:
        self.center.fill_(float(center))
        self.spread.fill_(float(spread) if spread > 0 else 1.0)

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def point(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]


class PointHead(Head):
    """A point forecast (returns, or log volatility for risk) with MSE or Huber loss."""

    def __init__(self, loss: str = "mse", huber_delta: float = 0.01):
        super().__init__()
        if loss not in ("mse", "huber"):
            raise ValueError(f"point head loss must be 'mse' or 'huber', got {loss!r}")
        self.loss_name, self.huber_delta = loss, huber_delta

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, :1] + self.center

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        pred = raw[:, 0] + self.center
        if self.loss_name == "huber":
            return F.huber_loss(pred, y, delta=self.huber_delta)
        return F.mse_loss(pred, y)


class RankHead(Head):
    """A score trained to order the stocks of each date: a per-date ranking loss (deepq.models.ranking: `ic`,
    `listnet`, `pairwise`), plus `mse_weight` x MSE on the (normalised) target if wanted, which keeps the
    score on the target's scale. Needs `datamodule.batching=date`: random windows hold ~1 stock per date."""

    needs_dates = True

    def __init__(self, loss: str = "ic", mse_weight: float = 0.0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"rank head loss must be one of {LOSSES}, got {loss!r}")
        self.loss_name, self.mse_weight = loss, mse_weight

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, :1] + self.center

    def loss(
        self,
        raw: torch.Tensor,
        y: torch.Tensor,
        aux: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if t is None:
            raise ValueError("a rank head's loss needs each sample's date row t (date-batched training)")
        score = raw[:, 0] + self.center
        loss = ranking_loss(self.loss_name, score, y, t)
        if self.mse_weight:
            loss = loss + self.mse_weight * F.mse_loss(score, y)
        return loss


class ClassHead(Head):
    """Class probabilities: 2 classes (direction: down/up, one logit) or more (signal: sell/hold/buy)."""

    def __init__(self, n_classes: int = 2, class_names: tuple[str, ...] | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a class head needs at least 2 classes, got {n_classes}")
        self.n_classes = n_classes
        self.n_params = 1 if n_classes == 2 else n_classes
        names = class_names or (
            ("up",) if n_classes == 2 else ("sell", "hold", "buy") if n_classes == 3 else None
        )
        if names is None:
            names = tuple(f"c{i}" for i in range(n_classes))
        self.output_names = tuple(f"p_{n}" for n in (names[-1:] if n_classes == 2 else names))

    def calibrate(self, center: float, spread: float) -> None:
        pass  # logits need no centring

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return torch.sigmoid(raw[:, :1])
        return torch.softmax(raw, dim=-1)

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes == 2:
            return F.binary_cross_entropy_with_logits(raw[:, 0], y)
        return F.cross_entropy(raw, y.long())

    def point(self, out: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return out[:, 0]
        return out.argmax(dim=-1).to(out.dtype)  # the most likely class (0 sell, 1 hold, 2 buy)

    def score(self, out: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return out[:, 0]
        return out[:, -1] - out[:, 0]  # P(top class) - P(bottom class)


def normal_quantiles(levels: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(0.0, 1.0).icdf(levels)


class Monotone(nn.Module):
    """[M, Q] unconstrained -> [M, Q] strictly increasing z-scores: z_0 + [0, cumsum(softplus(raw_k + b_k))].

    Non-crossing by construction. The offsets b_k make a zero raw output give the standard normal's
    quantiles at `levels`, a sensible start for any of our labels once scaled."""

    z0: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, levels: torch.Tensor):
        super().__init__()
        z = normal_quantiles(levels)
        gaps = (z[1:] - z[:-1]).clamp_min(1e-3)
        self.register_buffer("z0", z[:1].clone())
        self.register_buffer("offsets", torch.log(torch.expm1(gaps)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        first = raw[:, :1] + self.z0
        steps = F.softplus(raw[:, 1:] + self.offsets) + 1e-6
        return torch.cat([first, first + torch.cumsum(steps, dim=1)], dim=1)


def pinball(q_pred: torch.Tensor, y: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Mean pinball (quantile) loss of predictions [M, Q] at `levels` [Q] against y [M]."""
    diff = y[:, None] - q_pred
    return torch.maximum(levels * diff, (levels - 1.0) * diff).mean()


def _label(level: float) -> str:
    return f"{round(level * 1000):03d}" if round(level * 100) != level * 100 else f"{round(level * 100):02d}"


class QuantileHead(Head):
    """Several quantiles of the label, non-crossing by construction, trained with the pinball loss."""

    def __init__(self, quantiles: Sequence[float] = (0.1, 0.5, 0.9)):
        super().__init__()
        qs = [float(q) for q in quantiles]
        if not qs or sorted(qs) != qs or not all(0 < q < 1 for q in qs) or len(set(qs)) != len(qs):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {list(quantiles)}")
        self.register_buffer("levels", torch.tensor(qs))
        self.monotone = Monotone(self.levels)
        self.n_params = len(qs)
        self.output_names = tuple(f"q{_label(q)}" for q in qs)
        self.median = min(range(len(qs)), key=lambda k: abs(qs[k] - 0.5))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.center + self.spread * self.monotone(raw)

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        return pinball(self(raw), y, self.levels)

    def point(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, self.median]

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, self.median]


class DistributionHead(Head):
    """A parametric distribution of the label (Gaussian or Student-t), trained by negative log-likelihood.

    Outputs (loc, scale[, df]); `distribution(out)` rebuilds the torch distribution and `sample` draws from it,
    which is how DeepAR's forecasts are sampled at inference.
    """

    def __init__(self, family: str = "student_t", min_scale: float = 1e-4, min_df: float = 2.0):
        super().__init__()
        if family not in ("gaussian", "student_t"):
            raise ValueError(f"distribution head family must be 'gaussian' or 'student_t', got {family!r}")
        self.family, self.min_scale, self.min_df = family, min_scale, min_df
        self.n_params = 2 if family == "gaussian" else 3
        self.output_names = ("loc", "scale") if family == "gaussian" else ("loc", "scale", "df")

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        loc = raw[:, :1] + self.center
        # softplus keeps the scale positive; +0.5413 = softplus^-1(1): a zero raw output gives the labels' spread
        scale = self.spread * F.softplus(raw[:, 1:2] + 0.5413) + self.min_scale
        if self.family == "gaussian":
            return torch.cat([loc, scale], dim=1)
        df = F.softplus(raw[:, 2:3] + 1.0) + self.min_df  # df > 2: finite variance
        return torch.cat([loc, scale, df], dim=1)

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        if self.family == "gaussian":
            return torch.distributions.Normal(out[:, 0], out[:, 1])
        return torch.distributions.StudentT(out[:, 2], out[:, 0], out[:, 1])

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        return -self.distribution(self(raw)).log_prob(y).mean()

    def sample(self, out: torch.Tensor, n: int) -> torch.Tensor:
        """[n, M] draws from the predicted distributions (torch's global RNG: seed it for repeatability)."""
        return self.distribution(out).sample((n,))


class RiskHead(Head):
    """Risk: log realised volatility (point, MSE on the label) plus lower-tail quantiles of the forward return,
    read as VaR and CVaR at `alpha`.

    The return quantiles are the predicted volatility times learned z-scores: q_k = exp(log_vol) sqrt(h) z_k,
    with z_k non-crossing (`Monotone`, starting at the normal's quantiles). Levels are an even grid inside
    (0, alpha) plus alpha itself; VaR = -q_alpha and CVaR = -mean(q on the grid), a Riemann sum of the
    expected shortfall. The quantiles are trained by pinball loss on the auxiliary target (the forward
    return over the same horizon), weighted by `quantile_weight` because returns are ~100x smaller than
    log volatility.
    """

    needs_aux = True

    def __init__(
        self, alpha: float = 0.05, n_tail: int = 4, quantile_weight: float = 100.0, horizon_days: int = 1
    ):
        super().__init__()
        if not 0 < alpha < 0.5 or n_tail < 1:
            raise ValueError(f"risk head needs 0 < alpha < 0.5 and n_tail >= 1, got {alpha}, {n_tail}")
        grid = [alpha * (k + 0.5) / n_tail for k in range(n_tail)]
        self.register_buffer("levels", torch.tensor([*grid, alpha]))
        self.monotone = Monotone(self.levels)
        self.alpha, self.quantile_weight, self.sqrt_h = alpha, quantile_weight, math.sqrt(horizon_days)
        self.n_params = 1 + n_tail + 1
        pct = _label(alpha)
        self.output_names = ("log_vol", f"var_{pct}", f"cvar_{pct}")

    def _quantiles(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_vol = raw[:, 0] + self.center
        sigma = torch.exp(log_vol.clamp(-20.0, 5.0)) * self.sqrt_h
        return log_vol, sigma[:, None] * self.monotone(raw[:, 1:])  # [M, n_tail + 1], increasing

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        log_vol, q = self._quantiles(raw)
        return torch.stack([log_vol, -q[:, -1], -q[:, :-1].mean(dim=1)], dim=1)

    def loss(self, raw: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        log_vol, q = self._quantiles(raw)
        loss = F.mse_loss(log_vol, y)
        if aux is not None:
            ok = torch.isfinite(aux)
            if bool(ok.any()):
                loss = loss + self.quantile_weight * pinball(q[ok], aux[ok], self.levels)
        return loss


def gaussian_var_cvar(sigma: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference VaR/CVaR of a zero-mean Gaussian return with std sigma (used by tests and docs)."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(alpha))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return -z * sigma, sigma * pdf / alpha
