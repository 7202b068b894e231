"""A compiled LSTM layer for float32 training on a CPU: the recurrence in `cpu_lstm.cc`, the rest in torch.

oneDNN's LSTM (what nn.LSTM runs on a CPU) is the step's main cost for DeepAR at its small sizes (hidden 32,
batch 256): it computes every gradient (the input's too, when the input is data) and moves each step's gates
through memory. Here a layer is split the way the arithmetic allows:
- the input projection over all steps, x W_ih^T, and in the backward the weight gradients (dW_ih = dG^T x,
  dW_hh = dG^T h_{t-1}, one product over every step and window each) are single large products in torch's
  BLAS; a static per-window input (DeepAR's embeddings) enters as a per-window bias, not 60 copies;
- the sequential part, per window and step `gates = xp_t + bias + h_{t-1} W_hh^T`, the four gate
  nonlinearities and the cell update, and backwards the gates' gradient and dh_{t-1} = dG_t W_hh, runs in
  the C++ kernel with h and c in registers;
- autograd computes only what is asked for: no input gradient for a data input.

The kernel is compiled on first use for the hidden size and this machine (`-march=native`; ~0.3 s with g++)
into the kernel cache ($DEEPQ_KERNEL_DIR, else ~/.cache/deepq/kernels), written to a temporary file and
renamed. Without a C++ compiler, with a hidden size that is not a multiple of 16, or with
DEEPQ_CPU_LSTM=0, `kernel` returns None and callers keep nn.LSTM (`layers.lstm_sequence`), which this layer
is tested equal to in values and gradients.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deepq.models.grouped_grn import BufferPool

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_lstm.cc")
VECTOR = 16  # floats per vector in the kernel: the hidden size must be a multiple of it
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-fno-exceptions")


def kernel_dir() -> Path:
    if os.environ.get("DEEPQ_KERNEL_DIR"):
        return Path(os.environ["DEEPQ_KERNEL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepq" / "kernels"


def compiler() -> str | None:
    return os.environ.get("CXX") or _which("g++") or _which("c++")


_which = functools.cache(shutil.which)


def _machine() -> str:
    """What -march=native compiles for: the architecture and, on Linux, the CPU's feature flags."""
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text(errors="replace").splitlines()
        flags = next((ln for ln in lines if ln.startswith(("flags", "Features"))), "")
    return f"{platform.machine()} {flags}"


def kernel(hidden: int) -> ctypes.CDLL | None:
    """The compiled recurrence for `hidden`; None where it is switched off (DEEPQ_CPU_LSTM=0, read on every
    call) or cannot be built."""
    if os.environ.get("DEEPQ_CPU_LSTM", "1") == "0":
        return None
    return build(hidden, compiler(), kernel_dir())


@functools.cache
def build(hidden: int, cxx: str | None, folder: Path) -> ctypes.CDLL | None:
    """Compile (once per source, flags, compiler and CPU: the file name carries their hash) and load the kernel
    for `hidden`; a failed build logs why, leaves no file behind and returns None."""
    if hidden % VECTOR:
        return None
    if cxx is None:
        log.warning("no C++ compiler (g++, c++ or $CXX): LSTM training on the CPU keeps nn.LSTM")
        return None
    cmd = [cxx, *FLAGS, f"-DHID={hidden}", str(SOURCE)]
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
        key = hashlib.sha256(
            "\n".join([SOURCE.read_text(), *cmd[1:], version, _machine()]).encode()
        ).hexdigest()
        path = folder / f"cpu_lstm_h{hidden}_{key[:16]}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
            os.close(fd)
            try:
                done = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, timeout=300)
                if done.returncode:
                    raise RuntimeError(done.stderr.strip()[-2000:])
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        log.warning(
            "the CPU LSTM kernel (%s) did not build, LSTM training keeps nn.LSTM: %s", SOURCE.name, err
        )
        return None
    ptr = ctypes.c_void_p
    lib.lstm_forward.argtypes = [ctypes.c_int, ctypes.c_int] + [ptr] * 8
    lib.lstm_backward.argtypes = [ctypes.c_int, ctypes.c_int] + [ptr] * 7
    lib.dropout_apply.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_uint, ptr, ptr]
    if lib.lstm_hidden_size() != hidden:
        raise RuntimeError(f"{path} was built for hidden {lib.lstm_hidden_size()}, not {hidden}")
    return lib


_POOL = BufferPool(keep=16)  # a 2-layer step holds 9 buffers at its peak (4 saved per layer + one in use)


