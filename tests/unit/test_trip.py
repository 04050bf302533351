"""The trip state machine, driven with no event loop, no Redis, no clock."""

from __future__ import annotations

import pytest

from tests.unit.coretools import (
    CFG,
    DRIVER_START,
    DROPOFF,
    NOW,
    PICKUP,
    assigned_trip_with_route,
    fix,
    make_trip,
    route_for,
)
from tracking.core import trip as core
from tracking.core.errors import IllegalTransition
from tracking.core.messages import TripEvent
from tracking.core.route import Route
from tracking.core.state import TripState


def drive(
    state: TripState, route: Route, seq: int, ts: int, until: str, speed_mps: float = 10.0
) -> tuple[list[TripEvent], int, int, Route]:
    """Drive along `route` at `speed_mps`, one fix a second, until the trip is `until`."""
    events: list[TripEvent] = []
    along = 0.0
    for _ in range(1000):
        if state.status == until:
            break
        along = min(route.length_m, along + speed_mps)
        lon, lat = route.point_at(along)
        seq += 1
        ts += 1000
        events += core.apply_fix(state, fix(seq, lon, lat, ts), ts, CFG, route)
        if state.route_rev and route.coords != tuple(state.route_coords):
            route = route_for(state)
    return events, seq, ts, route


def statuses(events: list[TripEvent]) -> list[str]:
    return [e["status"] for e in events if e["type"] == "status"]  # type: ignore[typeddict-item]


