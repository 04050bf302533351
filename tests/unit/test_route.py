"""Route geometry: snapping in metres, expected times, windows."""

from __future__ import annotations

import pytest

from tests.unit.coretools import CORNER, DROPOFF, PICKUP, PLAN, PLAN_SPEEDS
from tracking.core.geo import haversine_m
from tracking.core.route import Route


def test_length_is_metric_not_degrees() -> None:
    """The route's length matches the haversine length of its legs."""
    route = Route(PLAN, PLAN_SPEEDS)
    expected = haversine_m(*PICKUP, *CORNER) + haversine_m(*CORNER, *DROPOFF)
    assert route.length_m == pytest.approx(expected, rel=1e-3)


def test_snap_reports_along_and_cross_track_in_metres() -> None:
    """A point 0.0003° north of the first leg is ~33 m off the route."""
    route = Route(PLAN, PLAN_SPEEDS)
    snap = route.snap(24.9400, 60.1653)
    assert snap.cross_m == pytest.approx(haversine_m(24.94, 60.165, 24.94, 60.1653), rel=0.01)
    assert snap.along_m == pytest.approx(haversine_m(*PICKUP, 24.94, 60.165), rel=0.01)


def test_windowed_snap_equals_global_snap_inside_the_window() -> None:
    """The fast windowed search finds the same point as shapely's global projection."""
    route = Route(PLAN, PLAN_SPEEDS)
    glob = route.snap(24.9490, 60.1700)
    win = route.snap(24.9490, 60.1700, glob.along_m - 100, glob.along_m + 100)
    assert win.along_m == pytest.approx(glob.along_m, abs=0.01)
    assert win.cross_m == pytest.approx(glob.cross_m, abs=0.01)


def test_window_keeps_the_snap_on_the_pass_being_driven() -> None:
    """On an out-and-back route a point snaps to the pass inside the window."""
    route = Route([PICKUP, CORNER, PICKUP], [10.0, 10.0])
    half = route.length_m / 2
    first = route.snap(24.94, 60.165, 0, half - 1)
    second = route.snap(24.94, 60.165, half + 1, route.length_m)
    assert first.along_m < half < second.along_m


def test_time_remaining_uses_each_segment_speed() -> None:
    """Expected time is the sum of segment length over segment speed."""
    route = Route(PLAN, PLAN_SPEEDS)
    first = haversine_m(*PICKUP, *CORNER)
    second = haversine_m(*CORNER, *DROPOFF)
    assert route.time_remaining_s(0) == pytest.approx(first / 10 + second / 8, rel=1e-3)
    assert route.time_remaining_s(first) == pytest.approx(second / 8, rel=1e-3)
    assert route.time_remaining_s(route.length_m + 5) == 0.0


def test_point_at_walks_the_line() -> None:
    route = Route(PLAN, PLAN_SPEEDS)
    lon, lat = route.point_at(haversine_m(*PICKUP, *CORNER))
    assert haversine_m(lon, lat, *CORNER) < 0.5
    assert route.point_at(-10) == pytest.approx(PICKUP)


def test_single_point_route_is_degenerate_not_an_error() -> None:
    route = Route([PICKUP])
    assert route.length_m == 0.0
    assert route.snap(*CORNER).along_m == 0.0
