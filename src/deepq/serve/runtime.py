"""Inference runtimes for a served version: the registered TorchScript module, or ONNX Runtime.

ONNX Runtime runs the tiny networks served here several times faster than TorchScript at batch 1 (the
single-prediction latency path; scripts/bench_serve.py compares them in one run) and as fast at large
batches. The ONNX graph is converted at startup from the verified TorchScript artifact, so both runtimes
hold the same weights, and it is only used after it reproduced TorchScript's outputs on real windows of the
served panel at batch 1 and at a larger batch (`parity_atol`). `runtime: auto` falls back to TorchScript,
with a warning, when the conversion or that check fails; `runtime: onnxruntime` refuses to start instead.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger("deepq.serve")

RUNTIMES = ("auto", "torchscript", "onnxruntime")
Runner = Callable[[tuple[torch.Tensor, ...]], np.ndarray]  # model inputs (net.inputs order) -> [B, K]


def torchscript_runner(module: torch.jit.ScriptModule) -> Runner:
    def run(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
        with torch.inference_mode():
            return module(*inputs).numpy()

    return run


def onnx_runner(
    module: torch.jit.ScriptModule, example: tuple[torch.Tensor, ...], names: Sequence[str], threads: int
) -> Runner:
    """Convert the TorchScript module to ONNX in memory (batch dimension dynamic) and open a session."""
    import onnxruntime as ort

    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (*names, "out")}
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(
            module, example, buf, dynamo=False,  # type: ignore[arg-type]  # a file object works (legacy exporter)
            input_names=list(names), output_names=["out"],
            dynamic_axes=axes, opset_version=17,
        )  # fmt: skip
    for w in caught:  # the exporter's notes (LSTM batch, TorchScript deprecation): kept, not shown to clients
        log.debug("onnx export: %s", w.message)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]

    def run(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
        feed = {n: t.numpy() for n, t in zip(feed_names, inputs, strict=True)}
        return session.run(None, feed)[0]

    return run


def max_abs_diff(a: Runner, b: Runner, examples: Sequence[tuple[torch.Tensor, ...]]) -> float:
    return max(float(np.abs(a(x) - b(x)).max(initial=0.0)) for x in examples)


def choose_runner(
    runtime: str,
    module: torch.jit.ScriptModule,
    examples: Sequence[tuple[torch.Tensor, ...]],
    names: Sequence[str],
    ref: str,
    threads: int = 1,
    parity_atol: float = 1e-5,
) -> tuple[str, Runner]:
    """(runtime name, runner) for one version. `examples`: real inputs, at least batch 1 and a larger batch."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: choose one of {RUNTIMES}")
    ts = torchscript_runner(module)
    if runtime == "torchscript":
        return "torchscript", ts
    try:
        ort_run = onnx_runner(module, examples[-1], names, threads)
        diff = max_abs_diff(ts, ort_run, examples)
        if not diff <= parity_atol:
            raise ValueError(
                f"ONNX Runtime differs from TorchScript by {diff:.3g} (> parity_atol={parity_atol})"
            )
    except Exception as e:
        if runtime == "onnxruntime":
            raise RuntimeError(f"{ref}: cannot serve with ONNX Runtime: {e}") from e
        log.warning("%s: serving with TorchScript, ONNX Runtime unavailable: %s", ref, e)
        return "torchscript", ts
    return "onnxruntime", ort_run
