"""The application service: the clock, the core, the router and the store together.

Transport adapters (HTTP, WebSocket, SSE) call this; it calls the pure core
with `now`, stores what the core returned atomically and publishes it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tracking.core import trip as core
from tracking.core.driver import DriverState, admit_point
from tracking.core.errors import (
    AlreadyExists,
    Forbidden,
    NotFound,
    OutsideCoverage,
    TrackingError,
    Unavailable,
    ValidationFailed,
)
from tracking.core.eta import DEFAULT_PACE_PRIOR
from tracking.core.fleet import FleetUpdate, encode_update, update_from
from tracking.core.geo import BBox
from tracking.core.messages import TERMINAL, Point, TripEvent
from tracking.core.route import Route
from tracking.core.state import CoreConfig, LonLatTuple, TripState
from tracking.routing import Router
from tracking.settings import Settings
from tracking.store.trips import TripStore, Write, trail_entry

log = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 8
PRIOR_CACHE_S = 10.0
FLEET_SNAPSHOT_MAX_AGE_MS = 300_000
"""A fleet snapshot shows drivers whose last fix is at most this old."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def core_config(settings: Settings) -> CoreConfig:
    return CoreConfig(
        arrival_radius_m=settings.arrival_radius_m,
        stale_after_s=settings.stale_after_s,
        dwell_complete_s=settings.dwell_complete_s,
        offroute_m=settings.offroute_m,
        offroute_fixes=settings.offroute_fixes,
    )


@dataclass(slots=True)
class DriverSession:
    """A connected driver: its state and its current trip, cached between points."""

    driver: DriverState
    trip: TripState | None = None
    unsettled_seq: int | None = None
    """Lowest seq of points that failed to store (Redis unavailable): until the
    client resends from there, no later point is stored, so that a cumulative
    ack never covers a point that is not stored."""


@dataclass(slots=True)
class IngestResult:
    ack: int
    errors: list[TrackingError]
    trip_changed: bool


