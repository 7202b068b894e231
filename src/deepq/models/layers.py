"""Building blocks shared by the networks: gated residual networks (plain and grouped over variables),
attention written with plain matmuls (so TorchScript, torch.export and ONNX all take it), positional encoding,
and static-id embeddings.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepq.models import cpu_lstm
from deepq.models.grouped_grn import BufferPool, grouped_grn_train, row_chunks


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """An output layer that starts at zero: daily returns are ~1e-2, a random initial output swamps them."""
    out = nn.Linear(d_in, d_out)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return out


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout with, on a CPU, the keep-mask drawn by one `uniform_` fill: aten::bernoulli_ (what F.dropout
    and nn.LSTM's inter-layer dropout call) costs ~4x a uniform fill here, ~7 % of a DeepAR training step.
    Same distribution (keep with probability 1 - p, scaled by 1 / (1 - p)), another random stream; CUDA and
    graph capture keep F.dropout."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or _capturing_graph():
        return F.dropout(x, p, True)
    keep = torch.empty_like(x).uniform_().ge_(p)  # 1 where u >= p: probability 1 - p
    return x * keep.mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout (same state, repr and eval identity) through `dropout`'s cheaper CPU mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def lstm_sequence(rnn: nn.LSTM, x: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
    """`rnn(x)[0]` from zero states, where `static` [B, S] (optional) is a per-window input appended to every
    step of x [B, T, D]: rnn.input_size == D + S.

    Float32 CPU training runs the compiled layer of `cpu_lstm` (the static input enters as a per-window bias;
    tested equal to nn.LSTM) where its kernel builds; otherwise, when it trains with inter-layer dropout on a
    CPU, the layers run one by one through nn.LSTM's oneDNN kernel (nn.LSTM would draw that mask with
    aten::bernoulli_). Both put `dropout` between layers. Graph capture, compile, CUDA, autocast and
    evaluation call nn.LSTM itself."""
    plain_layout = rnn.bias and rnn.batch_first and not (rnn.bidirectional or rnn.proj_size)
    eager_cpu = x.device.type == "cpu" and not (_capturing_graph() or torch.compiler.is_compiling())
    compiled = plain_layout and not torch.compiler.is_compiling() and cpu_fp32_training(rnn, x)
    lib = cpu_lstm.kernel(rnn.hidden_size) if compiled else None
    if lib is not None:
        return _cpu_lstm(lib, rnn, x, static)
    if static is not None:
        x = torch.cat([x, static[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
    layered = rnn.training and rnn.dropout > 0 and rnn.num_layers > 1
    if not (layered and plain_layout and eager_cpu):
        return rnn(x)[0]
    zeros = x.new_zeros(1, x.shape[0], rnn.hidden_size)
    weights: list[torch.Tensor] = [w for layer in rnn.all_weights for w in layer]  # w_ih, w_hh, b_ih, b_hh
    for k in range(rnn.num_layers):
        if k:
            x = dropout(x, rnn.dropout)
        x = torch._VF.lstm(x, (zeros, zeros), weights[4 * k : 4 * k + 4], True, 1, 0.0, True, False, True)[0]
    return x


def cpu_fp32_training(module: nn.Module, x: torch.Tensor) -> bool:
    """Where the fused CPU training kernels apply: eager float32 CPU training, gradients on, no autocast, no
    graph capture (inference, export, tracing, CUDA and autocast take the plain path they are tested equal to)."""
    return (
        not _capturing_graph()
        and module.training
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


@torch.jit.unused
def _cpu_lstm(lib: Any, rnn: nn.LSTM, x: torch.Tensor, static: torch.Tensor | None) -> torch.Tensor:
    weights = [w for layer in rnn.all_weights for w in layer]
    for k in range(rnn.num_layers):
        x = cpu_lstm.dropout(lib, x, rnn.dropout) if k else x
        x = cpu_lstm.lstm_layer(lib, x, weights[4 * k : 4 * k + 4], static if k == 0 else None)
    return x


class GRN(nn.Module):
    """Gated residual network (Lim et al. 2021): LayerNorm(skip(a) + GLU(W2 ELU(W1 a + Wc c)))."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, d_context: int = 0, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc2 = nn.Linear(d_hidden, 2 * d_out)  # fc2 and the GLU's linear layer folded into one
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else None
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc1(a)
        if self.context is not None and c is not None:
            h = h + self.context(c)
        h = F.glu(self.fc2(self.drop(F.elu(h))), dim=-1)
        return self.norm((a if self.skip is None else self.skip(a)) + h)


