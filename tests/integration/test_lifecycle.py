"""A whole ride over real sockets: driver on one gateway, rider on another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from tests.integration.client import (
    DRIVER_START,
    Api,
    driver_ws,
    now_ms,
    pos,
    recv_json,
    recv_until,
    trip_ws,
    walk,
)
from tests.integration.conftest import Gateway, token
from tracking.core.geo import haversine_m
from tracking.core.messages import trip_event_adapter


async def drive_leg(
    ws: Any, coords: list[list[float]], seq: int, ts: int, until: Callable[[dict[str, Any]], bool]
) -> tuple[int, int, list[dict[str, Any]]]:
    """Send a fix every 12 m along `coords` (one per second of driver time), wait for acks."""
    frames: list[dict[str, Any]] = []
    for lon, lat in walk(coords):
        seq += 1
        ts += 1000
        await ws.send(pos(seq, lon, lat, ts))
        ack, seen = await recv_until(ws, lambda f: f["type"] == "ack")
        assert ack["seq"] == seq
        frames += seen
        if any(until(f) for f in seen):
            break
    return seq, ts, frames


async def drive_ride(
    ws: Any, to_pickup: list[list[float]], plan: list[list[float]], ts: int, seq: int = 1
) -> tuple[int, int]:
    """The whole ride: to the pickup, along the plan to the dropoff, then four fixes
    there, a second apart (auto-complete after TRACKING_DWELL_COMPLETE_S=2).

    Returns the last seq and ts sent.
    """

    def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
        return lambda f: f["type"] == "trip" and f["trip"]["status"] == status

    seq, ts, _ = await drive_leg(ws, to_pickup, seq, ts, status_is("arrived_pickup"))
    seq, ts, _ = await drive_leg(ws, plan, seq, ts, status_is("arrived_dropoff"))
    end = plan[-1]
    for _ in range(4):
        seq += 1
        ts += 1000
        await ws.send(pos(seq, end[0], end[1], ts))
        await recv_until(ws, lambda f: f["type"] == "ack")
    return seq, ts


def test_full_ride_with_rider_on_a_second_gateway(
    gateway: Gateway, start_gateway: Callable[..., Gateway], api: Api
) -> None:
    """assigned → arrived_pickup → in_progress → arrived_dropoff → completed, seen live."""
    other = start_gateway(TRACKING_DWELL_COMPLETE_S="2")
    trip = api.create_trip(driver_id="d-life")
    assert trip["status"] == "assigned" and trip["share_url"].startswith(gateway.base)

    async def scenario() -> list[dict[str, Any]]:
        rider_frames: list[dict[str, Any]] = []
        watching = asyncio.Event()

        async def ride() -> None:
            async with trip_ws(other.ws_base, trip["id"], trip["rider_token"]) as rider:
                try:
                    while True:
                        rider_frames.append(await recv_json(rider, 60))
                        watching.set()  # the snapshot is in: nothing after it can be missed
                except ConnectionClosed as closed:
                    rider_frames.append({"closed": closed.rcvd.code if closed.rcvd else None})

        watcher = asyncio.create_task(ride())
        await asyncio.wait_for(watching.wait(), 10)
        async with driver_ws(gateway.ws_base, token("driver", "d-life")) as drv:
            first = await recv_json(drv)
            assert first["type"] == "trip" and first["trip"]["id"] == trip["id"]
            ts = now_ms() - 600_000
            await drv.send(pos(1, *DRIVER_START, ts))
            await recv_until(drv, lambda f: f["type"] == "ack")
            # The first fix makes the service route from the driver to the pickup.
            current = httpx.get(
                f"{gateway.base}/v1/trips/{trip['id']}",
                headers={"Authorization": f"Bearer {token('driver', 'd-life')}"},
            ).json()
            start = current["route"]["coordinates"][0]
            assert haversine_m(start[0], start[1], *DRIVER_START) < 60
            await drive_ride(drv, current["route"]["coordinates"], trip["route"]["coordinates"], ts)
        await asyncio.wait_for(watcher, 30)
        return rider_frames

    frames = asyncio.run(scenario())
    assert frames[0]["type"] == "snapshot" and frames[0]["trip"]["status"] == "assigned"
    assert frames[-1] == {"closed": 1000}
    events = frames[1:-1]
    for event in events:
        trip_event_adapter.validate_python(event)  # every frame matches the protocol models
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses == ["arrived_pickup", "in_progress", "arrived_dropoff", "completed"]
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(
        range(frames[0]["trip"]["seq"] + 1, frames[0]["trip"]["seq"] + 1 + len(seqs))
    )
    kinds = {e["type"] for e in events}
    assert {"position", "eta", "route", "status"} <= kinds
    etas = [e for e in events if e["type"] == "eta"]
    assert all(e["eta_s"] >= 0 for e in etas)

    final = api.get(f"/v1/trips/{trip['id']}").json()
    assert final["status"] == "completed" and final["driver"] is None
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["type"] == "Feature" and trail["geometry"]["type"] == "LineString"
    seqs = trail["properties"]["seqs"]
    assert seqs == sorted(set(seqs)) and len(seqs) > 20


def test_sustained_off_route_driving_reroutes_from_the_driver(gateway: Gateway, api: Api) -> None:
    """Three fixes far off the route make the service re-route from the driver: a route event."""
    from tracking.core.route import Route
    from tracking.routing import default_map_path, load_router

    router = load_router(default_map_path())
    trip = api.create_trip(driver_id="d-reroute")
    ops_view = api.get(f"/v1/trips/{trip['id']}")
    assert ops_view.status_code == 200

    async def scenario() -> list[dict[str, Any]]:
        async with (
            trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider,
            driver_ws(gateway.ws_base, token("driver", "d-reroute")) as drv,
        ):
            await recv_json(rider)  # snapshot
            ts = now_ms() - 60_000
            await drv.send(pos(1, *DRIVER_START, ts))
            await recv_until(drv, lambda f: f["type"] == "ack")
            leg = Route(api.get(f"/v1/trips/{trip['id']}").json()["route"]["coordinates"])
            # A road point well away from the leg, reached at a plausible speed.
            rng = __import__("random").Random(3)
            off = next(
                p
                for p in (router.random_point(rng) for _ in range(500))
                if leg.snap(*p).cross_m > 150 and haversine_m(*p, *DRIVER_START) < 600
            )
            for i in range(2, 5):
                ts += 60_000
                await drv.send(pos(i, off[0], off[1], ts))
                await recv_until(drv, lambda f: f["type"] == "ack")
            first, _ = await recv_until(rider, lambda f: f["type"] == "route")
            again, _ = await recv_until(rider, lambda f: f["type"] == "route")
            return [first, again, {"off": off}]

    first, again, where = asyncio.run(scenario())
    # First the leg from where the driver was first seen, then the re-route.
    assert haversine_m(*first["route"]["coordinates"][0], *DRIVER_START) < 60
    assert haversine_m(*again["route"]["coordinates"][0], *where["off"]) < 60
    assert again["seq"] > first["seq"]
