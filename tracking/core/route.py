"""A trip leg's route: a lon/lat polyline with metric geometry and expected times."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, NamedTuple

from shapely.geometry import LineString, Point

from tracking.core.geo import LocalProjection

DEFAULT_SPEED_MPS = 30 / 3.6
MIN_SPEED_MPS = 1.0


class Snap(NamedTuple):
    """A fix snapped to a route (use :meth:`Route.point_at` for the point itself)."""

    along_m: float
    """Distance from the route's start to the snapped point."""
    cross_m: float
    """Distance from the fix to the route (cross-track)."""


def _inv_len2(dx: float, dy: float) -> float:
    length2 = dx * dx + dy * dy
    return 0.0 if length2 == 0.0 else 1.0 / length2


class Route:
    """A polyline in lon/lat, measured in metres through a local projection.

    Snapping searches a window of the route around the previous position
    first: it is fast, and on a route that passes the same street twice it
    keeps the car on the pass it is actually driving.
    """

    __slots__ = (
        "coords",
        "speeds_mps",
        "proj",
        "_xs",
        "_ys",
        "_segs",
        "_cum_m",
        "_cum_s",
        "_line",
    )

    def __init__(
        self,
        coords: Sequence[Sequence[float]],
        speeds_mps: Sequence[float] | None = None,
    ) -> None:
        pts = [(float(c[0]), float(c[1])) for c in coords]
        if len(pts) == 1:
            pts.append(pts[0])
        if len(pts) < 2:
            raise ValueError("a route needs at least one coordinate")
        n_seg = len(pts) - 1
        speeds = list(speeds_mps) if speeds_mps is not None else [DEFAULT_SPEED_MPS] * n_seg
        if len(speeds) != n_seg:
            raise ValueError(f"{n_seg} segments but {len(speeds)} speeds")
        self.coords: tuple[tuple[float, float], ...] = tuple(pts)
        self.speeds_mps: tuple[float, ...] = tuple(max(MIN_SPEED_MPS, s) for s in speeds)
        lon0 = sum(p[0] for p in pts) / len(pts)
        lat0 = sum(p[1] for p in pts) / len(pts)
        self.proj = LocalProjection(lon0, lat0)
        xy = [self.proj.to_xy(lon, lat) for lon, lat in pts]
        self._xs = [p[0] for p in xy]
        self._ys = [p[1] for p in xy]
        cum_m = [0.0]
        cum_s = [0.0]
        for i in range(n_seg):
            seg = math.hypot(self._xs[i + 1] - self._xs[i], self._ys[i + 1] - self._ys[i])
            cum_m.append(cum_m[-1] + seg)
            cum_s.append(cum_s[-1] + seg / self.speeds_mps[i])
        # Per segment: start x, y, direction dx, dy, 1 / length² (0 if empty).
        self._segs = [
            (
                self._xs[i],
                self._ys[i],
                self._xs[i + 1] - self._xs[i],
                self._ys[i + 1] - self._ys[i],
                _inv_len2(self._xs[i + 1] - self._xs[i], self._ys[i + 1] - self._ys[i]),
            )
            for i in range(n_seg)
        ]
        self._cum_m = cum_m
        self._cum_s = cum_s
        self._line = LineString(xy) if cum_m[-1] > 0 else None

    @property
    def length_m(self) -> float:
        return self._cum_m[-1]

    @property
    def duration_s(self) -> float:
        """Expected travel time of the whole route at road speeds."""
        return self._cum_s[-1]

    @property
    def start(self) -> tuple[float, float]:
        return self.coords[0]

    @property
    def end(self) -> tuple[float, float]:
        return self.coords[-1]

    def snap(self, lon: float, lat: float, lo_m: float = 0.0, hi_m: float = math.inf) -> Snap:
        """Snap a point to the closest part of the route between `lo_m` and `hi_m` along it."""
        x, y = self.proj.to_xy(lon, lat)
        if lo_m <= 0.0 and hi_m >= self.length_m and self._line is not None:
            return self._snap_global(x, y)
        cum = self._cum_m
        segs = self._segs
        n_seg = len(segs)
        first = min(max(bisect_right(cum, lo_m) - 1, 0), n_seg - 1)
        last = max(min(bisect_right(cum, hi_m) - 1, n_seg - 1), first)
        best_d2 = math.inf
        best_i = first
        best_t = 0.0
        # The hot loop of the service: plain floats, no calls, no allocations.
        for i in range(first, last + 1):
            ax, ay, dx, dy, inv2 = segs[i]
            t = ((x - ax) * dx + (y - ay) * dy) * inv2
            if t < 0.0:
                t = 0.0
            elif t > 1.0:
                t = 1.0
            ex = ax + t * dx - x
            ey = ay + t * dy - y
            d2 = ex * ex + ey * ey
            if d2 < best_d2:
                best_d2 = d2
                best_i = i
                best_t = t
        i = best_i
        return Snap(cum[i] + best_t * (cum[i + 1] - cum[i]), math.sqrt(best_d2))

    def _snap_global(self, x: float, y: float) -> Snap:
        assert self._line is not None
        point = Point(x, y)
        along = float(self._line.project(point))
        return Snap(along, float(point.distance(self._line.interpolate(along))))

    def time_remaining_s(self, along_m: float) -> float:
        """Expected time from `along_m` to the end at road speeds."""
        cum_m = self._cum_m
        if along_m <= 0.0:
            return self._cum_s[-1]
        if along_m >= cum_m[-1]:
            return 0.0
        i = bisect_right(cum_m, along_m) - 1
        into_s = (along_m - cum_m[i]) / self.speeds_mps[i]
        return self._cum_s[-1] - self._cum_s[i] - into_s

    def speed_at(self, along_m: float) -> float:
        """Expected road speed at `along_m`."""
        i = min(len(self.speeds_mps) - 1, max(0, bisect_right(self._cum_m, along_m) - 1))
        return self.speeds_mps[i]

    def point_at(self, along_m: float) -> tuple[float, float]:
        """The lon/lat point `along_m` metres from the start."""
        cum = self._cum_m
        if along_m <= 0.0:
            along_m = 0.0
        elif along_m > cum[-1]:
            along_m = cum[-1]
        i = bisect_right(cum, along_m) - 1
        if i > len(cum) - 2:
            i = len(cum) - 2
        seg = cum[i + 1] - cum[i]
        t = 0.0 if seg == 0.0 else (along_m - cum[i]) / seg
        x = self._xs[i] + t * (self._xs[i + 1] - self._xs[i])
        y = self._ys[i] + t * (self._ys[i + 1] - self._ys[i])
        return self.proj.to_lon_lat(x, y)

    def geojson(self) -> dict[str, Any]:
        """The route as a GeoJSON LineString dict ([lon, lat] order)."""
        return {"type": "LineString", "coordinates": [[lon, lat] for lon, lat in self.coords]}
