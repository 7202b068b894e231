"""Temporal Fusion Transformer (Lim et al. 2021) on our windows.

Inputs: observed features x [B, L, F], static ids [B, 2] (symbol, sector), and the calendar `known` [B, L+K, C]
for the window and the K sessions after the decision date. Static covariate encoders give four contexts
(variable selection, enrichment, LSTM h0 and c0); past variables (F features + C calendar channels) and future
variables (C calendar channels) pass through variable selection; an LSTM encoder/decoder; gated skips;
static enrichment; interpretable multi-head attention from the K decoder steps over all L + K steps (causal);
a position-wise GRN; the last decoder step feeds the head.

Speed: every per-variable GRN of a selection network is one grouped op (layers.GroupedScalarGRN), not a
Python loop over variables; in CPU no-grad inference each distinct (window step, symbol) row goes through
them once (`_select_past`). `interpret` returns the variable-selection weights and attention.
"""

from __future__ import annotations

import torch
from torch import nn

from deepq.models.layers import (
    GRN,
    GateAddNorm,
    InterpretableAttention,
    StaticEmbedding,
    VariableSelection,
    cpu_inference,
    unique_rows,
    zero_linear,
)


class TFTNet(nn.Module):
    inputs = ("x", "static", "known")

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        lookback: int = 60,
        n_known: int = 4,
        future_days: int = 1,
        n_symbols: int = 1,
        n_sectors: int = 1,
        hidden_size: int = 32,
        n_heads: int = 4,
        dropout: float = 0.1,
        use_static: bool = True,
    ):
        super().__init__()
        d = hidden_size
        self.L, self.K, self.n_known, self.use_static = lookback, future_days, n_known, use_static
        self.distinct_rows = True  # CPU inference: each distinct past row through variable selection once
        self.static_embed = StaticEmbedding(n_symbols, n_sectors, d)
        self.static_select = GRN(2 * d, d, 2, dropout=dropout)
        self.static_grn = GRN(d, d, d, dropout=dropout)
        self.contexts = nn.ModuleList(GRN(d, d, d, dropout=dropout) for _ in range(4))  # sel, enrich, h0, c0
        self.past_select = VariableSelection(n_features + n_known, d, d, dropout)
        self.future_select = VariableSelection(n_known, d, d, dropout)
        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.decoder = nn.LSTM(d, d, batch_first=True)
        self.lstm_gate = GateAddNorm(d, dropout)
        self.enrich = GRN(d, d, d, d, dropout)
        self.attention = InterpretableAttention(d, n_heads, dropout)
        self.attn_gate = GateAddNorm(d, dropout)
        self.positionwise = GRN(d, d, d, dropout=dropout)
        self.out_gate = GateAddNorm(d, 0.0)
        self.proj = zero_linear(d, n_outputs)
        # decoder step k sees every encoder step and decoder steps <= k
        mask = torch.full((future_days, lookback + future_days), float("-inf"))
        for k in range(future_days):
            mask[k, : lookback + k + 1] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def _run(
        self, x: torch.Tensor, static: torch.Tensor, known: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, L, F = x.shape
        # static covariate encoders
        emb = self.static_embed(static)  # [B, 2, d]
        if not self.use_static:
            emb = emb * 0.0
        s_w = torch.softmax(self.static_select(emb.reshape(B, -1)), dim=-1)  # [B, 2]
        s = self.static_grn((s_w[..., None] * emb).sum(dim=1))
        c_sel, c_enr, c_h, c_c = (g(s) for g in self.contexts)
        # variable selection, past (features + calendar) and future (calendar)
        past, past_w = self._select_past(torch.cat([x, known[:, :L]], dim=-1), static, c_sel)  # [B, L, .]
        fut, fut_w = self.future_select(known[:, L:], c_sel[:, None])  # [B, K, .]
        # sequence-to-sequence LSTM, initialised from the static context
        enc, state = self.encoder(past, (c_h[None].contiguous(), c_c[None].contiguous()))
        dec, _ = self.decoder(fut, state)
        seq_in = torch.cat([past, fut], dim=1)
        seq = self.lstm_gate(torch.cat([enc, dec], dim=1), seq_in)  # [B, L+K, d]
        enriched = self.enrich(seq, c_enr[:, None])
        query = enriched[:, L:]
        attn_out, attn = self.attention(query, enriched, self.mask)
        h = self.attn_gate(attn_out, query)
        h = self.out_gate(self.positionwise(h), seq[:, L:])
        weights = {
            "static": s_w,
            "past": past_w.mean(dim=1),
            "future": fut_w.mean(dim=1),
            "attention": attn,
        }
        return self.proj(h[:, -1]), weights

    def _select_past(
        self, inp: torch.Tensor, static: torch.Tensor, c_sel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Past variable selection, [B, L, V] -> ([B, L, d], [B, L, V]): a function of one (window, step) row
        and the window's static ids only. In eager inference each distinct row is computed once: windows of
        one symbol on consecutive dates share L - 1 steps, so a fold's windows in symbol order run the V
        per-variable GRNs (most of a TFT's cost) about L times less often, with the same values up to float
        rounding (the matrix products see other row counts)."""
        # no-grad only (a row's input gradient would all go to its first window); CPU float32 only (untested
        # on CUDA, where unique/equal add host syncs); never while training or compiling
        if (
            not self.distinct_rows
            or self.training
            or torch.compiler.is_compiling()
            or not cpu_inference(inp)
            or inp.dtype != torch.float32
        ):
            return self.past_select(inp, c_sel[:, None])
        B, L, V = inp.shape
        # the selection context c_sel is a function of the static ids: they are part of a row's identity
        ids = static.to(torch.int32).repeat_interleave(L, dim=0)
        found = unique_rows(torch.cat([inp.reshape(B * L, V).view(torch.int32), ids], dim=1))
        if found is None or 2 * len(found[0]) > B * L:  # a hash clash, or too few repeats to pay
            return self.past_select(inp, c_sel[:, None])
        first, inverse = found
        out, w = self.past_select(
            inp.reshape(B * L, V)[first], c_sel[torch.div(first, L, rounding_mode="floor")]
        )
        return out[inverse].view(B, L, -1), w[inverse].view(B, L, V)

    def forward(self, x: torch.Tensor, static: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """-> raw head parameters [B, n_outputs]."""
        return self._run(x, static, known)[0]

    @torch.no_grad()
    def interpret(
        self, x: torch.Tensor, static: torch.Tensor, known: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Variable importances: static [B, 2], past [B, F + C] and future [B, C] selection weights averaged
        over time, and the decoder's attention over time steps [B, K, L + K]."""
        return self._run(x, static, known)[1]
