"""The REST predict call without the web framework: request and response schemas, and `answer_predict`
(headers + body bytes in, status + body bytes out), shared by the ASGI fast lane and the FastAPI route.

Validation is one call into pydantic-core (`model_validate_json` on the raw bytes) and the response is
serialised by pydantic-core (`to_json`): together several times cheaper than FastAPI's dependency solving,
dict round trip and `json.dumps` for a one-row request, and the same schemas document the route in OpenAPI.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import to_json

from deepq.serve.inputs import InputBuilder, InputError, Inputs
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
    as_of: date | None = Field(
        None,
        description="decision date: a session of the served data, on or before its data_as_of (else 422, "
        "naming the last session, unless allow_stale)",
    )
    allow_stale: bool = Field(
        False,
        description="answer a date after data_as_of or a non-session date from the last session on or "
        "before it, flagged `stale: true`, instead of 422",
    )
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
    data_as_of: str = Field(description="the served data's last session")
    stale_sessions: int = Field(
        description="exchange sessions completed after data_as_of (0 = the data is up to date)"
    )
    stale: bool = Field(description="as_of is not the requested date (allow_stale answered it)")
    predictions: list[Prediction]


Answer = tuple[int, bytes, Callable[[], None] | None]  # status, JSON body, job to run after responding


def error_body(detail: Any) -> bytes:
    return to_json({"detail": detail})


def validation_errors(e: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors in FastAPI's 422 shape (loc under "body"), without the offending input or context
    (they may be large, and are not always JSON-serialisable)."""
    return [
        {"type": err["type"], "loc": ["body", *err["loc"]], "msg": err["msg"]}
        for err in e.errors(include_url=False, include_input=False, include_context=False)
    ]


def key_ok(service: PredictionService, key: bytes | str | None) -> bool:
    if service.api_key is None:  # auth explicitly disabled (require_api_key: false)
        return True
    if isinstance(key, str):
        key = key.encode()
    return bool(key) and hmac.compare_digest(key, service.api_key.encode())  # type: ignore[arg-type]


def answer_predict(service: PredictionService, api_key: bytes | str | None, body: bytes) -> Answer:
    if not key_ok(service, api_key):
        return 401, error_body("missing or invalid API key (X-API-Key header)"), None
    try:
        req = PredictRequest.model_validate_json(body)
    except ValidationError as e:
        return 422, error_body(validation_errors(e)), None
    s = service.settings
    inputs_for: Callable[[InputBuilder], Inputs]
    if req.symbols is not None:
        if len(req.symbols) > s.max_symbols:
            return 413, error_body(f"{len(req.symbols)} symbols exceed max_symbols={s.max_symbols}"), None
        symbols, as_of, allow_stale = req.symbols, str(req.as_of), req.allow_stale

        def inputs_for(builder: InputBuilder) -> Inputs:
            return builder.for_symbols(symbols, as_of, allow_stale)
    else:
        assert req.instances is not None
        if len(req.instances) > s.max_instances:
            msg = f"{len(req.instances)} instances exceed max_instances={s.max_instances}"
            return 413, error_body(msg), None
        keys = [i.key for i in req.instances]
        try:
            windows = np.array(
                [[[np.nan if v is None else v for v in row] for row in i.window] for i in req.instances],
                dtype=np.float32,
            )
        except ValueError:
            return 422, error_body("instances: every window must be [lookback][n_features]"), None

        def inputs_for(builder: InputBuilder) -> Inputs:
            return builder.for_windows(windows, keys)

    try:
        out, shadow_job = service.predict(inputs_for, req.request_key, req.model)
    except InputError as e:
        return 422, error_body(str(e)), None
    except KeyError as e:
        return 404, error_body(str(e.args[0])), None
    return 200, to_json(out), shadow_job
