"""Transformer encoder over the lookback window: optional patching, sinusoidal positions, pre-norm blocks.

Patching (PatchTST-style) groups `patch_len` consecutive sessions into one token, so attention runs over
L / patch_len tokens instead of L; the first L mod patch_len sessions are dropped so the last token ends at t.
The last token's state feeds the head. `cross_layers=k` (k > 0) adds k set-attention layers across the stocks
of each date before it (as in deepq.models.lstm): the network then reads `(x, t)` and trains on whole dates.
"""

from __future__ import annotations

import torch
from torch import nn

from deepq.models.layers import CrossStock, Dropout, SelfAttention, sinusoidal_encoding, zero_linear


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, n_heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class TransformerNet(nn.Module):
    inputs: tuple[str, ...] = ("x",)

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        lookback: int = 60,
        d_model: int = 32,
        n_heads: int = 4,
        num_layers: int = 2,
        d_ff: int = 64,
        patch_len: int = 1,
        dropout: float = 0.0,
        cross_layers: int = 0,
        cross_heads: int = 4,
    ):
        super().__init__()
        self.cross = CrossStock(d_model, cross_layers, cross_heads, dropout)
        self.inputs = self.cross.inputs
        if patch_len < 1 or patch_len > lookback:
            raise ValueError(f"patch_len={patch_len} must be in [1, lookback={lookback}]")
        self.patch_len = patch_len
        self.n_tokens = lookback // patch_len
        self.skip = lookback - self.n_tokens * patch_len
        self.embed = nn.Linear(n_features * patch_len, d_model)
        self.register_buffer("pos", sinusoidal_encoding(self.n_tokens, d_model), persistent=False)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.proj = zero_linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, F] (and t: [B] date rows with cross_layers) -> raw head parameters [B, n_outputs]."""
        B, _, F = x.shape
        tokens = x[:, self.skip :].reshape(B, self.n_tokens, self.patch_len * F)
        h = self.embed(tokens) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.proj(self.norm(self.cross(h[:, -1], t)))
