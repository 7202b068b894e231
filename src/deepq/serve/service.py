"""The prediction service behind both the REST and the gRPC front ends.

Startup resolves every routed version in the registry, verifies its checksums, loads its TorchScript
module, and builds its inputs from the run's own config (serve/inputs.py). A request is routed to one
version (A/B, sticky per key), answered in one batched forward pass, and every prediction is logged with
the version that made it; the shadow version, if configured, predicts the same inputs off the hot path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter, Histogram

from deepq.export.registry import ModelVersion, Registry
from deepq.serve.inputs import (
    InputBuilder,
    InputError,
    Inputs,
    PanelFeatures,
    load_panel_features,
    postprocess,
)
from deepq.serve.routing import Router
from deepq.serve.runtime import choose_runner

log = logging.getLogger("deepq.serve")


@dataclass(frozen=True)
class ServeSettings:
    registry: str = "registry"
    routes: Mapping[str, float] = field(default_factory=lambda: {"default": 1.0})  # ref -> weight
    shadow: str | None = None
    api_key_env: str = "DEEPQ_API_KEY"  # the key is read from this variable, never from a file or argument
    require_api_key: bool = True
    max_body_bytes: int = 1 << 20
    max_symbols: int = 1000
    max_instances: int = 4096
    batch_size: int = 4096  # rows per forward pass
    data_overrides: Mapping[str, Any] = field(
        default_factory=dict
    )  # e.g. {"prices": "/backup/prices.parquet"}
    prediction_log: str | None = None  # JSON lines; None = the `deepq.predictions` logger only
    num_threads: int = 1
    # auto: ONNX Runtime (converted from the TorchScript artifact) when it reproduces TorchScript's outputs on
    # real windows within parity_atol, else TorchScript; or force one of them (serve/runtime.py)
    runtime: str = "auto"
    parity_atol: float = 1e-5


class LoadedModel:
    def __init__(
        self,
        version: ModelVersion,
        module: torch.jit.ScriptModule,
        meta: dict,
        builder: InputBuilder,
        runtime: str = "torchscript",
        parity_atol: float = 1e-5,
        threads: int = 1,
    ):
        self.version, self.module, self.meta, self.builder = version, module, meta, builder
        self.runtime, self.run = choose_runner(
            runtime, module, parity_examples(builder), builder.input_names, version.ref, threads, parity_atol
        )

    def predict(self, inputs: Inputs, batch_size: int) -> dict[str, np.ndarray]:
        n = len(inputs.x)
        if n == 0:
            return {}
        outs = [self.run(inputs.rows(i, i + batch_size)) for i in range(0, n, batch_size)]
        return postprocess(outs[0] if len(outs) == 1 else np.concatenate(outs), self.meta)


def parity_examples(builder: InputBuilder, n: int = 64) -> list[tuple[torch.Tensor, ...]]:
    """Real model inputs from the served panel (its latest session with usable windows): batch 1 and up to
    `n` rows, to check a runtime against TorchScript before serving with it."""
    ok = builder.servable
    dates = np.flatnonzero(ok.any(axis=1))
    if len(dates) == 0:  # nothing servable: zeros of the right shapes still exercise the graph
        t = np.full(2, builder.lookback - 1)
        s = np.zeros(2, dtype=np.int64)
    else:
        cols = np.flatnonzero(ok[dates[-1]])[:n]
        t, s = np.full(len(cols), dates[-1]), cols
    full = builder.model_inputs(t, s)
    return [tuple(x[:1] for x in full), full]


class Metrics:
    """Prometheus collectors in their own registry (one per app, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepq_requests",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deepq_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            "deepq_predictions",
            "Predictions by model version and role",
            ["model", "role"],
            registry=self.registry,
        )