class _Layer(torch.autograd.Function):
    """hs [B, T, H] = LSTM(x [B, T, D]; W_ih [4H, D], bias [B, 4H], W_hh [4H, H]) from zero states.

    Its own buffers (the projection, the saved activations, the gates' gradient) come from a pool and go back
    to it when the backward is done: fresh ~8 MB tensors each step cost as much in page faults as the
    arithmetic done in them. So a graph through this layer can be differentiated once (no retain_graph)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        w_ih: torch.Tensor,
        bias: torch.Tensor,
        w_hh: torch.Tensor,
        lib: ctypes.CDLL,
    ) -> torch.Tensor:
        B, T, D = x.shape
        G, H = w_hh.shape
        x, bias, wt = x.contiguous(), bias.contiguous(), w_hh.t().contiguous()
        proj, hp, cs, tcs, acts = (_POOL.take(n, x) for n in (B * T * G, *[B * T * H] * 3, B * T * G))
        xp = torch.mm(x.view(B * T, D), w_ih.t(), out=proj[: B * T * G].view(B * T, G))
        hs = x.new_empty(B, T, H)
        lib.lstm_forward(B, T, *(t.data_ptr() for t in (xp, bias, wt, hs, hp, cs, tcs, acts)))
        _POOL.give(proj)
        ctx.lib, ctx.pooled = lib, (hp, cs, tcs, acts)
        ctx.save_for_backward(x, w_ih, w_hh)
        return hs

    @staticmethod
    def backward(ctx: Any, dhs: torch.Tensor):  # type: ignore[override]
        if ctx.pooled is None:
            raise RuntimeError("the CPU LSTM layer's buffers went back to its pool after the first backward: "
                               "differentiate it once, or set DEEPQ_CPU_LSTM=0 for retain_graph")  # fmt: skip
        x, w_ih, w_hh = ctx.saved_tensors
        hp, cs, tcs, acts = ctx.pooled
        (B, T, D), (G, H) = x.shape, w_hh.shape
        dhs, dg, d_bias = dhs.contiguous(), _POOL.take(B * T * G, x), x.new_empty(B, G)
        tensors = (dhs, cs, tcs, acts, w_hh.contiguous(), dg, d_bias)
        ctx.lib.lstm_backward(B, T, *(t.data_ptr() for t in tensors))
        flat, need = dg[: B * T * G].view(B * T, G), ctx.needs_input_grad
        d_x = flat.mm(w_ih).view(B, T, D) if need[0] else None
        d_w_ih = flat.t().mm(x.view(B * T, D)) if need[1] else None
        d_w_hh = flat.t().mm(hp[: B * T * H].view(B * T, H)) if need[3] else None
        _POOL.give(dg, hp, cs, tcs, acts)
        ctx.pooled = None
        return d_x, d_w_ih, d_bias if need[2] else None, d_w_hh, None


class _Dropout(torch.autograd.Function):
    """Inverted dropout in one pass of the kernel: the keep-mask is a hash of (seed, element index), the seed
    one draw from torch's generator (so torch.manual_seed still fixes every mask), and the backward recomputes
    it rather than storing it. Several times cheaper than the uniform fill it replaces between LSTM layers."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, lib: ctypes.CDLL) -> torch.Tensor:  # type: ignore[override]
        ctx.p, ctx.lib = p, lib
        ctx.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return _apply_mask(lib, x, p, ctx.seed)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        return _apply_mask(ctx.lib, grad, ctx.p, ctx.seed), None, None


def _apply_mask(lib: ctypes.CDLL, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty_like(x)
    lib.dropout_apply(x.numel(), p, seed, x.data_ptr(), out.data_ptr())
    return out


def dropout(lib: ctypes.CDLL, x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode inverted dropout of a float32 CPU tensor through the kernel's hash mask."""
    return _Dropout.apply(x, p, lib) if p > 0 else x


def lstm_layer(
    lib: ctypes.CDLL, x: torch.Tensor, weights: Sequence[torch.Tensor], static: torch.Tensor | None = None
) -> torch.Tensor:
    """One nn.LSTM layer (weights w_ih, w_hh, b_ih, b_hh) over x [B, T, D] from zero states, batch-first,
    through `lib` = kernel(hidden size).

    `static` [B, S] is a per-window input that would be appended to every step's features (w_ih holds D + S
    columns): its projection is computed once per window and joins the biases."""
    w_ih, w_hh, b_ih, b_hh = weights
    B, T, D = x.shape
    bias = (b_ih + b_hh).expand(B, -1)
    if static is not None:
        bias = torch.addmm(b_ih + b_hh, static, w_ih[:, D:].t())
        w_ih = w_ih[:, :D]
    return _Layer.apply(x, w_ih, bias, w_hh, lib)
