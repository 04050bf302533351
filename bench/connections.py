"""Idle rider sockets on one gateway process: RSS per socket (target: 10 000 at <= 20 KB each).

Starts an embedded Redis and one `tracking serve` gateway, creates trips
with a driver assigned (ops API) and opens `--sockets` trip-channel
WebSockets (10 riders per trip) from `--procs` client processes
(bench/clients.py), each socket waiting for its snapshot. After `--settle`
idle seconds it measures the gateway's RSS and USS against the warmed-up
baseline. The default settle, 20 s, is longer than the 15 s heartbeat: every
socket has then been through one heartbeat and holds what an idle socket
holds for good. Then it proves the sockets are live: a driver sends one
`pos` on a few trips, and every rider of those trips must get a `position`
event. Results, one entry per N (and --deflate, --tag), go to
bench/results/connections.json; the table shows every stored run.

    .venv/bin/python bench/connections.py [--sockets 10000 --procs 4 --settle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import secrets
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from clients import OPEN_TIMEOUT_S, Clients  # bench/clients.py, next to this script
from websockets.asyncio.client import connect

RESULTS = Path(__file__).parent / "results"
TARGET_KB = 20.0
BUDGET_S = 175
"""The whole run, cleanup excluded; past it the run fails and cleans up."""
PICKUP = {"lon": 24.9384, "lat": 60.1699}
DROPOFF = {"lon": 24.9496, "lat": 60.1733}
DRIVER_NEAR = (24.9420, 60.1660)  # on a street ~400 m from the pickup
LIVE_SAMPLE_TRIPS = 5
LIVE_TIMEOUT_S = 5.0


class Overtime(Exception):
    pass


# --- the gateway ----------------------------------------------------------------


def measure(proc: psutil.Process) -> dict[str, float]:
    cpu = proc.cpu_times()
    return {
        "rss_mb": proc.memory_info().rss / 2**20,
        "uss_mb": proc.memory_full_info().uss / 2**20,
        "cpu_s": cpu.user + cpu.system,
        "fds": proc.num_fds(),
        "t": time.monotonic(),
    }


def server_riders(base: str) -> int | None:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(r'^tracking_connections\{kind="rider"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else None


async def create_trips(base: str, ops: str, n: int) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {ops}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:

        async def one(i: int) -> dict[str, Any]:
            body = {"pickup": PICKUP, "dropoff": DROPOFF, "driver_id": f"bench-d-{i}"}
            async with sem:
                r = await http.post("/v1/trips", json=body)
            r.raise_for_status()
            return dict(r.json())

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def warm_up(ws_base: str, trip: dict[str, Any]) -> None:
    url = f"{ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}"
    async with connect(url, compression=None, ping_interval=None) as ws:
        await asyncio.wait_for(ws.recv(), 10)


async def drive(ws_base: str, secret: str, trips: list[dict[str, Any]]) -> float:
    """One `pos` per trip from its driver, each acked; returns when the first was sent."""
    from tracking.api.auth import issue_token

    sent = time.time()
    for trip in trips:
        token = issue_token(secret, "driver", trip["driver_id"])
        async with connect(f"{ws_base}/v1/drivers/ws?token={token}", compression=None) as ws:
            frame = {"type": "pos", "seq": 1, "ts": time.time_ns() // 10**6, "acc": 5.0}
            frame.update(lon=DRIVER_NEAR[0], lat=DRIVER_NEAR[1])
            await ws.send(orjson.dumps(frame).decode())
            async with asyncio.timeout(LIVE_TIMEOUT_S):
                while orjson.loads(await ws.recv()).get("type") != "ack":
                    pass
    return sent


# --- the run ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tracking.api.auth import issue_token
    from tracking.local import LocalStack

    n, k = args.sockets, args.procs
    n_trips = args.trips or max(1, -(-n // 10))
    secret = secrets.token_urlsafe(32)
    env = {
        "TRACKING_JWT_SECRET": secret,
        "TRACKING_MAX_CONNECTIONS_PER_IP": "100000",
        "TRACKING_STALE_AFTER_S": "3600",  # idle means idle: no signal-lost burst mid-run
        "TRACKING_DRAIN_TIMEOUT_S": "3",
    }
    log_path = RESULTS / "connections-gateway.log"
    log_path.unlink(missing_ok=True)
    stack = LocalStack(env=env, log_path=str(log_path))
    clients: Clients | None = None
    try:
        stack.start()
        assert stack.proc is not None
        gw = psutil.Process(stack.proc.pid)
        ws_base = stack.base.replace("http", "ws", 1)
        t0 = time.monotonic()
        trips = asyncio.run(create_trips(stack.base, issue_token(secret, "ops", "ops"), n_trips))
        trips_s = time.monotonic() - t0
        asyncio.run(warm_up(ws_base, trips[0]))
        # Consecutive sockets share a trip; process j holds sockets j, j + k, ...
        plan = [(t["id"], t["rider_token"]) for t in (trips[i * n_trips // n] for i in range(n))]
        clients = Clients(ws_base, [plan[j::k] for j in range(k)], args.inflight, args.deflate)
        clients.ask(("status",), 60)  # every client process is up
        time.sleep(2)
        base = measure(gw)

        opened = clients.ask(("open",), OPEN_TIMEOUT_S * 2)
        n_open = sum(a[1] for a in opened)
        open_s = max(a[3] for a in opened) - min(a[2] for a in opened)
        errors: Counter[str] = Counter()
        for a in opened:
            errors.update(a[4])
        at_open = measure(gw)
        time.sleep(args.settle)
        after = measure(gw)
        on_server = server_riders(stack.base)

        n_sample = min(LIVE_SAMPLE_TRIPS, n_trips)
        sample = [trips[i * n_trips // n_sample] for i in range(n_sample)]
        sent = asyncio.run(drive(ws_base, secret, sample))
        ids = [t["id"] for t in sample]
        deadline = time.monotonic() + LIVE_TIMEOUT_S
        while True:
            seen: dict[str, list[float]] = {t: [] for t in ids}
            for a in clients.ask(("positions", ids), 10):
                for t, stamps in a[1].items():
                    seen[t].extend(stamps)
            want = sum(len(v) for v in seen.values())
            got = sum(1 for v in seen.values() for stamp in v if stamp)
            if got >= want or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        latency = max((at for v in seen.values() for at in v if at), default=sent) - sent
        status = clients.ask(("status",), 10)
        end = measure(gw)
        kinds: Counter[str] = Counter()
        closes: Counter[str] = Counter()
        for a in status:
            kinds.update(a[2])
            closes.update(a[3])
        log_text = log_path.read_text(errors="replace")
    finally:
        if clients is not None:
            clients.stop()
        stack.stop()

    grown_kb = (after["rss_mb"] - base["rss_mb"]) * 1024
    grown_uss_kb = (after["uss_mb"] - base["uss_mb"]) * 1024
    per = max(n_open, 1)
    return {
        "sockets": n,
        "opened": n_open,
        "open_errors": dict(errors.most_common(5)),
        "procs": k,
        "trips": n_trips,
        "deflate": args.deflate,
        "settle_s": args.settle,
        "trips_created_s": round(trips_s, 2),
        "baseline_rss_mb": round(base["rss_mb"], 1),
        "baseline_uss_mb": round(base["uss_mb"], 1),
        "opened_rss_mb": round(at_open["rss_mb"], 1),
        "after_rss_mb": round(after["rss_mb"], 1),
        "after_uss_mb": round(after["uss_mb"], 1),
        "kb_per_socket": round(grown_kb / per, 2),
        "uss_kb_per_socket": round(grown_uss_kb / per, 2),
        "open_s": round(open_s, 2),
        "open_per_s": round(n_open / open_s, 0) if open_s > 0 else None,
        "cpu_s_open": round(at_open["cpu_s"] - base["cpu_s"], 2),
        "cpu_s_total": round(end["cpu_s"] - base["cpu_s"], 2),
        "idle_cpu_pct": round(
            100 * (after["cpu_s"] - at_open["cpu_s"]) / (after["t"] - at_open["t"]), 1
        ),
        "gateway_fds": after["fds"],
        "riders_on_server": on_server,
        "open_at_end": sum(a[1] for a in status),
        "frames_received": dict(kinds),
        "closed_early": dict(closes.most_common(5)),
        "live_trips": len(ids),
        "live_riders": want,
        "live_riders_got_position": got,
        "live_latency_s": round(latency, 3),
        "live_ok": 0 < want <= got,
        "gateway_log_problems": len(re.findall(r"Traceback| ERROR ", log_text)),
        "target_met": grown_kb / per <= TARGET_KB and n_open == n,
        "tag": args.tag,
        "code": _code_version(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _code_version() -> str:
    """The measured `tracking` package: its path and commit (+dirty if it has local edits)."""
    import tracking

    where = Path(tracking.__file__).parent
    git = ["git", "-C", str(where)]
    with contextlib.suppress(Exception):
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "."], capture_output=True)
        if head.returncode == 0:
            commit = head.stdout.decode().strip()
            return f"{where} @ {commit}{'+dirty' if dirty.stdout.strip() else ''}"
    return str(where)


COLUMNS = (  # header, alignment and width, value format, value
    ("tag", "<8", "", lambda r: r.get("tag", "")),
    ("N", ">6", "", lambda r: r["sockets"]),
    ("deflate", ">7", "", lambda r: "yes" if r["deflate"] else "no"),
    ("base MB", ">8", ".1f", lambda r: r["baseline_rss_mb"]),
    ("after MB", ">8", ".1f", lambda r: r["after_rss_mb"]),
    ("KB/sock", ">8", ".1f", lambda r: r["kb_per_socket"]),
    ("USS KB", ">7", ".1f", lambda r: r["uss_kb_per_socket"]),
    ("open/s", ">7", ".0f", lambda r: r["open_per_s"] or 0),
    ("open@end", ">9", "", lambda r: r["open_at_end"]),
    ("live", ">8", "", lambda r: f"{r['live_riders_got_position']}/{r['live_riders']}"),
    ("<=20 KB", ">8", "", lambda r: "met" if r["target_met"] else "NOT met"),
)


def table(runs: dict[str, dict[str, Any]], current: str) -> str:
    head = " ".join(f"{name:{width}}" for name, width, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    order = sorted(
        runs.items(), key=lambda kv: (kv[1].get("tag", ""), kv[1]["deflate"], kv[1]["sockets"])
    )
    for key, r in order:
        row = " ".join(f"{get(r):{width}{spec}}" for _, width, spec, get in COLUMNS)
        lines.append(row + ("  <- this run" if key == current else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="rider sockets (10000)")
    parser.add_argument("--procs", type=int, default=4, help="client processes (4)")
    parser.add_argument("--trips", type=int, default=0, help="trips (default: sockets / 10)")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="idle seconds before measuring (20)"
    )
    parser.add_argument("--inflight", type=int, default=50, help="opening at once per process")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--tag", default="", help="label of this run in the results (a variant)")
    args = parser.parse_args()
    if args.sockets < 1 or args.procs < 1:
        parser.error("--sockets and --procs must be positive")
    RESULTS.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it
    if hard < args.sockets + 1000:
        print(f"warning: ulimit -n is {hard}; {args.sockets} sockets may not fit")

    def overtime(*_: object) -> None:
        raise Overtime(f"run exceeded {BUDGET_S} s")

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, overtime)
    signal.signal(signal.SIGTERM, terminate)
    signal.alarm(BUDGET_S)
    try:
        result = run(args)
    finally:
        signal.alarm(0)

    path = RESULTS / "connections.json"
    runs: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(Exception):
        runs = json.loads(path.read_text())["runs"]
    key = "-".join(
        str(x) for x in (result["sockets"], "deflate" if result["deflate"] else "", args.tag) if x
    )
    runs[key] = result
    path.write_text(json.dumps({"target_kb_per_socket": TARGET_KB, "runs": runs}, indent=2) + "\n")
    r = result
    print(table(runs, key))
    print(
        f"\nthis run: {r['opened']}/{r['sockets']} opened over {r['trips']} trips from "
        f"{r['procs']} processes in {r['open_s']} s ({r['cpu_s_open']} gateway CPU s); "
        f"idle gateway CPU {r['idle_cpu_pct']} % after open; "
        f"server counts {r['riders_on_server']} riders, {r['gateway_fds']} fds; "
        f"live check {r['live_riders_got_position']}/{r['live_riders']} riders of "
        f"{r['live_trips']} trips got the position in {r['live_latency_s']} s; "
        f"gateway log problems: {r['gateway_log_problems']}"
    )
    if r["open_errors"]:
        print(f"open errors: {r['open_errors']}")
    if r["closed_early"]:
        print(f"closed by the gateway before the end: {r['closed_early']}")
    print(f"wrote {path}")
    ok = r["opened"] == r["sockets"] and r["open_at_end"] == r["sockets"] and r["live_ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
