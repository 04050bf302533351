"""Metric geometry on WGS84 coordinates.

Distances are never taken in degrees. Over a city-sized area an
equirectangular projection centred on the area is accurate to well under
0.1 %, and it is a few multiplications, which matters on the per-fix path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tracking.core.errors import ValidationFailed

EARTH_RADIUS_M = 6_371_008.8
_DEG = math.pi / 180.0
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|-?\.[0-9]+")


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two lon/lat points."""
    dlat = (lat2 - lat1) * _DEG
    dlon = (lon2 - lon1) * _DEG
    a = (
        math.sin(dlat / 2) ** 2
        + math.cos(lat1 * _DEG) * math.cos(lat2 * _DEG) * math.sin(dlon / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north, 0..360."""
    phi1, phi2 = lat1 * _DEG, lat2 * _DEG
    dlon = (lon2 - lon1) * _DEG
    y = math.sin(dlon) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlon)
    return (math.degrees(math.atan2(y, x)) + 360.0) % 360.0


def valid_lon_lat(lon: float, lat: float) -> bool:
    """True for finite WGS84 coordinates within range."""
    return (
        math.isfinite(lon)
        and math.isfinite(lat)
        and -180.0 <= lon <= 180.0
        and -90.0 <= lat <= 90.0
    )


@dataclass(frozen=True, slots=True)
class BBox:
    """A lon/lat box: west <= east and south <= north, edges included.

    Boxes across the antimeridian (west > east) are refused rather than
    guessed at: a client that swapped its corners gets an error, not the
    rest of the world.
    """

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lon: float, lat: float) -> bool:
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat

    @classmethod
    def of(cls, values: Sequence[object]) -> BBox:
        """`[minLon, minLat, maxLon, maxLat]` as numbers.

        Raises:
            ValidationFailed: not four finite numbers in range, or corners swapped.
        """
        if isinstance(values, str | bytes) or len(values) != 4:
            raise ValidationFailed("bbox must be four numbers: minLon,minLat,maxLon,maxLat")
        numbers: list[float] = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationFailed(f"bbox: {value!r} is not a number")
            numbers.append(float(value))
        min_lon, min_lat, max_lon, max_lat = numbers
        if not (valid_lon_lat(min_lon, min_lat) and valid_lon_lat(max_lon, max_lat)):
            raise ValidationFailed(
                f"bbox {numbers} out of range (lon -180..180, lat -90..90, finite)"
            )
        if min_lon > max_lon or min_lat > max_lat:
            raise ValidationFailed(
                f"bbox {numbers}: minLon must be <= maxLon and minLat <= maxLat "
                "(boxes across the antimeridian are not supported)"
            )
        return cls(min_lon, min_lat, max_lon, max_lat)

    @classmethod
    def parse(cls, text: str | None) -> BBox:
        """The `bbox=minLon,minLat,maxLon,maxLat` query parameter.

        Raises:
            ValidationFailed: missing, or not a valid box (see :meth:`of`).
        """
        if not text:
            raise ValidationFailed("bbox is required: ?bbox=minLon,minLat,maxLon,maxLat")
        parts = text.split(",")
        # Python's float() also takes "1_000", " 1 ", "٣" and "infinity": only
        # plain decimal numbers, as every client writes them, are a box.
        if not all(_DECIMAL.fullmatch(part) for part in parts):
            raise ValidationFailed(f"bbox {text[:60]!r} is not four numbers")
        return cls.of([float(part) for part in parts])


class LocalProjection:
    """Equirectangular projection to metres around an origin (x east, y north)."""

    __slots__ = ("lon0", "lat0", "m_per_deg_lon", "m_per_deg_lat")

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0 = lon0
        self.lat0 = lat0
        self.m_per_deg_lat = EARTH_RADIUS_M * _DEG
        self.m_per_deg_lon = self.m_per_deg_lat * math.cos(lat0 * _DEG)

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Project lon/lat degrees to local metres."""
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat

    def to_lon_lat(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Inverse of :meth:`to_xy`."""
        return self.lon0 + x_m / self.m_per_deg_lon, self.lat0 + y_m / self.m_per_deg_lat

    def distance_m(self, lon1: float, lat1: float, lon2: float, lat2: float) -> float:
        """Distance in metres between two points near the origin (city scale)."""
        return math.hypot((lon2 - lon1) * self.m_per_deg_lon, (lat2 - lat1) * self.m_per_deg_lat)
