"""What the service reports about itself: Prometheus collectors and the prediction log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from deepq.serve.inputs import Inputs


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
        self.reloads = Counter(
            "deepq_reloads", "Panel reloads by outcome (ok, error)", ["outcome"], registry=self.registry
        )
        self.stale_sessions = Gauge(
            "deepq_data_stale_sessions",
            "Sessions between the served data's last session and the exchange's last completed one",
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
