"""Slow readers: conflated to the newest position and ETA, never a status lost, never a backlog.

The gateway's kernel send buffer is made small (TRACKING_SOCKET_SEND_BUFFER_BYTES)
so that a reader that stops reading blocks the gateway's sends within a few
hundred frames, as it would after a few MB with the default buffers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.uri import parse_uri

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
from tests.integration.conftest import Gateway, token

ENV = {
    "TRACKING_SOCKET_SEND_BUFFER_BYTES": "8192",
    "TRACKING_MAX_POINTS_PER_S": "5000",
}


def metric(base: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class StalledReader:
    """A rider whose app stops reading after the snapshot.

    A raw socket with a tiny receive window, spoken to with the websockets
    sans-I/O protocol, so that nothing reads ahead into a user-space buffer
    while the test wants the reader stalled.
    """

    def __init__(self, gw: Gateway, trip: dict[str, Any]) -> None:
        self.url = f"{gw.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}"
        self.port = gw.port
        self.protocol = ClientProtocol(parse_uri(self.url), max_size=2**22)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.pending: list[dict[str, Any]] = []

    async def open(self) -> dict[str, Any]:
        """Handshake and the first frame (the snapshot)."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        self.protocol.send_request(self.protocol.connect())
        await loop.sock_sendall(self.sock, b"".join(self.protocol.data_to_send()))
        return await self.next(chunk=512)

    async def next(self, chunk: int = 65536, timeout_s: float = 20) -> dict[str, Any]:
        """The next frame, reading the socket again (in chunks of `chunk` bytes)."""
        loop = asyncio.get_running_loop()
        while not self.pending:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, chunk), timeout_s)
            assert data, "the gateway closed the socket"
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, WsFrame) and event.opcode == Opcode.TEXT:
                    self.pending.append(orjson.loads(event.data))
        return self.pending.pop(0)

    def close(self) -> None:
        self.sock.close()


class Driver:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seq = 0
        self.ts = now_ms() - 600_000

    async def fix(self, lon: float, lat: float, step_ms: int = 200) -> list[dict[str, Any]]:
        self.seq += 1
        self.ts += step_ms
        await self.ws.send(pos(self.seq, lon, lat, self.ts))
        _, seen = await recv_until(self.ws, lambda f: f["type"] == "ack")
        return seen


async def drive_burst_then_arrive(gw: Gateway, trip: dict[str, Any], driver_id: str) -> None:
    """About 3 s of dense back-and-forth fixes, then on to the pickup (a status event)."""
    async with driver_ws(gw.ws_base, token("driver", driver_id)) as ws:
        driver = Driver(ws)
        await driver.fix(*DRIVER_START)
        leg = httpx.get(
            f"{gw.base}/v1/trips/{trip['id']}", headers={"Authorization": f"Bearer {token('ops')}"}
        ).json()["route"]["coordinates"]
        points = walk(leg, 2.0)
        start = time.monotonic()
        # Device time runs 200 ms per fix from 10 min ago: stop the burst well
        # before it reaches the present (a fast gateway acks thousands in 3 s).
        while time.monotonic() - start < 3.0 and driver.ts < now_ms() - 180_000:
            for lon, lat in points[:30] + points[29::-1]:
                await driver.fix(lon, lat)
        for lon, lat in walk(leg, 10.0):
            frames = await driver.fix(lon, lat, step_ms=1000)
            if any(f["type"] == "trip" and f["trip"]["status"] == "arrived_pickup" for f in frames):
                return
        raise AssertionError(f"never arrived at the pickup: {frames}")


def test_a_paused_reader_gets_the_newest_position_and_every_status(
    start_gateway: Callable[..., Gateway],
) -> None:
    """A rider that stops reading is conflated, misses no status; another rider is not delayed."""
    gw = start_gateway(TRACKING_SEND_TIMEOUT_S="10", **ENV)
    trip = Api(gw.base, token("ops")).create_trip(driver_id="d-slow-1")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float]]:
        fast_frames: list[dict[str, Any]] = []
        delays_ms: list[float] = []
        async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as fast:
            await recv_json(fast)  # snapshot
            slow = StalledReader(gw, trip)
            assert (await slow.open())["type"] == "snapshot"

            async def read_fast() -> None:
                while True:
                    frame = orjson.loads(await fast.recv())
                    if "seq" in frame:
                        delays_ms.append(now_ms() - frame["ts"])
                    fast_frames.append(frame)
                    if frame.get("status") == "arrived_pickup":
                        return

            reader = asyncio.create_task(read_fast())
            await drive_burst_then_arrive(gw, trip, "d-slow-1")
            await asyncio.wait_for(reader, 20)
            assert metric(gw.base, "tracking_frames_skipped_total") > 0
            slow_frames: list[dict[str, Any]] = []
            while not slow_frames or slow_frames[-1].get("status") != "arrived_pickup":
                slow_frames.append(await slow.next())
            slow.close()
        return fast_frames, slow_frames, delays_ms

    fast, slow, delays_ms = asyncio.run(scenario())
    events = [f for f in fast if "seq" in f]
    seqs = [f["seq"] for f in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the reading rider skipped events"
    delays_ms.sort()
    assert delays_ms[int(len(delays_ms) * 0.99)] < 1000, delays_ms[-10:]

    slow_events = [f for f in slow if "seq" in f]
    slow_seqs = [f["seq"] for f in slow_events]
    assert slow_seqs == sorted(set(slow_seqs))
    assert len(slow_events) < len(events) / 2, "the stalled rider was not conflated"
    # Only positions and ETAs were skipped; every other event arrived.
    by_seq = {f["seq"]: f for f in events}
    skipped = {by_seq[s]["type"] for s in set(by_seq) - set(slow_seqs) if s > slow_seqs[0]}
    assert skipped <= {"position", "eta"}, skipped
    assert [f for f in slow_events if f["type"] not in ("position", "eta")] == [
        f for f in events if f["type"] not in ("position", "eta") and f["seq"] >= slow_seqs[0]
    ]
    # The newest position is the one the stalled rider ends up with.
    last_position = [f for f in events if f["type"] == "position"][-1]
    assert [f for f in slow_events if f["type"] == "position"][-1] == last_position


def test_a_reader_that_never_reads_is_closed_and_frees_its_slot(
    start_gateway: Callable[..., Gateway],
) -> None:
    """Sends blocked past TRACKING_SEND_TIMEOUT_S close the socket (slow_consumer)."""
    gw = start_gateway(TRACKING_SEND_TIMEOUT_S="1.5", **ENV)
    trip = Api(gw.base, token("ops")).create_trip(driver_id="d-slow-2")

    async def scenario() -> None:
        slow = StalledReader(gw, trip)
        await slow.open()
        assert metric(gw.base, 'tracking_connections{kind="rider"}') == 1
        await drive_burst_then_arrive(gw, trip, "d-slow-2")
        deadline = time.monotonic() + 10
        while metric(gw.base, 'tracking_errors_total{code="slow_consumer"}') < 1:
            assert time.monotonic() < deadline, "the stalled reader was never closed"
            await asyncio.sleep(0.2)
        assert metric(gw.base, 'tracking_connections{kind="rider"}') == 0
        slow.close()

    asyncio.run(scenario())
