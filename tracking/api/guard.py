"""What every WebSocket passes before its own checks: the browser's Origin, connections per IP.

Tokens, not cookies, authorize our sockets, so a foreign page cannot ride
on a user's session; the Origin allow-list is defence in depth for
browsers, and clients without an Origin (apps, servers) are not affected.
The per-IP cap bounds what one client can hold open on one gateway process.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec
from urllib.parse import urlsplit

from fastapi import WebSocket
from starlette.requests import HTTPConnection

from tracking.api import metrics
from tracking.api.errors import close_code
from tracking.core.errors import Forbidden, RateLimited, TrackingError
from tracking.core.limits import ConnectionCounter
from tracking.settings import Settings

P = ParamSpec("P")


def client_ip(conn: HTTPConnection) -> str:
    """The peer's address (behind a proxy: run uvicorn with --proxy-headers)."""
    return conn.client.host if conn.client else "unknown"


def counter(conn: HTTPConnection) -> ConnectionCounter:
    """This process's connection counter (created on first use)."""
    state = conn.app.state
    settings: Settings = state.service.settings
    if getattr(state, "connections", None) is None:
        state.connections = ConnectionCounter(settings.max_connections_per_ip)
    found: ConnectionCounter = state.connections
    return found


def check_origin(conn: HTTPConnection, settings: Settings) -> None:
    """Raises Forbidden for a browser Origin that is neither ours nor on the allow-list."""
    allowed = settings.origin_allow_list()
    origin = conn.headers.get("origin")
    if not allowed or origin is None:
        return
    origin = origin.rstrip("/").lower()
    own = {f"{conn.url.scheme.replace('ws', 'http')}://{conn.headers.get('host', '')}".lower()}
    public = urlsplit(settings.public_url)
    own.add(f"{public.scheme}://{public.netloc}".lower())
    if origin not in allowed and origin not in own:
        raise Forbidden(f"origin {origin[:80]} is not allowed")


def guarded_socket(
    handler: Callable[P, Awaitable[None]],
) -> Callable[P, Awaitable[None]]:
    """Wraps a WebSocket endpoint: Origin and per-IP checks first, the slot freed at the end.

    A refused socket is accepted and then closed with the error's code
    (4403, 4429), so that browsers can read it.
    """

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        ws = _websocket(args, kwargs)
        settings: Settings = ws.app.state.service.settings
        ip = client_ip(ws)
        slots = counter(ws)
        try:
            check_origin(ws, settings)
            if not slots.acquire(ip):
                raise RateLimited(
                    f"more than {settings.max_connections_per_ip} connections from this address"
                )
        except TrackingError as exc:
            metrics.ERRORS.labels(exc.code).inc()
            await ws.accept()
            await ws.close(close_code(exc), exc.detail[:120])
            return
        try:
            await handler(*args, **kwargs)
        finally:
            slots.release(ip)

    return wrapper


def _websocket(args: tuple[Any, ...], kwargs: dict[str, Any]) -> WebSocket:
    for value in (*args, *kwargs.values()):
        if isinstance(value, WebSocket):
            return value
    raise TypeError("guarded_socket needs a WebSocket argument")
