"""Compact directed road graph with travel-time shortest paths.

Nodes are the OSM nodes of drivable ways (every way node is kept so the
geometry follows the road); some are traffic signals. A *segment* is the
straight piece of road between two consecutive way nodes; it yields one
directed edge per allowed direction.
Everything is stored in flat Python lists indexed by int, which is what the
pure-Python search loop reads fastest, and nothing is mutated after
construction, so searches may run concurrently from several threads.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush

from tracking.core.geo import EARTH_RADIUS_M, haversine_m
from tracking.routing.osm import DrivableWay
from tracking.routing.traffic import SIGNAL_CLUSTER_M, SIGNAL_DELAY_S

_DEG = math.pi / 180.0
# Shrinks the A* distance bound a little so small errors of the flat-earth
# approximation can never make it overestimate (which would lose optimality).
_HEURISTIC_SLACK = 0.99


@dataclass(frozen=True, slots=True)
class PathResult:
    """A least-travel-time path between two virtual points.

    Attributes:
        cost_s: Total travel time including the partial first/last segments.
        edges: Directed edge indices traversed between the entry and exit
            nodes, in order; empty when the path stays on the entry node or
            never leaves the shared segment (see ``direct``).
        entry_node: First graph node reached, or -1 when ``direct``.
        direct: True when the best path goes straight along a segment shared
            by origin and destination without touching any node.
    """

    cost_s: float
    edges: tuple[int, ...]
    entry_node: int
    direct: bool


class RoadGraph:
    """Directed road graph built from drivable ways.

    Attributes:
        node_lon / node_lat: Node coordinates, degrees, by node index.
        node_signal: Whether each node is a traffic signal.
        seg_u / seg_v: Segment end nodes, in way order.
        seg_length_m / seg_speed_mps / seg_cost_s: Per-segment length (haversine),
            expected speed and travel time.
        seg_forward / seg_backward: Whether u->v / v->u travel is allowed.
        edge_source / edge_target / edge_segment / edge_cost_s: Directed edges,
            sorted by source; ``edge_offsets[n]:edge_offsets[n + 1]`` are the
            edges leaving node ``n``. An edge's cost is its segment's travel
            time plus the expected signal delay when its target is a signal,
            so the search prefers routes through fewer lights.
        component: Strongly connected component id of each node.
        main_component: Id of the largest strongly connected component.
        max_speed_mps: Fastest segment speed (bounds the A* heuristic).
    """

    def __init__(
        self, ways: Iterable[DrivableWay], signal_node_ids: Collection[int] = frozenset()
    ) -> None:
        """Build the graph.

        Args:
            ways: Drivable way pieces (from :func:`tracking.routing.osm.read_roads`).
            signal_node_ids: OSM ids of traffic-signal nodes; ids that are not
                on any way are ignored.

        Raises:
            ValueError: When no way yields a usable segment.
        """
        node_index: dict[int, int] = {}
        self.node_lon: list[float] = []
        self.node_lat: list[float] = []
        self.node_signal: list[bool] = []
        self.seg_u: list[int] = []
        self.seg_v: list[int] = []
        self.seg_length_m: list[float] = []
        self.seg_speed_mps: list[float] = []
        self.seg_cost_s: list[float] = []
        self.seg_forward: list[bool] = []
        self.seg_backward: list[bool] = []
        for way in ways:
            indices = []
            for osm_id, lon, lat in zip(way.node_ids, way.lons, way.lats, strict=True):
                index = node_index.get(osm_id)
                if index is None:
                    index = node_index[osm_id] = len(self.node_lon)
                    self.node_lon.append(lon)
                    self.node_lat.append(lat)
                    self.node_signal.append(osm_id in signal_node_ids)
                indices.append(index)
            for u, v in zip(indices, indices[1:], strict=False):
                self._add_segment(u, v, way)
        if not self.seg_u:
            raise ValueError("the map has no drivable road")
        self._merge_signal_clusters()
        self.max_speed_mps = max(self.seg_speed_mps)
        self._build_edges()
        self.component = _strong_components(len(self.node_lon), self.edge_offsets, self.edge_target)
        sizes: dict[int, int] = {}
        for comp in self.component:
            sizes[comp] = sizes.get(comp, 0) + 1
        self.main_component = max(sizes, key=lambda comp: sizes[comp])
        # A* bound: flat-earth distance with the smallest metres-per-degree of
        # longitude in the map, so it never exceeds the haversine length.
        max_abs_lat = max(abs(min(self.node_lat)), abs(max(self.node_lat)))
        self._h_kx = _HEURISTIC_SLACK * EARTH_RADIUS_M * _DEG * math.cos(max_abs_lat * _DEG)
        self._h_ky = _HEURISTIC_SLACK * EARTH_RADIUS_M * _DEG

    def _merge_signal_clusters(self) -> None:
        """Keep one signal per junction.

        OSM tags every signalled crosswalk of a junction as its own node (two
        to four of them within a few metres), but a car meets the junction's
        lights once: signals closer than SIGNAL_CLUSTER_M to one already kept
        are dropped, in node order so that the result is deterministic.
        """
        kept: dict[tuple[int, int], list[int]] = {}
        # Grid cells at least the radius wide in both axes (longitude degrees
        # shrink towards the poles), so neighbours lie in the 3 x 3 cells around.
        cell_lat_deg = SIGNAL_CLUSTER_M / 110_000.0
        max_abs_lat = max(abs(lat) for lat in self.node_lat)
        cell_lon_deg = cell_lat_deg / max(0.01, math.cos(math.radians(max_abs_lat)))
        for node, is_signal in enumerate(self.node_signal):
            if not is_signal:
                continue
            lon, lat = self.node_lon[node], self.node_lat[node]
            cx, cy = math.floor(lon / cell_lon_deg), math.floor(lat / cell_lat_deg)
            near = (
                other
                for dx in (-1, 0, 1)
                for dy in (-1, 0, 1)
                for other in kept.get((cx + dx, cy + dy), ())
            )
            if any(
                haversine_m(lon, lat, self.node_lon[o], self.node_lat[o]) < SIGNAL_CLUSTER_M
                for o in near
            ):
                self.node_signal[node] = False
            else:
                kept.setdefault((cx, cy), []).append(node)

    def _add_segment(self, u: int, v: int, way: DrivableWay) -> None:
        if u == v:
            return  # repeated node ref: a zero-length loop carries no route
        length_m = haversine_m(
            self.node_lon[u], self.node_lat[u], self.node_lon[v], self.node_lat[v]
        )
        if length_m <= 0.0:
            return
        rule = way.rule
        self.seg_u.append(u)
        self.seg_v.append(v)
        self.seg_length_m.append(length_m)
        self.seg_speed_mps.append(rule.speed_mps)
        self.seg_cost_s.append(length_m / rule.speed_mps)
        self.seg_forward.append(rule.forward)
        self.seg_backward.append(rule.backward)

    def _build_edges(self) -> None:
        pairs: list[tuple[int, int, int]] = []  # (source, target, segment)
        for seg, (u, v) in enumerate(zip(self.seg_u, self.seg_v, strict=True)):
            if self.seg_forward[seg]:
                pairs.append((u, v, seg))
            if self.seg_backward[seg]:
                pairs.append((v, u, seg))
        pairs.sort()
        self.edge_source = [source for source, _, _ in pairs]
        self.edge_target = [target for _, target, _ in pairs]
        self.edge_segment = [seg for _, _, seg in pairs]
        # A* stays admissible: delays only add cost, and its bound ignores them.
        self.edge_cost_s = [
            self.seg_cost_s[seg] + (SIGNAL_DELAY_S if self.node_signal[target] else 0.0)
            for seg, target in zip(self.edge_segment, self.edge_target, strict=True)
        ]
        offsets = [0] * (len(self.node_lon) + 1)
        for source in self.edge_source:
            offsets[source + 1] += 1
        for node in range(len(self.node_lon)):
            offsets[node + 1] += offsets[node]
        self.edge_offsets = offsets

    @property
    def node_count(self) -> int:
        """Number of nodes."""
        return len(self.node_lon)

    @property
    def signal_count(self) -> int:
        """Number of nodes that are traffic signals."""
        return sum(self.node_signal)

    @property
    def edge_count(self) -> int:
        """Number of directed edges (a two-way segment counts twice)."""
        return len(self.edge_target)

    def in_main_component(self, seg: int) -> bool:
        """True when both ends of segment ``seg`` are in the largest SCC."""
        main = self.main_component
        return self.component[self.seg_u[seg]] == main and self.component[self.seg_v[seg]] == main

    def shortest_path(
        self,
        sources: Mapping[int, float],
        targets: Mapping[int, float],
        goal_lon: float,
        goal_lat: float,
        direct_cost_s: float = math.inf,
    ) -> PathResult | None:
        """A* search by travel time from virtual origin to virtual destination.

        The origin and destination are points on segments; they enter the graph
        through the segment's end nodes with partial costs.

        Args:
            sources: Node -> travel time from the origin point to that node.
            targets: Node -> travel time from that node to the destination point.
            goal_lon / goal_lat: Destination point (for the A* bound).
            direct_cost_s: Travel time going straight from origin to destination
                along a shared segment, or inf when that is not possible.

        Returns:
            The least-time path, or None when the destination is unreachable.
        """
        lons, lats = self.node_lon, self.node_lat
        kx, ky = self._h_kx, self._h_ky
        inv_speed = 1.0 / self.max_speed_mps
        offsets, edge_target, edge_cost = self.edge_offsets, self.edge_target, self.edge_cost_s
        sqrt = math.sqrt

        best_cost = direct_cost_s
        best_node = -1
        dist: dict[int, float] = {}
        pred: dict[int, int] = {}  # node -> edge that reached it; -1 for a source
        heap: list[tuple[float, float, int]] = []
        for node, cost in sources.items():
            if cost < dist.get(node, math.inf):
                dist[node] = cost
                pred[node] = -1
                dx = (lons[node] - goal_lon) * kx
                dy = (lats[node] - goal_lat) * ky
                heappush(heap, (cost + sqrt(dx * dx + dy * dy) * inv_speed, cost, node))
        while heap:
            bound, cost, node = heappop(heap)
            if bound >= best_cost:
                break  # consistent bound: nothing left in the heap can do better
            if cost > dist[node]:
                continue  # stale entry
            tail = targets.get(node)
            if tail is not None and cost + tail < best_cost:
                best_cost = cost + tail
                best_node = node
            for edge in range(offsets[node], offsets[node + 1]):
                nxt = edge_target[edge]
                new_cost = cost + edge_cost[edge]
                if new_cost < dist.get(nxt, math.inf):
                    dist[nxt] = new_cost
                    pred[nxt] = edge
                    dx = (lons[nxt] - goal_lon) * kx
                    dy = (lats[nxt] - goal_lat) * ky
                    heappush(heap, (new_cost + sqrt(dx * dx + dy * dy) * inv_speed, new_cost, nxt))
        if best_node < 0:
            if math.isfinite(best_cost):
                return PathResult(best_cost, (), -1, True)
            return None
        edges: list[int] = []
        node = best_node
        while (edge := pred[node]) >= 0:
            edges.append(edge)
            node = self.edge_source[edge]
        edges.reverse()
        return PathResult(best_cost, tuple(edges), node, False)


def _strong_components(
    node_count: int, offsets: Sequence[int], targets: Sequence[int]
) -> list[int]:
    """Tarjan's SCC algorithm with an explicit stack (no recursion limit).

    Returns:
        Component id of each node.
    """
    unvisited = -1
    index_of = [unvisited] * node_count
    low = [0] * node_count
    on_stack = [False] * node_count
    component = [unvisited] * node_count
    scc_stack: list[int] = []
    next_index = 0
    next_component = 0
    for root in range(node_count):
        if index_of[root] != unvisited:
            continue
        # Each frame: (node, position of the next edge to look at).
        work: list[tuple[int, int]] = [(root, offsets[root])]
        index_of[root] = low[root] = next_index
        next_index += 1
        scc_stack.append(root)
        on_stack[root] = True
        while work:
            node, edge = work[-1]
            if edge < offsets[node + 1]:
                work[-1] = (node, edge + 1)
                nxt = targets[edge]
                if index_of[nxt] == unvisited:
                    index_of[nxt] = low[nxt] = next_index
                    next_index += 1
                    scc_stack.append(nxt)
                    on_stack[nxt] = True
                    work.append((nxt, offsets[nxt]))
                elif on_stack[nxt] and index_of[nxt] < low[node]:
                    low[node] = index_of[nxt]
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[node] < low[parent]:
                    low[parent] = low[node]
            if low[node] == index_of[node]:
                while True:
                    member = scc_stack.pop()
                    on_stack[member] = False
                    component[member] = next_component
                    if member == node:
                        break
                next_component += 1
    return component
