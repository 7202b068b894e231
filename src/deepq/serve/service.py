"""The prediction service behind both the REST and the gRPC front ends.

Startup resolves every routed version in the registry, verifies its checksums, loads its TorchScript
module, and builds its inputs from the run's own config (serve/inputs.py). A request is routed to one
version (A/B, sticky per key), answered in one batched forward pass, and every prediction is logged with
the version that made it; the shadow version, if configured, predicts the same inputs off the hot path.

The served panels follow the data source: `reload()` (POST /v1/admin/reload, or the refresher thread when the
data files change) rebuilds them through the last session and swaps one ServingState reference. Every answer
says how fresh its panel is (`data_as_of`, `stale_sessions` against the exchange calendar at `clock()`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepq.data.calendar import last_completed_session, sessions_between
from deepq.export.registry import ModelVersion, Registry
from deepq.serve.freshness import FRESHNESS_TTL, Freshness, ReloadError, source_signature
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
from deepq.serve.telemetry import Metrics, PredictionLog

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
    refresh_interval_s: float = 0.0  # > 0: poll the data files and reload when they change; 0 = off
    max_staleness_sessions: int | None = None  # /ready answers 503 beyond this many sessions; None = no limit
    allow_stale_inputs: bool = False  # serve although a reference series is stale past the fill limit
    calendar: str = "XNYS"  # the exchange whose completed sessions define "stale"


@dataclass(frozen=True)
class _Version:
    mv: ModelVersion
    module: torch.jit.ScriptModule
    meta: dict
    config: str
    lookback: int
    rank: bool


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
        self.data_as_of = str(builder.source.panel.dates[-1])  # the served panel's last session

    def with_builder(self, builder: InputBuilder) -> LoadedModel:
        """The same version and runtime over a reloaded panel (the runner does not depend on the panel)."""
        new = copy.copy(self)
        new.builder, new.data_as_of = builder, str(builder.source.panel.dates[-1])
        return new

    def predict(self, inputs: Inputs, batch_size: int) -> dict[str, np.ndarray]:
        n = len(inputs.x)
        if n == 0:
            return {}
        if inputs.select is not None:  # a cross-stock model: the whole date in one pass, then the asked rows
            out = postprocess(self.run(inputs.tensors), self.meta)
            return {k: v[inputs.select] for k, v in out.items()}
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


@dataclass(frozen=True)
class ServingState:
    """What a request reads: every served model (by configured ref and by version ref) over its panel."""

    models: Mapping[str, LoadedModel]
    data_as_of: str  # the stalest served panel's last session


class PredictionService:
    """Routed versions over the served panels. Everything a request reads (models, their builders and
    panels) sits in one `ServingState`, which `reload()` replaces with one reference assignment: a request
    reads `self.state` once, so it answers wholly from the old panel or wholly from the new one."""

    def __init__(
        self,
        settings: ServeSettings,
        api_key: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.settings = settings
        torch.set_num_threads(settings.num_threads)
        self.registry = Registry(settings.registry)
        self.metrics = Metrics()
        self.log = PredictionLog(settings.prediction_log)
        self.api_key = api_key
        self.clock = clock or (lambda: datetime.now(UTC))  # injectable: tests set "today"
        self._versions: dict[str, _Version] = {}  # version ref -> what reloads need to rebuild its model
        self._aliases: dict[str, str] = {}  # ref as configured ('default', 'name:version') -> version ref
        refs = list(settings.routes) + ([settings.shadow] if settings.shadow else [])
        for ref in refs:
            mv = self.registry.resolve(None if ref == "default" else ref)
            if mv.ref not in self._versions:
                module, meta = self.registry.load(mv)  # verifies every artifact's sha256
                config = (mv.path / "config.yaml").read_text()
                rank = (meta.get("normalizer") or {}).get("method") == "rank"
                self._versions[mv.ref] = _Version(mv, module, meta, config, int(meta["lookback"]), rank)
            self._aliases[ref] = mv.ref
        self._reload_lock = threading.Lock()
        never = datetime.min.replace(tzinfo=UTC)
        self._fresh: tuple[datetime, datetime, dict[str, Freshness]] = (never, never, {})  # [from, until)
        self.state = self._build_state(None)
        self.router = Router.from_weights(
            {self._aliases[r]: w for r, w in settings.routes.items()},
            shadow=self._aliases[settings.shadow] if settings.shadow else None,
        )
        self.freshness()  # the calendar is built now: a bad calendar name fails at startup, not per request
        self.metrics.stale_sessions.set_function(lambda: self.freshness().stale_sessions)
        self._signature = self.data_signature()
        self._stop = threading.Event()
        self.ready = True

    @property
    def models(self) -> Mapping[str, LoadedModel]:
        return self.state.models

    def _build_state(self, old: ServingState | None) -> ServingState:
        """Panels and features from the data source (rebuilt, not reused, when `old` is given) and one
        LoadedModel per version; a reload keeps each version's runtime (its TorchScript/ONNX choice)."""
        s = self.settings
        overrides = json.dumps(dict(s.data_overrides), sort_keys=True, default=str)
        sources: dict[tuple[str, int, bool], PanelFeatures] = {}
        by_ref: dict[str, LoadedModel] = {}
        for ref, v in self._versions.items():
            key = (v.config + overrides, v.lookback, v.rank)
            if key not in sources:
                sources[key] = load_panel_features(
                    v.config,
                    v.lookback,
                    v.rank,
                    s.data_overrides,
                    reuse=old is None,
                    allow_stale_inputs=s.allow_stale_inputs,
                )
            try:
                builder = InputBuilder(sources[key], v.meta)
            except InputError as e:
                raise ValueError(f"{ref}: {e}") from None
            if old is None:
                by_ref[ref] = LoadedModel(
                    v.mv, v.module, v.meta, builder, s.runtime, s.parity_atol, s.num_threads
                )
            else:
                by_ref[ref] = old.models[ref].with_builder(builder)
        models = {alias: by_ref[ref] for alias, ref in self._aliases.items()} | by_ref
        # the service is as fresh as its stalest panel
        data_as_of = min(str(src.panel.dates[-1]) for src in sources.values())
        return ServingState(models, data_as_of)

    def reload(self) -> dict[str, Any]:
        """Rebuild every served panel from the data source through its last session and swap it in. In-flight
        requests finish on the old state; on any error the old state keeps serving and ReloadError says why."""
        with self._reload_lock:  # one rebuild at a time; a second caller waits, then rebuilds again
            old = self.state
            signature = self.data_signature()
            try:
                new = self._build_state(old)
            except Exception as e:
                self.metrics.reloads.labels("error").inc()
                log.exception("reload failed; still serving data as of %s", old.data_as_of)
                raise ReloadError(
                    f"reload failed, still serving data_as_of {old.data_as_of}: {type(e).__name__}: {e}"
                ) from e
            self.state = new  # the one swap
            self._signature = signature
            self.metrics.reloads.labels("ok").inc()
        fresh = self.freshness()
        log.info("reloaded: data as of %s (was %s)", new.data_as_of, old.data_as_of)
        return {
            "data_as_of": fresh.data_as_of,
            "previous_data_as_of": old.data_as_of,
            "stale_sessions": fresh.stale_sessions,
            "last_completed_session": fresh.last_completed_session,
            "models": sorted({m.version.ref for m in new.models.values()}),
        }

    def freshness(self, data_as_of: str | None = None) -> Freshness:
        """How far the served data (or one panel's `data_as_of`) trails the exchange's last completed session
        at the clock's now. Memoised for a minute of clock time: a request pays a clock read, not a calendar."""
        data_as_of = data_as_of or self.state.data_as_of
        now = self.clock()
        if now.tzinfo is None:  # a naive clock reads UTC
            now = now.replace(tzinfo=UTC)
        since, until, memo = self._fresh
        if not since <= now < until:  # expired, or the clock was set back
            memo = {}
            self._fresh = (now, now + FRESHNESS_TTL, memo)
        hit = memo.get(data_as_of)
        if hit is None:
            cal = self.settings.calendar
            last = last_completed_session(pd.Timestamp(now), cal, since=data_as_of)
            hit = memo[data_as_of] = Freshness(data_as_of, sessions_between(data_as_of, last, cal), str(last))
        return hit

    def stale_reason(self) -> str | None:
        """Why /ready should answer 503 (data older than max_staleness_sessions), or None."""
        limit = self.settings.max_staleness_sessions
        fresh = self.freshness()
        if limit is not None and fresh.stale_sessions > limit:
            return (
                f"data as of {fresh.data_as_of} is {fresh.stale_sessions} sessions behind the last completed "
                f"{self.settings.calendar} session {fresh.last_completed_session} "
                f"(max_staleness_sessions={limit})"
            )
        return None

    def data_signature(self) -> str:
        """A cheap fingerprint of the served data sources (size and mtime of every file they name)."""
        overrides = dict(self.settings.data_overrides)
        return "|".join(sorted({source_signature(v.config, overrides) for v in self._versions.values()}))

    def refresh_if_changed(self) -> dict[str, Any] | None:
        """Reload when the data files changed since the last build; None when they did not."""
        if self.data_signature() == self._signature:
            return None
        return self.reload()

    def start_refresher(self, interval_s: float) -> threading.Thread:
        """Poll the data sources every `interval_s` seconds and reload when they changed (a daemon thread;
        `stop_refresher()` ends it). A failed reload is logged and retried at the next change."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh_if_changed()
                except ReloadError:
                    pass  # logged by reload(); the old panel keeps serving
                except Exception:
                    log.exception("refresh check failed")

        thread = threading.Thread(target=loop, name="deepq-refresh", daemon=True)
        thread.start()
        return thread

    def stop_refresher(self) -> None:
        self._stop.set()

    def model_for(
        self, request_key: str | None, pinned: str | None, state: ServingState | None = None
    ) -> LoadedModel:
        models = (state or self.state).models
        if pinned:
            if pinned not in models:
                raise KeyError(f"model {pinned!r} is not served; served: {sorted(models)}")
            return models[pinned]
        return models[self.router.choose(request_key)]

    def predict(
        self,
        inputs_for: Callable[[InputBuilder], Inputs],
        request_key: str | None = None,
        pinned: str | None = None,
    ) -> tuple[dict[str, Any], Callable[[], None] | None]:
        """Route, predict, log. Returns the response body and the shadow job to run after responding."""
        state = self.state  # read once: the whole request (and its shadow) answers from this panel
        model = self.model_for(request_key, pinned, state)
        inputs = inputs_for(model.builder)
        result = model.predict(inputs, self.settings.batch_size)
        request_id = os.urandom(16).hex()  # as uuid4().hex, without building a UUID
        ref = model.version.ref
        self.log.write(request_id, ref, "primary", inputs, result)
        self.metrics.predictions.labels(ref, "primary").inc(int(inputs.usable.sum()))
        fresh = self.freshness(model.data_as_of)
        body = {
            "request_id": request_id,
            "model": model.version.name,
            "version": model.version.version,
            "as_of": inputs.as_of,
            "data_as_of": fresh.data_as_of,
            "stale_sessions": fresh.stale_sessions,
            "stale": inputs.stale,
            "predictions": rows(inputs, result),
        }
        shadow_job = None
        if self.router.shadow and not pinned and self.router.shadow != ref:
            shadow = state.models[self.router.shadow]

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
        for m in self.state.models.values():
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
                    "data_as_of": m.data_as_of,
                    "stale_sessions": self.freshness(m.data_as_of).stale_sessions,
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
