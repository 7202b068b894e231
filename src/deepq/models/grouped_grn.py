"""A fused, cache-blocked training path for `layers.GroupedScalarGRN` on CPU.

Why: the past variable selection of a TFT evaluates V per-variable GRNs on every (window, step) row, i.e.
tensors of [V, B*L, 2d] (36 x 15,360 x 64 floats = 141 MB at batch 256, lookback 60). In eager PyTorch each
elementwise op then streams a fresh 70-140 MB tensor through memory, and every fresh tensor that large is a
new mmap whose pages fault in one by one (~50 ms per 70 MB here); autograd keeps ~10 of them. That, not the
arithmetic, was 70 % of a training step.

This autograd Function computes exactly the same function (tested equal to the plain path, values and
gradients), but:
- rows are processed in chunks of `chunk` rows, so each op's operands stay in cache;
- only what the hand-written backward needs is kept (ELU output E, the GLU's sigmoid S and its derivative
  factor Q = P1 S (1 - S), the normalised Z and 1/std): 4 planes instead of ~10, in buffers that a small
  per-module pool hands back after backward, so the next step reuses the same pages (no page faults);
- the backward is written out: the LayerNorm gradient uses two [N, V] matrix products instead of per-element
  means, the GLU gradient is one broadcast multiply against [S, Q], and the parameter gradients are batched
  matrix products accumulated per chunk.

Used only to train on CPU in float32 (under torch.compile it runs eagerly behind a graph break: inductor's
fusion of the plain path was slower than this); inference, export (TorchScript/torch.export/ONNX), CUDA and
autocast take the plain path in layers.py, which is the reference this one is tested against.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch.autograd.function import once_differentiable

EPS = 1e-5  # F.layer_norm's default, as in the plain path


class BufferPool:
    """Reuses the flat float buffers of the last backward: fresh 100 MB tensors cost more in page faults than
    the arithmetic done in them. A buffer is only handed out again after the backward that used it returned
    it, so two forwards in flight simply allocate twice (always correct, never shared)."""

    def __init__(self, keep: int = 6) -> None:
        self.free: list[torch.Tensor] = []
        self.keep = keep
        self.lock = threading.Lock()  # a module-level pool may serve two training threads

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A flat buffer of at least `numel` elements (slice it); hand it back whole with `give`. The smallest
        that fits, so that a large buffer is not spent on a small request."""
        with self.lock:
            fits = [
                (buf.numel(), i)
                for i, buf in enumerate(self.free)
                if buf.numel() >= numel and buf.dtype == like.dtype and buf.device == like.device
            ]
            if fits:
                return self.free.pop(min(fits)[1])
        return torch.empty(numel, dtype=like.dtype, device=like.device)

    def give(self, *bufs: torch.Tensor) -> None:
        with self.lock:
            self.free = [*bufs, *self.free][: self.keep]


def row_chunks(n_rows: int, chunk: int) -> list[tuple[int, int]]:
    return [(n0, min(n0 + chunk, n_rows)) for n0 in range(0, n_rows, chunk)]


def _plane(buf: torch.Tensor, V: int, n0: int, n1: int, k: int) -> torch.Tensor:
    """Chunk-major layout: rows [n0, n1) of a [V, N, k] plane are one contiguous [V, n1 - n0, k] block."""
    return buf[V * n0 * k : V * n1 * k].view(V, n1 - n0, k)


