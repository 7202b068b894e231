"""Output heads, in the spirit of GluonTS's DistributionOutput.

A head says how many raw outputs it needs from a network (`n_params`), maps them into their domain
(`forward`, the part that is exported with the network), gives the training loss, and names its outputs.
`score` reduces a prediction to one number per sample, larger = more bullish (or more risk), for ranking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    n_params: int = 1
    output_names: tuple[str, ...] = ("pred",)

    def loss(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
        return raw[:, :1]

    def loss(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = raw[:, 0]
        if self.loss_name == "huber":
            return F.huber_loss(pred, y, delta=self.huber_delta)
        return F.mse_loss(pred, y)


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

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return torch.sigmoid(raw[:, :1])
        return torch.softmax(raw, dim=-1)

    def loss(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return F.binary_cross_entropy_with_logits(raw[:, 0], y)
        return F.cross_entropy(raw, y.long())

    def score(self, out: torch.Tensor) -> torch.Tensor:
        if self.n_classes == 2:
            return out[:, 0]
        return out[:, -1] - out[:, 0]  # P(top class) - P(bottom class)