class PredictionLog:
    """Every prediction with its model version: JSON lines to a file and/or the `deepq.predictions` logger."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._logger = logging.getLogger("deepq.predictions")
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self, request_id: str, ref: str, role: str, inputs: Inputs, result: Mapping[str, np.ndarray]
    ) -> None:
        to_logger = self._logger.isEnabledFor(logging.INFO)
        if not (to_logger or self.path):  # nobody reads it: skip the encoding
            return
        ts = time.time()
        keys = [k for k, ok in zip(inputs.keys, inputs.usable, strict=True) if ok]
        pred = result.get("pred", np.empty(0))
        lines = [
            json.dumps(
                {
                    "ts": ts,
                    "request_id": request_id,
                    "model": ref,
                    "role": role,
                    "as_of": inputs.as_of,
                    "key": k,
                    "pred": float(p),
                }
            )
            for k, p in zip(keys, pred, strict=True)
        ]
        if to_logger:
            for line in lines:
                self._logger.info(line)
        if self.path and lines:
            with self._lock, open(self.path, "a") as f:
                f.write("\n".join(lines) + "\n")


class PredictionService:
    def __init__(self, settings: ServeSettings, api_key: str | None = None):
        self.settings = settings
        torch.set_num_threads(settings.num_threads)
        self.registry = Registry(settings.registry)
        self.metrics = Metrics()
        self.log = PredictionLog(settings.prediction_log)
        self.api_key = api_key
        self.models: dict[str, LoadedModel] = {}  # ref as configured -> model; also 'name:version'
        sources: dict[tuple[str, int, bool], PanelFeatures] = {}
        refs = list(settings.routes) + ([settings.shadow] if settings.shadow else [])
        for ref in refs:
            mv = self.registry.resolve(None if ref == "default" else ref)
            if mv.ref not in self.models:
                module, meta = self.registry.load(mv)  # verifies every artifact's sha256
                config = (mv.path / "config.yaml").read_text()
                lookback = int(meta["lookback"])
                rank = (meta.get("normalizer") or {}).get("method") == "rank"
                key = (config + json.dumps(dict(settings.data_overrides), sort_keys=True), lookback, rank)
                if key not in sources:
                    sources[key] = load_panel_features(config, lookback, rank, settings.data_overrides)
                try:
                    builder = InputBuilder(sources[key], meta)
                except InputError as e:
                    raise ValueError(f"{mv.ref}: {e}") from None
                self.models[mv.ref] = LoadedModel(
                    mv, module, meta, builder, settings.runtime, settings.parity_atol, settings.num_threads
                )
            self.models[ref] = self.models[mv.ref]
        self.router = Router.from_weights(
            {self.models[r].version.ref: w for r, w in settings.routes.items()},
            shadow=self.models[settings.shadow].version.ref if settings.shadow else None,
        )
        self.ready = True

    def model_for(self, request_key: str | None, pinned: str | None) -> LoadedModel:
        if pinned:
            if pinned not in self.models:
                raise KeyError(f"model {pinned!r} is not served; served: {sorted(self.models)}")
            return self.models[pinned]
        return self.models[self.router.choose(request_key)]

    def predict(
        self,
        inputs_for: Callable[[InputBuilder], Inputs],
        request_key: str | None = None,
        pinned: str | None = None,
    ) -> tuple[dict[str, Any], Callable[[], None] | None]:
        """Route, predict, log. Returns the response body and the shadow job to run after responding."""
        model = self.model_for(request_key, pinned)
        inputs = inputs_for(model.builder)
        result = model.predict(inputs, self.settings.batch_size)
        request_id = os.urandom(16).hex()  # as uuid4().hex, without building a UUID
        ref = model.version.ref
        self.log.write(request_id, ref, "primary", inputs, result)
        self.metrics.predictions.labels(ref, "primary").inc(int(inputs.usable.sum()))
        body = {
            "request_id": request_id,
            "model": model.version.name,
            "version": model.version.version,
            "as_of": inputs.as_of,
            "predictions": rows(inputs, result),
        }
        shadow_job = None
        if self.router.shadow and not pinned and self.router.shadow != ref:
            shadow = self.models[self.router.shadow]

            def shadow_job() -> None:
                try:
                    s_inputs = inputs_for(shadow.builder)
                    s_result = shadow.predict(s_inputs, self.settings.batch_size)
                    self.log.write(request_id, shadow.version.ref, "shadow", s_inputs, s_result)
                    self.metrics.predictions.labels(shadow.version.ref, "shadow").inc(
                        int(s_inputs.usable.sum())
                    )
                except Exception:  # the shadow must never hurt the primary path
                    log.exception("shadow prediction failed for request %s", request_id)

        return body, shadow_job

    def describe(self) -> list[dict[str, Any]]:
        weights = {a.ref: a.weight for a in self.router.arms}
        seen, out = set(), []
        for m in self.models.values():
            if m.version.ref in seen:
                continue
            seen.add(m.version.ref)
            role = "shadow" if m.version.ref == self.router.shadow else "primary"
            out.append(
                m.version.summary()
                | {
                    "ref": m.version.ref,
                    "weight": weights.get(m.version.ref, 0.0),
                    "role": role,
                    "features": list(m.meta["features"]),
                    "inputs": list(m.builder.input_names),
                    "runtime": m.runtime,
                }
            )
        return out


def rows(inputs: Inputs, result: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One entry per requested key, in request order; keys without a window get a reason instead."""
    if not len(result):
        preds = scores = ups = []
        extra: dict[str, list[float]] = {}
    else:  # tolist(): Python floats in one call each, not one float() per cell
        preds, scores = result["pred"].tolist(), result["score"].tolist()
        ups = [None if u != u else u for u in result["up"].tolist()]
        extra = {n: v.tolist() for n, v in result.items() if n not in ("pred", "score", "up")}
    out: list[dict[str, Any]] = []
    k = 0
    for key, ok in zip(inputs.keys, inputs.usable.tolist(), strict=True):
        if not ok:
            out.append(
                {"key": key, "pred": None, "score": None, "up": None, "reason": inputs.reasons.get(key)}
            )
            continue
        out.append(
            {
                "key": key,
                "pred": preds[k],
                "score": scores[k],
                "up": ups[k],
                "outputs": {n: v[k] for n, v in extra.items()} or None,
            }
        )
        k += 1
    return out
