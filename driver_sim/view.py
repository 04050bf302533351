"""What the simulator shows: a live table on a terminal, summary lines otherwise."""

from __future__ import annotations

import asyncio
import sys
import time

from rich.console import Group
from rich.live import Live
from rich.table import Table

from driver_sim.stats import Stats

STATES = ("idle", "to_pickup", "boarding", "to_dropoff", "off")


def render(stats: Stats, started: float) -> Group:
    drivers = Table(title="drivers", show_header=True)
    for state in STATES:
        drivers.add_column(state, justify="right")
    drivers.add_row(*(str(max(0, stats.states.get(s, 0))) for s in STATES))
    counters = Table(title=f"run {time.monotonic() - started:,.0f} s", show_header=True)
    for column in ("trips done", "abandoned", "sent", "acked", "resent", "reconnects", "dropouts"):
        counters.add_column(column, justify="right")
    counters.add_row(
        str(stats.trips_completed),
        str(stats.trips_abandoned),
        f"{stats.points_sent:,}",
        f"{stats.points_acked:,}",
        f"{stats.points_resent:,}",
        str(stats.reconnects),
        str(stats.dropouts),
    )
    errors = Table(title="errors by code", show_header=True)
    errors.add_column("code")
    errors.add_column("count", justify="right")
    for code, count in sorted(stats.errors.items()):
        errors.add_row(code, str(count))
    return Group(drivers, counters, errors)


async def show(stats: Stats, interactive: bool, every_s: float = 10.0) -> None:
    """Until cancelled: a live table when interactive, else a summary line every `every_s`."""
    started = time.monotonic()
    if interactive:
        with Live(render(stats, started), refresh_per_second=4, transient=False) as live:
            while True:
                await asyncio.sleep(0.25)
                live.update(render(stats, started))
    while True:
        await asyncio.sleep(every_s)
        print(f"driver-sim: {stats.summary()}", file=sys.stderr, flush=True)
