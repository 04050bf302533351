"""The trip state machine: positions, actions and time in; events out.

Pure: no I/O, no clock. `now_ms` is always passed in. Every function mutates
the given :class:`TripState` and returns the events to publish, in order;
an illegal request raises before changing anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tracking.core.errors import IllegalTransition
from tracking.core.eta import MAX_GAP_S, estimate_arrival_ms, pace
from tracking.core.geo import bearing_deg
from tracking.core.messages import TERMINAL, Point, Status, TripEvent
from tracking.core.route import Route
from tracking.core.state import CoreConfig, LonLatTuple, TripState

BACKWARD_FIXES_TO_ACCEPT = 3
BACKWARD_NOISE_M = 10.0
"""A snap less than this (or the fix's accuracy) behind the car is noise, not reversing."""
"""Consecutive fixes behind the car before progress is allowed to go back."""
FULL_WEIGHT_ACC_M = 25.0
"""Fixes at least this accurate move progress all the way to their snap."""
SNAP_BEHIND_M = 15.0
SNAP_AHEAD_MIN_M = 20.0
LIKELY_SPEED_MPS = 20.0
"""The snap window: behind the car a little, ahead as far as physically possible."""
MIN_LEARNING_S = 60.0
"""Driving time a trip needs before its pace teaches the fleet anything."""
EXIT_RADIUS_FACTOR = 1.5
"""Leaving a zone needs this much more distance than entering it (hysteresis)."""

_TRANSITIONS: dict[str, dict[str, Status]] = {
    "assign": {"requested": "assigned", "assigned": "assigned"},
    "arrive_pickup": {"assigned": "arrived_pickup"},
    "start": {"arrived_pickup": "in_progress"},
    "arrive_dropoff": {"in_progress": "arrived_dropoff"},
    "complete": {"arrived_dropoff": "completed"},
    "cancel": {"requested": "cancelled", "assigned": "cancelled", "arrived_pickup": "cancelled"},
}


def new_trip(
    trip_id: str,
    kind: str,
    pickup: LonLatTuple,
    dropoff: LonLatTuple,
    plan_coords: Sequence[LonLatTuple],
    plan_speeds: Sequence[float],
    now_ms: int,
) -> TripState:
    """A `requested` trip whose route is the pickup→dropoff plan."""
    return TripState(
        id=trip_id,
        kind=kind,
        status="requested",
        pickup=pickup,
        dropoff=dropoff,
        created_ts=now_ms,
        updated_ts=now_ms,
        route_coords=list(plan_coords),
        route_speeds=list(plan_speeds),
        plan_coords=list(plan_coords),
        plan_speeds=list(plan_speeds),
    )


def check_transition(state: TripState, transition: str) -> Status:
    """The status `transition` leads to; raises IllegalTransition if it is not allowed."""
    target = _TRANSITIONS[transition].get(state.status)
    if target is None:
        raise IllegalTransition(
            f"cannot {transition.replace('_', ' ')} a trip that is {state.status}"
        )
    return target


def assign(
    state: TripState, driver_id: str, now_ms: int, last_fix: dict[str, Any] | None = None
) -> list[TripEvent]:
    """Assign (or re-assign) a driver.

    With the driver's recent `last_fix` (lon, lat, ts, heading, speed) the
    trip can route from the driver at once; otherwise the route stays the
    pickup→dropoff plan until the first fix arrives.
    """
    target = check_transition(state, "assign")
    events: list[TripEvent] = []
    if state.driver_id != driver_id:
        state.driver = None
        state.driver_seq = 0
        state.pace_gained_s = state.pace_elapsed_s = 0.0
        state.pace = state.pace_prior
        if state.signal_lost:
            state.signal_lost = False
            seq, ts = state.next_event(now_ms)
            events.append({"type": "signal", "seq": seq, "ts": ts, "lost": False})
    # Assignment counts as a sign of life: a driver who never sends a fix
    # after it is marked signal-lost like one who went quiet.
    state.last_fix_ms = now_ms
    if last_fix is not None:
        state.driver = {k: last_fix.get(k) for k in ("lon", "lat", "heading", "speed", "ts")}
    state.driver_id = driver_id
    if state.leg != "plan":
        events += _set_route(state, state.plan_coords, state.plan_speeds, "plan", now_ms)
    state.eta = None
    state.reroute_after_ts = 0
    if target != state.status:
        events.append(_status(state, target, now_ms))
    return events


def apply_action(state: TripState, action: str, now_ms: int, route: Route) -> list[TripEvent]:
    """A driver's or operator's `start`, `complete` or `cancel`."""
    if action not in ("start", "complete", "cancel"):
        raise IllegalTransition(f"unknown action {action!r}")
    target = check_transition(state, action)
    return _enter(state, target, now_ms, route)


def route_request(state: TripState, now_ms: int) -> tuple[LonLatTuple, LonLatTuple] | None:
    """(origin, destination) of a route the trip needs from the router, if any.

    Needed when a driver's position is known but the route does not start at
    it yet, and after a sustained off-route stretch.
    """
    if state.driver is None or now_ms < state.reroute_after_ts:
        return None
    origin = (state.driver["lon"], state.driver["lat"])
    if state.status == "assigned" and (state.leg != "pickup" or state.reroute_wanted):
        return origin, state.pickup
    if state.status == "in_progress" and state.reroute_wanted:
        return origin, state.dropoff
    return None


def apply_route(
    state: TripState,
    coords: Sequence[LonLatTuple],
    speeds_mps: Sequence[float],
    now_ms: int,
) -> tuple[list[TripEvent], Route]:
    """Install a route from the router for the current leg; returns events and the Route."""
    leg = "pickup" if state.status == "assigned" else "dropoff"
    events = _set_route(state, coords, speeds_mps, leg, now_ms)
    route = Route(state.route_coords, state.route_speeds)
    if state.driver is not None:
        events += _refresh_eta(state, route, now_ms, 0.0, force=True)
    return events, route


def reroute_failed(state: TripState, now_ms: int, cfg: CoreConfig) -> None:
    """The router could not route: keep the current route and try later."""
    state.reroute_wanted = False
    state.off_fixes = 0
    state.reroute_after_ts = now_ms + cfg.reroute_backoff_ms


def apply_fix(
    state: TripState, fix: Point, now_ms: int, cfg: CoreConfig, route: Route
) -> list[TripEvent]:
    """Apply one accepted driver fix to the trip; `route` is the trip's current route."""
    if not state.active or fix.seq <= state.driver_seq:
        return []
    events: list[TripEvent] = []
    acc = fix.acc if fix.acc is not None else cfg.default_acc_m
    previous = state.driver
    dt_s = 0.0 if previous is None else max(0.0, (fix.ts - previous["ts"]) / 1000.0)
    state.driver_seq = fix.seq
    state.last_fix_ms = now_ms
    if state.signal_lost:
        state.signal_lost = False
        seq, ts = state.next_event(now_ms)
        events.append({"type": "signal", "seq": seq, "ts": ts, "lost": False})

    on_leg = state.leg == (
        "pickup" if state.status in ("assigned", "arrived_pickup") else "dropoff"
    )
    shown_lon, shown_lat = fix.lon, fix.lat
    observed_mps = fix.speed
    if on_leg and state.status in ("assigned", "in_progress"):
        old_along = state.along_m
        shown = _advance_along(state, fix, acc, dt_s, cfg, route)
        if shown is not None:
            shown_lon, shown_lat = shown
        if 0.0 < dt_s <= MAX_GAP_S:
            if observed_mps is None:
                observed_mps = max(0.0, state.along_m - old_along) / dt_s
            # Only new ground counts: jitter back and forth must not count twice.
            if state.along_m > state.pace_along_m:
                gained_s = route.time_remaining_s(state.pace_along_m) - route.time_remaining_s(
                    state.along_m
                )
                state.pace_gained_s += gained_s
                state.pace_along_m = state.along_m
            state.pace_elapsed_s += dt_s
            state.pace = pace(state.pace_gained_s, state.pace_elapsed_s, state.pace_prior)

    heading = fix.heading
    if heading is None and previous is not None:
        moved_m = route.proj.distance_m(previous["lon"], previous["lat"], shown_lon, shown_lat)
        heading = (
            bearing_deg(previous["lon"], previous["lat"], shown_lon, shown_lat)
            if moved_m > 3.0
            else previous.get("heading")
        )
    state.driver = {
        "lon": shown_lon,
        "lat": shown_lat,
        "heading": heading,
        "speed": observed_mps,
        "ts": fix.ts,
    }
    seq, ts = state.next_event(now_ms)
    events.append(
        {
            "type": "position",
            "seq": seq,
            "ts": ts,
            "lon": shown_lon,
            "lat": shown_lat,
            "heading": heading,
            "speed": observed_mps,
            "progress": state.progress,
            "fix_ts": fix.ts,
        }
    )
    status_before = state.status
    if acc <= cfg.max_acc_m:
        events += _check_zones(state, fix, acc, now_ms, cfg, route)
    if state.status == status_before and status_before in ("assigned", "in_progress") and on_leg:
        events += _refresh_eta(state, route, now_ms, dt_s)
    return events


def tick(state: TripState, now_ms: int, cfg: CoreConfig, route: Route) -> list[TripEvent]:
    """Time-based changes with no fix: signal lost, auto-complete after the dwell."""
    events: list[TripEvent] = []
    if not state.active or state.last_fix_ms is None:
        return events
    silent_ms = now_ms - state.last_fix_ms
    if not state.signal_lost and silent_ms >= cfg.stale_after_s * 1000:
        state.signal_lost = True
        seq, ts = state.next_event(now_ms)
        events.append({"type": "signal", "seq": seq, "ts": ts, "lost": True})
    if _dwell_done(state, silent_ms, cfg):
        events += _enter(state, "completed", now_ms, route)
    return events


def deadline_ms(state: TripState, cfg: CoreConfig) -> int | None:
    """When :func:`tick` could next change something, or None."""
    if not state.active or state.last_fix_ms is None:
        return None
    candidates = []
    if not state.signal_lost:
        candidates.append(state.last_fix_ms + int(cfg.stale_after_s * 1000))
    if state.status == "arrived_dropoff" and state.dwell_since_ts is not None and state.driver:
        dwelt_ms = state.driver["ts"] - state.dwell_since_ts
        candidates.append(state.last_fix_ms + max(0, int(cfg.dwell_complete_s * 1000) - dwelt_ms))
    return min(candidates) if candidates else None


def view(state: TripState) -> dict[str, Any]:
    """The Trip object of the protocol."""
    return {
        "id": state.id,
        "kind": state.kind,
        "status": state.status,
        "driver_id": state.driver_id,
        "pickup": {"lon": state.pickup[0], "lat": state.pickup[1]},
        "dropoff": {"lon": state.dropoff[0], "lat": state.dropoff[1]},
        "route": {"type": "LineString", "coordinates": [list(c) for c in state.route_coords]},
        # Riders see the driver only between assignment and a terminal state.
        "driver": state.driver if state.active else None,
        "eta": state.eta if state.active else None,
        "progress": state.progress,
        "signal_lost": state.signal_lost,
        "seq": state.seq,
        "updated_ts": state.updated_ts,
        "created_ts": state.created_ts,
    }


# --- internals ---------------------------------------------------------------


def _advance_along(
    state: TripState, fix: Point, acc: float, dt_s: float, cfg: CoreConfig, route: Route
) -> tuple[float, float] | None:
    """Snap the fix, move progress; returns the point to show, or None for the raw fix."""
    behind_m = SNAP_BEHIND_M + acc
    off_limit_m = cfg.offroute_m + min(acc, cfg.offroute_m)
    # Search where the car can plausibly be first (its own speed); only if
    # that finds nothing near, as far as any car could have gone.
    likely_mps = fix.speed if fix.speed is not None else LIKELY_SPEED_MPS
    ahead_m = SNAP_AHEAD_MIN_M + 1.5 * likely_mps * dt_s + acc
    lo_m = state.along_m - behind_m
    snap = route.snap(fix.lon, fix.lat, lo_m, state.along_m + ahead_m)
    if snap.cross_m > off_limit_m:
        reach_m = cfg.max_speed_mps * dt_s + acc
        if reach_m > ahead_m:
            snap = route.snap(fix.lon, fix.lat, lo_m, state.along_m + reach_m)
    if snap.cross_m > off_limit_m:
        state.off_fixes += 1
        if state.off_fixes >= cfg.offroute_fixes:
            state.reroute_wanted = True
        return None
    state.off_fixes = 0
    state.reroute_wanted = False
    if acc > cfg.max_acc_m:
        return route.point_at(state.along_m)
    if snap.along_m >= state.along_m:
        state.back_fixes = 0
        weight = min(1.0, FULL_WEIGHT_ACC_M / max(acc, 1.0))
        state.along_m += weight * (snap.along_m - state.along_m)
    elif snap.along_m < state.along_m - max(acc, BACKWARD_NOISE_M):
        # One noisy fix behind the car must not move it backwards; a driver
        # who really turned around shows it over several fixes.
        state.back_fixes += 1
        if state.back_fixes >= BACKWARD_FIXES_TO_ACCEPT:
            state.back_fixes = 0
            state.along_m = snap.along_m
    else:
        state.back_fixes = 0  # within the fix's noise: a car standing still
    length = route.length_m
    state.progress = 1.0 if length <= 0.0 else min(1.0, state.along_m / length)
    return route.point_at(state.along_m)


def _check_zones(
    state: TripState, fix: Point, acc: float, now_ms: int, cfg: CoreConfig, route: Route
) -> list[TripEvent]:
    radius = cfg.arrival_radius_m
    target = state.pickup if state.status in ("assigned", "arrived_pickup") else state.dropoff
    # City-scale distances through the route's local projection: exact enough
    # within a few km of the route, and several times cheaper than haversine.
    distance = route.proj.distance_m(fix.lon, fix.lat, target[0], target[1])
    if state.leg != "plan" or state.status in ("in_progress", "arrived_dropoff"):
        # The pin may stand inside a building; the road end of the route is
        # where the car actually stops.
        end = route.end
        distance = min(distance, route.proj.distance_m(fix.lon, fix.lat, end[0], end[1]))
    inside = distance + 0.5 * acc <= radius
    outside = distance - 0.5 * acc > radius * EXIT_RADIUS_FACTOR
    state.in_zone = state.in_zone + 1 if inside else 0
    state.out_zone = state.out_zone + 1 if outside else 0
    status = state.status
    if status == "assigned" and state.in_zone >= cfg.zone_fixes:
        return _enter(state, "arrived_pickup", now_ms, route)
    if status == "arrived_pickup" and state.out_zone >= cfg.zone_fixes:
        return _enter(state, "in_progress", now_ms, route)
    if status == "in_progress" and state.in_zone >= cfg.zone_fixes:
        events = _enter(state, "arrived_dropoff", now_ms, route)
        state.dwell_since_ts = fix.ts
        return events
    if status == "arrived_dropoff":
        if outside:
            state.dwell_since_ts = None
        elif inside and state.dwell_since_ts is None:
            state.dwell_since_ts = fix.ts
        if _dwell_done(state, 0, cfg):
            return _enter(state, "completed", now_ms, route)
    return []


def _dwell_done(state: TripState, silent_ms: int, cfg: CoreConfig) -> bool:
    if state.status != "arrived_dropoff" or state.dwell_since_ts is None or state.driver is None:
        return False
    dwelt_ms = state.driver["ts"] - state.dwell_since_ts + silent_ms
    return bool(dwelt_ms >= cfg.dwell_complete_s * 1000)


def _enter(state: TripState, target: Status, now_ms: int, route: Route) -> list[TripEvent]:
    """Move to `target` (already checked legal) with its side effects."""
    events: list[TripEvent] = [_status(state, target, now_ms)]
    state.in_zone = state.out_zone = 0
    if target in ("arrived_pickup", "arrived_dropoff"):
        state.along_m = route.length_m
        state.progress = 1.0
        state.eta = None
        if state.pace_elapsed_s >= MIN_LEARNING_S:
            # What this trip teaches the fleet prior (the service collects it).
            state.pace_sample = state.pace_gained_s / state.pace_elapsed_s
    elif target == "in_progress":
        events += _set_route(state, state.plan_coords, state.plan_speeds, "dropoff", now_ms)
        if state.driver is not None:
            plan = Route(state.plan_coords, state.plan_speeds)
            snap = plan.snap(state.driver["lon"], state.driver["lat"])
            state.along_m = state.pace_along_m = snap.along_m
            state.progress = 0.0 if plan.length_m <= 0 else min(1.0, snap.along_m / plan.length_m)
            events += _refresh_eta(state, plan, now_ms, 0.0, force=True)
    elif target in TERMINAL:
        state.eta = None
        state.dwell_since_ts = None
        state.reroute_wanted = False
    return events


def _status(state: TripState, target: Status, now_ms: int) -> TripEvent:
    previous = state.status
    state.status = target
    seq, ts = state.next_event(now_ms)
    return {"type": "status", "seq": seq, "ts": ts, "status": target, "previous": previous}


def _set_route(
    state: TripState,
    coords: Sequence[LonLatTuple],
    speeds_mps: Sequence[float],
    leg: str,
    now_ms: int,
) -> list[TripEvent]:
    state.route_coords = list(coords)
    state.route_speeds = list(speeds_mps)
    state.leg = leg  # type: ignore[assignment]
    state.route_rev += 1
    state.along_m = 0.0
    state.pace_along_m = 0.0
    state.progress = 0.0
    state.back_fixes = state.off_fixes = 0
    state.reroute_wanted = False
    state.eta = None
    seq, ts = state.next_event(now_ms)
    geometry = {"type": "LineString", "coordinates": [list(c) for c in coords]}
    return [{"type": "route", "seq": seq, "ts": ts, "route": geometry}]


def _refresh_eta(
    state: TripState, route: Route, now_ms: int, dt_s: float, force: bool = False
) -> list[TripEvent]:
    previous = state.eta
    target = "pickup" if state.status == "assigned" else "dropoff"
    same_target = previous is not None and previous["target"] == target
    # Smooth in the driver's clock, the one the fixes' motion is measured in
    # (a replayed batch or a sped-up simulator runs it apart from ours), then
    # state the arrival in the server's clock.
    clock_ms = state.driver["ts"] if state.driver is not None else now_ms
    arrive_drv_ms = estimate_arrival_ms(
        route,
        state.along_m,
        state.pace,
        clock_ms,
        state.eta_arrive_drv_ms if same_target else None,
        dt_s,
    )
    state.eta_arrive_drv_ms = arrive_drv_ms
    eta_s = max(0, math.ceil((arrive_drv_ms - clock_ms) / 1000))
    arrive_ms = now_ms + eta_s * 1000
    distance_m = max(0, round(route.length_m - state.along_m))
    state.eta = {
        "target": target,
        "eta_s": eta_s,
        "distance_m": distance_m,
        "arrive_ts": arrive_ms,
    }
    if (
        not force
        and same_target
        and previous is not None
        and abs(previous["eta_s"] - eta_s) < 1
        and abs(previous["distance_m"] - distance_m) < 5
    ):
        return []
    seq, ts = state.next_event(now_ms)
    return [
        {
            "type": "eta",
            "seq": seq,
            "ts": ts,
            "target": target,  # type: ignore[typeddict-item]
            "eta_s": eta_s,
            "distance_m": distance_m,
            "arrive_ts": arrive_ms,
        }
    ]
