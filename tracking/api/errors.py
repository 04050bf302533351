"""The one mapping of errors to HTTP responses and WebSocket close codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracking.api import metrics
from tracking.api.auth import authorize, required_roles
from tracking.core.errors import (
    AlreadyExists,
    BadFrame,
    BatchTooLarge,
    Forbidden,
    FrameTooLarge,
    IllegalTransition,
    NoRoute,
    NotFound,
    OutsideCoverage,
    RateLimited,
    TrackingError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_INTERNAL = 1011
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
"""Redis could not be reached to set up the socket's feed: reconnect after a backoff."""

_CLOSE_CODES: dict[type[TrackingError], int] = {
    ValidationFailed: 4400,
    Unauthorized: 4401,
    Forbidden: 4403,
    NotFound: 4404,
    RateLimited: 4429,
    FrameTooLarge: CLOSE_TOO_BIG,
    Unavailable: CLOSE_TRY_AGAIN_LATER,
}

# Most specific class first: the first match in the error's MRO wins.
_HTTP_STATUS: dict[type[TrackingError], int] = {
    BadFrame: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    AlreadyExists: 409,
    IllegalTransition: 409,
    BatchTooLarge: 413,
    FrameTooLarge: 413,
    ValidationFailed: 422,
    OutsideCoverage: 422,
    NoRoute: 422,
    RateLimited: 429,
    Unavailable: 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation_error",
    429: "rate_limited",
}


def close_code(exc: TrackingError) -> int:
    """WebSocket close code for an error that ends a connection."""
    for cls in type(exc).__mro__:
        if cls in _CLOSE_CODES:
            return _CLOSE_CODES[cls]
    return CLOSE_INTERNAL


def http_status(exc: TrackingError) -> int:
    """HTTP status of an error."""
    for cls in type(exc).__mro__:
        if cls in _HTTP_STATUS:
            return _HTTP_STATUS[cls]
    return 500


def error_body(code: str, detail: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "detail": detail}}


VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "description": "The contract's error body; `code` is `validation_error`",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "detail"],
            "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
        }
    },
}


def install(app: FastAPI) -> None:
    """Register the handlers that give every HTTP error the contract's body."""
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI documents its own 422 body ({"detail": [...]}) on every route
        # that validates input; the handler below answers with ours instead.
        if app.openapi_schema is None:
            schemas = generate_openapi().get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
                schemas.pop("ValidationError", None)
        return generate_openapi()  # the cached, amended schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(TrackingError)
    async def tracking_error(_: Request, exc: TrackingError) -> JSONResponse:
        metrics.ERRORS.labels(exc.code).inc()
        return JSONResponse(error_body(exc.code, exc.detail), status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if required_roles(request):
            # Who may call comes before what they sent: no schema hints to
            # callers without access.
            try:
                authorize(request)
            except TrackingError as denied:
                return await tracking_error(request, denied)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        metrics.ERRORS.labels("validation_error").inc()
        return JSONResponse(
            error_body("validation_error", f"{where}: {first.get('msg')}"), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's answer to a body that is not UTF-8. The contract says a
            # body that is not JSON is a validation error: not UTF-8 is not JSON.
            bad_body = RequestValidationError(
                [{"loc": ("body",), "msg": "not valid JSON: not UTF-8", "type": "json_invalid"}]
            )
            return await validation_error(request, bad_body)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        metrics.ERRORS.labels(code).inc()
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        metrics.ERRORS.labels("internal_error").inc()
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
