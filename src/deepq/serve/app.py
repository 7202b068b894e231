"""The REST front end: FastAPI over the PredictionService.

/v1/* needs the API key in the `X-API-Key` header (the key comes from an environment variable); probes
(/health, /ready) and /metrics do not, so orchestrators and Prometheus can reach them. Bodies over the
size limit get 413 before they are read; malformed requests get 4xx naming the field, never 5xx.

Freshness: `POST /v1/admin/reload` (authenticated) rebuilds the served panels from the data source and swaps
them in atomically; /v1/models, /ready and every prediction carry `data_as_of` and `stale_sessions`, and
/ready answers 503 when the data trails the exchange by more than `max_staleness_sessions`.

`POST /v1/predict` is answered by the outermost ASGI layer (`FrontDoor`) with `rest.answer_predict`, before
FastAPI's middleware stack, router and dependency solving, which cost more CPU than validating the request,
building the window and running the model together. The FastAPI route calls the same function, so the
answer is the same either way, and it documents the call in OpenAPI.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from deepq.serve.freshness import ReloadError
from deepq.serve.rest import PredictRequest, PredictResponse, answer_predict, error_body, key_ok
from deepq.serve.service import PredictionService

log = logging.getLogger("deepq.serve")
_KNOWN_PATHS = ("/v1/predict", "/v1/models", "/v1/admin/reload", "/health", "/ready", "/metrics")
_JSON = (b"content-type", b"application/json")


class FrontDoor:
    """Pure ASGI middleware: body size limit, latency and status metrics, and the predict fast lane."""

    def __init__(self, app: Any, service: PredictionService, fast_lane: bool = True):
        self.app, self.service, self.fast_lane = app, service, fast_lane
        self.max_bytes = service.settings.max_body_bytes
        m = service.metrics
        # label children resolved once: labels() hashes its arguments on every call
        self._latency = {p: m.latency.labels(p) for p in (*_KNOWN_PATHS, "other")}
        self._counts: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        status = 500
        try:
            if scope["method"] != "POST" or path == "/v1/admin/reload":  # reload reads no body
                status = await self._forward(scope, receive, send)
                return
            length = api_key = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    length = value
                elif name == b"x-api-key":
                    api_key = value
            if length is None:
                status = await _respond(send, 411, error_body("a Content-Length header is required"))
            elif not length.isdigit() or int(length) > self.max_bytes:
                msg = f"request body exceeds the limit of {self.max_bytes} bytes"
                status = await _respond(send, 413, error_body(msg))
            elif path == "/v1/predict" and self.fast_lane:
                body = await _read_body(receive)
                try:
                    status, out, job = answer_predict(self.service, api_key, body)
                except (
                    Exception
                ):  # a bug, not the client's fault: 500 with no internals, and the traceback logged
                    log.exception("POST /v1/predict failed")
                    status, out, job = 500, error_body("internal error"), None
                await _respond(send, status, out)
                if job is not None:
                    job()  # the shadow model, after the response has been sent
            else:
                status = await self._forward(scope, receive, send)
        finally:
            endpoint = path if path in _KNOWN_PATHS else "other"
            counter = self._counts.get((endpoint, status))
            if counter is None:
                counter = self._counts[endpoint, status] = self.service.metrics.requests.labels(
                    endpoint, str(status)
                )
            counter.inc()
            self._latency[endpoint].observe(time.perf_counter() - started)

    async def _forward(self, scope: dict, receive: Any, send: Any) -> int:
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_status)
        return status


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # client went away
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes) -> int:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


def create_app(service: PredictionService, fast_lane: bool = True) -> FastAPI:
    """The app; `fast_lane=False` answers /v1/predict through FastAPI's route (same answers, more CPU)."""
    # async endpoints: inference is well under a millisecond of CPU, cheaper on the event loop than a thread hop
    app = FastAPI(
        title="deepq",
        version="1",
        description="Forecasts from registered deepq models. Send the API key in the X-API-Key header.",
    )
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(key: str | None = Security(key_header)) -> None:
        if not key_ok(service, key):
            raise HTTPException(401, "missing or invalid API key (X-API-Key header)")

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"])
    async def ready() -> Response:
        fresh = service.freshness()
        stale = service.stale_reason()  # data older than max_staleness_sessions: take it out of rotation
        ok = service.ready and bool(service.models) and stale is None
        body: dict[str, Any] = {
            "ready": ok,
            "models": sorted({m.version.ref for m in service.models.values()}),
            "data_as_of": fresh.data_as_of,
            "stale_sessions": fresh.stale_sessions,
        }
        if stale:
            body["reason"] = stale
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["probes"])
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        fresh = service.freshness()
        return {
            "models": service.describe(),
            "shadow": service.router.shadow,
            "data_as_of": fresh.data_as_of,
            "stale_sessions": fresh.stale_sessions,
        }

    @app.post(
        "/v1/admin/reload",
        dependencies=[Depends(require_key)],
        tags=["admin"],
        responses={401: {"description": "missing or invalid API key"}, 500: {"description": "reload failed"}},
    )
    async def reload() -> Response:
        """Rebuild the served panels from the data source (new sessions in the cache) and swap them in.
        Requests keep being answered from the old panel while it runs; a failed reload keeps it."""
        try:  # seconds of feature building: off the event loop, so predictions go on meanwhile
            out = await run_in_threadpool(service.reload)
        except ReloadError as e:
            return JSONResponse({"detail": str(e)}, status_code=500)
        return JSONResponse(out)

    # Served by FrontDoor's fast lane; this route documents the call, and answers it the same way without
    # the fast lane.
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        openapi_extra={"security": [{"APIKeyHeader": []}], "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}},
        responses={401: {"description": "missing or invalid API key"}, 422: {"description": "invalid request"}},
    )  # fmt: skip
    async def predict(request: Request) -> Response:
        status, out, job = answer_predict(service, request.headers.get("x-api-key"), await request.body())
        background = BackgroundTask(job) if job is not None else None
        return Response(out, status_code=status, media_type="application/json", background=background)

    def openapi() -> dict[str, Any]:
        # the route reads its body itself, so FastAPI does not know the request model: register its schema
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            req = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps.update(req.pop("$defs", {}))
            comps["PredictRequest"] = req
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(FrontDoor, service=service, fast_lane=fast_lane)
    return app