class TrackingService:
    """Trips and driver points: every state change of the service goes through here."""

    def __init__(self, settings: Settings, store: TripStore, router: Router) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.cfg = core_config(settings)
        self._routes: OrderedDict[tuple[str, int], Route] = OrderedDict()
        self._prior: tuple[float, float] = (0.0, DEFAULT_PACE_PRIOR)
        """(monotonic time read, value) of the fleet's learned pace."""

    # --- routes ------------------------------------------------------------

    def route_of(self, state: TripState) -> Route:
        """The Route object of the trip's current route (cached per route revision)."""
        key = (state.id, state.route_rev)
        route = self._routes.get(key)
        if route is None:
            route = Route(state.route_coords, state.route_speeds)
            self._routes[key] = route
            if len(self._routes) > 4096:
                self._routes.popitem(last=False)
        else:
            self._routes.move_to_end(key)
        return route

    async def _plan(
        self, origin: LonLatTuple, dest: LonLatTuple
    ) -> tuple[list[LonLatTuple], list[float]]:
        plan = await asyncio.to_thread(self.router.route, origin, dest)
        return list(plan.coords), list(plan.speeds_mps)

    async def _follow_route_requests(self, state: TripState, now: int) -> list[TripEvent]:
        request = core.route_request(state, now)
        if request is None:
            return []
        try:
            coords, speeds = await self._plan(*request)
        except TrackingError as exc:
            log.info("trip %s: re-route failed: %s", state.id, exc.detail)
            core.reroute_failed(state, now, self.cfg)
            return []
        events, route = core.apply_route(state, coords, speeds, now)
        self._routes[(state.id, state.route_rev)] = route
        return events

    # --- the fleet's pace (the learned ETA correction) ----------------------

    async def pace_prior(self) -> float:
        read_at, value = self._prior
        if time.monotonic() - read_at > PRIOR_CACHE_S:
            learned = await self.store.pace_prior()
            value = learned if learned is not None else DEFAULT_PACE_PRIOR
            self._prior = (time.monotonic(), value)
        return value

    async def _teach(self, state: TripState, events: Sequence[TripEvent]) -> None:
        """A leg just ended: let its pace teach the fleet prior."""
        arrived = any(
            e["type"] == "status" and e["status"] in ("arrived_pickup", "arrived_dropoff")
            for e in events
        )
        if arrived and state.pace_sample is not None:
            await self.store.learn_pace(state.pace_sample)

    # --- trips -------------------------------------------------------------

    async def create_trip(
        self, pickup: LonLatTuple, dropoff: LonLatTuple, kind: str, trip_id: str | None
    ) -> TripState:
        for name, point in (("pickup", pickup), ("dropoff", dropoff)):
            if not self.router.covers(*point):
                raise OutsideCoverage(
                    f"{name} ({point[0]}, {point[1]}) is outside the map's coverage"
                )
        coords, speeds = await self._plan(pickup, dropoff)
        now = now_ms()
        state = core.new_trip(
            trip_id or f"t-{secrets.token_hex(6)}", kind, pickup, dropoff, coords, speeds, now
        )
        if not await self.store.write(Write(trip=state, expected_rev=0, route_changed=True)):
            raise AlreadyExists(f"trip {state.id} already exists")
        return state

    async def get_trip(self, trip_id: str) -> TripState:
        state = await self.store.load_trip(trip_id)
        if state is None:
            raise NotFound(f"no trip {trip_id}")
        return state

    async def mutate(
        self, trip_id: str, step: Callable[[TripState, int], list[TripEvent]]
    ) -> tuple[TripState, list[TripEvent]]:
        """Load, apply `step(state, now)`, store with compare-and-set; retried on conflict."""
        for _ in range(MAX_CAS_ATTEMPTS):
            state = await self.get_trip(trip_id)
            expected, route_rev = state.rev, state.route_rev
            now = now_ms()
            events = step(state, now)
            events += await self._follow_route_requests(state, now)
            write = Write(
                trip=state,
                expected_rev=expected,
                route_changed=state.route_rev != route_rev,
                events=events,
                deadline_ms=core.deadline_ms(state, self.cfg),
                fleet=await self._status_update(state, events),
            )
            if await self.store.write(write):
                await self._notify_driver(state, events)
                return state, events
        raise Unavailable(f"trip {trip_id} is changing too fast; retry")

    async def assign(self, trip_id: str, driver_id: str) -> TripState:
        driver = await self.store.load_driver(driver_id)
        prior = await self.pace_prior()
        previous: list[str | None] = []

        def step(state: TripState, now: int) -> list[TripEvent]:
            previous.append(state.driver_id)
            recent = (
                driver.fix
                if driver.fix and now - driver.fix["ts"] < self.cfg.stale_after_s * 1000
                else None
            )
            state.pace_prior = prior
            return core.assign(state, driver_id, now, last_fix=recent)

        state, _ = await self.mutate(trip_id, step)
        await self.store.set_driver_trip(driver_id, trip_id)
        old = previous[-1]
        if old and old != driver_id:
            await self.store.set_driver_trip(old, None)
            await self.store.publish_driver(
                old, orjson.dumps({"type": "trip", "trip": core.view(state)})
            )
        return state

    async def act(self, trip_id: str, action: str, driver_id: str | None = None) -> TripState:
        """`start`, `complete` or `cancel`; `driver_id` set when a driver acts."""

        def step(state: TripState, now: int) -> list[TripEvent]:
            if driver_id is not None and state.driver_id != driver_id:
                raise Forbidden(f"trip {trip_id} is not assigned to driver {driver_id}")
            return core.apply_action(state, action, now, self.route_of(state))

        state, _ = await self.mutate(trip_id, step)
        return state

    async def tick_due(self) -> int:
        """Run time-based changes (signal lost, dwell complete) for trips whose time has come."""
        done = 0
        for trip_id in await self.store.due_trips(now_ms()):
            try:
                await self.mutate(
                    trip_id, lambda s, now: core.tick(s, now, self.cfg, self.route_of(s))
                )
            except NotFound:
                await self.store.clear_deadline(trip_id)
            done += 1
        return done

    async def _status_update(self, state: TripState, events: Sequence[TripEvent]) -> bytes | None:
        """The fleet update for a status change without a point (action, tick, assignment).

        It carries the driver's last raw fix, like the updates of its points.
        If a point is stored meanwhile the write conflicts and this is redone;
        a fix stored without touching this trip is newer, and wins by its `ts`.
        """
        if state.driver_id is None or not any(e["type"] == "status" for e in events):
            return None
        driver = await self.store.load_driver(state.driver_id)
        if driver.fix is None:
            return None
        if not state.active and driver.trip_id not in (None, state.id):
            return None  # this trip ended, but the driver is on another one already
        return encode_update(update_from(driver.id, driver.fix, state.id, state.status))

    async def _notify_driver(self, state: TripState, events: Sequence[TripEvent]) -> None:
        if state.driver_id and any(e["type"] in ("status", "route") for e in events):
            frame = orjson.dumps({"type": "trip", "trip": core.view(state)})
            await self.store.publish_driver(state.driver_id, frame)

    # --- driver points -----------------------------------------------------

    async def open_session(self, driver_id: str) -> DriverSession:
        return DriverSession(await self.store.load_driver(driver_id))

    async def current_trip(self, session: DriverSession) -> TripState | None:
        """The driver's active trip, loaded if not cached."""
        trip_id = session.driver.trip_id
        if trip_id is None:
            return None
        if session.trip is None or session.trip.id != trip_id:
            session.trip = await self.store.load_trip(trip_id)
        trip = session.trip
        if trip is None or not trip.active or trip.driver_id != session.driver.id:
            return None
        return trip

    async def ingest(self, session: DriverSession, points: Sequence[Point]) -> IngestResult:
        """Admit, apply and durably store a driver's points, in order.

        Returns the cumulative ack (every point up to it is stored) and the
        points rejected, each with its error. Raises Unavailable if they could
        not be stored; the client resends them.
        """
        if session.unsettled_seq is not None:
            await self._settle(session, points)
        admitted: list[Point] = []
        try:
            for _ in range(MAX_CAS_ATTEMPTS):
                now = now_ms()
                driver = copy.copy(session.driver)
                errors: list[TrackingError] = []
                admitted = []
                for point in points:
                    try:
                        if admit_point(driver, point, now, self.cfg):
                            admitted.append(point)
                    except ValidationFailed as exc:
                        errors.append(exc)
                if not admitted:
                    if driver.jump_rejects != session.driver.jump_rejects:
                        # Keep the teleport count, so that re-anchoring also works
                        # for a driver posting one point per HTTP request.
                        await self.store.write(Write(driver=driver, seen_ms=now))
                        session.driver.jump_rejects = driver.jump_rejects
                    return IngestResult(session.driver.last_seq, errors, False)
                result = await self._store_points(session, driver, admitted, errors, now)
                if result is not None:
                    return result
                # The trip changed, or these points were stored by another socket
                # of this driver (or by a write retried after its reply was lost):
                # reload both and admit again, so that nothing is stored twice.
                session.trip = None
                session.driver = await self.store.load_driver(session.driver.id)
            raise Unavailable("could not store points: the trip kept changing; resend")
        except Unavailable:
            if admitted:
                first = admitted[0].seq
                if session.unsettled_seq is None or first < session.unsettled_seq:
                    session.unsettled_seq = first
            session.trip = None
            raise

    async def _settle(self, session: DriverSession, points: Sequence[Point]) -> None:
        """After a failed store: go on only once the client resends the failed points.

        The failed write may have landed after all (its reply lost), so the
        driver's stored state is read again first.
        """
        assert session.unsettled_seq is not None
        session.driver = await self.store.load_driver(session.driver.id)
        session.trip = None
        last = session.driver.last_seq
        fresh = [p.seq for p in points if p.seq > last]
        if last >= session.unsettled_seq:
            session.unsettled_seq = None  # the failed write landed after all
            return
        if not fresh:
            return  # points stored already: acked again, nothing new to order
        if fresh[0] <= session.unsettled_seq:
            session.unsettled_seq = None  # the resend
            return
        raise Unavailable(
            f"points from seq {session.unsettled_seq} are not stored: resend them first"
        )

    async def _store_points(
        self,
        session: DriverSession,
        driver: DriverState,
        admitted: list[Point],
        errors: list[TrackingError],
        now: int,
    ) -> IngestResult | None:
        """Apply admitted points to the driver's trip and store them; None on a conflict."""
        trip = await self.current_trip(session)
        work = copy.copy(trip) if trip is not None else None
        events: list[TripEvent] = []
        trail: list[str] = []
        route_rev = work.route_rev if work else 0
        if work is not None:
            for point in admitted:
                if not work.active:
                    break
                if point.seq <= work.driver_seq:
                    # The trip holds it already: on a Redis Cluster, a write whose
                    # driver part was lost (see store/cluster.py). Acked, not redone.
                    continue
                events += core.apply_fix(work, point, now, self.cfg, self.route_of(work))
                events += await self._follow_route_requests(work, now)
                trail.append(trail_entry(point.lon, point.lat, point.ts, point.seq))
        assert driver.fix is not None  # a point was admitted
        write = Write(
            trip=work,
            expected_rev=trip.rev if trip else 0,
            route_changed=work is not None and work.route_rev != route_rev,
            events=events,
            trail=trail,
            deadline_ms=core.deadline_ms(work, self.cfg) if work else None,
            driver=driver,
            fleet=encode_update(
                update_from(
                    driver.id,
                    driver.fix,
                    work.id if work else None,
                    work.status if work else None,
                )
            ),
            seen_ms=now,
            first_seq=admitted[0].seq,
        )
        if not await self.store.write(write):
            return None
        # An assignment may have landed while we wrote: keep its trip id.
        driver.trip_id = session.driver.trip_id
        session.driver = driver
        session.trip = work if work is not None and work.id == driver.trip_id else None
        if work is not None:
            await self._notify_driver(work, events)
            await self._teach(work, events)
        return IngestResult(driver.last_seq, errors, any(e["type"] == "status" for e in events))

    # --- the fleet (ops) ---------------------------------------------------------

    async def fleet_snapshot(self, bbox: BBox) -> list[FleetUpdate]:
        """Every driver in `bbox` whose last fix is at most 5 minutes old (by its `ts`)."""
        now = now_ms()
        out = []
        for driver, trip_id, status in await self.store.drivers_in_box(bbox):
            fix = driver.fix
            if fix is None or now - fix["ts"] > FLEET_SNAPSHOT_MAX_AGE_MS:
                continue
            if bbox.contains(fix["lon"], fix["lat"]):  # the GEO search is a superset
                out.append(update_from(driver.id, fix, trip_id, status))
        return out

    async def prune_positions(self) -> int:
        """Retention: drivers silent for `trip_ttl_s` leave the position index."""
        before = now_ms() - self.settings.trip_ttl_s * 1000
        removed = total = await self.store.prune_positions(before)
        while removed:
            removed = await self.store.prune_positions(before)
            total += removed
        return total

    async def drivers_online(self, window_s: float) -> int:
        """Drivers with a point stored in the last `window_s` (server clock).

        A point rejected as an implausible jump counts too: the driver is there.
        """
        return await self.store.drivers_seen_since(now_ms() - int(window_s * 1000))

    def trip_changed(self, session: DriverSession, trip: dict[str, Any]) -> None:
        """A trip frame for this driver (assignment, cancel, status): follow it.

        The driver's current trip becomes this one while it is assigned to the
        driver and not over; the cached state is dropped either way.
        """
        trip_id = trip.get("id")
        if trip.get("driver_id") == session.driver.id and trip.get("status") not in TERMINAL:
            session.driver.trip_id = trip_id
        elif session.driver.trip_id == trip_id:
            session.driver.trip_id = None
        session.trip = None
