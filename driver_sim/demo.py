"""`make run`: Redis, the gateway and a fleet of simulated drivers, with links to open."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from driver_sim.runner import Fleet, SimOptions, run_fleet
from driver_sim.stats import Stats
from driver_sim.view import show
from tracking.api.auth import issue_token
from tracking.local import LocalStack
from tracking.settings import Settings


async def _first_trip(fleet_box: list[Fleet], timeout_s: float = 60.0) -> str | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        for shift in fleet_box[0].shifts if fleet_box else ():
            if shift.trips:
                return shift.trips[-1].share_url
        await asyncio.sleep(0.2)
    return None


async def _demo(opts: SimOptions, base: str, ops_token: str) -> None:
    stats = Stats()
    fleet_box: list[Fleet] = []
    fleet = asyncio.create_task(run_fleet(opts, stats, on_start=fleet_box.append))
    share_url = await _first_trip(fleet_box)
    print(
        f"""
Live demo: {opts.drivers} simulated drivers on real Helsinki roads.

  Rider's map of a live trip (its share link):
    {share_url or "(no trip yet: see the log)"}
  Ops live dashboard:
    {base}/ops?token={ops_token}
  API docs: {base}/docs     Metrics: {base}/metrics
  Every new trip's share link is in GET /v1/trips/<id>; tokens: .venv/bin/tracking token --help

Ctrl-C stops everything.
""",
        flush=True,
    )
    viewer = asyncio.create_task(show(stats, sys.stdout.isatty()))
    try:
        await fleet
    finally:
        viewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer


def run_demo(host: str, port: int, drivers: int = 20, speedup: float = 1.0, seed: int = 1) -> int:
    """Run until Ctrl-C."""
    settings = Settings()
    secret = settings.resolved_jwt_secret()
    Path(".tracking").mkdir(exist_ok=True)
    log_path = ".tracking/gateway.log"
    stack = LocalStack(
        redis_url=settings.redis_url,
        host=host,
        port=port,
        env={"TRACKING_JWT_SECRET": secret},
        log_path=log_path,
    )
    print(f"Starting Redis and the gateway on {stack.base} (log: {log_path}) …", flush=True)
    with stack:
        opts = SimOptions(
            url=stack.base,
            secret=secret,
            map_path=settings.resolved_map(),
            drivers=drivers,
            speedup=speedup,
            seed=seed,
            prefix="demo",
        )
        ops_token = issue_token(secret, "ops", "demo-ops", ttl_s=86_400)
        try:
            asyncio.run(_demo(opts, stack.base, ops_token))
        except KeyboardInterrupt:
            print("\nStopping …", flush=True)
    return 0
