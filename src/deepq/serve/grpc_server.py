"""The gRPC front end (proto/deepq.proto): the same predict call as REST, on the same PredictionService.

Auth: the API key in the `x-api-key` metadata entry. Bad requests get INVALID_ARGUMENT (a date after the
served data or not a session included, unless allow_stale), unknown pinned models NOT_FOUND, never
UNKNOWN/INTERNAL for a client's mistake. Responses carry data_as_of and stale_sessions as REST's do.
"""

from __future__ import annotations

import hmac
import math
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from deepq.serve.inputs import InputBuilder, InputError, Inputs
from deepq.serve.pb import deepq_pb2, deepq_pb2_grpc
from deepq.serve.service import PredictionService


class PredictorServicer(deepq_pb2_grpc.PredictorServicer):
    def __init__(self, service: PredictionService):
        self.service = service

    def _authorise(self, context: Any) -> None:
        if self.service.api_key is None:
            return
        key = dict(context.invocation_metadata()).get("x-api-key", "")
        if not key or not hmac.compare_digest(str(key).encode(), self.service.api_key.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key (x-api-key metadata)")

    def Predict(self, request: Any, context: Any) -> Any:
        self._authorise(context)
        s = self.service.settings
        symbols, instances = list(request.symbols), list(request.instances)
        if bool(symbols) == bool(instances):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "send exactly one of symbols (with as_of) or instances"
            )
        if symbols:
            if not request.as_of:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "as_of is required with symbols")
            if len(symbols) > s.max_symbols:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{len(symbols)} symbols exceed max_symbols={s.max_symbols}",
                )
            as_of, allow_stale = request.as_of, request.allow_stale

            def inputs_for(builder: InputBuilder) -> Inputs:
                return builder.for_symbols(symbols, as_of, allow_stale)
        else:
            if len(instances) > s.max_instances:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{len(instances)} instances exceed max_instances"
                )
            keys = [w.key for w in instances]

            def inputs_for(builder: InputBuilder) -> Inputs:
                shape = (builder.lookback, len(builder.feature_names))
                flat = [np.asarray(w.values, dtype=np.float32) for w in instances]
                bad = [w.key for w, v in zip(instances, flat, strict=True) if v.size != shape[0] * shape[1]]
                if bad:
                    raise InputError(
                        f"instances {bad[:5]}: values must hold {shape[0]}x{shape[1]} floats (row-major)"
                    )
                return builder.for_windows(np.stack(flat).reshape(len(flat), *shape), keys)

        try:
            body, shadow_job = self.service.predict(
                inputs_for, request.request_key or None, request.model or None
            )
        except InputError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except KeyError as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e.args[0]))
        if shadow_job is not None:
            shadow_job()  # gRPC has no after-response hook; the shadow runs in this worker thread
        return to_proto(body)

    def ListModels(self, request: Any, context: Any) -> Any:
        self._authorise(context)
        fresh = self.service.freshness()
        return deepq_pb2.ListModelsResponse(
            data_as_of=fresh.data_as_of,
            stale_sessions=fresh.stale_sessions,
            models=[
                deepq_pb2.ModelInfo(
                    ref=m["ref"],
                    stage=m["stage"],
                    weight=m["weight"],
                    role=m["role"],
                    features=m["features"],
                    lookback=int(m["lookback"] or 0),
                    data_as_of=m["data_as_of"],
                    stale_sessions=m["stale_sessions"],
                )
                for m in self.service.describe()
            ],
        )


def to_proto(body: dict[str, Any]) -> Any:
    preds = []
    for p in body["predictions"]:
        ok = p["pred"] is not None
        preds.append(
            deepq_pb2.Prediction(
                key=p["key"],
                ok=ok,
                pred=p["pred"] if ok else math.nan,
                score=p["score"] if ok else math.nan,
                up=math.nan if p.get("up") is None else p["up"],
                outputs=p.get("outputs") or {},
                reason=p.get("reason") or "",
            )
        )
    return deepq_pb2.PredictResponse(
        request_id=body["request_id"],
        model=body["model"],
        version=body["version"],
        as_of=body["as_of"] or "",
        predictions=preds,
        data_as_of=body["data_as_of"],
        stale_sessions=body["stale_sessions"],
        stale=body["stale"],
    )


def start_grpc(
    service: PredictionService, address: str = "127.0.0.1:50051", workers: int = 4
) -> tuple[grpc.Server, int]:
    """Start a gRPC server (non-blocking). Returns it and the bound port (address may end in ':0')."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    deepq_pb2_grpc.add_PredictorServicer_to_server(PredictorServicer(service), server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port
