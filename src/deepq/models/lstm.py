"""LSTM encoder over the lookback window; the last hidden state feeds a small MLP to the head's raw outputs."""

from __future__ import annotations

import torch
from torch import nn


class LSTMNet(nn.Module):
    inputs = ("x",)

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_size: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.lstm = nn.LSTM(
            n_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        out = nn.Linear(hidden_size, n_outputs)
        # start from the zero forecast: daily returns are ~1e-2, so a random initial output swamps the signal
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Dropout(dropout), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, F] -> raw head parameters [B, n_outputs]."""
        out, _ = self.lstm(x)
        return self.proj(out[:, -1])
