"""Nearest-road lookup: project a (lon, lat) onto the closest road segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from tracking.core.geo import LocalProjection, haversine_m
from tracking.routing.graph import RoadGraph


@dataclass(frozen=True, slots=True)
class Snap:
    """A point projected onto a road segment.

    Attributes:
        segment: Segment index in the :class:`RoadGraph`.
        fraction: Position along the segment, 0 at ``seg_u`` and 1 at ``seg_v``.
        lon / lat: The projected point, degrees; lies on the segment.
        distance_m: Distance from the queried point to the projected point.
    """

    segment: int
    fraction: float
    lon: float
    lat: float
    distance_m: float


class SegmentIndex:
    """Spatial index over the segments of a graph's largest SCC.

    Only segments with both ends in the largest strongly connected component
    are indexed, so any two snapped points are mutually reachable (islands
    such as a car park cut off by one-ways never capture a point).

    Geometry is indexed in metres of a :class:`LocalProjection` centred on the
    graph's bounding box, so "nearest" is metric, not in degrees. Queries do not
    mutate anything and may run from several threads.
    """

    def __init__(self, graph: RoadGraph, projection: LocalProjection) -> None:
        """Index the main-component segments of ``graph``.

        Args:
            graph: The road graph.
            projection: Metric projection centred on the graph.
        """
        self._graph = graph
        self._projection = projection
        self.segments = [seg for seg in range(len(graph.seg_u)) if graph.in_main_component(seg)]
        kx, ky = projection.m_per_deg_lon, projection.m_per_deg_lat
        lon0, lat0 = projection.lon0, projection.lat0
        node_x = (np.asarray(graph.node_lon) - lon0) * kx
        node_y = (np.asarray(graph.node_lat) - lat0) * ky
        seg_u = np.asarray([graph.seg_u[seg] for seg in self.segments], dtype=np.int64)
        seg_v = np.asarray([graph.seg_v[seg] for seg in self.segments], dtype=np.int64)
        starts = np.column_stack([node_x[seg_u], node_y[seg_u]])
        ends = np.column_stack([node_x[seg_v], node_y[seg_v]])
        lines = shapely.linestrings(np.stack([starts, ends], axis=1))
        self._tree = shapely.STRtree(lines)
        # GEOS builds the tree lazily on the first query, and concurrent first
        # queries are not safe; build it now, while only this thread sees it.
        self._tree.query_nearest(shapely.Point(0.0, 0.0))
        # Cumulative lengths, for picking a segment with probability ∝ length.
        self.cumulative_length_m: list[float] = []
        total = 0.0
        for seg in self.segments:
            total += graph.seg_length_m[seg]
            self.cumulative_length_m.append(total)

    def nearest(self, lon: float, lat: float) -> Snap:
        """Project a point onto the nearest indexed segment.

        Args:
            lon / lat: The point, degrees (must be finite).

        Returns:
            The projection onto the nearest segment (ties: the first found).
        """
        x_m, y_m = self._projection.to_xy(lon, lat)
        hits = self._tree.query_nearest(shapely.Point(x_m, y_m), all_matches=False)
        return self.project(self.segments[int(hits[0])], lon, lat)

    def project(self, seg: int, lon: float, lat: float) -> Snap:
        """Project a point onto a given segment (clamped to its ends).

        Args:
            seg: Segment index in the graph.
            lon / lat: The point, degrees.

        Returns:
            The projection; ``distance_m`` is the haversine distance to it.
        """
        graph = self._graph
        u, v = graph.seg_u[seg], graph.seg_v[seg]
        ux, uy = self._projection.to_xy(graph.node_lon[u], graph.node_lat[u])
        vx, vy = self._projection.to_xy(graph.node_lon[v], graph.node_lat[v])
        px, py = self._projection.to_xy(lon, lat)
        dx, dy = vx - ux, vy - uy
        length_sq = dx * dx + dy * dy
        fraction = ((px - ux) * dx + (py - uy) * dy) / length_sq if length_sq > 0 else 0.0
        fraction = min(1.0, max(0.0, fraction))
        # The projection is affine, so interpolating degrees stays on the segment.
        snap_lon, snap_lat = self.point_at(seg, fraction)
        return Snap(seg, fraction, snap_lon, snap_lat, haversine_m(lon, lat, snap_lon, snap_lat))

    def point_at(self, seg: int, fraction: float) -> tuple[float, float]:
        """The (lon, lat) at ``fraction`` (0..1) along segment ``seg``."""
        graph = self._graph
        u, v = graph.seg_u[seg], graph.seg_v[seg]
        lon = graph.node_lon[u] + fraction * (graph.node_lon[v] - graph.node_lon[u])
        lat = graph.node_lat[u] + fraction * (graph.node_lat[v] - graph.node_lat[u])
        return lon, lat
