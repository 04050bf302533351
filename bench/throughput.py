"""Delivered positions per second and driver-to-rider latency: ours vs a raw relay vs Socket.IO.

The same workload against three servers, one after the other in one run:
D drivers each on a trip with K riders; drivers send positions either as
fast as acks allow (`saturate`: a window of W frames in flight per driver)
or at R Hz (`rate`). Clients run in separate processes from the server.

- `raw`: bench/peers/raw_relay.py, a bare `websockets` relay (no parsing, no
  Redis): the ceiling for Python on this machine.
- `ours`: `tracking serve` with Redis: snapping, progress, ETA, a durable
  write before each ack, the fan-out through Redis pub/sub.
- `sio`: Node.js, Socket.IO 4 and @socket.io/redis-adapter
  (bench/peers/socketio): what a team would write instead. On one node
  the adapter hands a broadcast to local sockets without Redis.

Prints a table with ratios ours/raw and ours/sio measured in the same run
and writes JSON to bench/results/throughput.json.

    .venv/bin/python bench/throughput.py                      # both scenarios
    .venv/bin/python bench/throughput.py --scenario saturate --drivers 50 --window 16
    .venv/bin/python bench/throughput.py --scenario rate --drivers 1000 --hz 1 --riders 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import DriverSpec, Outcome, Plan, worker  # noqa: E402
from bench.peers import socketio_peer  # noqa: E402
from tracking.api.auth import issue_token  # noqa: E402
from tracking.routing import default_map_path, load_router  # noqa: E402
from tracking.store.embedded import EmbeddedRedis, free_port, stop_process  # noqa: E402
from tracking.store.embedded_cluster import LocalCluster  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PICKUP = (24.9384, 60.1699)
DROPOFF = (24.9496, 60.1733)
STARTS = [(24.9420, 60.1660), (24.9350, 60.1665), (24.9500, 60.1680), (24.9460, 60.1630)]


@dataclass
class Scenario:
    name: str
    drivers: int
    riders: int
    window: int
    hz: float
    step_m: float
    warmup_s: float
    measure_s: float
    driver_procs: int
    rider_procs: int


@dataclass
class Server:
    procs: list[psutil.Process]
    drive_url: Any
    ride_url: Any
    routes: dict[str, list[tuple[float, float]]]
    first_seq: int = 1


def start_raw(n_trips: int, stack: ExitStack) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/peers/raw_relay.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    stack.callback(stop_process, proc, 10)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready")
    route = _demo_route()
    return Server(
        procs=[psutil.Process(proc.pid)],
        drive_url=lambda trip: f"ws://127.0.0.1:{port}/drive?trip={trip}",
        ride_url=lambda trip, _i: f"ws://127.0.0.1:{port}/ride?trip={trip}",
        routes={f"t{i}": route for i in range(n_trips)},
    )


def start_sio(n_trips: int, stack: ExitStack) -> Server:
    redis = stack.enter_context(EmbeddedRedis())
    socketio_peer.ensure_installed()
    port = free_port()
    proc = socketio_peer.start_peer(redis.url, port)
    stack.callback(stop_process, proc, 10)
    route = _demo_route()
    base = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    return Server(
        procs=[psutil.Process(proc.pid), psutil.Process(redis.proc.pid)],
        drive_url=lambda trip: f"{base}&role=driver&trip={trip}",
        ride_url=lambda trip, _i: f"{base}&role=rider&trip={trip}",
        routes={f"t{i}": route for i in range(n_trips)},
    )


def start_ours(n_trips: int, stack: ExitStack, workers: int, cluster: bool = False) -> Server:
    """Our gateway on one embedded Redis, or (`cluster`) on a local three-master Redis Cluster."""
    redis: EmbeddedRedis | LocalCluster = stack.enter_context(
        LocalCluster() if cluster else EmbeddedRedis()
    )
    port = free_port()
    secret = secrets.token_hex(24)
    env = {
        **os.environ,
        "TRACKING_REDIS_URL": redis.url,
        "TRACKING_JWT_SECRET": secret,
        "TRACKING_MAX_POINTS_PER_S": "100000",
        "TRACKING_MAX_CONNECTIONS_PER_IP": "1000000",
        "TRACKING_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    log = stack.enter_context(tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".log"))
    cmd = [sys.executable, "-m", "tracking.cli", "serve", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    stack.callback(stop_process, proc, 15)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, proc)
    gateway = psutil.Process(proc.pid)
    print(f"gateway pid {proc.pid} on port {port}", flush=True)
    procs = [gateway, *gateway.children(recursive=True), *map(psutil.Process, redis.pids)]
    ops = issue_token(secret, "ops", "ops", ttl_s=3600)
    routes, riders = _create_trips(base, ops, secret, n_trips)
    ws = f"ws://127.0.0.1:{port}"

    def drive_url(trip: str) -> str:
        token = issue_token(secret, "driver", f"d-{trip}", ttl_s=3600)
        return f"{ws}/v1/drivers/ws?token={token}"

    return Server(
        procs=procs,
        drive_url=drive_url,
        ride_url=lambda trip, _i: f"{ws}/v1/trips/{trip}/ws?token={riders[trip]}",
        routes=routes,
        first_seq=2,
    )


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gateway not ready in 60 s")


def _create_trips(
    base: str, ops: str, secret: str, n: int
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, str]]:
    """Trips with a driver placed at a start point and assigned: route = start → pickup."""
    routes: dict[str, list[tuple[float, float]]] = {}
    riders: dict[str, str] = {}
    # Start on the road graph, where the router will start the route: a fix
    # tens of metres off it would be refused as a jump by the next one.
    router = load_router(default_map_path())
    starts = [router.route(s, PICKUP).coords[0] for s in STARTS]
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(n):
            trip_id = f"t{i}"
            start = starts[i % len(starts)]
            driver = f"d-{trip_id}"
            head = {"Authorization": f"Bearer {ops}"}
            body = {
                "id": trip_id,
                "pickup": {"lon": PICKUP[0], "lat": PICKUP[1]},
                "dropoff": {"lon": DROPOFF[0], "lat": DROPOFF[1]},
            }
            created = http.post("/v1/trips", json=body, headers=head)
            created.raise_for_status()
            riders[trip_id] = created.json()["rider_token"]
            token = issue_token(secret, "driver", driver, ttl_s=3600)
            fix = {"seq": 1, "ts": time.time_ns() // 1_000_000, "lon": start[0], "lat": start[1]}
            http.post(
                f"/v1/drivers/{driver}/positions",
                json={"points": [fix]},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()
            assigned = http.post(
                f"/v1/trips/{trip_id}/assign", json={"driver_id": driver}, headers=head
            )
            assigned.raise_for_status()
            coords = assigned.json()["route"]["coordinates"]
            routes[trip_id] = [(c[0], c[1]) for c in coords]
    return routes, riders


def _demo_route() -> list[tuple[float, float]]:
    plan = load_router(default_map_path()).route(STARTS[0], PICKUP)
    return [(c[0], c[1]) for c in plan.coords]


def run_target(target: str, sc: Scenario, workers: int) -> dict[str, Any]:
    with ExitStack() as stack:
        if target == "raw":
            server = start_raw(sc.drivers, stack)
        elif target == "sio":
            server = start_sio(sc.drivers, stack)
        elif target == "cluster":
            server = start_ours(sc.drivers, stack, workers, cluster=True)
        else:
            server = start_ours(sc.drivers, stack, workers)
        trips = sorted(server.routes)
        ctx = mp.get_context("spawn")
        now = time.time()
        base_plan = {
            "target": target,
            "window": sc.window,
            "hz": sc.hz,
            "step_m": sc.step_m,
            "go": 0.0,
            "measure_from": 0.0,
            "measure_to": 0.0,
            "stop": 0.0,
        }
        rider_urls = [server.ride_url(t, k) for t in trips for k in range(sc.riders)]
        rider_plans = [
            Plan(role="rider", rider_urls=rider_urls[i :: sc.rider_procs], **base_plan)  # type: ignore[arg-type]
            for i in range(sc.rider_procs)
        ]
        specs = [
            DriverSpec(server.drive_url(t), t, server.routes[t], server.first_seq) for t in trips
        ]
        driver_plans = [
            Plan(role="driver", drivers=specs[i :: sc.driver_procs], **base_plan)  # type: ignore[arg-type]
            for i in range(sc.driver_procs)
        ]
        # Times are set once everyone is connected; plans are sent at start, so
        # they carry times far enough ahead for every process to connect.
        connect_s = 5.0 + (len(rider_urls) + len(specs)) / 500
        go = now + connect_s
        for plan in (*rider_plans, *driver_plans):
            plan.go = go
            plan.measure_from = go + sc.warmup_s
            plan.measure_to = plan.measure_from + sc.measure_s
            plan.stop = plan.measure_to + 0.5
        pipes = []
        procs = []
        for plan in (*rider_plans, *driver_plans):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker, args=(plan, child), daemon=True)
            p.start()
            procs.append(p)
            pipes.append(parent)
        for pipe in pipes:
            tag, n = pipe.recv()
            assert tag == "connected"
        if time.time() > go:
            raise RuntimeError("clients took too long to connect; raise connect_s")
        sampler = _Sampler(server.procs)
        sampler.start()
        _sleep_until(rider_plans[0].measure_from)
        cpu_before = sampler.cpu_by_process()
        _sleep_until(rider_plans[0].measure_to)
        cpu_after = sampler.cpu_by_process()
        cpu_split = {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in cpu_after.items()}
        outcomes: list[Outcome] = []
        for pipe in pipes:
            if not pipe.poll(30):
                raise RuntimeError("a client process did not report")
            tag, out = pipe.recv()
            outcomes.append(out)
        sampler.stop()
        for p in procs:
            p.join(5)
        row = _summary(target, sc, outcomes, sum(cpu_split.values()), sampler.peak_rss)
        row["cpu_s_by_process"] = cpu_split
        return row


class _Sampler(threading.Thread):
    """Peak RSS of the server's processes, sampled every 200 ms."""

    def __init__(self, procs: list[psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.peak_rss = 0
        self._halt = threading.Event()

    def cpu(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.procs:
            times = p.cpu_times()
            name = p.name()
            out[name] = out.get(name, 0.0) + times.user + times.system
        return out

    def run(self) -> None:
        while not self._halt.wait(0.2):
            rss = 0
            for p in self.procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        time.sleep(delay)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _summary(
    target: str, sc: Scenario, outs: list[Outcome], cpu_s: float, peak_rss: int
) -> dict[str, Any]:
    latency = [x for o in outs for x in o.latency_ms]
    acks = [x for o in outs for x in o.ack_ms]
    delivered = sum(o.delivered for o in outs)
    error_codes: dict[str, int] = {}
    close_codes: dict[str, int] = {}
    for o in outs:
        for mine, theirs in ((error_codes, o.error_codes), (close_codes, o.close_codes)):
            for code, n in theirs.items():
                mine[code] = mine.get(code, 0) + n
    return {
        "target": target,
        "delivered_per_s": delivered / sc.measure_s,
        "sent": sum(o.sent for o in outs),
        "acked": sum(o.acked for o in outs),
        "errors": sum(o.errors for o in outs),
        "closed_early": sum(o.closed_early for o in outs),
        "stalled": sum(o.stalled for o in outs),
        "error_codes": error_codes,
        "close_codes": close_codes,
        "other_frames": sum(o.other_frames for o in outs),
        "latency_p50_ms": _pct(latency, 0.50),
        "latency_p99_ms": _pct(latency, 0.99),
        "latency_mean_ms": statistics.fmean(latency) if latency else None,
        "ack_p50_ms": _pct(acks, 0.50),
        "ack_p99_ms": _pct(acks, 0.99),
        "server_cpu_s": cpu_s,
        "server_cpu_us_per_delivery": cpu_s / delivered * 1e6 if delivered else None,
        "peak_rss_mb": peak_rss / 2**20,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(sc: Scenario, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{sc.name}: {sc.drivers} drivers × {sc.riders} riders, "
        + (f"window {sc.window}" if sc.window else f"{sc.hz:g} Hz")
        + f", measured {sc.measure_s:g} s"
    )
    print(
        f"{'target':<6} {'delivered/s':>11} {'lat p50':>8} {'lat p99':>8} {'ack p50':>8} "
        f"{'ack p99':>8} {'cpu s':>6} {'µs/deliv':>8} {'RSS MB':>7} {'err':>4} {'drop':>4}"
    )
    for r in rows:
        print(
            f"{r['target']:<6} {r['delivered_per_s']:>11,.0f} "
            f"{_fmt(r['latency_p50_ms'], '8.1f')} {_fmt(r['latency_p99_ms'], '8.1f')} "
            f"{_fmt(r['ack_p50_ms'], '8.1f')} {_fmt(r['ack_p99_ms'], '8.1f')} "
            f"{r['server_cpu_s']:>6.1f} {_fmt(r['server_cpu_us_per_delivery'], '8.1f')} "
            f"{r['peak_rss_mb']:>7.0f} {r['errors']:>4} {r['closed_early']:>4}"
        )
    for r in rows:
        split = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_s_by_process"].items())
        print(f"{r['target']}: server CPU s by process: {split}")
        if r["error_codes"] or r["close_codes"] or r["stalled"]:
            print(
                f"{r['target']}: errors {r['error_codes']}, closed {r['close_codes']}, "
                f"drivers stalled without acks {r['stalled']}"
            )
    by = {r["target"]: r for r in rows}
    ours = by.get("ours")
    for other in ("raw", "sio"):
        if ours and other in by and by[other]["delivered_per_s"]:
            ratio = ours["delivered_per_s"] / by[other]["delivered_per_s"]
            print(f"ours/{other}: {ratio:.2f} (delivered/s)")


SCENARIOS = {
    "saturate": Scenario("saturate", 50, 2, 16, 0.0, 0.05, 3.0, 10.0, 1, 1),
    "rate": Scenario("rate", 1000, 2, 0, 1.0, 10.0, 5.0, 20.0, 1, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument(
        "--targets",
        default="raw,ours,sio",
        help="comma-separated: raw, ours, sio, cluster (ours on a local 3-master Redis Cluster)",
    )
    parser.add_argument("--drivers", type=int)
    parser.add_argument("--riders", type=int, help="riders per trip")
    parser.add_argument("--window", type=int)
    parser.add_argument("--hz", type=float)
    parser.add_argument("--measure", type=float, help="seconds measured")
    parser.add_argument("--driver-procs", type=int)
    parser.add_argument("--rider-procs", type=int)
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    report: dict[str, Any] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "scenarios": {},
    }
    for name in names:
        sc = SCENARIOS[name]
        for key, attr in (
            ("drivers", "drivers"),
            ("riders", "riders"),
            ("window", "window"),
            ("hz", "hz"),
            ("measure", "measure_s"),
            ("driver_procs", "driver_procs"),
            ("rider_procs", "rider_procs"),
        ):
            if getattr(args, key) is not None:
                setattr(sc, attr, getattr(args, key))
        rows = [run_target(t, sc, args.workers) for t in args.targets.split(",")]
        print_table(sc, rows)
        report["scenarios"][name] = {"scenario": sc.__dict__, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
