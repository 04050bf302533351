"""Faults injected into real gateways and a real Redis while drivers stream and riders watch.

Most tests run a `driver_sim.drill.Drill`: failover drivers that keep unacked
points and resend them after a reconnect (or an `unavailable` error), and
riders that reconnect with `since=<last seq>`. One fault is injected, then
the drill audits what the clients were told against what Redis holds:
every acked point in its trip's trail exactly once and in order, every
status (route, signal) delivered to every rider, recovery within bounds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from driver_sim.drill import Drill, DrillConfig, DrillReport, ReadyWatch, drive_path
from driver_sim.storm import read_acks, resend_storm, storm_batch
from tests.integration.client import Api, driver_ws, now_ms
from tests.integration.conftest import SECRET, Gateway, token
from tracking.store.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

RIDER_LIVE_BOUND_S = 3.0
"""A rider whose gateway died is live again (a new event) within this."""
GOING_AWAY = 1012


def assert_clean(report: DrillReport) -> None:
    """Nothing acked lost or doubled, nothing owed missed, every point acked and stored."""
    assert report.problems == [], report.problems
    assert report.points_acked == report.points_sent == report.points_stored, report


def uid(prefix: str) -> str:
    return f"{prefix}-{now_ms() % 10**9}"


def trail_seqs(api: Api, trip_id: str) -> list[int]:
    response = api.get(f"/v1/trips/{trip_id}/trail")
    assert response.status_code == 200, response.text
    return [int(s) for s in response.json()["properties"]["seqs"]]


def test_sigkill_of_a_gateway_loses_no_acked_point_and_riders_are_live_within_3_s(
    start_gateway: Callable[..., Gateway], redis_url: str
) -> None:
    """kill -9 the gateway all clients are on: drivers resend their unacked points to the
    other one, riders resume there with `since`; nothing acked is lost, no status missed."""
    doomed, survivor = start_gateway(), start_gateway()

    async def scenario() -> tuple[DrillReport, list[float], int]:
        cfg = DrillConfig(drivers=4, interval_s=0.05, prefix=uid("kill"))
        async with Drill([doomed.base, survivor.base], SECRET, redis_url, cfg) as drill:
            await drill.start()
            await drill.wait_acked(15, timeout_s=10)
            killed_at = time.monotonic()
            await asyncio.to_thread(doomed.kill)
            await drill.wait_recovered(killed_at, timeout_s=10)
            await drill.wait_status("in_progress", timeout_s=15)  # statuses after the fault
            await drill.finish(timeout_s=20)
            for client in [*drill.drivers, *drill.riders]:
                assert client.connects[0][1].startswith(doomed.ws_base)
                assert client.connects[-1][1].startswith(survivor.ws_base)
            statuses_after = drill.statuses_after(killed_at)
            return await drill.audit(), drill.rider_resumed_s(killed_at), statuses_after

    report, live_s, statuses_after = asyncio.run(asyncio.wait_for(scenario(), 90))
    log.info("SIGKILL: riders live again after %s s; %s", sorted(live_s), report)
    assert_clean(report)
    assert report.driver_reconnects == report.drivers and report.rider_reconnects == report.riders
    assert statuses_after >= report.riders, "every trip must change status after the kill"
    assert len(live_s) == report.riders and max(live_s) <= RIDER_LIVE_BOUND_S, live_s


def test_sigterm_drains_in_flight_writes_closes_with_1012_and_clients_move_on(
    start_gateway: Callable[..., Gateway], redis_url: str
) -> None:
    """SIGTERM: the gateway stops accepting, closes sockets with 1012, stores the batches it
    had taken in (their acks lost with the socket), exits within its drain timeout; the
    clients resend to the other gateway, and nothing is stored twice or lost."""
    drain_timeout_s = 5
    leaving = start_gateway(TRACKING_DRAIN_TIMEOUT_S=str(drain_timeout_s))
    staying = start_gateway()
    api = Api(staying.base, token("ops"))
    inflight_driver = uid("d-inflight")
    inflight_trip = api.create_trip(driver_id=inflight_driver)
    path = drive_path(inflight_trip["route"]["coordinates"])
    ts0 = now_ms() - 3_600_000
    batches = [range(1 + 500 * i, 501 + 500 * i) for i in range(4)]

    async def scenario() -> tuple[DrillReport, dict[str, Any]]:
        cfg = DrillConfig(drivers=4, interval_s=0.05, prefix=uid("term"))
        seen: dict[str, Any] = {}
        async with Drill([leaving.base, staying.base], SECRET, redis_url, cfg) as drill:
            await drill.start()
            await drill.wait_acked(15, timeout_s=10)
            async with driver_ws(leaving.ws_base, token("driver", inflight_driver)) as ws:
                # Four full batches: the batch bucket (1000 points, 500/s) holds the last
                # two back for about two seconds, so they are in flight at the SIGTERM.
                for seqs in batches:
                    await ws.send(storm_batch(seqs, path, ts0))
                seen["acked_before"] = (await read_acks(ws, 2))[-1]
                term_at = time.monotonic()
                leaving.terminate()
                async with httpx.AsyncClient(timeout=0.5) as http, asyncio.timeout(5):
                    while True:  # until it refuses new connections
                        try:
                            await http.get(f"{leaving.base}/healthz")
                        except httpx.TransportError:
                            break
                        await asyncio.sleep(0.02)
                seen["refusing_while_draining"] = leaving.proc.poll() is None
                try:
                    while True:
                        frame = orjson.loads(await ws.recv())
                        if frame["type"] == "ack":
                            seen["acked_before"] = frame["seq"]
                except ConnectionClosed as closed:
                    seen["inflight_close"] = closed.rcvd.code if closed.rcvd else None
            seen["exit_code"] = await asyncio.to_thread(leaving.proc.wait, drain_timeout_s + 10)
            seen["exit_s"] = time.monotonic() - term_at
            seen["stored_by_leaving"] = trail_seqs(api, inflight_trip["id"])
            # The app resends what was not acked to the other gateway: acked as duplicates.
            async with driver_ws(staying.ws_base, token("driver", inflight_driver)) as ws:
                unacked = range(seen["acked_before"] + 1, 2001)
                for start in range(unacked.start, unacked.stop, 500):
                    await ws.send(storm_batch(range(start, min(start + 500, 2001)), path, ts0))
                seen["resend_acks"] = await read_acks(ws, len(range(unacked.start, 2001, 500)))
            await drill.wait_recovered(term_at, timeout_s=10)
            await drill.wait_status("in_progress", timeout_s=15)
            await drill.finish(timeout_s=20)
            seen["close_codes"] = {d.drops[0].code for d in [*drill.drivers, *drill.riders]}
            seen["rider_live_s"] = drill.rider_resumed_s(term_at)
            seen["statuses_after"] = drill.statuses_after(term_at)
            return await drill.audit(), seen

    report, seen = asyncio.run(asyncio.wait_for(scenario(), 90))
    log.info("SIGTERM: %s; %s", {k: v for k, v in seen.items() if k != "stored_by_leaving"}, report)
    assert seen["refusing_while_draining"], "it must stop accepting before it exits"
    assert seen["inflight_close"] == GOING_AWAY and seen["close_codes"] == {GOING_AWAY}, seen
    # uvicorn re-raises the signal it handled once it has shut down.
    assert seen["exit_code"] in (0, -signal.SIGTERM), seen
    assert seen["exit_s"] <= drain_timeout_s + 1.0, seen
    assert seen["acked_before"] < 2000, "the last batches must have been in flight"
    assert seen["stored_by_leaving"] == list(range(1, 2001)), "in-flight batches not stored"
    assert seen["resend_acks"][-1] == 2000
    assert trail_seqs(api, inflight_trip["id"]) == list(range(1, 2001))
    assert_clean(report)
    assert seen["statuses_after"] >= report.riders, "every trip must change status after it"
    assert max(seen["rider_live_s"]) <= RIDER_LIVE_BOUND_S, seen["rider_live_s"]


def redis_outage(
    start_gateway: Callable[..., Gateway], tmp_path: Path, outage_s: float, prefix: str
) -> tuple[DrillReport, dict[str, Any]]:
    """A drill on two gateways over a test-owned Redis (AOF, fsync always), which is stopped
    (SIGTERM) and, `outage_s` after, started again on the same port and data."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir()

    def aof_redis(port: int | None = None) -> EmbeddedRedis:
        return EmbeddedRedis(port, appendonly=True, appendfsync="always", data_dir=str(data_dir))

    redis = aof_redis().start()
    revived: EmbeddedRedis | None = None
    try:
        gateways = [start_gateway(TRACKING_REDIS_URL=redis.url) for _ in range(2)]
        bases = [gw.base for gw in gateways]

        async def scenario() -> tuple[DrillReport, dict[str, Any]]:
            nonlocal revived
            cfg = DrillConfig(drivers=4, interval_s=0.05, spread=True, prefix=uid(prefix))
            watch = ReadyWatch(bases)
            stop_watch = asyncio.Event()
            watcher = asyncio.create_task(watch.run(stop_watch))
            async with Drill(bases, SECRET, redis.url, cfg) as drill:
                await drill.start()
                await drill.wait_acked(15, timeout_s=10)
                down_at = time.monotonic()
                await asyncio.to_thread(redis.stop)  # SIGTERM: the AOF is flushed and fsynced
                stopped_at = time.monotonic()
                # A write Redis finished just before it exited may be acked a moment
                # later; a point made after it exited can only be acked once it is back.
                made_before = {d.driver_id: d.outbox.next_seq - 1 for d in drill.drivers}
                async with asyncio.timeout(5):
                    while any(watch.first(b, stopped_at, ready=False) is None for b in bases):
                        await asyncio.sleep(0.02)
                await asyncio.sleep(max(0.0, down_at + outage_s - time.monotonic()))
                revived = aof_redis(redis.port).start()
                up_at = time.monotonic()
                acked_in_outage = [
                    (d.driver_id, seq)
                    for d in drill.drivers
                    for t, seq in d.acks
                    if stopped_at < t < up_at and seq > made_before[d.driver_id]
                ]
                await drill.wait_recovered(up_at, timeout_s=10)
                ready_s = []
                async with asyncio.timeout(10):
                    for base in bases:
                        while (t := watch.first(base, up_at, ready=True)) is None:
                            await asyncio.sleep(0.02)
                        ready_s.append(t - up_at)
                await drill.wait_status("in_progress", timeout_s=15)
                await drill.finish(timeout_s=20)
                stop_watch.set()
                await watcher
                figures = {
                    "outage_s": up_at - down_at,
                    "acked_in_outage": acked_in_outage,
                    "ready_again_s": ready_s,
                    "rider_live_s": drill.rider_live_s(up_at),
                    "driver_ack_s": drill.driver_ack_s(up_at),
                    "statuses_after": drill.statuses_after(down_at),
                }
                return await drill.audit(), figures

        report, figures = asyncio.run(asyncio.wait_for(scenario(), 90))
        figures["gateways_up"] = all(gw.proc.poll() is None for gw in gateways)
        assert figures["statuses_after"] >= report.riders, "trips must change status after it"
        return report, figures
    finally:
        redis.stop()
        if revived is not None:
            revived.stop()


