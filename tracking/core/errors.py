"""The one error tree of the service.

Every error has a stable snake_case ``code`` (the wire contract) and a
human-readable ``detail``. The core knows nothing of transports: HTTP
statuses and WebSocket close codes are mapped in one place,
``tracking.api.errors``.
"""

from __future__ import annotations


class TrackingError(Exception):
    """Root of every error the service reports to a client."""

    code: str = "internal_error"

    def __init__(self, detail: str | None = None, *, seq: int | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip().splitlines()[0]
        self.seq = seq  # the driver point this error is about, when there is one
        super().__init__(self.detail)


class BadFrame(TrackingError):
    """The frame is not valid JSON or not a valid message of the protocol."""

    code = "bad_frame"


class UnknownType(BadFrame):
    """The frame's `type` is not one this endpoint accepts."""

    code = "unknown_type"


class ValidationFailed(TrackingError):
    """The request body or query does not match the schema."""

    code = "validation_error"


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


class FrameTooLarge(TrackingError):
    """The frame is larger than the 64 KiB limit."""

    code = "frame_too_large"


class RateLimited(TrackingError):
    """Too many points per second, or too many bad frames."""

    code = "rate_limited"


class Unauthorized(TrackingError):
    """The token is missing, invalid or expired."""

    code = "unauthorized"


class Forbidden(TrackingError):
    """The token is valid but does not allow this."""

    code = "forbidden"


class NotFound(TrackingError):
    """No such trip or driver."""

    code = "not_found"


class AlreadyExists(TrackingError):
    """A trip with this id already exists."""

    code = "already_exists"


class IllegalTransition(TrackingError):
    """The trip's status does not allow this action."""

    code = "illegal_transition"


class OutsideCoverage(TrackingError):
    """The point is outside the road map's coverage."""

    code = "outside_coverage"


class NoRoute(TrackingError):
    """No drivable route connects these points."""

    code = "no_route"


class Unavailable(TrackingError):
    """A dependency (Redis) is unreachable; retry later."""

    code = "unavailable"


class SlowConsumer(TrackingError):
    """The client does not read its events fast enough (a send stayed blocked)."""

    code = "slow_consumer"
