"""A cross-stock network in the manner of MASTER (Li et al., AAAI 2024): market-guided feature gating, a
temporal encoder per stock, then attention across the stocks of the same date.

1. Market-guided gating. The market state of a date is the cross-sectional mean of the decision day's
   features over the date's stocks: market-wide features (index returns, volatility, breadth) are the same for
   every stock, so they pass through unchanged, and the stock features contribute their date average. A
   linear map of it, softmax-ed with temperature `gate_beta` and scaled by the feature count (so the gate
   starts near 1 for each feature), rescales every feature of every step, as MASTER's gate does.
2. Intra-stock: an LSTM over the gated window, aggregated by temporal attention with the last state as query.
3. Inter-stock: `n_cross_layers` of multi-head attention restricted to the stocks of the same date.
4. A zero-initialised linear layer to the head's raw outputs.

Inputs are (x [B, L, F], t [B]): `t` is each sample's date row, used only to say which samples share a date,
so a batch of k whole dates is k independent cross-sections (`datamodule.batching=date`) and a served
request, one date, is one. Scores depend on the cross-section they are computed with: the server and
`deepq predict` always run a date's whole universe and return the requested symbols.
"""

from __future__ import annotations

import torch
from torch import nn

from deepq.models.layers import CrossStock, Dropout, date_mean, zero_linear


class MasterNet(nn.Module):
    inputs = ("x", "t")

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_size: int = 32,
        n_heads: int = 4,
        n_cross_layers: int = 1,
        gate_beta: float = 5.0,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.n_features, self.gate_beta = n_features, gate_beta
        self.gate = nn.Linear(n_features, n_features)
        nn.init.zeros_(self.gate.weight)  # start with every feature weighted 1
        nn.init.zeros_(self.gate.bias)
        self.inp = nn.Linear(n_features, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.temporal_q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.cross = CrossStock(hidden_size, n_cross_layers, n_heads, dropout)
        self.out = nn.Sequential(
            nn.LayerNorm(hidden_size), Dropout(dropout), zero_linear(hidden_size, n_outputs)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: [B, L, F] normalised windows, t: [B] date rows -> raw head parameters [B, n_outputs]."""
        market = date_mean(x[:, -1], t)  # [B, F] the date's mean features
        alpha = self.n_features * torch.softmax(self.gate(market) / self.gate_beta, dim=-1)
        seq, _ = self.lstm(self.inp(x * alpha[:, None, :]))  # [B, L, H]
        last = seq[:, -1]
        w = torch.softmax((seq @ self.temporal_q(last)[:, :, None]).squeeze(-1), dim=1)  # [B, L]
        h = (w[:, :, None] * seq).sum(dim=1) + last
        return self.out(self.cross(h, t))
