"""The one error tree of the service.

Every error has a stable snake_case ``code`` (the wire contract) and a
human-readable ``detail``. Transport adapters map them to HTTP statuses and
WebSocket close codes in one place: ``tracking.api.errors``.
"""

from __future__ import annotations


class TrackingError(Exception):
    """Root of every error the service reports to a client."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(self, detail: str | None = None, *, seq: int | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip().splitlines()[0]
        self.seq = seq  # the driver point this error is about, when there is one
        super().__init__(self.detail)


class BadFrame(TrackingError):
    """The frame is not valid JSON or not a valid message of the protocol."""

    code = "bad_frame"
    http_status = 400


class UnknownType(BadFrame):
    """The frame's `type` is not one this endpoint accepts."""

    code = "unknown_type"


class ValidationFailed(TrackingError):
    """The request body or query does not match the schema."""

    code = "validation_error"
    http_status = 422


class InvalidPosition(ValidationFailed):
    """Coordinates are out of range or not finite numbers."""

    code = "invalid_position"


class FutureTimestamp(ValidationFailed):
    """The position's `ts` is more than 5 minutes in the future."""

    code = "future_ts"


class OutOfOrder(ValidationFailed):
    """The position's `ts` is older than the driver's last accepted position."""

    code = "out_of_order"


class ImplausibleJump(ValidationFailed):
    """The position implies a speed above the physical limit (90 m/s)."""

    code = "implausible_jump"


class BatchTooLarge(ValidationFailed):
    """A batch carries more points than the limit."""

    code = "batch_too_large"
    http_status = 413


class FrameTooLarge(TrackingError):
    """The frame is larger than the 64 KiB limit."""

    code = "frame_too_large"
    http_status = 413


class RateLimited(TrackingError):
    """Too many points per second, or too many bad frames."""

    code = "rate_limited"
    http_status = 429


class Unauthorized(TrackingError):
    """The token is missing, invalid or expired."""

    code = "unauthorized"
    http_status = 401


class Forbidden(TrackingError):
    """The token is valid but does not allow this."""

    code = "forbidden"
    http_status = 403


class NotFound(TrackingError):
    """No such trip or driver."""

    code = "not_found"
    http_status = 404


class AlreadyExists(TrackingError):
    """A trip with this id already exists."""

    code = "already_exists"
    http_status = 409


class IllegalTransition(TrackingError):
    """The trip's status does not allow this action."""

    code = "illegal_transition"
    http_status = 409


class OutsideCoverage(TrackingError):
    """The point is outside the road map's coverage."""

    code = "outside_coverage"
    http_status = 422


class NoRoute(TrackingError):
    """No drivable route connects these points."""

    code = "no_route"
    http_status = 422


class Unavailable(TrackingError):
    """A dependency (Redis) is unreachable; retry later."""

    code = "unavailable"
    http_status = 503
