"""Property tests of the core: invariants over generated walks and input sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.coretools import CFG, NOW, assigned_trip_with_route, fix, make_trip, route_for
from tracking.core import trip as core
from tracking.core.errors import IllegalTransition
from tracking.core.messages import ACTIVE, TERMINAL
from tracking.core.route import Route

LEGAL_STEPS = {
    ("requested", "assigned"),
    ("assigned", "arrived_pickup"),
    ("arrived_pickup", "in_progress"),
    ("in_progress", "arrived_dropoff"),
    ("arrived_dropoff", "completed"),
    ("requested", "cancelled"),
    ("assigned", "cancelled"),
    ("arrived_pickup", "cancelled"),
}


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=0.0, max_value=40.0), min_size=1, max_size=60),
    noise=st.lists(st.floats(min_value=-8.0, max_value=8.0), min_size=60, max_size=60),
)
def test_progress_never_decreases_along_a_monotone_walk(
    steps: list[float], noise: list[float]
) -> None:
    """Walking forward along the route (with GPS noise across it) never lowers progress."""
    state, route = assigned_trip_with_route()
    along = 0.0
    last_progress = 0.0
    for i, step in enumerate(steps):
        along = min(route.length_m - 60.0, along + step)
        lon, lat = route.point_at(along)
        lat += noise[i] / 111_000.0
        ts = NOW + (i + 1) * 1000
        events = core.apply_fix(state, fix(i + 1, lon, lat, ts), ts, CFG, route)
        assert state.progress >= last_progress
        last_progress = state.progress
        for event in events:
            if event["type"] == "eta":
                assert event["eta_s"] >= 0 and event["distance_m"] >= 0  # type: ignore[typeddict-item]


lon_st = st.floats(min_value=24.90, max_value=24.97)
lat_st = st.floats(min_value=60.155, max_value=60.180)
op_st = st.one_of(
    st.tuples(st.just("fix"), lon_st, lat_st, st.floats(min_value=1, max_value=300)),
    st.tuples(st.just("action"), st.sampled_from(["start", "complete", "cancel"])),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=60_000)),
    st.tuples(st.just("assign"), st.sampled_from(["d-1", "d-2"])),
    st.tuples(st.just("reroute")),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_st, max_size=80))
def test_no_input_sequence_reaches_an_illegal_state(ops: list[tuple[object, ...]]) -> None:
    """Any mix of fixes, actions, ticks and assignments only takes legal steps."""
    state = make_trip()
    route = route_for(state)
    now = NOW
    seq = 0
    last_seq = 0
    for op in ops:
        now += 1000
        before = state.status
        before_json = state.state_json()
        try:
            if op[0] == "fix":
                seq += 1
                events = core.apply_fix(
                    state,
                    fix(seq, op[1], op[2], now, acc=op[3]),
                    now,
                    CFG,
                    route,  # type: ignore[arg-type]
                )
            elif op[0] == "action":
                events = core.apply_action(state, op[1], now, route)  # type: ignore[arg-type]
            elif op[0] == "tick":
                now += op[1]  # type: ignore[operator]
                events = core.tick(state, now, CFG, route)
            elif op[0] == "assign":
                events = core.assign(state, op[1], now)  # type: ignore[arg-type]
            else:
                request = core.route_request(state, now)
                events = []
                if request is not None:
                    events, route = core.apply_route(state, list(request), [8.0], now)
        except IllegalTransition:
            assert state.state_json() == before_json
            continue
        if state.route_coords != list(route.coords):
            route = Route(state.route_coords, state.route_speeds)
        path = [before] + [e["status"] for e in events if e["type"] == "status"]  # type: ignore[typeddict-item]
        for a, b in zip(path, path[1:], strict=False):
            assert (a, b) in LEGAL_STEPS or (a, b) == ("assigned", "assigned")
        if before in TERMINAL:
            assert state.status == before and events == []
        for event in events:
            assert event["seq"] == last_seq + 1
            last_seq = event["seq"]
        if state.eta is not None:
            assert state.status in ACTIVE and state.eta["eta_s"] >= 0
        assert 0.0 <= state.progress <= 1.0
