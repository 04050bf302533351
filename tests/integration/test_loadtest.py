"""The locust load test (loadtest/locustfile.py) against a real gateway, briefly.

Locust runs as a subprocess: it monkey-patches everything with gevent, which
must not happen to the pytest process.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import ROOT, SECRET, Gateway

RUN_S = 12
DRIVERS, RIDERS_PER_TRIP, OPS = 4, 2, 1


def test_locust_users_speak_the_protocol(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = start_gateway(TRACKING_MAX_CONNECTIONS_PER_IP="100000")
    prefix = tmp_path / "load"
    users = DRIVERS * (1 + RIDERS_PER_TRIP) + OPS
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{RUN_S}s",
        "--host",
        gw.base,
        "--csv",
        str(prefix),
        # Weights 4:8:1, so exactly 4 drivers, 8 riders and 1 ops user.
        "--driver-weight",
        str(DRIVERS),
        "--riders-per-trip",
        str(RIDERS_PER_TRIP),
        "--ops-weight",
        str(OPS),
        # Fast drivers (20 m per fix, 5 fixes/s) reach the pickup within the run.
        "--driver-hz",
        "5",
        "--driver-speed",
        "100",
        "--pickup-wait-s",
        "0.5",
        "--dwell-s",
        "0.5",
    ]
    env = {**os.environ, "TRACKING_JWT_SECRET": SECRET}
    env.pop("LOAD_OPS_TOKEN", None)
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_S + 30
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    stats_csv = tmp_path / "load_stats.csv"
    assert stats_csv.exists(), output
    with stats_csv.open() as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}

    def count(kind: str, name: str) -> int:
        row = rows.get((kind, name))
        return int(row["Request Count"]) if row else 0

    def failures(kind: str, name: str) -> int:
        row = rows.get((kind, name))
        return int(row["Failure Count"]) if row else 0

    assert proc.returncode == 0, output
    assert "All users spawned" in output and '"DriverUser": 4' in output, output
    assert failures("", "Aggregated") == 0, output

    # Drivers: every fix acked (5 Hz × 4 drivers, minus start-up and the CSV's last second).
    assert count("WS", "pos → ack") > DRIVERS * 5 * (RUN_S - 5), output
    assert count("WS", "driver connect") >= DRIVERS, output
    assert count("POST", "/v1/trips") >= DRIVERS, output
    # Someone reached the pickup, tapped start and was answered (the trip lifecycle moved).
    assert count("WS", "action start") >= 1, output

    # Riders: a snapshot each, then live positions with a sane driver-to-rider latency.
    assert count("WS", "subscribe → snapshot") >= DRIVERS * RIDERS_PER_TRIP, output
    e2e = rows.get(("WS", "position e2e"))
    assert e2e is not None and int(e2e["Request Count"]) > DRIVERS * RIDERS_PER_TRIP * 10, output
    assert 0 <= float(e2e["50%"]) < 2000, e2e

    # Ops (about one request a second): answered 200, and the answers matched the models.
    ops = ("/v1/ops/stats", "/v1/drivers/nearby", "/v1/trips/[id]", "/v1/trips/[id]/trail")
    assert sum(count("GET", name) for name in ops) >= 5, output
