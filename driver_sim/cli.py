"""`driver-sim`: simulated driver apps on real roads, against a running gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from driver_sim.runner import SimOptions, run_fleet
from driver_sim.shift import ShiftConfig
from driver_sim.stats import Stats
from driver_sim.view import show
from tracking.settings import Settings


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driver-sim", description=__doc__)
    parser.add_argument("--drivers", type=int, default=20, help="simulated drivers (20)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    parser.add_argument("--map", help=".osm.pbf road map (default: TRACKING_MAP or Helsinki)")
    parser.add_argument("--interval-s", type=float, default=1.0, help="seconds between fixes")
    parser.add_argument("--speedup", type=float, default=1.0, help="simulated time per real second")
    parser.add_argument("--seed", type=int, default=1, help="seed for a repeatable run")
    parser.add_argument("--duration-s", type=float, help="stop after this many real seconds")
    parser.add_argument("--trips", type=int, help="stop after starting this many trips in all")
    parser.add_argument("--eta-log", help="append predicted vs actual arrivals here (JSONL)")
    parser.add_argument("--prefix", default="sim", help="driver id prefix (sim-000, sim-001, …)")
    parser.add_argument("--dropouts-per-hour", type=float, default=3.0)
    parser.add_argument("--disconnects-per-hour", type=float, default=3.0)
    parser.add_argument("--quiet", action="store_true", help="summary lines instead of a live view")
    args = parser.parse_args(argv)
    if args.drivers < 1:
        parser.error("--drivers must be at least 1")
    if args.interval_s <= 0 or args.speedup <= 0:
        parser.error("--interval-s and --speedup must be positive")
    if args.trips is not None and args.trips < 1:
        parser.error("--trips must be at least 1")
    return args


def options(args: argparse.Namespace, settings: Settings) -> SimOptions:
    return SimOptions(
        url=args.url.rstrip("/"),
        secret=settings.resolved_jwt_secret(),
        map_path=args.map or settings.resolved_map(),
        drivers=args.drivers,
        interval_s=args.interval_s,
        speedup=args.speedup,
        seed=args.seed,
        duration_s=args.duration_s,
        trips=args.trips,
        eta_log=args.eta_log,
        prefix=args.prefix,
        shift=ShiftConfig(
            interval_s=args.interval_s,
            dropouts_per_hour=args.dropouts_per_hour,
            disconnects_per_hour=args.disconnects_per_hour,
        ),
    )


async def simulate(opts: SimOptions, interactive: bool) -> Stats:
    stats = Stats()
    viewer = asyncio.create_task(show(stats, interactive))
    try:
        await run_fleet(opts, stats)
    finally:
        viewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer
    return stats


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = options(args, Settings())
    interactive = sys.stdout.isatty() and not args.quiet
    try:
        stats = asyncio.run(simulate(opts, interactive))
    except KeyboardInterrupt:
        return 130
    print(f"driver-sim: {stats.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
