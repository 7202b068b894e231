"""The REST front end: FastAPI over the PredictionService.

/v1/* needs the API key in the `X-API-Key` header (the key comes from an environment variable); probes
(/health, /ready) and /metrics do not, so orchestrators and Prometheus can reach them. Bodies over the
size limit get 413 before they are read; malformed requests get 4xx naming the field, never 5xx.
"""

from __future__ import annotations

import hmac
import time
from datetime import date
from typing import Annotated, Any

import numpy as np
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from deepq.serve.inputs import InputError
from deepq.serve.service import PredictionService

Symbol = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.^=_\-]+$")]


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(max_length=128, description="your id for this row, echoed back")
    window: list[list[float | None]] = Field(
        description="raw feature values [lookback][n_features], oldest first, in GET /v1/models' feature order; null = undefined"
    )


class PredictRequest(BaseModel):
    """Either `symbols` + `as_of` (features built from the served price panel) or `instances` (a features payload)."""

    model_config = ConfigDict(extra="forbid")
    symbols: list[Symbol] | None = Field(None, min_length=1, examples=[["AAPL", "JPM"]])
    as_of: date | None = Field(None, description="decision date; the last session on or before it is used")
    instances: list[Instance] | None = Field(None, min_length=1)
    request_key: str | None = Field(
        None, max_length=128, description="sticky A/B assignment key (e.g. client id)"
    )
    model: str | None = Field(None, max_length=128, description="pin a served version ('name:version')")

    @model_validator(mode="after")
    def one_input_kind(self) -> PredictRequest:
        if (self.symbols is None) == (self.instances is None):
            raise ValueError("send exactly one of `symbols` (with `as_of`) or `instances`")
        if self.symbols is not None and self.as_of is None:
            raise ValueError("`as_of` is required with `symbols`")
        return self


class Prediction(BaseModel):
    key: str
    pred: float | None
    score: float | None
    up: float | None
    outputs: dict[str, float] | None = None
    reason: str | None = None


class PredictResponse(BaseModel):
    request_id: str
    model: str
    version: int
    as_of: str | None
    predictions: list[Prediction]


class LimitsAndMetrics:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): body size limit, latency and status metrics."""

    def __init__(self, app: Any, service: PredictionService):
        self.app, self.service = app, service
        self.max_bytes = service.settings.max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        path = scope["path"]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        reject: tuple[int, str] | None = None
        if scope["method"] == "POST":
            if length is None:
                reject = (411, "a Content-Length header is required")
            elif not length.isdigit() or int(length) > self.max_bytes:
                reject = (413, f"request body exceeds the limit of {self.max_bytes} bytes")
        try:
            if reject:
                await JSONResponse({"detail": reject[1]}, status_code=reject[0])(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            m = self.service.metrics
            endpoint = path if path in _KNOWN_PATHS else "other"
            m.requests.labels(endpoint, str(status["code"])).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - started)


_KNOWN_PATHS = {"/v1/predict", "/v1/models", "/health", "/ready", "/metrics"}


def create_app(service: PredictionService) -> FastAPI:
    # async endpoints: inference is ~1 ms of CPU, cheaper to run on the event loop than to hop to a thread
    app = FastAPI(
        title="deepq",
        version="1",
        description="Forecasts from registered deepq models. Send the API key in the X-API-Key header.",
    )
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(key: str | None = Security(key_header)) -> None:
        if service.api_key is None:  # auth explicitly disabled (require_api_key: false)
            return
        if not key or not hmac.compare_digest(key.encode(), service.api_key.encode()):
            raise HTTPException(401, "missing or invalid API key (X-API-Key header)")

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"])
    async def ready() -> Response:
        ok = service.ready and bool(service.models)
        return JSONResponse(
            {"ready": ok, "models": sorted({m.version.ref for m in service.models.values()})},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["probes"])
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        return {"models": service.describe(), "shadow": service.router.shadow}

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[Depends(require_key)])
    async def predict(req: PredictRequest, background: BackgroundTasks) -> Response:
        s = service.settings
        if req.symbols is not None:
            if len(req.symbols) > s.max_symbols:
                raise HTTPException(413, f"{len(req.symbols)} symbols exceed max_symbols={s.max_symbols}")
            symbols, as_of = list(req.symbols), str(req.as_of)

            def inputs_for(builder):  # type: ignore[no-untyped-def]
                return builder.for_symbols(symbols, as_of)
        else:
            assert req.instances is not None
            if len(req.instances) > s.max_instances:
                raise HTTPException(
                    413, f"{len(req.instances)} instances exceed max_instances={s.max_instances}"
                )
            keys = [i.key for i in req.instances]
            try:
                windows = np.array(
                    [[[np.nan if v is None else v for v in row] for row in i.window] for i in req.instances],
                    dtype=np.float32,
                )
            except ValueError:
                raise HTTPException(422, "instances: every window must be [lookback][n_features]") from None

            def inputs_for(builder):  # type: ignore[no-untyped-def]
                return builder.for_windows(windows, keys)

        try:
            body, shadow_job = service.predict(inputs_for, req.request_key, req.model)
        except InputError as e:
            raise HTTPException(422, str(e)) from None
        except KeyError as e:
            raise HTTPException(404, str(e.args[0])) from None
        if shadow_job is not None:
            background.add_task(shadow_job)
        # a Response skips re-validating the body against PredictResponse (built by the service; the model
        # still documents it in OpenAPI)
        return JSONResponse(body, background=background)

    app.add_middleware(LimitsAndMetrics, service=service)
    return app
