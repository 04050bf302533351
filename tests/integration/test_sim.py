"""The driver simulator against a real gateway and Redis: trips end to end, nothing lost."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from driver_sim.device import Outbox
from driver_sim.link import DriverLink
from driver_sim.runner import SimOptions, run_fleet
from driver_sim.shift import ShiftConfig
from driver_sim.stats import Stats
from tests.integration.client import DRIVER_START, Api, now_ms
from tests.integration.conftest import SECRET, Gateway, token
from tracking.routing import default_map_path
from tracking.store.embedded import EmbeddedRedis


def assert_trail_is_a_run_of_acked_points(trail_seqs: list[int], acked: list[int]) -> None:
    """Every point the trip received is in its trail once, in order, with no gap."""
    assert trail_seqs == sorted(set(trail_seqs))
    assert set(trail_seqs) <= set(acked)
    start = acked.index(trail_seqs[0])
    assert acked[start : start + len(trail_seqs)] == trail_seqs


def test_fleet_completes_trips_and_every_acked_point_is_stored_once(
    gateway: Gateway, api: Api
) -> None:
    """4 drivers, 40× speed, tunnels and dropped sockets: trips complete, trails are exact."""
    opts = SimOptions(
        url=gateway.base,
        secret=SECRET,
        map_path=default_map_path(),
        drivers=4,
        speedup=40,
        seed=7,
        trips=5,
        prefix="fleet",
        # The wait for an arrival is simulated time (180 s: 4.5 s real at 40×),
        # but a reconnect's backoff is real time, up to 10 s: on a loaded
        # machine a driver back from a drop could find its trip given up.
        shift=ShiftConfig(
            dropouts_per_hour=40,
            dropout_s=(5, 30),
            disconnects_per_hour=40,
            arrival_timeout_s=1200,
        ),
    )
    fleet = asyncio.run(asyncio.wait_for(run_fleet(opts), 100))
    stats = fleet.stats
    assert stats.trips_completed == 5, stats.summary()
    assert stats.dropouts > 0 and stats.reconnects > 0, stats.summary()
    for shift in fleet.shifts:
        assert shift.outbox.pending == [], shift.driver_id
        acked = shift.outbox.acked_seqs
        assert acked == sorted(set(acked))
        for record in shift.trips:
            assert record.statuses[-1] == "completed", record
            trail = api.get(f"/v1/trips/{record.trip_id}/trail").json()
            assert_trail_is_a_run_of_acked_points(trail["properties"]["seqs"], acked)


async def _link_session(gw: Gateway, driver_id: str, action: Callable[..., object]) -> Outbox:
    outbox = Outbox()
    link = DriverLink(
        f"{gw.ws_base}/v1/drivers/ws?token={token('driver', driver_id)}",
        outbox,
        Stats(),
        random.Random(1),
        lambda trip: None,
    )
    done = asyncio.Event()
    task = asyncio.create_task(link.run(done))
    await asyncio.wait_for(link.connected.wait(), 10)
    await action(link, outbox)  # type: ignore[misc]
    assert await link.drained(timeout_s=20)
    done.set()
    await asyncio.wait_for(task, 10)
    return outbox


def _fix(outbox: Outbox, i: int, t0: int) -> object:
    lon, lat = DRIVER_START
    return outbox.add(t0 + 1000 * i, lon + 1e-5 * i, lat, 5.0)


def test_a_dropout_replays_its_buffer_in_order(gateway: Gateway, api: Api) -> None:
    """Points taken in a tunnel go out as one pos_batch after it and land in order."""
    trip = api.create_trip(driver_id="d-tunnel")
    from tests.integration.client import now_ms

    t0 = now_ms() - 600_000

    async def drive(link: DriverLink, outbox: Outbox) -> None:
        for i in range(5):
            await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
        await link.set_signal(False)
        for i in range(5, 65):
            await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
        assert len(outbox.pending) >= 60  # held on the phone
        await link.set_signal(True)

    outbox = asyncio.run(_link_session(gateway, "d-tunnel", drive))
    assert outbox.acked_seqs == list(range(1, 66))
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, 66))


def test_gateway_restart_mid_run_loses_nothing(
    start_gateway: Callable[..., Gateway], api: Api
) -> None:
    """A gateway stopped (1012) and started again: the app reconnects, resends, loses nothing."""
    first = start_gateway()
    trip = api.create_trip(driver_id="d-restart")
    from tests.integration.client import now_ms

    t0 = now_ms() - 600_000
    restarted: list[Gateway] = []

    async def drive(link: DriverLink, outbox: Outbox) -> None:
        for i in range(20):
            await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
        await asyncio.to_thread(first.stop)
        for i in range(20, 40):  # while the gateway is away: buffered
            await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
        restarted.append(await asyncio.to_thread(start_gateway, first.port))
        for i in range(40, 50):
            await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]

    outbox = asyncio.run(_link_session(first, "d-restart", drive))
    assert outbox.acked_seqs == list(range(1, 51))
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, 51))


def test_redis_outage_gets_unavailable_and_the_app_replays_until_stored(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Redis goes away mid-trip: frames get `unavailable` (no ack), the app buffers and
    replays after a backoff, and once Redis is back every point is stored once, in order."""
    data = tmp_path_factory.mktemp("redis-data")
    redis = EmbeddedRedis(appendonly=True, appendfsync="always", data_dir=str(data)).start()
    gw = Gateway(redis.url, {}, tmp_path_factory.mktemp("gw-outage"))
    try:
        api = Api(gw.base, token("ops"))
        trip = api.create_trip(driver_id="d-outage")
        t0 = now_ms() - 600_000

        async def drive(link: DriverLink, outbox: Outbox) -> None:
            nonlocal redis
            for i in range(3):
                await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
            assert await link.drained(timeout_s=10)
            redis.stop()
            for i in range(3, 6):
                await link.submit(_fix(outbox, i, t0))  # type: ignore[arg-type]
            # The gateway retries for 3.5–7 s before it answers `unavailable`.
            for _ in range(300):
                if link.stats.errors["unavailable"]:
                    break
                await asyncio.sleep(0.05)
            assert link.stats.errors["unavailable"] >= 1
            assert len(outbox.pending) == 3
            redis = EmbeddedRedis(
                redis.port, appendonly=True, appendfsync="always", data_dir=str(data)
            ).start()

        outbox = asyncio.run(_link_session(gw, "d-outage", drive))
        assert outbox.acked_seqs == list(range(1, 7))
        trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
        assert trail["properties"]["seqs"] == list(range(1, 7))
    finally:
        gw.stop()
        redis.stop()
