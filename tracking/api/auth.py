"""JWT tokens: issue and check. Claims: sub, role, exp, and trip for riders."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import jwt
from starlette.requests import HTTPConnection

from tracking.core.errors import Forbidden, Unauthorized

Role = Literal["ops", "driver", "rider"]
F = TypeVar("F", bound=Callable[..., Any])
ROLES: tuple[Role, ...] = ("ops", "driver", "rider")


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Role
    trip: str | None = None

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"role {self.role} may not do this (needs {' or '.join(roles)})")

    def can_read_trip(self, trip_id: str, driver_id: str | None) -> bool:
        if self.role == "ops":
            return True
        if self.role == "rider":
            return self.trip == trip_id
        return driver_id is not None and driver_id == self.sub


def issue_token(
    secret: str, role: Role, sub: str, *, trip: str | None = None, ttl_s: int = 3600
) -> str:
    claims: dict[str, object] = {"sub": sub, "role": role, "exp": int(time.time()) + ttl_s}
    if trip is not None:
        claims["trip"] = trip
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthorized(f"invalid token: unknown role {role!r}")
    trip = claims.get("trip")
    if role == "rider" and not isinstance(trip, str):
        raise Unauthorized("invalid token: a rider token needs a trip claim")
    return Principal(
        sub=str(claims["sub"]), role=role, trip=trip if isinstance(trip, str) else None
    )


def token_from(conn: HTTPConnection) -> str:
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    token = conn.query_params.get("token")
    if token:
        return token
    raise Unauthorized("missing token: send Authorization: Bearer <jwt> or ?token=")


def principal(conn: HTTPConnection) -> Principal:
    """The caller, from the Authorization header or the `token` query parameter."""
    secret: str = conn.app.state.jwt_secret
    return decode_token(secret, token_from(conn))


def requires(*roles: Role) -> Callable[[F], F]:
    """Mark an endpoint with the roles that may call it (checked by :func:`authorize`)."""

    def mark(endpoint: F) -> F:
        endpoint.required_roles = roles  # type: ignore[attr-defined]
        return endpoint

    return mark


def required_roles(conn: HTTPConnection) -> tuple[Role, ...] | None:
    """The roles the matched endpoint requires, or None for an open endpoint."""
    route = conn.scope.get("route")
    roles: tuple[Role, ...] | None = getattr(
        getattr(route, "endpoint", None), "required_roles", None
    )
    return roles


def authorize(conn: HTTPConnection) -> Principal:
    """The caller, checked against the endpoint's roles: 401 before 403 before anything else."""
    who = principal(conn)
    roles = required_roles(conn)
    if roles:
        who.require(*roles)
    # A driver acts only as itself, wherever a path names a driver.
    driver_id = conn.path_params.get("driver_id")
    if who.role == "driver" and driver_id is not None and driver_id != who.sub:
        raise Forbidden("a driver may only act as itself")
    return who
