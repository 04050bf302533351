"""The sea polygon of an extract, from its clipped ``natural=coastline`` ways (pure).

OSM has no sea polygons: the sea is whatever lies on the right of the
coastline ways (land on the left). An extract cuts those ways at its edge, so
each piece of coastline is extended to the nearest point of the extract's box,
the box is cut into faces along the coastline, and each face is sea or land
by which side of the coastline it lies on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import shapely
from shapely.geometry.base import BaseGeometry

from tracking.core.geo import haversine_m

LonLat = tuple[float, float]
Box = tuple[float, float, float, float]

# A coastline piece that ends farther than this from the box edge cannot be
# joined to it reliably (the extract lost a part of it): no sea then.
MAX_GAP_M = 250.0
# A face is on both sides of the coastline (the data contradicts itself) when
# the minority side's coastline is longer than this share of the majority's; a
# smaller share is a probe that fell across a sharp corner.
_MAX_DISAGREEMENT = 0.05
# How far beside a coastline segment the side probes are placed, degrees (~0.1 m).
_PROBE_DEG = 1e-6


def sea_polygon(
    coastlines: Sequence[Sequence[LonLat]], box: Box, max_gap_m: float = MAX_GAP_M
) -> BaseGeometry | None:
    """The sea inside ``box``, from coastline pieces in their way direction.

    Args:
        coastlines: Runs of consecutive (lon, lat) nodes of ``natural=coastline``
            ways, in way order (pieces of one way split where the extract
            dropped nodes are separate runs). Runs that continue each other
            (the last node of one is the first of another) are joined.
        box: (min_lon, min_lat, max_lon, max_lat) of the extract.
        max_gap_m: Farthest an open piece's end may be from the box edge.

    Returns:
        The sea as a (Multi)Polygon inside the box, or None when there is no
        coastline, no face is on the sea side, or the coastline is not
        consistent (an end too far from the edge, a face with sea along some
        of its coastline and land along more than a trace of the rest).
    """
    lines = [shapely.LineString(run) for run in coastlines if len(run) >= 2]
    if not lines:
        return None
    merged = shapely.line_merge(shapely.MultiLineString(lines), directed=True)
    pieces = list(shapely.get_parts(merged))
    frame = shapely.box(*box)
    cuts: list[BaseGeometry] = [frame.exterior]
    for piece in pieces:
        if piece.is_closed:
            cuts.append(piece)
            continue
        coords: list[LonLat] = [(lon, lat) for lon, lat in piece.coords]
        start = _nearest_on_edge(frame, coords[0], max_gap_m)
        end = _nearest_on_edge(frame, coords[-1], max_gap_m)
        if start is None or end is None:
            return None
        cuts.append(shapely.LineString([start, *coords, end]))
    noded = shapely.union_all(cuts)
    faces = list(shapely.get_parts(shapely.polygonize(list(shapely.get_parts(noded)))))
    if not faces:
        return None
    sea_votes, land_votes = _side_votes(faces, pieces)
    sea: list[BaseGeometry] = []
    for face, sea_m, land_m in zip(faces, sea_votes, land_votes, strict=True):
        if min(sea_m, land_m) > _MAX_DISAGREEMENT * max(sea_m, land_m):
            return None
        if sea_m > land_m:
            sea.append(face)
    if not sea:
        return None
    return shapely.intersection(shapely.union_all(sea), frame)


def _nearest_on_edge(frame: BaseGeometry, point: LonLat, max_gap_m: float) -> LonLat | None:
    edge = frame.exterior
    on_edge = edge.interpolate(edge.project(shapely.Point(point)))
    lon, lat = on_edge.x, on_edge.y
    if haversine_m(point[0], point[1], lon, lat) > max_gap_m:
        return None
    return (lon, lat)


def _side_votes(
    faces: list[BaseGeometry], pieces: list[BaseGeometry]
) -> tuple[list[float], list[float]]:
    """Length of coastline (m) with each face on its sea side, and on its land side."""
    tree = shapely.STRtree(faces)
    sea_m = [0.0] * len(faces)
    land_m = [0.0] * len(faces)
    for piece in pieces:
        coords = list(piece.coords)
        for (lon1, lat1), (lon2, lat2) in zip(coords, coords[1:], strict=False):
            length_m = haversine_m(lon1, lat1, lon2, lat2)
            if length_m <= 0.0:
                continue
            # The normal pointing right of travel, in degrees scaled to metres so
            # the probes sit the same distance away whatever the bearing.
            scale = math.cos(math.radians((lat1 + lat2) / 2))
            east, north = (lon2 - lon1) * scale, lat2 - lat1
            norm = math.hypot(east, north)
            right_lon, right_lat = north / norm / scale, -east / norm
            mid_lon, mid_lat = (lon1 + lon2) / 2, (lat1 + lat2) / 2
            for sign, votes in ((1.0, sea_m), (-1.0, land_m)):
                probe = shapely.Point(
                    mid_lon + sign * _PROBE_DEG * right_lon, mid_lat + sign * _PROBE_DEG * right_lat
                )
                for index in tree.query(probe, predicate="intersects"):
                    votes[int(index)] += length_m
    return sea_m, land_m
