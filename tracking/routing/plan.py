"""The routing contract: what a route looks like and what a router offers."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import geojson

from tracking.core.geo import LocalProjection, haversine_m
from tracking.routing.traffic import SIGNAL_DELAY_S, delayed_speeds_mps, expected_extra_s


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """A drivable route from an origin to a destination.

    Attributes:
        coords: (lon, lat) vertices, degrees; at least 2, no two consecutive
            equal (except the degenerate 2-identical-point route when origin and
            destination snap to the same spot). The first is the origin's
            projection onto its road, the last the destination's.
        speeds_mps: Expected travel speed of each segment ``coords[i] ->
            coords[i + 1]``, expected delays included (a segment ending at a
            traffic signal is slower by the signal's expected wait, see
            :mod:`tracking.routing.traffic`); ``len(speeds_mps) == len(coords) - 1``,
            each finite, >= 1 m/s (or its road speed if that is lower) and
            <= its road speed. Use these for ETAs.
        distance_m: Haversine length of the line.
        duration_s: Expected travel time, the sum of segment length / speed,
            so delays included.
        road_speeds_mps: Free-flow expected speed of each segment, without
            delays; what a car drives between the lights.
        signals: Indices into ``coords`` of the vertices that are traffic
            signals, ascending, strictly inside the route (never 0 nor the last).
    """

    coords: tuple[tuple[float, float], ...]
    speeds_mps: tuple[float, ...]
    distance_m: float
    duration_s: float
    road_speeds_mps: tuple[float, ...]
    signals: tuple[int, ...]

    @classmethod
    def from_line(
        cls,
        coords: Sequence[tuple[float, float]],
        speeds_mps: Sequence[float],
        signals: Collection[int] = (),
        *,
        driving_losses: bool = False,
    ) -> RoutePlan:
        """Build a plan from a polyline, measuring distance and duration.

        Consecutive duplicate points are dropped together with the zero-length
        segment they close; a line collapsing to one point becomes a 2-point
        zero-length route.

        Args:
            coords: (lon, lat) vertices, at least 1.
            speeds_mps: Free-flow speed of each segment; ``len(coords) - 1``
                items, all > 0. Without signals these are also the expected speeds.
            signals: Indices into ``coords`` of traffic-signal vertices; each
                adds :data:`~tracking.routing.traffic.SIGNAL_DELAY_S` to the
                expected time. Ones at the first or last point (after dropping
                duplicates) are not passed and are ignored.
            driving_losses: Also count the time a car loses changing speed
                (starting, stopping, turns, slower roads, braking for red
                signals) and to other hold-ups on the way, see
                :func:`~tracking.routing.traffic.expected_extra_s`. Off, the
                expected speeds are the free-flow ones but for the signals' waits.

        Raises:
            ValueError: On mismatched lengths or an empty line.
        """
        if not coords or len(speeds_mps) != len(coords) - 1:
            raise ValueError("need n >= 1 coords and n - 1 speeds")
        signal_set = set(signals)
        kept = [coords[0]]
        kept_speeds: list[float] = []
        kept_signals: list[int] = []
        for index, (point, speed_mps) in enumerate(zip(coords[1:], speeds_mps, strict=True), 1):
            if point != kept[-1]:
                kept.append(point)
                kept_speeds.append(speed_mps)
            # A signal on a dropped duplicate stands on the vertex kept in its place.
            vertex = len(kept) - 1
            if index in signal_set and vertex > 0 and kept_signals[-1:] != [vertex]:
                kept_signals.append(vertex)
        if len(kept) == 1:
            first_speed_mps = speeds_mps[0] if speeds_mps else 1.0
            road = (first_speed_mps,)
            return cls((kept[0], kept[0]), road, 0.0, 0.0, road, ())
        last = len(kept) - 1
        passed = tuple(vertex for vertex in kept_signals if vertex < last)
        lengths_m = [haversine_m(*a, *b) for a, b in zip(kept, kept[1:], strict=False)]
        if driving_losses:
            # Route's projection, so the turns are the ones a simulated Drive sees.
            projection = LocalProjection(
                sum(lon for lon, _ in kept) / len(kept), sum(lat for _, lat in kept) / len(kept)
            )
            xy = [projection.to_xy(lon, lat) for lon, lat in kept]
            extra_s = expected_extra_s(xy, kept_speeds, passed)
        else:
            extra_s = [0.0] * len(lengths_m)
        for vertex in passed:
            extra_s[vertex - 1] += SIGNAL_DELAY_S  # waited before driving on
        expected_mps = delayed_speeds_mps(lengths_m, kept_speeds, extra_s)
        duration_s = sum(
            length_m / speed_mps
            for length_m, speed_mps in zip(lengths_m, expected_mps, strict=True)
        )
        return cls(
            tuple(kept), tuple(expected_mps), sum(lengths_m), duration_s, tuple(kept_speeds), passed
        )

    def to_geojson(self) -> geojson.LineString:
        """The route as a ``geojson.LineString`` ([lon, lat] order; the geojson
        package rounds to 6 decimals, about 0.1 m)."""
        return geojson.LineString([[lon, lat] for lon, lat in self.coords])

    def as_dict(self) -> dict[str, Any]:
        """The route as a plain GeoJSON LineString dict, full precision."""
        return {"type": "LineString", "coordinates": [[lon, lat] for lon, lat in self.coords]}


class Router(Protocol):
    """Anything that plans drivable routes over some coverage area.

    The built-in implementation is :class:`tracking.routing.GraphRouter` (an
    in-process graph over an OSM extract); an OSRM or Valhalla HTTP client can
    implement this protocol later without callers changing.

    Implementations must be safe to call from several threads at once.
    """

    def route(self, origin: tuple[float, float], destination: tuple[float, float]) -> RoutePlan:
        """Plan the fastest drivable route.

        Args:
            origin: (lon, lat) of the start, degrees.
            destination: (lon, lat) of the end, degrees.

        Returns:
            The route, starting and ending on the road nearest each point.

        Raises:
            OutsideCoverage: A point is too far from any road of the map.
            NoRoute: No drivable path connects the points.
        """
        ...

    def covers(self, lon: float, lat: float) -> bool:
        """True when a route can start or end at (lon, lat)."""
        ...
