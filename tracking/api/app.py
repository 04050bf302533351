"""The FastAPI application: wiring, lifespan, background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from tracking.api import channels, driver_ws, errors, fleet, maps, pages, routes
from tracking.api.feed import Ticker
from tracking.routing import GraphRouter, load_router
from tracking.service import TrackingService
from tracking.settings import Settings, get_settings
from tracking.store.clients import connect
from tracking.store.fanout import FanOut
from tracking.store.trips import TripStore

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5
PRUNE_INTERVAL_S = 60.0


async def _sweep(service: TrackingService) -> None:
    """Time-based work in every gateway: trip changes (signal lost, dwell
    complete) every SWEEP_INTERVAL_S, position retention every PRUNE_INTERVAL_S."""
    next_prune = 0.0
    while True:
        try:
            await service.tick_due()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_INTERVAL_S
                await service.prune_positions()
        except Exception as exc:  # Redis down: keep the loop alive, retry
            log.warning("sweeper: %s", exc)
        await asyncio.sleep(SWEEP_INTERVAL_S)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RuntimeError("TRACKING_REDIS_URL must be set (`tracking serve` starts one)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        map_path = settings.resolved_map()
        router = await asyncio.to_thread(load_router, map_path)
        if router.max_snap_m != settings.max_snap_m:
            router = GraphRouter(router.graph, settings.max_snap_m)
        log.info(
            "road graph %s: %d nodes, %d edges, loaded in %.2f s",
            map_path,
            router.node_count,
            router.edge_count,
            time.perf_counter() - started,
        )
        clients = await connect(
            settings.redis_url or "", settings.redis_cluster, settings.redis_max_connections
        )
        if clients.cluster:
            log.info("redis: cluster mode (shard channels, per-slot writes)")
        store = TripStore(
            clients.redis,
            stream_maxlen=settings.stream_maxlen,
            ttl_s=settings.trip_ttl_s,
            probe=clients.probe,
            max_connections=settings.redis_max_connections,
        )
        service = TrackingService(settings, store, router)
        fanout = FanOut(clients.redis)
        await fanout.start()
        app.state.service = service
        app.state.fanout = fanout
        ticker = Ticker(store, settings.heartbeat_s, settings.send_timeout_s)
        ticker.start()
        app.state.ticker = ticker
        app.state.jwt_secret = settings.resolved_jwt_secret()
        sweeper = asyncio.create_task(_sweep(service), name="sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await ticker.stop()
            await fanout.stop()
            await store.close()
            await clients.close()

    app = FastAPI(
        title="tracking",
        version="0.1.0",
        summary="Live tracking for ride-hailing and delivery",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(channels.router)
    app.include_router(driver_ws.router)
    app.include_router(fleet.router)
    app.include_router(pages.router)
    app.include_router(maps.router)
    return app


TRIP_CHANNEL_PATH = re.compile(r"/v1/trips/([^/]+)/ws")


class Gateway:
    """The ASGI app uvicorn serves: the FastAPI app, with trip-channel WebSockets
    handed straight to their handler.

    A rider socket lives for the whole trip and there may be ten thousand of
    them in one process; passing through FastAPI's middleware and routing
    leaves a chain of suspended coroutines and exit stacks per socket (about
    a quarter of an idle socket's memory, measured by bench/connections.py).
    The handler is the same one the router would call.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match = TRIP_CHANNEL_PATH.fullmatch(scope["path"])
            if match:
                scope["app"] = self.app
                await channels.trip_channel(WebSocket(scope, receive, send), match[1])
                return
        await self.app(scope, receive, send)


def app_from_env() -> Gateway:
    """Factory for `uvicorn --factory tracking.api.app:app_from_env`."""
    return Gateway(create_app())
