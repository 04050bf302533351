"""The trip channel, for riders and ops: WebSocket, and its SSE fallback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tracking.api import metrics
from tracking.api.auth import Principal, authorize, principal, requires
from tracking.api.errors import CLOSE_NORMAL, close_code
from tracking.api.feed import TripFeed
from tracking.api.guard import client_ip, counter, guarded_socket
from tracking.core.errors import (
    BadFrame,
    Forbidden,
    RateLimited,
    SlowConsumer,
    TrackingError,
    UnknownType,
    ValidationFailed,
)
from tracking.core.messages import TERMINAL
from tracking.service import TrackingService

log = logging.getLogger(__name__)
router = APIRouter()


async def authorize_trip_reader(
    who: Principal, service: TrackingService, trip_id: str, *, allow_driver: bool = False
) -> None:
    """Ops and the trip's rider may read a trip (and its driver, where allowed)."""
    if who.role == "rider" and who.trip != trip_id:
        raise Forbidden("this rider token is for another trip")
    if who.role == "driver" and not allow_driver:
        raise Forbidden("drivers get their trip on the driver stream")
    state = await service.get_trip(trip_id)
    if not who.can_read_trip(trip_id, state.driver_id):
        raise Forbidden(f"no access to trip {trip_id}")


class ClientGone(Exception):
    """The rider's socket closed: nothing more to send."""


def parse_since(raw: str | None) -> int | None:
    """The `since` query parameter: absent, or a seq >= 0."""
    if raw is None or raw == "":
        return None
    # isdigit() alone also admits "²" and "٣", which int() refuses or misreads.
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationFailed(f"since must be a whole number >= 0, not {raw[:20]!r}")
    return int(raw)


def _client_frame_error(raw: str | bytes) -> TrackingError:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return BadFrame("malformed JSON")
    if not isinstance(obj, dict) or "type" not in obj:
        return BadFrame("a frame must be a JSON object with a type")
    return UnknownType(f"the trip channel accepts no {obj['type']!r} frames")


@router.websocket("/v1/trips/{trip_id}/ws")
@guarded_socket
async def trip_channel(ws: WebSocket, trip_id: str) -> None:
    """Snapshot (or replay after `since`), then live events in seq order."""
    await ws.accept()
    service: TrackingService = ws.app.state.service
    try:
        await authorize_trip_reader(principal(ws), service, trip_id)
        since = parse_since(ws.query_params.get("since"))
    except TrackingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        await ws.close(close_code(exc), exc.detail[:120])
        return

    async def read_client() -> None:
        # Riders send nothing; anything they do send gets an error frame.
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            exc = _client_frame_error(message.get("text") or message.get("bytes") or b"")
            await ws.send_text(
                orjson.dumps({"type": "error", "code": exc.code, "detail": exc.detail}).decode()
            )

    async def deliver(feed: TripFeed) -> tuple[int, str]:
        async for frame in feed:
            # Blocks while the client's socket is full; the feed keeps
            # conflating meanwhile, and the ticker cuts a send blocked for
            # TRACKING_SEND_TIMEOUT_S (a reader stuck that long is gone).
            feed.sending_since = time.monotonic()
            try:
                await ws.send_text(frame.data.decode())
            except asyncio.CancelledError:
                if not isinstance(feed.failure, SlowConsumer):
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                raise feed.failure from None
            finally:
                feed.sending_since = None
            metrics.RIDER_FRAMES_OUT.inc()
            if frame.final:
                return CLOSE_NORMAL, "trip ended"
        return CLOSE_NORMAL, "trip ended"

    metrics.CONNECTIONS.labels("rider").inc()
    close_with: tuple[int, str] | None = None
    feed = TripFeed(service, ws.app.state.fanout, ws.app.state.ticker, trip_id, since)
    try:
        async with feed:
            # Two tasks per rider: this one sends, `reader` reads. When the
            # client goes, the reader stops the feed, which ends the sending.
            reader = asyncio.create_task(read_client())
            reader.add_done_callback(lambda _: feed.fail(ClientGone()))
            try:
                close_with = await deliver(feed)
            except ClientGone:
                pass
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await reader
    except TrackingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        close_with = (close_code(exc), exc.detail[:120])
    except WebSocketDisconnect:
        pass
    finally:
        metrics.CONNECTIONS.labels("rider").dec()
    if close_with and ws.client_state == WebSocketState.CONNECTED:
        # A client that does not read would block the close frame too.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(*close_with), 1.0)


@router.get(
    "/v1/trips/{trip_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 204: {"description": "trip over"}},
    summary="Server-Sent Events fallback of the trip channel",
)
@requires("ops", "rider")
async def trip_events(
    request: Request,
    trip_id: str,
    since: int | None = Query(None, ge=0),
    last_event_id: str | None = Header(None),
) -> Response:
    """Each event's `id:` is its seq; reconnecting with `Last-Event-ID` resumes after it.

    204 when the trip has ended and the client has seen its last event.
    """
    service: TrackingService = request.app.state.service
    await authorize_trip_reader(authorize(request), service, trip_id)
    if last_event_id and last_event_id.isascii() and last_event_id.isdigit():
        since = int(last_event_id)
    state = await service.get_trip(trip_id)
    if since is not None and since >= state.seq and state.status in TERMINAL:
        # The client has everything, the trip is over: 204 is how SSE says
        # "stop reconnecting" (an EventSource would otherwise retry forever).
        return Response(status_code=204)
    feed = TripFeed(service, request.app.state.fanout, request.app.state.ticker, trip_id, since)
    ip = client_ip(request)
    slots = counter(request)
    if slots.count(ip) >= service.settings.max_connections_per_ip:
        raise RateLimited(
            f"more than {service.settings.max_connections_per_ip} connections from this address"
        )

    async def stream() -> AsyncIterator[bytes]:
        # Counted from the first byte: a stream that never starts holds no slot.
        if not slots.acquire(ip):
            limited = {"type": "error", "code": "rate_limited", "detail": "too many connections"}
            yield b"data: " + orjson.dumps({**limited, "ts": _now_ms()}) + b"\n\n"
            return
        metrics.CONNECTIONS.labels("sse").inc()
        try:
            async with feed:
                yield b"retry: 1000\n\n"
                async for frame in feed:
                    head = b"" if frame.seq is None else b"id: %d\n" % frame.seq
                    yield head + b"data: " + frame.data + b"\n\n"
                    metrics.SSE_FRAMES_OUT.inc()
                    if frame.final:
                        return
        except TrackingError as exc:
            error = {"type": "error", "code": exc.code, "detail": exc.detail, "ts": _now_ms()}
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        finally:
            metrics.CONNECTIONS.labels("sse").dec()
            slots.release(ip)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