class GroupedScalarGRN(nn.Module):
    """V independent GRNs, one per scalar input variable, computed as one grouped op.

    pytorch-forecasting runs a Python loop of V modules (a Linear(1, d_v) prescaler, then a GRN). A linear
    prescaler followed by a linear layer is one affine map of the scalar, so the first layer here is an
    elementwise x * a_v + b_v, and the GRN's second layer and its GLU projection are one [V, h, 2d] batched
    matmul: the same function class, a handful of kernels instead of ~10 V. Tensors are variable-major
    ([V, N, .]) so the batched matmul reads and writes them without transposed copies; the per-variable
    LayerNorm affine is applied inside the weighted sum. No dropout here: on [V, N, 2d] it costs more
    than the rest of the selection network, and the selection weights are regularised by the outer dropout.
    """

    def __init__(self, n_vars: int, d_hidden: int, d_out: int):
        super().__init__()
        self.a = nn.Parameter(torch.randn(n_vars, 1, d_hidden))
        self.b = nn.Parameter(torch.zeros(n_vars, 1, d_hidden))
        self.w2 = nn.Parameter(torch.randn(n_vars, d_hidden, 2 * d_out) / math.sqrt(d_hidden))
        self.b2 = nn.Parameter(torch.zeros(n_vars, 1, 2 * d_out))
        self.skip_a = nn.Parameter(torch.randn(n_vars, 1, d_out))
        self.skip_b = nn.Parameter(torch.zeros(n_vars, 1, d_out))
        self.gamma = nn.Parameter(torch.ones(n_vars, 1, d_out))
        self.beta = nn.Parameter(torch.zeros(n_vars, d_out))
        self.d_out = d_out
        self.fused = True  # train through grouped_grn's fused CPU path where it applies (see fused_applies)
        self.chunk = 256  # rows per cache block of the fused path
        self._pool = BufferPool()

    def combine(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [N, V] scalars, w [N, V] weights -> sum_v w_v GRN_v(x_v): [N, d_out]."""
        if self.fused_applies(x):
            return self._combine_fused(x, w)
        if self.chunked_applies(x):
            return self._combine_chunked(x, w)
        return self.combine_plain(x, w)

    def chunked_applies(self, x: torch.Tensor) -> bool:
        """Eager CPU inference: the plain path in cache-sized row blocks. One pass over an eval batch makes
        [V, N, 2d] intermediates of gigabytes that page-fault in; 256-row blocks give the same numbers (bit for
        bit) about 3x faster. Tracing, export and CUDA keep the single pass."""
        return cpu_inference(x) and x.shape[0] > self.chunk

    @torch.jit.unused
    @torch.compiler.disable
    def _combine_chunked(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        blocks = row_chunks(x.shape[0], self.chunk)
        return torch.cat([self.combine_plain(x[n0:n1], w[n0:n1]) for n0, n1 in blocks])

    def fused_applies(self, x: torch.Tensor) -> bool:
        """The fused path is a CPU float32 training kernel (under torch.compile it runs eagerly behind a graph
        break); everything else (inference, export, tracing, CUDA, autocast) takes the plain path, which it
        is tested equal to."""
        return self.fused and cpu_fp32_training(self, x)

    @torch.jit.unused
    @torch.compiler.disable  # under torch.compile: a graph break, the rest of the network is still compiled
    def _combine_fused(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        params = (self.a, self.b, self.w2, self.b2, self.skip_a, self.skip_b, self.gamma, self.beta)
        return grouped_grn_train(x.contiguous(), w.contiguous(), params, self.chunk, self._pool)

    def combine_plain(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        xv = x.t()[..., None]  # [V, N, 1]
        h = F.elu(torch.addcmul(self.b, xv, self.a))  # [V, N, h]
        g = F.glu(torch.baddbmm(self.b2, h, self.w2), dim=-1)  # [V, N, d]
        z = F.layer_norm(torch.addcmul(self.skip_b, xv, self.skip_a) + g, (self.d_out,))
        wv = w.t()[..., None]  # [V, N, 1]
        return (z * (wv * self.gamma)).sum(dim=0) + w @ self.beta


def _capturing_graph() -> bool:
    """TorchScript, tracing or torch.export is recording the network: only the plain path may be recorded."""
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_exporting()


def cpu_inference(x: torch.Tensor) -> bool:
    """Eager no-grad CPU evaluation outside any graph capture: where the data-dependent shortcuts (row blocks,
    distinct rows) may run; tracing, export, CUDA and anything taking gradients keep the plain pass."""
    return not _capturing_graph() and not torch.is_grad_enabled() and x.device.type == "cpu"


_MULTIPLIERS: dict[tuple[int, str], torch.Tensor] = {}


def unique_rows(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Distinct rows of an integer matrix [R, K]: (first [U], inverse [R]) with keys[first][inverse] equal to
    keys, first[u] the first row holding distinct row u. Rows are hashed to int64 (fixed random odd
    multipliers, sums wrapping) and the result verified row by row; None if two different rows hashed alike.
    Much faster than torch.unique(dim=0), which sorts rows lexicographically."""
    R, K = keys.shape
    mult = _MULTIPLIERS.get((K, str(keys.device)))
    if mult is None:
        g = torch.Generator().manual_seed(K)
        mult = torch.randint(1, 2**62, (K,), generator=g, dtype=torch.int64).bitwise_or_(1).to(keys.device)
        _MULTIPLIERS[K, str(keys.device)] = mult
    h = (keys.to(torch.int64) * mult).sum(dim=1)
    uniq, inverse = torch.unique(h, return_inverse=True)
    rows = torch.arange(R, device=keys.device)
    first = torch.full((len(uniq),), R, dtype=torch.int64, device=keys.device)
    first.scatter_reduce_(0, inverse, rows, reduce="amin")
    if not torch.equal(keys[first[inverse]], keys):
        return None
    return first, inverse


class VariableSelection(nn.Module):
    """TFT variable selection over V scalar variables: softmax weights from a GRN over all of them (with an
    optional static context), times each variable's own GRN output. Returns (combined [..., d], weights [..., V])."""

    def __init__(self, n_vars: int, d: int, d_context: int = 0, dropout: float = 0.0):
        super().__init__()
        # the flattened per-variable embeddings are linear in the scalars, so the weight GRN reads x directly
        self.weights = GRN(n_vars, d, n_vars, d_context, dropout)
        self.vars = GroupedScalarGRN(n_vars, d, d)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., V]; c broadcastable to [..., d] (e.g. [B, 1, d] for a window's steps: the context's linear
        map then runs once per window, not once per step) -> ([..., d], [..., V])."""
        w = torch.softmax(self.weights(x, c), dim=-1)
        V = x.shape[-1]
        out = self.vars.combine(x.reshape(-1, V), w.reshape(-1, V))
        return out.view(x.shape[:-1] + out.shape[-1:]), w


class GateAddNorm(nn.Module):
    def __init__(self, d: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(d, 2 * d)
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, a: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + F.glu(self.fc(self.drop(a)), dim=-1))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax(q k^T / sqrt(d)) v with an additive mask; plain matmuls export everywhere."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1) @ v


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model={d} must be divisible by n_heads={n_heads}")
        self.h, self.qkv, self.out = n_heads, nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, None).transpose(1, 2).reshape(B, L, D)
        return self.drop(self.out(y))


def same_date(t: torch.Tensor) -> torch.Tensor:
    """[B, B] True where two samples share a date row: the stocks one sample may attend to or average over."""
    return t[:, None] == t[None, :]


def date_slots(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Each row's slot in the padded by-date view `[D, N_max]` of a batch on date rows t [B]: (date [B], 0..D-1
    ascending; pos [B], its place among its date's rows in batch order; D; N_max)."""
    _, g = torch.unique(t, return_inverse=True)
    d = int(g.max()) + 1 if len(g) else 0
    counts = torch.bincount(g, minlength=d)
    order = torch.argsort(g, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.empty_like(g)
    pos[order] = torch.arange(len(g), device=g.device) - starts[g[order]]
    return g, pos, d, int(counts.max()) if d else 0


def scatter_by_date(
    values: torch.Tensor, slots: tuple[torch.Tensor, torch.Tensor, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [B, ...] into their `date_slots` -> (`[D, N_max, ...]` zero-padded, `[D, N_max]` mask of real rows).
    Gradients flow through to `values`."""
    g, pos, d, n = slots
    dense = values.new_zeros((d, n, *values.shape[1:])).index_put((g, pos), values)
    mask = torch.zeros((d, n), dtype=torch.bool, device=values.device)
    mask[g, pos] = True
    return dense, mask


def date_mean(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x [B, F] -> [B, F]: each row's mean over the batch's rows of its date. Graph capture records the [B, B]
    matmul with the same-date matrix (a served batch is one date); eager runs sum per date, k dates costing
    k N instead of (k N)^2."""
    if _capturing_graph():
        same = same_date(t).to(x.dtype)
        return (same @ x) / same.sum(dim=1, keepdim=True)
    g, _, d, _ = date_slots(t)
    sums = x.new_zeros(d, x.shape[1]).index_add(0, g, x)
    return (sums / torch.bincount(g, minlength=d).to(x.dtype)[:, None])[g]


class CrossStockAttention(nn.Module):
    """Multi-head attention across the stocks of each date (MASTER's inter-stock aggregation), pre-norm and
    residual: h [B, D] per-stock states, t [B] date rows -> [B, D]. A sample attends only to samples of its own
    date, so a batch of whole dates is k independent cross-sections; a served batch is one date."""

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden size {d} must be divisible by n_heads={n_heads}")
        self.h, self.norm, self.qkv, self.out = n_heads, nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = Dropout(dropout)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(self.norm(h))
        y = self._whole_batch(qkv, t) if _capturing_graph() else self._per_date(qkv, t)
        h = h + self.drop(self.out(y))
        return h + self.drop(self.ff(h))

    def _whole_batch(self, qkv: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One [B, B] attention masked to same-date pairs: the plain path that tracing and export record."""
        B, D = qkv.shape[0], qkv.shape[1] // 3
        q, k, v = qkv.view(B, 3, self.h, D // self.h).permute(1, 2, 0, 3).unbind(0)
        mask = torch.zeros(B, B, dtype=qkv.dtype, device=qkv.device).masked_fill(~same_date(t), float("-inf"))
        return attention(q, k, v, mask).transpose(0, 1).reshape(B, D)

    def _per_date(self, qkv: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The same attention on the padded [dates, N_max] view: each date's own [N, N] block, so k dates per
        batch cost k N^2 rather than (k N)^2, through torch's fused attention kernel (flash on CPU and CUDA).
        At 4 dates x ~450 stocks the whole-batch form took ~85 % of MASTER's training step
        (scripts/bench_train.py --only master --profile). Padded keys are masked; padded queries are computed
        and dropped."""
        slots = date_slots(t)
        g, pos, d, n = slots
        B, D = qkv.shape[0], qkv.shape[1] // 3
        dense, present = scatter_by_date(qkv, slots)
        q, k, v = dense.view(d, n, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4).unbind(0)  # [d, H, n, dh]
        mask = qkv.new_zeros(d, 1, 1, n).masked_fill(~present[:, None, None, :], float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [d, H, n, dh]
        return y.permute(0, 2, 1, 3)[g, pos].reshape(B, D)


class CrossStock(nn.Module):
    """`n_layers` CrossStockAttention layers after a per-stock encoder, or the identity when n_layers is 0.
    `inputs` is what the network it sits in then reads: ("x", "t") with layers, ("x",) without."""

    def __init__(self, d: int, n_layers: int = 0, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"cross_layers must be >= 0, got {n_layers}")
        self.layers = nn.ModuleList([CrossStockAttention(d, n_heads, dropout) for _ in range(n_layers)])
        self.inputs: tuple[str, ...] = ("x", "t") if n_layers else ("x",)

    def forward(self, h: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        if not len(self.layers):
            return h
        if t is None:
            raise ValueError("cross-stock layers need t, the date row of every sample")
        for layer in self.layers:
            h = layer(h, t)
        return h


class InterpretableAttention(nn.Module):
    """TFT's multi-head attention: per-head queries and keys, one value projection shared by all heads, heads
    averaged, so the averaged attention pattern is a readable importance over time steps."""

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.h, self.dh = n_heads, max(d // n_heads, 1)
        self.q = nn.Linear(d, self.h * self.dh)
        self.k = nn.Linear(d, self.h * self.dh)
        self.v = nn.Linear(d, self.dh)
        self.out = nn.Linear(self.dh, d)
        self.drop = Dropout(dropout)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, Q, _ = query.shape
        K = keys.shape[1]
        q = self.q(query).view(B, Q, self.h, self.dh).transpose(1, 2)  # [B, H, Q, dh]
        k = self.k(keys).view(B, K, self.h, self.dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.dh) + mask  # [B, H, Q, K]
        attn = torch.softmax(scores, dim=-1).mean(dim=1)  # [B, Q, K]
        return self.drop(self.out(attn @ self.v(keys))), attn


def sinusoidal_encoding(length: int, d: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class StaticEmbedding(nn.Module):
    """Symbol and sector ids -> [B, 2, d] (or their concatenation). Ids beyond the table map to 0 (unknown)."""

    def __init__(self, n_symbols: int, n_sectors: int, d: int):
        super().__init__()
        self.symbol = nn.Embedding(max(n_symbols, 1), d)
        self.sector = nn.Embedding(max(n_sectors, 1), d)

    def forward(self, static: torch.Tensor) -> torch.Tensor:
        sym = static[:, 0].clamp(0, self.symbol.num_embeddings - 1)
        sec = static[:, 1].clamp(0, self.sector.num_embeddings - 1)
        return torch.stack([self.symbol(sym), self.sector(sec)], dim=1)
