"""LSTM encoder over the lookback window; the last hidden state feeds a small MLP to the head's raw outputs.

`cross_layers=k` (k > 0) adds k set-attention layers across the stocks of each date after the encoder
(MASTER's inter-stock step, deepq.models.layers.CrossStockAttention): the network then reads `(x, t)`, trains
on whole dates (`datamodule.batching=date`) and is scored a date's whole universe at a time, like `model=master`.
"""

from __future__ import annotations

import torch
from torch import nn

from deepq.models.layers import CrossStock, Dropout, lstm_sequence


class LSTMNet(nn.Module):
    inputs: tuple[str, ...] = ("x",)

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_size: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        cross_layers: int = 0,
        cross_heads: int = 4,
    ):
        super().__init__()
        self.cross = CrossStock(hidden_size, cross_layers, cross_heads, dropout)
        self.inputs = self.cross.inputs
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
        self.proj = nn.Sequential(nn.LayerNorm(hidden_size), Dropout(dropout), out)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, F] (and t: [B] date rows with cross_layers) -> raw head parameters [B, n_outputs]."""
        out = lstm_sequence(self.lstm, x)
        return self.proj(self.cross(out[:, -1], t))
