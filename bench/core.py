"""Pure geo-core throughput: fixes applied per second on one core.

Each update is what the gateway does per driver point: snap to the route,
move progress, check the pickup zone, update the ETA, build the events.
The workload is a real route across the central-Helsinki extract, walked at
city speed with GPS noise, one fix a second. Also measured in the same run:
a raw shapely `project` per fix, the natural baseline for "snap a point".

    .venv/bin/python bench/core.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

from shapely.geometry import LineString, Point

from tracking.core import trip as core
from tracking.core.messages import Point as Fix
from tracking.core.route import Route
from tracking.core.state import CoreConfig
from tracking.routing import default_map_path, load_router

NOW = 1_763_740_000_000


def make_fixes(route: Route, n: int, rng: random.Random) -> list[Fix]:
    """Fixes as a phone sends them: noisy position, accuracy, speed and heading."""
    fixes = []
    along = 0.0
    for i in range(n):
        step = rng.uniform(6.0, 12.0)
        along = (along + step) % max(route.length_m - 80.0, 1.0)
        lon, lat = route.point_at(along)
        lon += rng.gauss(0, 4) / 55_600
        lat += rng.gauss(0, 4) / 111_000
        fixes.append(
            Fix(
                seq=i + 1,
                ts=NOW + i * 1000,
                lon=lon,
                lat=lat,
                acc=rng.uniform(4, 15),
                speed=step,
                heading=rng.uniform(0, 360),
            )
        )
    return fixes


def bench_core(route: Route, fixes: list[Fix], seconds: float) -> tuple[int, float]:
    cfg = CoreConfig()
    updates = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        state = core.new_trip(
            "t-b", "ride", route.end, route.end, route.coords, route.speeds_mps, NOW
        )
        core.assign(state, "d-b", NOW)
        state.leg = "pickup"  # a leg that ends at the pickup, as after the first re-route
        for fix in fixes:
            core.apply_fix(state, fix, fix.ts, cfg, route)
        updates += len(fixes)
    return updates, time.perf_counter() - started


def bench_shapely(route: Route, fixes: list[Fix], seconds: float) -> tuple[int, float]:
    line = LineString([route.proj.to_xy(lon, lat) for lon, lat in route.coords])
    points = [Point(route.proj.to_xy(f.lon, f.lat)) for f in fixes]
    n = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for p in points:
            line.project(p)
        n += len(points)
    return n, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    router = load_router(default_map_path())
    min_lon, min_lat, max_lon, max_lat = router.bbox
    plan = router.route((min_lon + 0.002, min_lat + 0.002), (max_lon - 0.002, max_lat - 0.002))
    route = Route(plan.coords, plan.speeds_mps)
    fixes = make_fixes(route, 400, random.Random(7))

    core_n, core_s = bench_core(route, fixes, args.seconds)
    shp_n, shp_s = bench_shapely(route, fixes, args.seconds / 2)
    core_rate = core_n / core_s
    shp_rate = shp_n / shp_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "route_m": round(route.length_m),
        "route_vertices": len(route.coords),
        "core_updates_per_s": round(core_rate),
        "core_us_per_update": round(1e6 / core_rate, 2),
        "shapely_project_per_s": round(shp_rate),
        "core_vs_shapely_project": round(core_rate / shp_rate, 3),
        "peak_rss_mb": round(rss_mb, 1),
        "target_updates_per_s": 100_000,
    }
    print(f"route: {result['route_m']} m, {result['route_vertices']} vertices (central Helsinki)")
    print(f"{'measure':<34}{'value':>14}")
    print(f"{'core updates/s (one core)':<34}{result['core_updates_per_s']:>14,}")
    print(f"{'µs per update':<34}{result['core_us_per_update']:>14}")
    print(f"{'shapely project/s (baseline)':<34}{result['shapely_project_per_s']:>14,}")
    print(f"{'core / shapely-project ratio':<34}{result['core_vs_shapely_project']:>14}")
    print(f"{'peak RSS MB':<34}{result['peak_rss_mb']:>14}")
    print(f"{'target':<34}{'>= 100,000/s':>14}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "core.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
