"""Shapely geometries to compact GeoJSON features (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

COORD_DECIMALS = 6
# Coordinates snap to a 1e-6° grid: 0.11 m of latitude, 0.06 m of longitude at 60°N.
GRID_DEG = 10.0**-COORD_DECIMALS
# Simplify by at most 0.5 m: 0.5 m of latitude in degrees (in longitude it is even less).
SIMPLIFY_DEG = 0.5 / 111_320

Feature = dict[str, Any]
FeatureCollection = dict[str, Any]


def feature(geometry: BaseGeometry, properties: Mapping[str, Any]) -> Feature | None:
    """A GeoJSON Feature of a lon/lat geometry, simplified by ≤ 0.5 m and rounded.

    The geometry is snapped to the 6-decimal grid in a way that keeps polygons
    valid; polygon exteriors are counter-clockwise (RFC 7946).

    Args:
        geometry: A (Multi)LineString or (Multi)Polygon in lon/lat degrees.
        properties: The feature's properties.

    Returns:
        The feature, or None when nothing drawable is left (a polygon or line
        that collapses at 0.1 m) or the geometry is of another type.
    """
    if geometry.is_empty:
        return None
    polygonal = geometry.geom_type in ("Polygon", "MultiPolygon")
    simplified = shapely.simplify(geometry, SIMPLIFY_DEG, preserve_topology=polygonal)
    snapped = shapely.set_precision(simplified, GRID_DEG)
    if polygonal:
        snapped = shapely.orient_polygons(_polygonal_part(snapped))
    body = geometry_json(snapped)
    if body is None:
        return None
    return {"type": "Feature", "geometry": body, "properties": dict(properties)}


def feature_collection(features: Iterable[Feature]) -> FeatureCollection:
    """A GeoJSON FeatureCollection of the features."""
    return {"type": "FeatureCollection", "features": list(features)}


def geometry_json(geometry: BaseGeometry) -> dict[str, Any] | None:
    """The GeoJSON geometry object of a (Multi)LineString or (Multi)Polygon, rounded.

    Returns:
        The geometry, or None when it is empty or of another type.
    """
    if geometry.is_empty:
        return None
    kind = geometry.geom_type
    if kind == "LineString":
        return {"type": kind, "coordinates": _coords(geometry)}
    if kind == "MultiLineString":
        return {"type": kind, "coordinates": [_coords(part) for part in geometry.geoms]}
    if kind == "Polygon":
        return {"type": kind, "coordinates": _rings(geometry)}
    if kind == "MultiPolygon":
        return {"type": kind, "coordinates": [_rings(part) for part in geometry.geoms]}
    return None


def _polygonal_part(geometry: BaseGeometry) -> BaseGeometry:
    # Snapping a polygon to the grid may give a collection when a sliver collapses
    # into a line: keep only the polygons.
    if geometry.geom_type in ("Polygon", "MultiPolygon") or geometry.is_empty:
        return geometry
    parts = [
        part
        for part in shapely.get_parts(geometry)
        if part.geom_type in ("Polygon", "MultiPolygon") and not part.is_empty
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _rings(polygon: BaseGeometry) -> list[list[list[float]]]:
    return [_coords(polygon.exterior), *(_coords(ring) for ring in polygon.interiors)]


def _coords(line: BaseGeometry) -> list[list[float]]:
    # round() gives the shortest repr (24.935176, not 24.935176000000002) in the JSON.
    return [
        [round(lon, COORD_DECIMALS), round(lat, COORD_DECIMALS)]
        for lon, lat in shapely.get_coordinates(line).tolist()
    ]
