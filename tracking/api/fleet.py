"""The ops surface: `WS /v1/fleet/ws?bbox=…` (the fleet feed) and `GET /v1/ops/stats`.

Every stored driver point is published on one fleet channel by the write
script. Each gateway process subscribes to it once (:class:`FleetHub`, through
the process's `FanOut`) and hands each update to every fleet socket's
:class:`~tracking.core.fleet.FleetConflator`, the pure policy that decides what
the socket is sent and when. A socket's loop only asks the conflator, every
tick, whether a frame is due, so a slow socket holds at most one update per
driver, never a queue of frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, WebSocket
from prometheus_client import REGISTRY, Counter, Gauge
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tracking.api import metrics
from tracking.api.auth import principal, requires
from tracking.api.errors import CLOSE_TRY_AGAIN_LATER, close_code
from tracking.api.guard import guarded_socket
from tracking.api.routes import ERRORS as ERROR_RESPONSES
from tracking.api.routes import Caller, Service
from tracking.core.errors import TrackingError, Unavailable
from tracking.core.fleet import FleetConflator, NewestOnly, decode_update
from tracking.core.geo import BBox
from tracking.core.messages import OpsStats, decode_fleet_frame
from tracking.service import FLEET_SNAPSHOT_MAX_AGE_MS, TrackingService
from tracking.store import keys
from tracking.store.fanout import FanOut

log = logging.getLogger(__name__)
router = APIRouter()

TICKS_PER_INTERVAL = 5
"""How often per `fleet_interval_s` a socket checks whether a frame is due."""
_IMPORTED_S = time.time()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class FleetHub:
    """The process's one subscription to the fleet channel, shared by its fleet sockets."""

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self._viewers: set[FleetConflator] = set()
        self._order = NewestOnly()
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, app: FastAPI) -> FleetHub:
        """The app's hub, created on first use."""
        hub: FleetHub | None = getattr(app.state, "fleet_hub", None)
        if hub is None:
            hub = app.state.fleet_hub = cls(app.state.fanout)
        return hub

    async def join(self, viewer: FleetConflator) -> None:
        """Offer every fleet update to `viewer` from now on."""
        async with self._lock:  # the first join and the last leave must not interleave
            self._viewers.add(viewer)
            if len(self._viewers) == 1:
                try:
                    await self._fanout.add(keys.FLEET_CHANNEL, self._on_message)
                except Unavailable:
                    # Left in, it would make the next viewer skip the subscription.
                    self._viewers.discard(viewer)
                    raise

    async def leave(self, viewer: FleetConflator) -> None:
        async with self._lock:
            self._viewers.discard(viewer)
            if not self._viewers:
                await self._fanout.remove(keys.FLEET_CHANNEL, self._on_message)
                self._order.clear()

    def _on_message(self, data: bytes) -> None:
        update = decode_update(data)  # parsed once for all the process's viewers
        if not self._order.admit(update):
            return
        for viewer in self._viewers:
            viewer.offer(update)


