"""One simulated driver's shift: get a trip, drive to the pickup, board, drive, drop off, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from driver_sim.clock import SimClock
from driver_sim.device import Outbox
from driver_sim.dispatch import Dispatch, DispatchError
from driver_sim.link import DriverLink
from driver_sim.motion import Drive, MotionConfig, drive_for_plan
from driver_sim.stats import Stats
from tracking.routing import GraphRouter

log = logging.getLogger(__name__)

ETA_CHECKPOINTS = (0.25, 0.5, 0.75)


@dataclass(frozen=True, slots=True)
class ShiftConfig:
    interval_s: float = 1.0
    boarding_s: tuple[float, float] = (5.0, 25.0)
    tap_start_prob: float = 0.5
    """Share of pickups where the driver taps "start" rather than just driving off."""
    tap_complete_prob: float = 0.5
    min_trip_m: float = 400.0
    arrival_timeout_s: float = 180.0
    """Simulated seconds to wait at a stop for the service to see the arrival."""
    dropouts_per_hour: float = 3.0
    dropout_s: tuple[float, float] = (10.0, 60.0)
    disconnects_per_hour: float = 3.0
    motion: MotionConfig = field(default_factory=MotionConfig)


class TripBudget:
    """Trips left to start across all drivers (None: unlimited)."""

    def __init__(self, trips: int | None) -> None:
        self.left = trips

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass
class TripRecord:
    """What one driver saw of one trip, for end-to-end checks."""

    trip_id: str
    share_url: str
    statuses: list[str] = field(default_factory=list)


class DriverShift:
    """A driver app plus the driver: moves, reports, reconnects, follows the trip."""

    def __init__(
        self,
        driver_id: str,
        ws_url: str,
        router: GraphRouter,
        dispatch: Dispatch,
        clock: SimClock,
        rng: random.Random,
        stats: Stats,
        cfg: ShiftConfig,
        eta_log: IO[str] | None = None,
    ) -> None:
        self.driver_id = driver_id
        self.router = router
        self.dispatch = dispatch
        self.clock = clock
        self.rng = rng
        self.stats = stats
        self.cfg = cfg
        self.eta_log = eta_log
        self.outbox = Outbox()
        self.link = DriverLink(
            ws_url, self.outbox, stats, random.Random(rng.random()), self._on_trip
        )
        self.position = router.random_point(rng)
        self.trips: list[TripRecord] = []
        self._trip: dict[str, Any] | None = None
        self._state = "idle"
        self._tunnel_until_ms = 0
        stats.states[self._state] += 1

    # --- the shift -----------------------------------------------------------

    async def run(self, stop: asyncio.Event, budget: TripBudget) -> None:
        """Work until `stop` or until the trip budget is spent, then hand in every point."""
        link_done = asyncio.Event()
        link_task = asyncio.create_task(self.link.run(link_done))
        try:
            await asyncio.wait_for(self.link.connected.wait(), 30)
            await self._idle(self.rng.uniform(1, 5) * self.cfg.interval_s)
            while not stop.is_set() and budget.take():
                await self._one_trip(stop)
            # Out of the tunnel, and everything buffered handed in, before going home.
            await self.link.set_signal(True)
            await self.link.drained(timeout_s=30)
        finally:
            self._set_state("off")
            link_done.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(link_task, 5)

    async def _one_trip(self, stop: asyncio.Event) -> None:
        pickup, dropoff = self._pick_trip()
        try:
            trip = await self.dispatch.create_trip(pickup, dropoff, self.driver_id)
        except DispatchError as exc:
            log.warning("%s: %s", self.driver_id, exc)
            await self._idle(10)
            return
        record = TripRecord(trip["id"], trip["share_url"], [trip["status"]])
        self.trips.append(record)
        self._trip = trip
        self.stats.trips_started += 1

        self._set_state("to_pickup")
        await self._drive_to(pickup, trip["id"], "pickup", stop)
        if not await self._await_status("arrived_pickup", stop):
            await self._abandon(trip["id"], "never seen at the pickup")
            return
        self._set_state("boarding")
        await self._idle(self.rng.uniform(*self.cfg.boarding_s))
        if self.rng.random() < self.cfg.tap_start_prob:
            await self.link.action(trip["id"], "start")
        self._set_state("to_dropoff")
        await self._drive_to(dropoff, trip["id"], "dropoff", stop)
        if not await self._await_status("arrived_dropoff", stop):
            await self._abandon(trip["id"], "never seen at the dropoff")
            return
        if self.rng.random() < self.cfg.tap_complete_prob:
            await self.link.action(trip["id"], "complete")
        if await self._await_status("completed", stop):
            self.stats.trips_completed += 1
        else:
            await self._abandon(trip["id"], "not completed after the dwell")
        self._set_state("idle")
        await self._idle(self.rng.uniform(2, 10) * self.cfg.interval_s)

    def _pick_trip(self) -> tuple[tuple[float, float], tuple[float, float]]:
        for _ in range(50):
            pickup = self.router.random_point(self.rng)
            dropoff = self.router.random_point(self.rng)
            if self.router.route(pickup, dropoff).distance_m >= self.cfg.min_trip_m:
                return pickup, dropoff
        return pickup, dropoff

    # --- moving and reporting ------------------------------------------------

    async def _drive_to(
        self, target: tuple[float, float], trip_id: str, leg: str, stop: asyncio.Event
    ) -> None:
        plan = self.router.route(self.position, target)
        drive = drive_for_plan(plan, self.rng, self.cfg.motion)
        checkpoints: list[tuple[float, int, int | None]] = []
        todo = list(ETA_CHECKPOINTS)
        last_ms = self.clock.now_ms()
        while not drive.done and not stop.is_set():
            await self.clock.sleep(self.cfg.interval_s)
            # The car moves by the simulated time that really passed (sends and
            # look-ups take time too), so positions, timestamps and arrival
            # times all tell one story.
            now_ms = self.clock.now_ms()
            drive.step(max(0.001, (now_ms - last_ms) / 1000))
            last_ms = now_ms
            await self._report(drive)
            if todo and drive.length_m > 0 and drive.along_m / drive.length_m >= todo[0]:
                checkpoints.append((todo.pop(0), self.clock.now_ms(), await self._eta(leg)))
        self.position = (drive.lon, drive.lat)
        arrived_ms = self.clock.now_ms()
        if self.eta_log is not None and drive.done:
            for fraction, at_ms, predicted_s in checkpoints:
                if predicted_s is None:
                    continue
                line = {
                    "trip_id": trip_id,
                    "driver_id": self.driver_id,
                    "leg": leg,
                    "fraction": fraction,
                    "predicted_s": predicted_s,
                    "actual_s": (arrived_ms - at_ms) / 1000,
                    "leg_m": round(drive.length_m),
                }
                self.eta_log.write(json.dumps(line) + "\n")
            self.eta_log.flush()

    async def _eta(self, leg: str) -> int | None:
        """The service's current ETA for this leg, as a rider would see it."""
        if self._trip is None:
            return None
        try:
            trip = await self.dispatch.get_trip(self._trip["id"])
        except DispatchError:
            return None
        eta = trip.get("eta")
        if not eta or eta.get("target") != leg:
            return None
        return int(eta["eta_s"])

    async def _report(self, drive: Drive) -> None:
        """One fix from the phone, through tunnels and dropped sockets."""
        now = self.clock.now_ms()
        per_step_h = self.cfg.interval_s / 3600
        if self._tunnel_until_ms and now >= self._tunnel_until_ms:
            self._tunnel_until_ms = 0
            await self.link.set_signal(True)
        elif (
            not self._tunnel_until_ms
            and self.rng.random() < self.cfg.dropouts_per_hour * per_step_h
        ):
            self._tunnel_until_ms = now + int(1000 * self.rng.uniform(*self.cfg.dropout_s))
            await self.link.set_signal(False)
        if self.rng.random() < self.cfg.disconnects_per_hour * per_step_h:
            await self.link.drop()
        fix = drive.observe()
        point = self.outbox.add(
            now,
            fix.lon,
            fix.lat,
            round(fix.acc_m, 1),
            round(fix.speed_mps, 2),
            round(fix.heading_deg, 1),
        )
        await self.link.submit(point)

    async def _idle(self, sim_s: float) -> None:
        """Stand still for `sim_s`, reporting as the app does."""
        drive = Drive([self.position, self.position], [1.0], self.rng, self.cfg.motion)
        until_ms = self.clock.now_ms() + int(sim_s * 1000)
        while self.clock.now_ms() < until_ms:
            await self._report(drive)
            await self.clock.sleep(self.cfg.interval_s)

    async def _await_status(self, status: str, stop: asyncio.Event) -> bool:
        """Keep reporting at the stop until the service says `status` (or give up)."""
        drive = Drive([self.position, self.position], [1.0], self.rng, self.cfg.motion)
        until_ms = self.clock.now_ms() + int(self.cfg.arrival_timeout_s * 1000)
        while not stop.is_set() and self.clock.now_ms() <= until_ms:
            if self._trip is not None and self._status_reached(status):
                return True
            await self._report(drive)
            await self.clock.sleep(self.cfg.interval_s)
        return self._trip is not None and self._status_reached(status)

    def _status_reached(self, status: str) -> bool:
        order = ["assigned", "arrived_pickup", "in_progress", "arrived_dropoff", "completed"]
        seen = self.trips[-1].statuses if self.trips else []
        return any(s in order and order.index(s) >= order.index(status) for s in seen)

    async def _abandon(self, trip_id: str, why: str) -> None:
        log.warning("%s: trip %s abandoned: %s", self.driver_id, trip_id, why)
        self.stats.trips_abandoned += 1
        with contextlib.suppress(Exception):
            await self.dispatch.act(trip_id, "cancel")
        self._set_state("idle")

    # --- from the service ----------------------------------------------------------

    def _on_trip(self, trip: dict[str, Any]) -> None:
        if self._trip is None or trip.get("id") != self._trip["id"]:
            return
        self._trip = trip
        record = self.trips[-1]
        if not record.statuses or record.statuses[-1] != trip["status"]:
            record.statuses.append(trip["status"])

    def _set_state(self, state: str) -> None:
        self.stats.states[self._state] -= 1
        self._state = state
        self.stats.states[state] += 1


def open_eta_log(path: str | None) -> IO[str] | None:
    if not path:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a")  # noqa: SIM115 - closed by the runner
