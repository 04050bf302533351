"""Fault drills under load: gateways killed and drained, Redis restarted, resend storms.

Runs an embedded Redis (AOF, fsync always) and, per scenario, two fresh
`tracking serve` gateways on it; a fleet of failover drivers and riders
(`driver_sim.drill`) streams while one fault is injected. Prints, per
scenario: points sent/acked/stored, acked points lost and duplicates stored
(both must be 0), statuses riders missed (must be 0), rider reconnect and
"live again" times, the Redis outage and the time until /readyz is 200 again.

    .venv/bin/python bench/faults.py [--drivers 20 --interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from driver_sim.drill import Drill, DrillConfig, ReadyWatch
from driver_sim.storm import resend_storm
from tracking.local import LocalStack
from tracking.store.embedded import EmbeddedRedis

RESULTS = Path(__file__).parent / "results"
SCENARIO_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 5
PROBLEM = re.compile(r"Traceback|Warning:| ERROR |^ERROR:")


class Cluster:
    """Two gateways on one Redis, their logs kept for the problem count."""

    def __init__(self, redis_url: str, secret: str, logs: Path, name: str) -> None:
        env = {"TRACKING_JWT_SECRET": secret, "TRACKING_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)}
        self.logs = [logs / f"{name}-{i}.log" for i in range(2)]
        self.gateways = [
            LocalStack(redis_url=redis_url, env=env, log_path=str(log)) for log in self.logs
        ]

    def __enter__(self) -> Cluster:
        for gw in self.gateways:
            gw.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for gw in self.gateways:
            gw.stop()

    @property
    def bases(self) -> list[str]:
        return [gw.base for gw in self.gateways]

    def signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.gateways[i].proc
        assert proc is not None
        proc.send_signal(sig)

    def problems(self) -> list[str]:
        """Tracebacks, warnings and errors the gateways logged."""
        return [
            line
            for log in self.logs
            if log.exists()
            for line in log.read_text(errors="replace").splitlines()
            if PROBLEM.search(line)
        ]


def spread(values: Sequence[float]) -> str:
    """`p50 / max` in seconds, or `-`."""
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {max(values):.2f}"


async def drill_with_fault(
    bases: list[str],
    secret: str,
    redis_url: str,
    cfg: DrillConfig,
    fault: Callable[[Drill], Awaitable[tuple[float, dict[str, Any]]]],
) -> dict[str, Any]:
    """Start a drill, let it stream, inject `fault` (which returns the time to measure
    recovery from, and its own figures), wait for recovery, finish and audit."""
    async with Drill(bases, secret, redis_url, cfg) as drill:
        await drill.start()
        await drill.wait_acked(20, timeout_s=20)
        since, figures = await fault(drill)
        await drill.wait_recovered(since, timeout_s=20)
        await drill.wait_status("in_progress", timeout_s=30)  # through the pickup, after the fault
        await drill.finish(timeout_s=30)
        report = await drill.audit()
        figures |= {
            "rider_reconnect_s": drill.rider_reconnect_s(since),
            "rider_live_s": drill.rider_resumed_s(since) or drill.rider_live_s(since),
            "driver_ack_s": drill.driver_ack_s(since),
            "statuses_after_fault": drill.statuses_after(since),
        }
        return {"report": asdict(report), **figures}


def kill_gateway(cluster: Cluster) -> Callable[[Drill], Awaitable[tuple[float, dict[str, Any]]]]:
    async def fault(drill: Drill) -> tuple[float, dict[str, Any]]:
        at = time.monotonic()
        cluster.signal(0, signal.SIGKILL)
        return at, {"fault": "kill -9 the gateway every client is on"}

    return fault


def drain_gateway(cluster: Cluster) -> Callable[[Drill], Awaitable[tuple[float, dict[str, Any]]]]:
    async def fault(drill: Drill) -> tuple[float, dict[str, Any]]:
        at = time.monotonic()
        cluster.signal(0, signal.SIGTERM)
        proc = cluster.gateways[0].proc
        assert proc is not None
        await asyncio.to_thread(proc.wait, DRAIN_TIMEOUT_S + 10)
        return at, {
            "fault": f"SIGTERM the gateway every client is on (drain {DRAIN_TIMEOUT_S} s)",
            "exit_s": time.monotonic() - at,
        }

    return fault


def restart_redis(
    redis: EmbeddedRedis, bases: list[str], outage_s: float
) -> Callable[[Drill], Awaitable[tuple[float, dict[str, Any]]]]:
    async def fault(drill: Drill) -> tuple[float, dict[str, Any]]:
        watch = ReadyWatch(bases)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch.run(stop))
        down_at = time.monotonic()
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(max(0.0, down_at + outage_s - time.monotonic()))
        redis.start()
        up_at = time.monotonic()
        ready_s = []
        async with asyncio.timeout(20):
            for base in bases:
                while (t := watch.first(base, up_at, ready=True)) is None:
                    await asyncio.sleep(0.02)
                ready_s.append(t - up_at)
        stop.set()
        await watcher
        not_ready = [watch.first(b, down_at, ready=False) is not None for b in bases]
        return up_at, {
            "fault": f"stop Redis (SIGTERM), start it {outage_s:g} s later on its port and AOF",
            "outage_s": up_at - down_at,
            "ready_again_s": max(ready_s),
            "readyz_503_seen": all(not_ready),
        }

    return fault


COLUMNS = [
    ("scenario", 14),
    ("sent", 7),
    ("acked", 7),
    ("stored", 7),
    ("lost", 5),
    ("dup", 5),
    ("st.miss", 8),
    ("reconnect", 13),
    ("live", 13),
    ("outage", 7),
    ("ready", 7),
    ("unavail", 8),
    ("log", 5),
]


def line(cells: Sequence[str]) -> str:
    return "".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
    )


def row(name: str, result: dict[str, Any]) -> str:
    r = result["report"]
    return line(
        [
            name,
            str(r["points_sent"]),
            str(r["points_acked"]),
            str(r["points_stored"]),
            str(r["acked_lost"]),
            str(r["duplicates_stored"]),
            str(r["statuses_missed"]),
            spread(result.get("rider_reconnect_s", [])),
            spread(result.get("rider_live_s", [])),
            f"{result['outage_s']:.2f}" if "outage_s" in result else "-",
            f"{result['ready_again_s']:.2f}" if "ready_again_s" in result else "-",
            str(r["unavailable_errors"]),
            str(len(result["log_problems"])),
        ]
    )


async def storm_scenario(cluster: Cluster, secret: str, drivers: int) -> dict[str, Any]:
    results = await resend_storm(cluster.bases, secret, drivers, "bench-storm")
    problems = [p for r in results for p in r.problems]
    stored = sum(len(r.trail) for r in results)
    return {
        "fault": f"{drivers} drivers: 500-point batches, then resends and overlaps on 2 sockets",
        "storm_clean": not problems,
        "report": {
            "points_sent": drivers * 1500,
            "points_acked": sum(max(r.acks[0][-1], r.acks[1][-1]) for r in results),
            "points_stored": stored,
            "acked_lost": sum(len(set(range(1, r.last_seq + 1)) - set(r.trail)) for r in results),
            "duplicates_stored": sum(len(r.trail) - len(set(r.trail)) for r in results),
            "statuses_missed": 0,
            "unavailable_errors": 0,
            "problems": problems,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", type=int, default=20, help="drivers (one rider each)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between fixes")
    parser.add_argument("--long-outage", type=float, default=8.0, help="Redis down longer (s)")
    args = parser.parse_args()
    secret = secrets.token_urlsafe(32)
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        logs = Path(tmp)
        data = logs / "redis"
        data.mkdir()
        redis = EmbeddedRedis(appendonly=True, appendfsync="always", data_dir=str(data))
        redis.start()
        try:

            def cfg(name: str, spread_clients: bool) -> DrillConfig:
                return DrillConfig(
                    drivers=args.drivers,
                    interval_s=args.interval,
                    spread=spread_clients,
                    prefix=f"bench-{name}",
                )

            plans: list[tuple[str, Callable[[Cluster], Awaitable[dict[str, Any]]]]] = [
                (
                    "sigkill",
                    lambda c: drill_with_fault(
                        c.bases, secret, redis.url, cfg("kill", False), kill_gateway(c)
                    ),
                ),
                (
                    "sigterm",
                    lambda c: drill_with_fault(
                        c.bases, secret, redis.url, cfg("term", False), drain_gateway(c)
                    ),
                ),
                (
                    "redis 1.5 s",
                    lambda c: drill_with_fault(
                        c.bases,
                        secret,
                        redis.url,
                        cfg("redis", True),
                        restart_redis(redis, c.bases, 1.5),
                    ),
                ),
                (
                    f"redis {args.long_outage:g} s",
                    lambda c: drill_with_fault(
                        c.bases,
                        secret,
                        redis.url,
                        cfg("redis-long", True),
                        restart_redis(redis, c.bases, args.long_outage),
                    ),
                ),
                ("resend storm", lambda c: storm_scenario(c, secret, args.drivers)),
            ]
            for name, plan in plans:
                with Cluster(redis.url, secret, logs, name.replace(" ", "-")) as cluster:
                    result = asyncio.run(asyncio.wait_for(plan(cluster), SCENARIO_TIMEOUT_S))
                    result["log_problems"] = cluster.problems()
                results[name] = result
                print(f"  {name}: {result['fault']}: done", flush=True)
        finally:
            redis.stop()
    elapsed = time.monotonic() - started

    print(
        f"\nfault drills: {args.drivers} drivers + {args.drivers} riders per drill, "
        f"a fix every {args.interval:g} s per driver, 2 gateways, Redis AOF fsync always"
    )
    print(line([name for name, _ in COLUMNS]))
    for name, result in results.items():
        print(row(name, result))
    print(
        "times in s (p50 / max): reconnect = rider's new socket up after the fault; "
        "live = its first event there (Redis: after Redis is back)"
    )
    for name, result in results.items():
        extra = []
        if "exit_s" in result:
            extra.append(f"gateway exited {result['exit_s']:.2f} s after SIGTERM")
        if "readyz_503_seen" in result:
            extra.append(f"/readyz 503 seen on both: {result['readyz_503_seen']}")
        if "driver_ack_s" in result:
            extra.append(f"drivers acked again after {spread(result['driver_ack_s'])}")
        if "statuses_after_fault" in result:
            extra.append(f"{result['statuses_after_fault']} statuses delivered after the fault")
        if "storm_clean" in result:
            extra.append(
                "every seq stored once and in order, both sockets' acks cumulative to the last"
                if result["storm_clean"]
                else "STORM BROKE THE CONTRACT"
            )
        problems = result["report"].get("problems") or []
        extra += [f"PROBLEM: {p}" for p in problems[:5]]
        extra += [f"LOG: {text}" for text in result["log_problems"][:3]]
        print(f"  {name}: " + "; ".join(extra))
    must_be_zero = sum(
        r["report"][k]
        for r in results.values()
        for k in ("acked_lost", "duplicates_stored", "statuses_missed")
    )
    print(f"acked lost + duplicates + statuses missed, all scenarios: {must_be_zero} (must be 0)")
    print(f"total {elapsed:.0f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(results, indent=2, default=str))
    broken = must_be_zero or any(
        r["report"].get("problems") or r["log_problems"] for r in results.values()
    )
    if broken:
        raise SystemExit("a fault drill broke the contract: see above")


if __name__ == "__main__":
    main()