class FleetSocket:
    """One ops viewer: a snapshot, then conflated updates, heartbeats, box changes."""

    def __init__(self, ws: WebSocket, service: TrackingService, bbox: BBox) -> None:
        s = service.settings
        self.ws = ws
        self.service = service
        self.conflator = FleetConflator(bbox, round(s.fleet_interval_s * 1000))
        self.tick_s = s.fleet_interval_s / TICKS_PER_INTERVAL
        self.heartbeat_s = s.heartbeat_s
        self.requested: BBox | None = None
        """The latest box the viewer asked for, not yet answered."""
        self.last_sent_s = time.monotonic()

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.ws.send_text(orjson.dumps(frame).decode())
        metrics.FRAMES_OUT.labels("fleet").inc()
        self.last_sent_s = time.monotonic()

    async def read_client(self) -> None:
        """`bbox` frames; anything else gets an error frame and the socket stays open."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            metrics.FRAMES_IN.labels("fleet").inc()
            try:
                frame = decode_fleet_frame(message.get("text") or message.get("bytes") or b"")
            except TrackingError as exc:
                metrics.ERRORS.labels(exc.code).inc()
                await self.send({"type": "error", "code": exc.code, "detail": exc.detail})
                continue
            self.requested = frame.bbox  # answered by the delivery loop, latest first

    async def deliver(self) -> None:
        await self._snapshot()
        while True:
            await asyncio.sleep(self.tick_s)
            now = _monotonic_ms()
            if self.requested is not None and self.conflator.can_send(now):
                bbox, self.requested = self.requested, None
                self.conflator.start_snapshot(bbox)
                await self._snapshot()
                continue
            batch = self.conflator.due(now)
            if batch is not None:
                await self.send(batch.message(_now_ms()))
            elif time.monotonic() - self.last_sent_s >= self.heartbeat_s:
                await self.send({"type": "heartbeat", "ts": _now_ms()})

    async def _snapshot(self) -> None:
        # The conflator already receives live updates: whatever is published
        # while the store is read is merged, newest first, into the snapshot.
        stored = await self.service.fleet_snapshot(self.conflator.bbox)
        batch = self.conflator.finish_snapshot(stored, _monotonic_ms())
        await self.send(batch.message(_now_ms()))


@router.websocket("/v1/fleet/ws")
@guarded_socket
async def fleet_feed(ws: WebSocket) -> None:
    """Drivers in a box for the ops dashboard; see docs/protocol.md."""
    await ws.accept()
    service: TrackingService = ws.app.state.service
    try:
        principal(ws).require("ops")
        bbox = BBox.parse(ws.query_params.get("bbox"))
    except TrackingError as exc:
        metrics.ERRORS.labels(exc.code).inc()
        await ws.close(close_code(exc), exc.detail[:120])
        return
    conn = FleetSocket(ws, service, bbox)
    hub = FleetHub.of(ws.app)
    try:
        await hub.join(conn.conflator)  # before the snapshot is read: nothing falls between
    except Unavailable as exc:
        log.warning("fleet feed: not opened, Redis failed: %s", exc)
        metrics.ERRORS.labels(exc.code).inc()
        await ws.close(CLOSE_TRY_AGAIN_LATER, "redis unavailable")
        return
    metrics.CONNECTIONS.labels("fleet").inc()
    tasks: list[asyncio.Task[None]] = []
    try:
        tasks = [
            asyncio.create_task(conn.read_client()),
            asyncio.create_task(conn.deliver()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await hub.leave(conn.conflator)
        metrics.CONNECTIONS.labels("fleet").dec()
    for outcome in outcomes:
        if isinstance(outcome, RedisError | Unavailable):  # the store raises Unavailable
            log.warning("fleet feed: closing, Redis failed: %s", outcome)
            metrics.ERRORS.labels("unavailable").inc()
            if ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close(CLOSE_TRY_AGAIN_LATER, "redis unavailable")
        elif isinstance(outcome, Exception) and not isinstance(outcome, WebSocketDisconnect):
            raise outcome


# --- stats -----------------------------------------------------------------

CONNECTION_KINDS = ("driver", "rider", "sse", "fleet")


def _by_label(metric: Counter | Gauge, known: Iterable[str] = ()) -> dict[str, int]:
    """A one-label metric's current values by label value (counters: their totals)."""
    out = dict.fromkeys(known, 0)
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            (label,) = sample.labels.values()
            out[label] = int(sample.value)
    return out


def _uptime_s() -> float:
    started = REGISTRY.get_sample_value("process_start_time_seconds") or _IMPORTED_S
    return round(time.time() - started, 3)


@router.get("/v1/ops/stats", response_model=OpsStats, responses=ERROR_RESPONSES, tags=["ops"])
@requires("ops")
async def ops_stats(who: Caller, service: Service) -> dict[str, Any]:
    """Figures of the gateway process that answers, and of the fleet (ops).

    `gateway` is this process only, read from its Prometheus metrics:
    `connections` is a gauge (open now); `points`, `errors`, `frames_in` and
    `frames_out` are totals since the process started, so a client derives
    rates from two samples of the same `instance`. `fleet` is read from Redis:
    drivers that sent a point within `stale_after_s` (`drivers_online`) and
    within 5 minutes (`drivers_recent`), by the server's clock.
    """
    settings = service.settings
    recent_s = FLEET_SNAPSHOT_MAX_AGE_MS / 1000
    return {
        "gateway": {
            "instance": f"{socket.gethostname()}:{os.getpid()}",
            "uptime_s": _uptime_s(),
            "connections": _by_label(metrics.CONNECTIONS, CONNECTION_KINDS),
            "points": _by_label(metrics.POINTS, ("stored", "rejected")),
            "errors": _by_label(metrics.ERRORS),
            "frames_in": _by_label(metrics.FRAMES_IN, ("driver", "fleet")),
            "frames_out": _by_label(metrics.FRAMES_OUT, CONNECTION_KINDS),
        },
        "fleet": {
            "drivers_online": await service.drivers_online(settings.stale_after_s),
            "online_window_s": settings.stale_after_s,
            "drivers_recent": await service.drivers_online(recent_s),
            "recent_window_s": recent_s,
            "ts": _now_ms(),
        },
    }