def test_redis_restart_under_load_loses_nothing_and_everything_recovers_by_itself(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Redis restarted (1.5 s down) under load: gateways stay up, /readyz goes 503 and back,
    writes wait and are then stored, acked nothing in between; riders' feeds resume by
    themselves, no status missed."""
    report, figures = redis_outage(start_gateway, tmp_path, 1.5, "redis")
    log.info("Redis restart: %s; %s", figures, report)
    assert figures["gateways_up"], "a gateway died with Redis"
    assert figures["acked_in_outage"] == [], "a point made while Redis was down was acked"
    assert_clean(report)
    assert max(figures["ready_again_s"]) < 2.0, figures
    # Well inside the 15 s heartbeat: the fan-out subscribed again by itself.
    assert max(figures["rider_live_s"]) < 5.0, figures


def test_redis_down_longer_than_write_retries_drivers_resend_and_nothing_is_lost(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Redis down for 8 s, longer than writes are retried: drivers get `unavailable`, no
    later point is acked over the refused ones, the resends are stored once."""
    report, figures = redis_outage(start_gateway, tmp_path, 8.0, "redis-long")
    log.info("long Redis outage: %s; %s", figures, report)
    assert figures["gateways_up"], "a gateway died with Redis"
    assert figures["acked_in_outage"] == [], "a point made while Redis was down was acked"
    assert report.unavailable_errors >= report.drivers, "every driver must have been refused"
    assert_clean(report)
    assert max(figures["rider_live_s"]) < 5.0, figures


def test_burst_and_resend_storms_store_every_point_once_in_order(
    start_gateway: Callable[..., Gateway],
) -> None:
    """10 drivers send 500-point batches at once, then resend them and overlapping ones on
    two sockets each (two gateways) while new points arrive on both: every point is
    stored once, in order; acks are cumulative and end at the last seq."""
    first, second = start_gateway(), start_gateway()
    storm = resend_storm([first.base, second.base], SECRET, drivers=10, prefix=uid("storm"))
    results = asyncio.run(asyncio.wait_for(storm, 60))
    assert len(results) == 10
    for result in results:
        assert result.problems == [], result.problems
        assert result.acks[0][:2] == [500, 1000]


def test_with_redis_down_new_sockets_close_with_1013_try_again_later(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """A driver, a rider or an ops dashboard that connects while Redis is down cannot get
    its session or feed: close 1013 (Try Again Later, reconnect after a backoff), not 1011
    (a server bug)."""
    redis = EmbeddedRedis().start()
    try:
        gw = start_gateway(TRACKING_REDIS_URL=redis.url)
        trip = Api(gw.base, token("ops")).create_trip(driver_id=uid("d-1013"))
        redis.stop()

        async def close_code_of(url: str) -> int | None:
            async with connect(url, open_timeout=10) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 30)
            return closed.value.rcvd.code if closed.value.rcvd else None

        driver = f"{gw.ws_base}/v1/drivers/ws?token={token('driver', uid('d-1013'))}"
        rider = f"{gw.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}"
        fleet = f"{gw.ws_base}/v1/fleet/ws?bbox=24.9,60.15,24.97,60.18&token={token('ops')}"
        assert asyncio.run(close_code_of(driver)) == 1013
        assert asyncio.run(close_code_of(rider)) == 1013
        assert asyncio.run(close_code_of(fleet)) == 1013
    finally:
        redis.stop()
