"""Helpers for driving the pure core in tests: routes and walks in central Helsinki."""

from __future__ import annotations

from tracking.core import trip as core
from tracking.core.messages import Point
from tracking.core.route import Route
from tracking.core.state import CoreConfig, TripState

NOW = 1_763_740_000_000
CFG = CoreConfig(dwell_complete_s=10.0)

# An L-shaped drive through central Helsinki: ~1.1 km east, then ~0.9 km north.
PICKUP = (24.9300, 60.1650)
CORNER = (24.9500, 60.1650)
DROPOFF = (24.9500, 60.1730)
PLAN = [PICKUP, CORNER, DROPOFF]
PLAN_SPEEDS = [10.0, 8.0]
DRIVER_START = (24.9200, 60.1650)  # ~550 m west of the pickup, on the same street


def make_trip(now_ms: int = NOW) -> TripState:
    return core.new_trip("t-1", "ride", PICKUP, DROPOFF, PLAN, PLAN_SPEEDS, now_ms)


def assigned_trip_with_route(now_ms: int = NOW) -> tuple[TripState, Route]:
    """A trip assigned to d-1 whose pickup leg starts at DRIVER_START."""
    state = make_trip(now_ms)
    core.assign(state, "d-1", now_ms)
    events, route = core.apply_route(state, [DRIVER_START, PICKUP], [10.0], now_ms)
    assert events[0]["type"] == "route"
    return state, route


def fix(seq: int, lon: float, lat: float, ts: int, acc: float = 5.0) -> Point:
    return Point(seq=seq, ts=ts, lon=lon, lat=lat, acc=acc)


def route_for(state: TripState) -> Route:
    return Route(state.route_coords, state.route_speeds)
