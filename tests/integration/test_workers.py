"""`tracking serve --workers N`: several processes on one port behave as one gateway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.client import (
    DRIVER_START,
    Api,
    driver_ws,
    now_ms,
    pos,
    recv_json,
    recv_until,
    trip_ws,
    walk,
)
from tests.integration.conftest import SECRET
from tracking.api.auth import issue_token
from tracking.store.embedded import free_port

DRAIN_S = 3  # TRACKING_DRAIN_TIMEOUT_S of these gateways
EXIT_MARGIN_S = 7  # process start-up of the shutdown, lifespan end, the parent's join
GOING_AWAY = 1012


class Workers:
    """`python -m tracking.cli serve --workers N` on a free port, logging to a file."""

    def __init__(
        self, redis_url: str, tmp: Path, n: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.n = n
        self.pids: set[int] = set()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.log_path = tmp / "workers.log"
        full_env = {
            **os.environ,
            "TRACKING_REDIS_URL": redis_url,
            "TRACKING_JWT_SECRET": SECRET,
            "TRACKING_PUBLIC_URL": self.base,
            "TRACKING_MAX_POINTS_PER_S": "1000",
            "TRACKING_DRAIN_TIMEOUT_S": str(DRAIN_S),
            **(env or {}),
        }
        full_env = {k: v for k, v in full_env.items() if v}  # "" unsets
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracking.cli", "serve", "--port", str(self.port)]
                + ["--workers", str(n)],
                env=full_env,
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.parent = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log()}")
            if self.log().count("Application startup complete.") == n and self._ready():
                self.pids = {p.pid for p in self.workers()}
                if len(self.pids) == n:
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{n} workers did not become ready in 30 s: {self.log()[-3000:]}")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """The children listening on our port (not redis, not multiprocessing's tracker)."""
        found = []
        for child in self.parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(
                    c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                    for c in child.net_connections("tcp")
                ):
                    found.append(child)
        return found

    def worker_of(self, ws: Any) -> int:
        """The pid of the worker holding the server side of client socket `ws`."""
        client_port = int(ws.local_address[1])
        for _ in range(50):
            for pid in self.pids:
                for c in psutil.Process(pid).net_connections("tcp"):
                    if c.laddr.port == self.port and c.raddr and c.raddr.port == client_port:
                        return pid
            time.sleep(0.02)
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def terminate_and_wait(self) -> float:
        """SIGTERM to the parent; seconds until it and every worker exited."""
        workers = [psutil.Process(pid) for pid in self.pids]
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(DRAIN_S + EXIT_MARGIN_S)
        _, alive = psutil.wait_procs(workers, timeout=1)
        assert not alive, f"workers outlived the parent: {alive}"
        return time.monotonic() - started

    def kill(self) -> None:
        """Cleanup after a failure: the whole tree, SIGKILL."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in self.parent.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def problems(self) -> list[str]:
        return [
            line
            for line in self.log().splitlines()
            if "Traceback" in line or "Warning:" in line or " ERROR " in line
        ]


@pytest.fixture
def start_workers(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Workers]]:
    started: list[Workers] = []

    def start(**env: str) -> Workers:
        gw = Workers(redis_url, tmp_path_factory.mktemp("workers"), env=env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.kill()  # a no-op when the test stopped it


async def drive(
    drv: Any, coords: list[list[float]], seq: int, ts: int, status: str
) -> tuple[int, int]:
    """A fix every 12 m along `coords`, each acked, until the driver hears `status`."""
    for lon, lat in walk(coords):
        seq += 1
        ts += 1000
        await drv.send(pos(seq, lon, lat, ts))
        ack, seen = await recv_until(drv, lambda f: f["type"] == "ack")
        assert ack["seq"] == seq
        if any(f["type"] == "trip" and f["trip"]["status"] == status for f in seen):
            return seq, ts
    raise AssertionError(f"drove the whole leg without reaching {status}")


def test_pairs_split_across_workers_get_their_events(
    start_workers: Callable[..., Workers],
) -> None:
    """20 rider/driver pairs on 2 workers: every rider sees its driver; a split pair rides."""
    gw = start_workers(TRACKING_DWELL_COMPLETE_S="2")
    api = Api(gw.base, issue_token(SECRET, "ops", "ops"))
    run = os.urandom(3).hex()
    trips = [api.create_trip(driver_id=f"d-wk-{run}-{i}") for i in range(20)]
    drivers = [trip["driver_id"] for trip in trips]

    async def scenario() -> tuple[dict[int, int], dict[int, int], list[dict[str, Any]]]:
        async with contextlib.AsyncExitStack() as stack:
            riders = [
                await stack.enter_async_context(trip_ws(gw.ws_base, t["id"], t["rider_token"]))
                for t in trips
            ]
            for rider in riders:
                assert (await recv_json(rider))["type"] == "snapshot"
            rider_pid = {i: gw.worker_of(r) for i, r in enumerate(riders)}
            tokens = [issue_token(SECRET, "driver", d) for d in drivers]
            drvs = []
            for tok in tokens:
                drv = await stack.enter_async_context(driver_ws(gw.ws_base, tok))
                assert (await recv_json(drv))["type"] == "trip"
                drvs.append(drv)
            driver_pid = {i: gw.worker_of(d) for i, d in enumerate(drvs)}
            # Make sure pair 0 is split: reconnect its driver until the other
            # worker accepts it (the kernel hands each accept to either).
            for _ in range(40):
                if driver_pid[0] != rider_pid[0]:
                    break
                await drvs[0].close()
                drvs[0] = await stack.enter_async_context(driver_ws(gw.ws_base, tokens[0]))
                assert (await recv_json(drvs[0]))["type"] == "trip"
                driver_pid[0] = gw.worker_of(drvs[0])
            assert driver_pid[0] != rider_pid[0], "every driver socket landed on the rider's worker"

            # Every driver sends one fix; every rider must see its driver's position.
            ts0 = now_ms() - 600_000

            async def one_fix(i: int) -> None:
                await drvs[i].send(pos(1, *DRIVER_START, ts0))
                ack, _ = await recv_until(drvs[i], lambda f: f["type"] == "ack")
                assert ack["seq"] == 1
                await recv_until(riders[i], lambda f: f["type"] == "position")

            await asyncio.wait_for(asyncio.gather(*(one_fix(i) for i in range(20))), 20)

            # The whole ride of the split pair, watched from the other worker.
            frames: list[dict[str, Any]] = []

            async def watch() -> None:
                try:
                    while True:
                        frames.append(await recv_json(riders[0], 30))
                except ConnectionClosed as closed:
                    frames.append({"closed": closed.rcvd.code if closed.rcvd else None})

            watcher = asyncio.create_task(watch())
            trip, drv = trips[0], drvs[0]
            leg = api.get(f"/v1/trips/{trip['id']}").json()["route"]["coordinates"]
            seq, ts = await drive(drv, leg, 1, ts0, "arrived_pickup")
            seq, ts = await drive(drv, trip["route"]["coordinates"], seq, ts, "arrived_dropoff")
            end = trip["route"]["coordinates"][-1]
            for _ in range(4):  # dwell at the dropoff until auto-complete (2 s)
                seq += 1
                ts += 1000
                await drv.send(pos(seq, end[0], end[1], ts))
                await recv_until(drv, lambda f: f["type"] == "ack")
            await asyncio.wait_for(watcher, 20)
            return rider_pid, driver_pid, frames

    rider_pid, driver_pid, frames = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert set(rider_pid.values()) | set(driver_pid.values()) == gw.pids, "one worker idle"
    splits = [i for i in range(20) if rider_pid[i] != driver_pid[i]]
    assert 0 in splits
    statuses = [f["status"] for f in frames if f.get("type") == "status"]
    assert statuses == ["arrived_pickup", "in_progress", "arrived_dropoff", "completed"]
    assert frames[-1] == {"closed": 1000}

    # No JWT in any worker's log: uvicorn logs each WebSocket's query string.
    log = gw.log()
    assert log.count("token=[redacted]") >= 40
    assert "eyJ" not in log
    assert gw.terminate_and_wait() < DRAIN_S + EXIT_MARGIN_S
    assert gw.proc.returncode == 0
    assert not gw.problems(), "\n".join(gw.problems())


def test_sigterm_closes_every_worker_s_sockets_with_1012_and_the_tree_exits(
    start_workers: Callable[..., Workers],
) -> None:
    """Riders on both workers get 1012; the parent and workers are gone within the drain."""
    gw = start_workers(TRACKING_JWT_SECRET="")  # the dev secret, made once by the parent
    secret = (gw.log_path.parent / ".tracking" / "dev-jwt-secret").read_text().strip()
    api = Api(gw.base, issue_token(secret, "ops", "ops"))
    trip = api.create_trip()
    worker_procs = [psutil.Process(pid) for pid in gw.pids]

    async def scenario() -> list[int | None]:
        async with contextlib.AsyncExitStack() as stack:
            riders: dict[int, list[Any]] = {pid: [] for pid in gw.pids}
            for _ in range(40):  # both workers accept, and check tokens with one secret
                rider = await stack.enter_async_context(
                    trip_ws(gw.ws_base, trip["id"], trip["rider_token"])
                )
                assert (await recv_json(rider))["type"] == "snapshot"
                riders[gw.worker_of(rider)].append(rider)
                if all(len(r) >= 2 for r in riders.values()):
                    break
            assert all(riders.values()), {pid: len(r) for pid, r in riders.items()}
            gw.proc.send_signal(signal.SIGTERM)

            async def close_code(ws: Any) -> int | None:
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await recv_json(ws, DRAIN_S + EXIT_MARGIN_S)
                return ws.close_code  # type: ignore[no-any-return]

            every = [ws for on_worker in riders.values() for ws in on_worker]
            return list(await asyncio.gather(*(close_code(ws) for ws in every)))

    codes = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert codes and set(codes) == {GOING_AWAY}, codes
    gw.proc.wait(DRAIN_S + EXIT_MARGIN_S)
    _, alive = psutil.wait_procs(worker_procs, timeout=1)
    assert not alive
    assert gw.proc.returncode == 0
    assert not gw.problems(), "\n".join(gw.problems())
    assert "Traceback" not in gw.log()


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_workers_must_be_a_positive_number(workers: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tracking.cli", "serve", "--workers", workers],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr and "Traceback" not in done.stderr
