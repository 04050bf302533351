"""Benchmark of tracking.routing on the bundled central-Helsinki extract.

Prints the graph load time, its size and traffic signals, and route()
latency percentiles over seeded random pairs of routable points.

Usage: .venv/bin/python bench/routing.py [--pairs 200] [--seed 1] [--map PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from tracking.routing import GraphRouter, default_map_path


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--map", default=None, help="path of an .osm.pbf (default: Helsinki)")
    args = parser.parse_args()
    path = args.map or default_map_path()

    router = GraphRouter.from_pbf(path)
    print(f"map              {path}")
    print(f"load time        {router.load_time_s * 1000:.1f} ms")
    print(f"nodes            {router.node_count}")
    print(f"directed edges   {router.edge_count}")
    print(f"traffic signals  {router.graph.signal_count} graph nodes")
    print(f"bbox             {router.bbox}")

    rng = random.Random(args.seed)
    pairs = [(router.random_point(rng), router.random_point(rng)) for _ in range(args.pairs)]
    router.route(*pairs[0])  # warm-up: first call pays for lazy imports and caches
    latencies_ms: list[float] = []
    distances_m: list[float] = []
    signals_per_km: list[float] = []
    for origin, destination in pairs:
        started = time.perf_counter()
        plan = router.route(origin, destination)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        distances_m.append(plan.distance_m)
        if plan.distance_m >= 400.0:
            signals_per_km.append(len(plan.signals) / plan.distance_m * 1000)
    latencies_ms.sort()
    print(f"routes           {len(pairs)} seeded random pairs (seed {args.seed})")
    median_m, max_m = statistics.median(distances_m), max(distances_m)
    print(f"route distance   median {median_m:.0f} m, max {max_m:.0f} m")
    print(
        f"signals passed   median {statistics.median(signals_per_km):.1f} per km (routes >= 400 m)"
    )
    print(f"route() p50      {_percentile(latencies_ms, 0.50):.2f} ms")
    print(f"route() p99      {_percentile(latencies_ms, 0.99):.2f} ms")
    print(f"route() max      {latencies_ms[-1]:.2f} ms")

    min_lon, min_lat, max_lon, max_lat = router.bbox
    corner_a = router.snap(min_lon, min_lat)
    corner_b = router.snap(max_lon, max_lat)
    started = time.perf_counter()
    plan = router.route((corner_a.lon, corner_a.lat), (corner_b.lon, corner_b.lat))
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"cross-town       {plan.distance_m:.0f} m, {plan.duration_s:.0f} s ETA, "
        f"{elapsed_ms:.2f} ms to route"
    )


if __name__ == "__main__":
    main()
