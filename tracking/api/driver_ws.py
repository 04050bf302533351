"""`WS /v1/drivers/ws`: a driver's position stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tracking.api import metrics
from tracking.api.auth import principal
from tracking.api.errors import close_code
from tracking.api.guard import guarded_socket
from tracking.core import trip as core
from tracking.core.errors import (
    BadFrame,
    BatchTooLarge,
    FrameTooLarge,
    RateLimited,
    TrackingError,
)
from tracking.core.limits import StrikeWindow, TokenBucket
from tracking.core.messages import (
    ActionFrame,
    Point,
    PosBatchFrame,
    PosFrame,
    decode_driver_frame,
)
from tracking.service import DriverSession, TrackingService
from tracking.store import keys

log = logging.getLogger(__name__)
router = APIRouter()

MAX_FRAME_BYTES = 64 * 1024
INBOX_FRAMES = 64
"""Frames read ahead of the one being stored; past this the socket is not read."""
MAX_POINTS_PER_WRITE = 256
"""Points of consecutive position frames stored in one write (one ack)."""
DISCONNECTED = object()
Inbound = PosFrame | PosBatchFrame | ActionFrame | Exception
BATCH_BURST_FACTOR = 2
"""Batched points taken at once before replays are paced at max_batch_points per second."""


def error_frame(exc: TrackingError) -> bytes:
    frame: dict[str, object] = {"type": "error", "code": exc.code, "detail": exc.detail}
    if exc.seq is not None:
        frame["seq"] = exc.seq
    return orjson.dumps(frame)


class DriverConnection:
    """One driver socket: frames in order, acks after the durable write."""

    def __init__(self, ws: WebSocket, service: TrackingService, session: DriverSession) -> None:
        s = service.settings
        self.ws = ws
        self.service = service
        self.session = session
        self.driver_id = session.driver.id
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.live_points = TokenBucket(s.max_points_per_s, s.max_points_per_s)
        self.batch_points = TokenBucket(s.max_batch_points, s.max_batch_points * BATCH_BURST_FACTOR)
        self.bad_frames = StrikeWindow(s.max_bad_frames)
        self.inbox: deque[Inbound | object] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()

    def send(self, data: bytes) -> None:
        self.outbox.put_nowait(data)

    def on_trip_message(self, data: bytes) -> None:
        """A trip of this driver changed elsewhere: refresh the cache, tell the app."""
        self.service.trip_changed(self.session, orjson.loads(data).get("trip") or {})
        self.send(data)

    async def writer(self) -> None:
        while (data := await self.outbox.get()) is not None:
            await self.ws.send_text(data.decode())
            metrics.DRIVER_FRAMES_OUT.inc()

    async def run(self) -> None:
        trip = await self.service.current_trip(self.session)
        if trip is not None:
            self.send(orjson.dumps({"type": "trip", "trip": core.view(trip)}))
        reader = asyncio.create_task(self._read(), name="driver-reader")
        try:
            await self._process()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await reader

    async def _read(self) -> None:
        """Frames off the socket into the inbox, decoded, while earlier ones are stored.

        Reading on while a write is in flight is what lets the next write
        carry every point that arrived meanwhile (see `_process`). The inbox
        is bounded: past INBOX_FRAMES the socket is not read, and TCP slows
        the app down.
        """
        try:
            while True:
                if len(self.inbox) >= INBOX_FRAMES:
                    self._room.clear()
                    await self._room.wait()
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    self._put(DISCONNECTED)
                    return
                raw = message.get("text") or message.get("bytes") or b""
                metrics.DRIVER_FRAMES_IN.inc()
                self._put(self._decode(raw))
        except Exception as exc:  # handed to the processor, raised in its task
            self._put(exc)

    def _decode(self, raw: str | bytes) -> Inbound:
        if len(raw) > MAX_FRAME_BYTES:
            return FrameTooLarge(f"frame of {len(raw)} bytes; the limit is {MAX_FRAME_BYTES}")
        try:
            frame = decode_driver_frame(raw)
        except TrackingError as exc:
            return exc
        if isinstance(frame, PosFrame):
            if not self.live_points.take(time.monotonic()):
                return RateLimited(
                    f"more than {self.service.settings.max_points_per_s:g} points per second"
                )
        elif isinstance(frame, PosBatchFrame):
            limit = self.service.settings.max_batch_points
            if len(frame.points) > limit:
                return BatchTooLarge(f"{len(frame.points)} points in a batch; the limit is {limit}")
        return frame

    def _put(self, item: Inbound | object) -> None:
        self.inbox.append(item)
        self._arrived.set()

    async def _next(self) -> Inbound | object:
        while not self.inbox:
            self._arrived.clear()
            await self._arrived.wait()
        item = self.inbox.popleft()
        self._room.set()
        return item

    async def _process(self) -> None:
        """The inbox in order: actions one by one, runs of position frames as one write."""
        while True:
            item = await self._next()
            if item is DISCONNECTED:
                return
            if isinstance(item, (RateLimited, FrameTooLarge)) or not isinstance(
                item, (TrackingError, PosFrame, PosBatchFrame, ActionFrame)
            ):
                raise item  # type: ignore[misc]  # fatal: closes the socket
            started = time.perf_counter()
            try:
                if isinstance(item, TrackingError):
                    raise item
                if isinstance(item, ActionFrame):
                    trip = await self.service.act(
                        item.trip_id, item.action, driver_id=self.driver_id
                    )
                    self.send(orjson.dumps({"type": "trip", "trip": core.view(trip)}))
                else:
                    await self._store(self._take_points(item))
            except RateLimited:
                raise
            except TrackingError as exc:
                metrics.ERRORS.labels(exc.code).inc()
                self.send(error_frame(exc))
                if isinstance(exc, BadFrame) and self.bad_frames.strike(time.monotonic()):
                    raise RateLimited("too many bad frames") from None
            metrics.POINT_TO_PUBLISH.observe(time.perf_counter() - started)

    def _take_points(self, first: PosFrame | PosBatchFrame) -> list[tuple[Point, bool]]:
        """`first` and the position frames queued right behind it: (point, from a batch)."""
        points = self._points_of(first)
        while (
            self.inbox
            and isinstance(self.inbox[0], (PosFrame, PosBatchFrame))
            and len(points) < MAX_POINTS_PER_WRITE
        ):
            frame = self.inbox.popleft()
            self._room.set()
            points += self._points_of(frame)  # type: ignore[arg-type]
        return points

    @staticmethod
    def _points_of(frame: PosFrame | PosBatchFrame) -> list[tuple[Point, bool]]:
        if isinstance(frame, PosFrame):
            return [(frame, False)]
        return [(p, True) for p in frame.points]

    async def _store(self, taken: list[tuple[Point, bool]]) -> None:
        replayed = sum(1 for _, batched in taken if batched)
        if replayed:
            # A long offline stretch replays in many batches: slow them down
            # (the client waits for acks), never refuse them.
            wait_s = self.batch_points.reserve(time.monotonic(), replayed)
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        points = [p for p, _ in taken]
        result = await self.service.ingest(self.session, points)
        for exc in result.errors:
            metrics.ERRORS.labels(exc.code).inc()
            self.send(error_frame(exc))
        metrics.POINTS_STORED.inc(len(points) - len(result.errors))
        metrics.POINTS_REJECTED.inc(len(result.errors))
        if result.ack > 0:
            self.send(orjson.dumps({"type": "ack", "seq": result.ack}))


@router.websocket("/v1/drivers/ws")
@guarded_socket
async def driver_stream(ws: WebSocket) -> None:
    """The driver app's stream of positions; see docs/protocol.md."""
    await ws.accept()
    service: TrackingService = ws.app.state.service
    try:
        who = principal(ws)
        who.require("driver")
        session = await service.open_session(who.sub)
        conn = DriverConnection(ws, service, session)
        fanout = ws.app.state.fanout
        channel = keys.driver_channel(conn.driver_id)
        await fanout.add(channel, conn.on_trip_message)
    except TrackingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        await ws.close(close_code(exc), exc.detail[:120])
        return
    writer = asyncio.create_task(conn.writer())
    metrics.CONNECTIONS.labels("driver").inc()
    close_with: tuple[int, str] | None = None
    try:
        await conn.run()
    except WebSocketDisconnect:
        pass
    except TrackingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        log.info("driver %s: closing: %s", conn.driver_id, exc.detail)
        conn.send(error_frame(exc))
        close_with = (close_code(exc), exc.detail[:120])
    finally:
        metrics.CONNECTIONS.labels("driver").dec()
        await fanout.remove(channel, conn.on_trip_message)
        conn.outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 2.0)
        writer.cancel()
        if close_with and ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(*close_with)