class GroupedGRNFunction(torch.autograd.Function):
    """(x [N, V], w [N, V], params) -> sum_v w_v (gamma_v LayerNorm(GRN_v(x_v))) + w @ beta: [N, d]."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        w: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        sa: torch.Tensor,
        sb: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        chunk: int,
        pool: BufferPool,
    ) -> torch.Tensor:
        N, V = x.shape
        h, d = a.shape[-1], sa.shape[-1]
        xt, wt = x.t().contiguous(), w.t().contiguous()  # [V, N]
        # the GLU's two halves as separate contiguous planes: elementwise ops on strided halves run ~2.5x slower
        w2a, w2b = w2[..., :d].contiguous(), w2[..., d:].contiguous()
        b2a, b2b = b2[..., :d].contiguous(), b2[..., d:].contiguous()
        bufs = tuple(pool.take(V * N * k, x) for k in (h, d, d, d))
        e_buf, q_buf, s_buf, z_buf = bufs
        rstd = x.new_empty(V * N)
        out = x.new_empty(N, d)
        tmp_h, tmp_d = x.new_empty(V, chunk, h), x.new_empty(V, chunk, d)  # per-chunk scratch
        for n0, n1 in row_chunks(N, chunk):
            n = n1 - n0
            xv, wv = xt[:, n0:n1, None], wt[:, n0:n1, None]
            E = _plane(e_buf, V, n0, n1, h)
            U = torch.addcmul(b, xv, a, out=E)
            # ELU(u) = max(u, exp(min(u, 0)) - 1), since e^u - 1 >= u: exp is much cheaper than expm1 here
            torch.maximum(U, torch.clamp_max(U, 0.0, out=tmp_h[:, :n]).exp_().sub_(1.0), out=E)
            Q, S = _plane(q_buf, V, n0, n1, d), _plane(s_buf, V, n0, n1, d)
            torch.baddbmm(b2a, E, w2a, out=Q)  # P1 for now
            torch.baddbmm(b2b, E, w2b, out=S).sigmoid_()  # S = sigmoid(P2) = dGLU/dP1
            G = torch.mul(Q, S, out=tmp_d[:, :n])  # the GLU's output; R and then Z * Z reuse its scratch
            torch.addcmul(G, G, S, value=-1.0, out=Q)  # Q = G (1 - S) = dGLU/dP2
            R = G.addcmul_(xv, sa).add_(sb)  # + skip(x)
            Z = _plane(z_buf, V, n0, n1, d)
            r = rstd[V * n0 : V * n1].view(V, n, 1)
            # LayerNorm over rows of d = 32 written out: 3x faster than native_layer_norm on such short rows
            torch.sub(R, R.mean(dim=-1, keepdim=True), out=Z)
            var = torch.mul(Z, Z, out=tmp_d[:, :n]).mean(dim=-1, keepdim=True)
            Z.mul_(torch.rsqrt(var.add_(EPS), out=r))
            torch.sum(torch.mul(Z, gamma, out=tmp_d[:, :n]).mul_(wv), 0, out=out[n0:n1])
        out.addmm_(w, beta)
        ctx.save_for_backward(x, w, a, w2, sa, gamma, beta)
        ctx.planes = (xt, wt, bufs, rstd)
        ctx.chunk, ctx.pool = chunk, pool
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, a, w2, sa, gamma, beta = ctx.saved_tensors
        xt, wt, bufs, rstd = ctx.planes
        e_buf, q_buf, s_buf, z_buf = bufs
        ctx.planes = None
        need_x = ctx.needs_input_grad[0]
        N, V = x.shape
        h, d = a.shape[-1], sa.shape[-1]
        gout = gout.contiguous()
        # LayerNorm backward, mean_d(dZ) with dZ = w gamma G is w (G . gamma_v) / d: one [N, d] x [d, V] product
        m1 = (gout @ gamma[:, 0].t()).t().mul_(1.0 / d).contiguous()  # [V, N]
        x1 = torch.stack([xt, torch.ones_like(xt)], dim=1)  # [V, 2, N]: sums of (x * g, g) in one bmm
        dw = gout @ beta.t()  # [N, V], the beta term; each chunk adds the rest
        dx = x.new_empty(N, V) if need_x else None
        da, db = torch.zeros_like(a), torch.zeros_like(a)
        dsa, dsb = torch.zeros_like(sa), torch.zeros_like(sa)
        dw2, db2 = torch.zeros_like(w2), x.new_zeros(V, 1, 2 * d)
        dgamma = torch.zeros_like(gamma)
        gamma_t = gamma.transpose(1, 2)
        w2_t = w2.transpose(1, 2).contiguous()  # a transposed operand sends bmm down a ~25 % slower path
        # per-chunk scratch, allocated once per backward and written with out= (outside the profiler this
        # measured no faster than fresh results; it keeps the loop's memory flat)
        c = min(ctx.chunk, N)
        dP = x.new_empty(V, c, 2 * d)
        tmp_h, tmp_e = x.new_empty(V, c, h), x.new_empty(V, c, h)
        tmp_d, tmp_zg = x.new_empty(V, c, d), x.new_empty(V, c, d)
        for n0, n1 in row_chunks(N, ctx.chunk):
            n = n1 - n0
            # the chunk's output gradient copied out to every variable once: a product broadcast over both
            # operands ([V, 1, d] x [1, n, d]) runs ~3x slower than one over the same shape
            G = tmp_d[:, :n].copy_(gout[None, n0:n1].expand(V, n, d))
            wv = wt[:, n0:n1, None]
            Z, E = _plane(z_buf, V, n0, n1, d), _plane(e_buf, V, n0, n1, h)
            Q, S = _plane(q_buf, V, n0, n1, d), _plane(s_buf, V, n0, n1, d)
            ZG = torch.mul(Z, G, out=tmp_zg[:, :n])
            dwc = torch.bmm(ZG, gamma_t)  # [V, n, 1]: d out / d w_v without the beta term
            dw[n0:n1] += dwc[..., 0].t()
            dgamma.baddbmm_(wv.transpose(1, 2), ZG)
            # dR = rstd w (gamma G - mean_d(gamma G) - Z mean_d(gamma G Z)), in G's buffer
            dR = G.mul_(gamma).sub_(m1[:, n0:n1, None]).addcmul_(Z, dwc, value=-1.0 / d)
            dR.mul_(rstd[V * n0 : V * n1].view(V, n, 1) * wv)
            xs = x1[:, :, n0:n1]
            dss = torch.bmm(xs, dR)
            dsa.add_(dss[:, :1])
            dsb.add_(dss[:, 1:])
            dxc = torch.bmm(dR, sa.transpose(1, 2)) if dx is not None else None
            dPc = dP[:, :n]
            torch.mul(dR, S, out=dPc[..., :d])
            torch.mul(dR, Q, out=dPc[..., d:])
            dw2.baddbmm_(E.transpose(1, 2), dPc)
            db2.add_(dPc.sum(1, keepdim=True))  # a row sum: half the work of a product with x1's two rows
            dE = torch.bmm(dPc, w2_t, out=tmp_e[:, :n])
            # ELU'(u) from its output E: 1 where E > 0, E + 1 elsewhere
            dU = dE.mul_(torch.clamp_max(E, 0.0, out=tmp_h[:, :n]).add_(1.0))
            dab = torch.bmm(xs, dU)
            da.add_(dab[:, :1])
            db.add_(dab[:, 1:])
            if dx is not None and dxc is not None:
                dx[n0:n1] = dxc.baddbmm_(dU, a.transpose(1, 2))[..., 0].t()
        ctx.pool.give(*bufs)
        dbeta = wt @ gout
        return dx, dw, da, db, dw2, db2, dsa, dsb, dgamma, dbeta, None, None


def grouped_grn_train(
    x: torch.Tensor, w: torch.Tensor, params: tuple[torch.Tensor, ...], chunk: int, pool: BufferPool
) -> torch.Tensor:
    out: torch.Tensor = GroupedGRNFunction.apply(x, w, *params, chunk, pool)
    return out
