"""Runs a fleet of simulated drivers against a gateway."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from driver_sim.clock import SimClock
from driver_sim.dispatch import Dispatch
from driver_sim.shift import DriverShift, ShiftConfig, TripBudget, open_eta_log
from driver_sim.stats import Stats
from tracking.api.auth import issue_token
from tracking.routing import load_router


@dataclass
class SimOptions:
    url: str = "http://127.0.0.1:8000"
    secret: str = ""
    map_path: str = ""
    drivers: int = 20
    interval_s: float = 1.0
    speedup: float = 1.0
    seed: int = 1
    duration_s: float | None = None
    """Wall-clock seconds after which every driver stops."""
    trips: int | None = None
    """Trips to start across the fleet, then stop."""
    eta_log: str | None = None
    prefix: str = "sim"
    shift: ShiftConfig = field(default_factory=ShiftConfig)


@dataclass
class Fleet:
    shifts: list[DriverShift]
    stats: Stats


BACKDATE_HORIZON_S = 6 * 3600


def sim_start_ms(opts: SimOptions) -> int:
    """Where simulated time starts: now at real speed; in the past when sped up.

    The service refuses points stamped more than 5 minutes ahead of its clock,
    so a sped-up run starts early enough never to overtake it (within its
    duration, or six hours of real time).
    """
    now = time.time_ns() // 1_000_000
    horizon_s = opts.duration_s if opts.duration_s is not None else BACKDATE_HORIZON_S
    return now - int((opts.speedup - 1.0) * horizon_s * 1000)


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


async def run_fleet(
    opts: SimOptions, stats: Stats | None = None, on_start: Callable[[Fleet], None] | None = None
) -> Fleet:
    """Drive until the trip budget or the duration is spent; returns what happened."""
    stats = stats or Stats()
    router = await asyncio.to_thread(load_router, opts.map_path)
    dispatch = Dispatch(opts.url, issue_token(opts.secret, "ops", f"{opts.prefix}-dispatch"))
    clock = SimClock(opts.speedup, start_ms=sim_start_ms(opts))
    master = random.Random(opts.seed)
    eta_log = open_eta_log(opts.eta_log)
    base = ws_url(opts.url.rstrip("/"))
    shifts = []
    for i in range(opts.drivers):
        driver_id = f"{opts.prefix}-{i:03d}"
        token = issue_token(opts.secret, "driver", driver_id, ttl_s=7 * 86_400)
        shifts.append(
            DriverShift(
                driver_id,
                f"{base}/v1/drivers/ws?token={token}",
                router,
                dispatch,
                clock,
                random.Random(master.random()),
                stats,
                opts.shift,
                eta_log,
            )
        )
    fleet = Fleet(shifts, stats)
    if on_start is not None:
        on_start(fleet)
    stop = asyncio.Event()
    budget = TripBudget(opts.trips)
    tasks = [asyncio.create_task(s.run(stop, budget)) for s in shifts]
    try:
        if opts.duration_s is not None:
            _, pending = await asyncio.wait(tasks, timeout=opts.duration_s)
            stop.set()
            if pending:
                await asyncio.wait(pending)
        else:
            await asyncio.gather(*tasks)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await dispatch.close()
        if eta_log is not None:
            eta_log.close()
    return fleet
