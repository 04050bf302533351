"""Load generator processes for bench/throughput.py: drivers and riders, three dialects.

One process runs many sockets of one role on uvloop. Every target gets the
same frames (our `pos` frame, a few hundred bytes with the fix's epoch-ms
`ts`) and the same client code, so the clients cost the same per message
whichever server is measured:

- `raw`: bench/peers/raw_relay.py; a driver's frames come back to riders
  verbatim, each frame is answered with one `a`.
- `ours`: the gateway; `pos` frames on the driver stream, cumulative acks,
  `position` events (with `fix_ts`) on the trip channel.
- `sio`: the Socket.IO peer; `pos` emitted with an ack id, relayed to the
  trip's room.

Latency is rider receipt time minus the fix's `ts` (epoch ms; the clients
and servers share this machine's clock). The ms `ts` makes each figure up to
1 ms high, the same for every target.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.peers.eio import SocketIOClient


@dataclass(slots=True)
class DriverSpec:
    url: str
    trip_id: str
    route: list[tuple[float, float]]
    first_seq: int = 1


@dataclass(slots=True)
class Plan:
    """What one client process does, and when (epoch seconds)."""

    target: str
    role: str
    drivers: list[DriverSpec] = field(default_factory=list)
    rider_urls: list[str] = field(default_factory=list)
    window: int = 0
    """Saturation: frames in flight per driver (0: send at `hz` instead)."""
    hz: float = 1.0
    step_m: float = 10.0
    go: float = 0.0
    measure_from: float = 0.0
    measure_to: float = 0.0
    stop: float = 0.0


@dataclass(slots=True)
class Outcome:
    connected: int = 0
    sent: int = 0
    acked: int = 0
    errors: int = 0
    delivered: int = 0
    """Positions received by riders inside the measurement window."""
    other_frames: int = 0
    latency_ms: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    ack_ms: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    closed_early: int = 0
    stalled: int = 0
    """Drivers that got no ack in their last 2 s with frames in flight."""
    error_codes: dict[str, int] = field(default_factory=dict)
    close_codes: dict[str, int] = field(default_factory=dict)


class Walker:
    """Positions along a polyline, `step_m` apart; stops at 70 % of it."""

    def __init__(self, route: list[tuple[float, float]], step_m: float) -> None:
        self.points = route
        self.step_m = step_m
        self.leg = 0
        self.along = 0.0
        lengths = [_metres(a, b) for a, b in zip(route, route[1:], strict=False)]
        self.lengths = lengths
        self.stop_at = 0.7 * sum(lengths)
        self.done_m = 0.0

    def next(self) -> tuple[float, float]:
        if self.done_m < self.stop_at:
            self.done_m += self.step_m
            self.along += self.step_m
            while self.leg < len(self.lengths) - 1 and self.along > self.lengths[self.leg]:
                self.along -= self.lengths[self.leg]
                self.leg += 1
        a, b = self.points[self.leg], self.points[self.leg + 1]
        f = min(1.0, self.along / self.lengths[self.leg]) if self.lengths[self.leg] else 0.0
        return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    kx = 111_320.0 * math.cos(math.radians(a[1]))
    return math.hypot((b[0] - a[0]) * kx, (b[1] - a[1]) * 110_540.0)


def pos_frame(seq: int, lon: float, lat: float) -> dict[str, Any]:
    return {
        "type": "pos",
        "seq": seq,
        "ts": time.time_ns() // 1_000_000,
        "lon": round(lon, 7),
        "lat": round(lat, 7),
        "acc": 5.0,
        "speed": 8.0,
    }


async def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


class Driver:
    def __init__(self, plan: Plan, spec: DriverSpec, out: Outcome) -> None:
        self.plan = plan
        self.spec = spec
        self.out = out
        self.inflight: deque[tuple[int, float]] = deque()
        self.room = asyncio.Event()
        self.room.set()
        self.walker = Walker(spec.route, plan.step_m)
        self.last_ack = time.monotonic()

    def _acked_through(self, seq: int) -> None:
        self.last_ack = time.monotonic()
        now = time.perf_counter()
        in_window = self.plan.measure_from <= time.time() < self.plan.measure_to
        while self.inflight and self.inflight[0][0] <= seq:
            _, sent = self.inflight.popleft()
            self.out.acked += 1
            if in_window:
                self.out.ack_ms.append((now - sent) * 1000)
        if len(self.inflight) < max(1, self.plan.window):
            self.room.set()

    async def run(self) -> None:
        plan = self.plan
        if plan.target == "sio":
            client = await SocketIOClient.connect(self.spec.url)
            send = self._sio_sender(client)
            receive = self._sio_receiver(client)
            close = client.close
        else:
            ws = await connect(self.spec.url, compression=None, max_queue=None)
            send = self._ws_sender(ws)
            receive = self._ws_receiver(ws)
            close = ws.close
        self.out.connected += 1
        reader = asyncio.create_task(receive)
        try:
            await self._send_loop(send)
            await asyncio.sleep(0.5)  # the last acks
        except (ConnectionClosed, OSError) as exc:
            self.out.closed_early += 1
            rcvd = getattr(exc, "rcvd", None)
            code = f"driver {rcvd.code} {rcvd.reason}" if rcvd else type(exc).__name__
            self.out.close_codes[code] = self.out.close_codes.get(code, 0) + 1
        finally:
            reader.cancel()
            with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                async with asyncio.timeout(5):
                    await close()

    def _ws_sender(self, ws: Any) -> Any:
        async def send(frame: dict[str, Any]) -> None:
            await ws.send(orjson.dumps(frame).decode())

        return send

    def _sio_sender(self, client: SocketIOClient) -> Any:
        async def send(frame: dict[str, Any]) -> None:
            await client.emit("pos", frame, ack_id=frame["seq"])

        return send

    async def _send_loop(self, send: Any) -> None:
        plan = self.plan
        await _sleep_until(plan.go)
        seq = self.spec.first_seq
        period = 1.0 / plan.hz if plan.hz > 0 else 0.0
        # Spread the drivers' sends over the period instead of all at once.
        next_at = plan.go + (hash(self.spec.trip_id) % 1000) / 1000 * period
        while time.time() < plan.stop:
            if plan.window:
                try:
                    async with asyncio.timeout(max(0.0, plan.stop - time.time())):
                        await self.room.wait()
                except TimeoutError:
                    if time.monotonic() - self.last_ack > 2.0:
                        self.out.stalled += 1  # acks stopped coming: a server problem
                    break
            else:
                await _sleep_until(next_at)
                next_at += period
            lon, lat = self.walker.next()
            frame = pos_frame(seq, lon, lat)
            self.inflight.append((seq, time.perf_counter()))
            if plan.window and len(self.inflight) >= plan.window:
                self.room.clear()
            await send(frame)
            self.out.sent += 1
            seq += 1

    async def _ws_receiver(self, ws: Any) -> None:
        raw_target = self.plan.target == "raw"
        async for message in ws:
            if raw_target:
                if self.inflight:
                    self._acked_through(self.inflight[0][0])
                continue
            frame = orjson.loads(message)
            kind = frame.get("type")
            if kind == "ack":
                self._acked_through(frame["seq"])
            elif kind == "error":
                self.out.errors += 1
                code = str(frame.get("code"))
                self.out.error_codes[code] = self.out.error_codes.get(code, 0) + 1

    async def _sio_receiver(self, client: SocketIOClient) -> None:
        while True:
            kind, ident, _ = await client.recv()
            if kind == "ack":
                self._acked_through(int(ident))  # type: ignore[call-overload]


async def _ride(plan: Plan, url: str, out: Outcome, ready: asyncio.Queue[bool]) -> None:
    try:
        if plan.target == "sio":
            client = await SocketIOClient.connect(url)
            ready.put_nowait(True)
            out.connected += 1
            while True:
                kind, name, data = await client.recv()
                if kind == "event" and name == "pos":
                    _count(plan, out, data["ts"])  # type: ignore[index]
        async with connect(url, compression=None, max_queue=None) as ws:
            if plan.target == "ours":
                await ws.recv()  # the snapshot
            ready.put_nowait(True)
            out.connected += 1
            async for message in ws:
                event = orjson.loads(message)
                if plan.target == "raw":
                    _count(plan, out, event["ts"])
                elif event.get("type") == "position":
                    _count(plan, out, event["fix_ts"])
                else:
                    out.other_frames += 1
    except (ConnectionClosed, OSError) as exc:
        if time.time() < plan.stop:
            out.closed_early += 1
            rcvd = getattr(exc, "rcvd", None)
            code = f"{rcvd.code} {rcvd.reason}" if rcvd else type(exc).__name__
            out.close_codes[code] = out.close_codes.get(code, 0) + 1
        ready.put_nowait(False)


def _count(plan: Plan, out: Outcome, fix_ts: int) -> None:
    now = time.time()
    if plan.measure_from <= now < plan.measure_to:
        out.delivered += 1
        out.latency_ms.append(now * 1000 - fix_ts)


async def _run(plan: Plan, conn: Any) -> Outcome:
    out = Outcome()
    if plan.role == "rider":
        ready: asyncio.Queue[bool] = asyncio.Queue()
        sem = asyncio.Semaphore(200)

        async def ride(url: str) -> None:
            async with sem:
                task = asyncio.create_task(_ride(plan, url, out, ready))
                await ready.get()
            await task

        tasks = [asyncio.create_task(ride(u)) for u in plan.rider_urls]
        while out.connected < len(plan.rider_urls) and out.closed_early == 0:
            await asyncio.sleep(0.05)
        conn.send(("connected", out.connected))
        await _sleep_until(plan.stop + 1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return out
    drivers = [Driver(plan, spec, out) for spec in plan.drivers]
    conn.send(("connected", len(drivers)))
    await asyncio.gather(*(d.run() for d in drivers), return_exceptions=True)
    return out


def worker(plan: Plan, conn: Any) -> None:
    """Entry point of a client process: runs `plan`, sends back its Outcome."""
    out = uvloop.run(_run(plan, conn))
    conn.send(("done", out))
    conn.close()