def test_full_lifecycle_from_positions_alone() -> None:
    """Positions alone take a trip from assigned to completed, with the right events."""
    state, route = assigned_trip_with_route()
    events, seq, ts, route = drive(state, route, 0, NOW, "arrived_pickup")
    assert state.progress == 1.0
    # Leave the pickup zone along the plan: the service starts the trip itself.
    plan = Route(state.plan_coords, state.plan_speeds)
    more, seq, ts, route = drive(state, plan, seq, ts, "arrived_dropoff")
    events += more
    assert state.status == "arrived_dropoff"
    # Dwell at the dropoff until auto-complete.
    while state.status == "arrived_dropoff":
        seq += 1
        ts += 1000
        events += core.apply_fix(state, fix(seq, *DROPOFF, ts), ts, CFG, route)
    assert statuses(events) == ["arrived_pickup", "in_progress", "arrived_dropoff", "completed"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(e["type"] == "route" for e in events)  # the leg switched to pickup→dropoff
    assert core.view(state)["driver"] is None  # hidden after a terminal state


def test_eta_targets_pickup_then_dropoff_and_counts_down() -> None:
    state, route = assigned_trip_with_route()
    events, seq, ts, _ = drive(state, route, 0, NOW, "arrived_pickup")
    etas = [e for e in events if e["type"] == "eta"]
    assert etas and all(e["target"] == "pickup" for e in etas)  # type: ignore[typeddict-item]
    remaining = [e["distance_m"] for e in etas]  # type: ignore[typeddict-item]
    assert remaining == sorted(remaining, reverse=True)
    plan = Route(state.plan_coords, state.plan_speeds)
    events, *_ = drive(state, plan, seq, ts, "arrived_dropoff")
    assert any(e["type"] == "eta" and e["target"] == "dropoff" for e in events)  # type: ignore[typeddict-item]


def test_eta_starts_from_road_time_over_the_fleet_prior() -> None:
    """Before the driver shows a pace, the ETA is road time divided by the fleet's prior."""
    state, route = assigned_trip_with_route()
    state.pace_prior = state.pace = 0.8
    lon, lat = route.point_at(100)
    core.apply_fix(state, fix(1, lon, lat, NOW), NOW, CFG, route)
    lon, lat = route.point_at(110)
    core.apply_fix(state, fix(2, lon, lat, NOW + 1000), NOW + 1000, CFG, route)
    assert state.eta is not None
    assert state.eta["eta_s"] == pytest.approx(route.time_remaining_s(110) / 0.8, rel=0.1)


def test_eta_learns_a_slow_drivers_pace() -> None:
    """A driver at half the road speed (stops included) pulls the pace, and the ETA, down."""
    state, route = assigned_trip_with_route()
    state.pace_prior = state.pace = 1.0
    along, seq, ts = 0.0, 0, NOW
    for second in range(90):
        # 10 s at road speed, then 10 s standing: half the road speed on average.
        along += 10.0 if (second // 10) % 2 == 0 else 0.0
        seq += 1
        ts += 1000
        core.apply_fix(state, fix(seq, *route.point_at(along), ts), ts, CFG, route)
    observed = state.pace_gained_s / state.pace_elapsed_s
    assert 0.5 <= observed <= 0.6  # what the driver did
    # Shrunk towards the prior 1.0, which is worth PRIOR_WEIGHT_S of driving.
    from tracking.core.eta import PRIOR_WEIGHT_S

    shrunk = (state.pace_gained_s + PRIOR_WEIGHT_S) / (state.pace_elapsed_s + PRIOR_WEIGHT_S)
    assert state.pace == pytest.approx(shrunk)
    assert observed < state.pace < 1.0
    expected = route.time_remaining_s(state.along_m) / state.pace
    assert state.eta is not None
    assert state.eta["eta_s"] == pytest.approx(expected, rel=0.15)


def test_assigned_trip_asks_for_a_route_from_the_driver() -> None:
    """Until the driver's position is known the route is the plan; then a route is requested."""
    state = make_trip()
    core.assign(state, "d-1", NOW)
    assert state.leg == "plan" and core.route_request(state, NOW) is None
    plan = route_for(state)
    core.apply_fix(state, fix(1, *DRIVER_START, NOW), NOW, CFG, plan)
    assert core.route_request(state, NOW) == (DRIVER_START, PICKUP)


def test_one_noisy_fix_does_not_move_progress_backwards() -> None:
    state, route = assigned_trip_with_route()
    core.apply_fix(state, fix(1, *route.point_at(300), NOW), NOW, CFG, route)
    before = state.progress
    core.apply_fix(state, fix(2, *route.point_at(200), NOW + 1000), NOW + 1000, CFG, route)
    assert state.progress == before


def test_a_single_fix_in_the_zone_does_not_arrive() -> None:
    """Arrival needs two consistent fixes; an inaccurate fix counts for nothing."""
    state, route = assigned_trip_with_route()
    core.apply_fix(state, fix(1, *PICKUP, NOW, acc=5), NOW, CFG, route)
    assert state.status == "assigned"
    core.apply_fix(state, fix(2, *PICKUP, NOW + 1000, acc=150), NOW + 1000, CFG, route)
    assert state.status == "assigned"
    core.apply_fix(state, fix(3, *PICKUP, NOW + 2000, acc=5), NOW + 2000, CFG, route)
    core.apply_fix(state, fix(4, *PICKUP, NOW + 3000, acc=5), NOW + 3000, CFG, route)
    assert state.status == "arrived_pickup"


def test_sustained_off_route_requests_a_reroute() -> None:
    state, route = assigned_trip_with_route()
    core.apply_fix(state, fix(1, *route.point_at(100), NOW), NOW, CFG, route)
    off = (24.9250, 60.1680)  # ~330 m north of the street
    for i in range(2, 2 + CFG.offroute_fixes):
        core.apply_fix(state, fix(i, *off, NOW + i * 1000), NOW + i * 1000, CFG, route)
    request = core.route_request(state, NOW + 10_000)
    assert request == (off, PICKUP)
    events, _ = core.apply_route(state, [off, PICKUP], [9.0], NOW + 10_000)
    assert [e["type"] for e in events] == ["route", "eta"]
    assert core.route_request(state, NOW + 10_000) is None


def test_stale_driver_loses_and_regains_signal() -> None:
    state, route = assigned_trip_with_route()
    core.apply_fix(state, fix(1, *DRIVER_START, NOW), NOW, CFG, route)
    assert core.deadline_ms(state, CFG) == NOW + 15_000
    assert core.tick(state, NOW + 14_999, CFG, route) == []
    [lost] = core.tick(state, NOW + 15_000, CFG, route)
    assert lost["type"] == "signal" and lost["lost"] is True  # type: ignore[typeddict-item]
    assert core.tick(state, NOW + 30_000, CFG, route) == []  # announced once
    events = core.apply_fix(state, fix(2, *DRIVER_START, NOW + 31_000), NOW + 31_000, CFG, route)
    assert events[0]["type"] == "signal" and events[0]["lost"] is False  # type: ignore[typeddict-item]


def test_dwell_completes_even_when_the_driver_goes_quiet() -> None:
    state, route = assigned_trip_with_route()
    state.status = "in_progress"
    state.leg = "dropoff"
    state.route_coords, state.route_speeds = state.plan_coords, state.plan_speeds
    route = route_for(state)
    core.apply_fix(state, fix(1, *DROPOFF, NOW), NOW, CFG, route)
    core.apply_fix(state, fix(2, *DROPOFF, NOW + 1000), NOW + 1000, CFG, route)
    assert state.status == "arrived_dropoff"
    deadline = core.deadline_ms(state, CFG)
    assert deadline == NOW + 1000 + 10_000
    events = core.tick(state, deadline, CFG, route)
    assert statuses(events) == ["completed"]


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("requested", "start"),
        ("assigned", "start"),
        ("assigned", "complete"),
        ("in_progress", "cancel"),
        ("in_progress", "complete"),
        ("completed", "cancel"),
        ("cancelled", "start"),
    ],
)
def test_illegal_transition_raises_and_changes_nothing(status: str, action: str) -> None:
    state, route = assigned_trip_with_route()
    state.status = status  # type: ignore[assignment]
    before = state.state_json()
    with pytest.raises(IllegalTransition) as info:
        core.apply_action(state, action, NOW + 5, route)
    assert info.value.code == "illegal_transition"
    assert state.state_json() == before


def test_duplicate_fix_is_applied_once() -> None:
    state, route = assigned_trip_with_route()
    assert core.apply_fix(state, fix(1, *DRIVER_START, NOW), NOW, CFG, route)
    before = state.state_json()
    assert core.apply_fix(state, fix(1, *DRIVER_START, NOW), NOW + 5, CFG, route) == []
    assert state.state_json() == before


def test_state_round_trips_through_json() -> None:
    state, route = assigned_trip_with_route()
    core.apply_fix(state, fix(1, *DRIVER_START, NOW), NOW, CFG, route)
    again = TripState.from_json(state.state_json(), state.route_json())
    assert again == state
