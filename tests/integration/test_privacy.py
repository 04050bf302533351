"""Privacy: who sees the driver and when, how long positions live, what the logs hold."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from tests.integration.client import (
    DRIVER_START,
    Api,
    driver_ws,
    now_ms,
    pos,
    recv_json,
    recv_until,
    trip_ws,
)
from tests.integration.conftest import Gateway, token
from tracking.store import keys

TTL_S = 3600


def test_rider_sees_the_driver_only_between_assignment_and_the_end(
    start_gateway: Callable[..., Gateway], redis_url: str
) -> None:
    """Before assignment and after the end the rider's Trip has no driver, and no position flows."""
    gw = start_gateway(TRACKING_TRIP_TTL_S=str(TTL_S))
    api = Api(gw.base, token("ops"))
    trip = api.create_trip()  # requested: no driver yet
    rider = {"Authorization": f"Bearer {trip['rider_token']}"}
    ts = now_ms() - 60_000

    async def scenario() -> None:
        async with driver_ws(gw.ws_base, token("driver", "d-private")) as drv:
            await drv.send(pos(1, *DRIVER_START, ts))
            await recv_until(drv, lambda f: f["type"] == "ack")
            before = httpx.get(f"{gw.base}/v1/trips/{trip['id']}", headers=rider).json()
            assert before["status"] == "requested" and before["driver"] is None
            assigned = api.post(f"/v1/trips/{trip['id']}/assign", {"driver_id": "d-private"})
            assert assigned.status_code == 200
            await drv.send(pos(2, DRIVER_START[0] + 0.0002, DRIVER_START[1], ts + 2000))
            await recv_until(drv, lambda f: f["type"] == "ack")
            during = httpx.get(f"{gw.base}/v1/trips/{trip['id']}", headers=rider).json()
            assert during["driver"] is not None
            cancel = api.post(f"/v1/trips/{trip['id']}/actions", {"action": "cancel"})
            assert cancel.status_code == 200
            seq_at_end = api.get(f"/v1/trips/{trip['id']}").json()["seq"]
            # The driver keeps driving after the trip ended.
            for i in range(3, 6):
                await drv.send(pos(i, DRIVER_START[0] + 0.0002 * i, DRIVER_START[1], ts + i * 1000))
                await recv_until(drv, lambda f: f["type"] == "ack")
            after = httpx.get(f"{gw.base}/v1/trips/{trip['id']}", headers=rider).json()
            assert after["status"] == "cancelled" and after["driver"] is None
            assert after["seq"] == seq_at_end  # nothing more was published to the trip
            async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as ws:
                snapshot = await recv_json(ws)
                assert snapshot["type"] == "snapshot" and snapshot["trip"]["driver"] is None

    asyncio.run(scenario())

    # Everything stored about the trip and the driver expires within the retention.
    r = redis.Redis.from_url(redis_url)
    for key in (
        keys.trip(trip["id"]),
        keys.events(trip["id"]),
        keys.trail(trip["id"]),
        keys.driver("d-private"),
    ):
        ttl = r.ttl(key)
        assert 0 < ttl <= TTL_S, (key, ttl)
    r.close()


def test_gateway_logs_hold_no_tokens(start_gateway: Callable[..., Gateway]) -> None:
    """Share links and sockets carry tokens in the URL; the INFO log shows them redacted."""
    gw = start_gateway()
    api = Api(gw.base, token("ops"))
    trip = api.create_trip(driver_id="d-logs")

    async def scenario() -> None:
        async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as ws:
            await recv_json(ws)
        async with driver_ws(gw.ws_base, token("driver", "d-logs")) as drv:
            await drv.send(pos(1, *DRIVER_START, now_ms() - 1000))
            await recv_until(drv, lambda f: f["type"] == "ack")

    asyncio.run(scenario())
    httpx.get(trip["share_url"], headers={"Accept": "text/html"})
    log = Path(gw.log.name).read_text()
    assert "WebSocket /v1/trips/" in log  # uvicorn did log the socket's path
    assert "token=[redacted]" in log
    assert trip["rider_token"] not in log and "eyJ" not in log


def test_positions_of_drivers_silent_past_the_retention_are_forgotten(
    gateway: Gateway, redis_url: str
) -> None:
    """The position index has no expiry of its own: retention removes silent drivers from it."""
    from redis.asyncio import Redis as AsyncRedis

    from tracking.store.trips import TripStore

    api = Api(gateway.base, token("ops"))
    lon, lat = DRIVER_START

    async def scenario() -> None:
        for driver in ("d-gone", "d-here"):
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                await drv.send(pos(1, lon, lat, now_ms() - 1000))
                await recv_until(drv, lambda f: f["type"] == "ack")
        client = AsyncRedis.from_url(redis_url)
        try:
            # d-gone was last seen eight days ago (its seen score is the server time).
            await client.zadd(keys.SEEN_KEY, {"d-gone": now_ms() - 8 * 86_400_000})
            store = TripStore(client, stream_maxlen=100, ttl_s=7 * 86_400)
            removed = await store.prune_positions(now_ms() - 7 * 86_400_000)
            assert removed == 1
            assert await client.geopos(keys.GEO_KEY, "d-gone") == [None]
            assert await client.zscore(keys.SEEN_KEY, "d-gone") is None
            assert (await client.geopos(keys.GEO_KEY, "d-here"))[0] is not None
        finally:
            await client.aclose()

    asyncio.run(scenario())
    nearby = api.get("/v1/drivers/nearby", lon=lon, lat=lat, radius_m=200).json()["drivers"]
    ids = {d["id"] for d in nearby}
    assert "d-here" in ids and "d-gone" not in ids
