"""The routing contract: what a route looks like and what a router offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import geojson

from tracking.core.geo import haversine_m


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """A drivable route from an origin to a destination.

    Attributes:
        coords: (lon, lat) vertices, degrees; at least 2, no two consecutive
            equal (except the degenerate 2-identical-point route when origin and
            destination snap to the same spot). The first is the origin's
            projection onto its road, the last the destination's.
        speeds_mps: Expected travel speed of each segment ``coords[i] ->
            coords[i + 1]``; ``len(speeds_mps) == len(coords) - 1``.
        distance_m: Haversine length of the line.
        duration_s: Expected travel time, the sum of segment length / speed.
    """

    coords: tuple[tuple[float, float], ...]
    speeds_mps: tuple[float, ...]
    distance_m: float
    duration_s: float

    @classmethod
    def from_line(cls, coords: list[tuple[float, float]], speeds_mps: list[float]) -> RoutePlan:
        """Build a plan from a polyline, measuring distance and duration.

        Consecutive duplicate points are dropped together with the zero-length
        segment they close; a line collapsing to one point becomes a 2-point
        zero-length route.

        Args:
            coords: (lon, lat) vertices, at least 1.
            speeds_mps: Speed of each segment; ``len(coords) - 1`` items, all > 0.

        Raises:
            ValueError: On mismatched lengths or an empty line.
        """
        if not coords or len(speeds_mps) != len(coords) - 1:
            raise ValueError("need n >= 1 coords and n - 1 speeds")
        kept = [coords[0]]
        kept_speeds: list[float] = []
        for point, speed_mps in zip(coords[1:], speeds_mps, strict=True):
            if point != kept[-1]:
                kept.append(point)
                kept_speeds.append(speed_mps)
        if len(kept) == 1:
            first_speed_mps = speeds_mps[0] if speeds_mps else 1.0
            return cls((kept[0], kept[0]), (first_speed_mps,), 0.0, 0.0)
        distance_m = 0.0
        duration_s = 0.0
        for (lon1, lat1), (lon2, lat2), speed_mps in zip(kept, kept[1:], kept_speeds, strict=False):
            length_m = haversine_m(lon1, lat1, lon2, lat2)
            distance_m += length_m
            duration_s += length_m / speed_mps
        return cls(tuple(kept), tuple(kept_speeds), distance_m, duration_s)

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
