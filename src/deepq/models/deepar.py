"""DeepAR (Salinas et al. 2020) on our windows: an autoregressive RNN that, at every step j of the window,
reads the features of j, the latest label fully known at j (the label lagged by its span, `y_past`) and static
embeddings, and outputs the head's parameters for the label of step j.

Training uses every step (teacher forcing: `forward_sequence`, loss on all steps with a label); the exported
`forward` returns the last step's parameters. With a distribution head (Gaussian / Student-t) forecasts are
sampled from those parameters at inference (`DistributionHead.sample`); with a one-step-ahead label there is
nothing to roll forward, so the sampled path is one step long.
"""

from __future__ import annotations

import torch
from torch import nn

from deepq.models.layers import StaticEmbedding, lstm_sequence, zero_linear


class DeepARNet(nn.Module):
    inputs = ("x", "y_past", "static")
    sequence_training = True

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        n_symbols: int = 1,
        n_sectors: int = 1,
        hidden_size: int = 32,
        num_layers: int = 2,
        embedding_dim: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.static = StaticEmbedding(n_symbols, n_sectors, embedding_dim)
        self.rnn = nn.LSTM(
            n_features + 1 + 2 * embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.proj = zero_linear(hidden_size, n_outputs)

    def forward_sequence(self, x: torch.Tensor, y_past: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """[B, L, F], [B, L], [B, 2] -> raw parameters for every step [B, L, n_outputs]."""
        return self.proj(self._states(x, y_past, static))

    def forward(self, x: torch.Tensor, y_past: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.proj(self._states(x, y_past, static)[:, -1])

    def _states(self, x: torch.Tensor, y_past: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        emb = self.static(static).reshape(x.shape[0], -1)  # per window: appended to every step's inputs
        return lstm_sequence(self.rnn, torch.cat([x, y_past[..., None]], dim=-1), emb)
