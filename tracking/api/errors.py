"""The one mapping of errors to HTTP responses and WebSocket close codes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracking.api import metrics
from tracking.core.errors import (
    Forbidden,
    FrameTooLarge,
    NotFound,
    RateLimited,
    TrackingError,
    Unauthorized,
)

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY_RESTART = 1012
CLOSE_INTERNAL = 1011
CLOSE_TOO_BIG = 1009

_CLOSE_CODES: dict[type[TrackingError], int] = {
    Unauthorized: 4401,
    Forbidden: 4403,
    NotFound: 4404,
    RateLimited: 4429,
    FrameTooLarge: CLOSE_TOO_BIG,
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
            return _CLOSE_CODES[cls]  # type: ignore[index]
    return CLOSE_INTERNAL


def error_body(code: str, detail: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "detail": detail}}


def install(app: FastAPI) -> None:
    """Register the handlers that give every HTTP error the contract's body."""

    @app.exception_handler(TrackingError)
    async def tracking_error(_: Request, exc: TrackingError) -> ORJSONResponse:
        metrics.ERRORS.labels(exc.code).inc()
        return ORJSONResponse(error_body(exc.code, exc.detail), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        metrics.ERRORS.labels("validation_error").inc()
        return ORJSONResponse(
            error_body("validation_error", f"{where}: {first.get('msg')}"), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        metrics.ERRORS.labels(code).inc()
        return ORJSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unhandled error")
        metrics.ERRORS.labels("internal_error").inc()
        return ORJSONResponse(error_body("internal_error", "internal error"), status_code=500)
