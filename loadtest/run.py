"""`make load`: a bounded headless locust run against a local stack it starts itself.

Starts an embedded Redis and `tracking serve` on a free port (a fresh
`TRACKING_JWT_SECRET`, the per-IP connection cap raised: all the load comes
from one address), runs `locust --headless` on loadtest/locustfile.py, stops
the stack and prints a short summary of the CSV stats, the gateway's own
counters and any problem the gateway logged.

    .venv/bin/python loadtest/run.py [--users 100 --spawn-rate 20 --duration 60s]
        [--driver-hz 1 --riders-per-trip 2] [-- <more locust options>]

Exits with locust's exit code (1 if any request failed).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tracking.api.auth import issue_token  # noqa: E402
from tracking.local import LocalStack  # noqa: E402

PROBLEM = re.compile(r"Traceback|Warning:| ERROR |^ERROR:")
KEY_ROWS = ("pos → ack", "position e2e")


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def seconds(duration: str) -> float:
    """Locust's run time syntax (`90`, `60s`, `2m`, `1h30m`) in seconds."""
    parts = re.findall(r"(\d+)\s*([hms]?)", duration)
    if not parts:
        raise argparse.ArgumentTypeError(f"not a duration: {duration!r}")
    return float(sum(int(n) * {"h": 3600, "m": 60}.get(unit, 1) for n, unit in parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=float, default=20)
    parser.add_argument("--duration", default="60s", help="locust -t: 60s, 2m, …")
    parser.add_argument("--driver-hz", type=float, default=1.0)
    parser.add_argument("--riders-per-trip", type=int, default=2)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--max-connections-per-ip", default="100000")
    parser.add_argument("locust_args", nargs="*", help="more locust options, after --")
    args = parser.parse_args(argv)
    run_s = seconds(args.duration)

    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    prefix = results / "load"
    gateway_log = results / "gateway.log"
    gateway_log.unlink(missing_ok=True)
    secret = secrets.token_urlsafe(32)
    env = {
        "TRACKING_JWT_SECRET": secret,
        "TRACKING_MAX_CONNECTIONS_PER_IP": args.max_connections_per_ip,
    }
    say("starting embedded Redis and a gateway …")
    stack = LocalStack(env=env, log_path=str(gateway_log)).start()
    try:
        say(f"gateway {stack.base}; running locust for {args.duration} with {args.users} users")
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(HERE / "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(args.users),
            "-r",
            str(args.spawn_rate),
            "-t",
            args.duration,
            "--host",
            stack.base,
            "--csv",
            str(prefix),
            "--html",
            str(prefix.with_suffix(".html")),
            "--driver-hz",
            str(args.driver_hz),
            "--riders-per-trip",
            str(args.riders_per_trip),
            *args.locust_args,
        ]
        try:
            code = subprocess.call(cmd, env={**os.environ, **env}, cwd=ROOT, timeout=run_s + 120)
        except subprocess.TimeoutExpired:
            say("locust did not finish in time")
            code = 2
        gateway = gateway_stats(stack.base, secret)
    finally:
        stack.stop()
    summary(prefix, run_s, gateway, gateway_log)
    return code


def gateway_stats(base: str, secret: str) -> dict[str, Any] | None:
    token = issue_token(secret, "ops", "load-run", ttl_s=300)
    try:
        response = httpx.get(
            f"{base}/v1/ops/stats", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        return response.json()["gateway"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def summary(prefix: Path, run_s: float, gateway: dict[str, Any] | None, log: Path) -> None:
    stats_csv = prefix.parent / f"{prefix.name}_stats.csv"
    say()
    if not stats_csv.exists():
        say(f"no stats: {stats_csv} is missing")
        return
    with stats_csv.open() as f:
        rows = list(csv.DictReader(f))
    say(f"{'request':<30} {'count':>8} {'fail':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        name = row["Name"] if row["Type"] in ("WS", "") else f"{row['Type']} {row['Name']}"
        say(
            f"{name[:30]:<30} {row['Request Count']:>8} {row['Failure Count']:>6} "
            f"{float(row['Requests/s']):>8.1f} {row['50%']:>8} {row['99%']:>8}"
        )
    by_name = {row["Name"]: row for row in rows}
    for name in KEY_ROWS:
        row = by_name.get(name)
        if row is None or row["Request Count"] == "0":
            say(f"!! no '{name}' measurements")
    if gateway is not None:
        say(
            f"gateway: points {gateway.get('points')}, errors {gateway.get('errors')}, "
            f"frames out {gateway.get('frames_out')}"
        )
    lines = log.read_text(errors="replace").splitlines()
    problems = [line for line in lines if PROBLEM.search(line)]
    say(f"gateway log: {len(problems)} problem lines ({log})")
    for line in problems[:5]:
        say(f"  {line[:200]}")
    say(f"report: {prefix.with_suffix('.html')}  (CSV: {prefix}_*.csv)")


if __name__ == "__main__":
    sys.exit(main())
