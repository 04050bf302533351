"""Apps behind a load balancer: clients that fail over between gateways, and say when.

`FailoverDriver` is the driver app of the protocol: every fix goes into its
:class:`Outbox` first and is sent live while the socket is up. After a
reconnect (to whichever gateway answers next) or an `unavailable` error, it
replays everything unacked as `pos_batch`, one batch per ack, before any
live point, so that no older point ever trails a newer one.

`FailoverRider` is the rider page: after a drop or a 1012 it reconnects to
the next gateway with `since=<last seq>`.

Both record what happened with monotonic timestamps (connects, drops and
their close codes, acks, events) so that fault drills can measure recovery
and audit that nothing was lost (`driver_sim.drill`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from driver_sim.backoff import Backoff
from driver_sim.device import Outbox
from driver_sim.link import MAX_BATCH, batch_frame, frames_until, pos_frame
from tracking.core.messages import Point

FAILOVER_BACKOFF = Backoff(base_s=0.1, factor=2.0, max_s=1.0)
"""A gateway that refuses is skipped at once; the delay grows only while none answers."""
ACK_TIMEOUT_S = 20.0
"""A socket that leaves a batch unanswered this long is dropped and reopened."""
RESEND_DELAY_S = 0.1
"""Pause before replaying after `unavailable`, so as not to hammer a struggling gateway."""
ENDED = 1000
"""The trip channel's close code after a terminal status: nothing more to follow."""


@dataclass(frozen=True, slots=True)
class Drop:
    """A socket that ended: when, on which gateway, with which close code (None: no close frame)."""

    at: float
    url: str
    code: int | None


@dataclass(frozen=True, slots=True)
class Received:
    """A trip-channel event a rider received."""

    at: float
    connection: int
    """Which of the rider's sockets it came on (0 = the first)."""
    seq: int
    type: str
    status: str | None


class FailoverDriver:
    """One driver's app: an outbox, one socket at a time, replay after every reconnect."""

    def __init__(
        self,
        driver_id: str,
        urls: Sequence[str],
        rng: random.Random,
        backoff: Backoff = FAILOVER_BACKOFF,
    ) -> None:
        """`urls` are driver-stream URLs with the token, tried in turn from the first."""
        self.driver_id = driver_id
        self.urls = list(urls)
        self.rng = rng
        self.backoff = backoff
        self.outbox = Outbox()
        self.connected = asyncio.Event()
        self.connects: list[tuple[float, str]] = []
        self.drops: list[Drop] = []
        self.acks: list[tuple[float, int]] = []
        self.errors: Counter[str] = Counter()
        self.points_sent = 0
        self.points_resent = 0
        self.trip: dict[str, Any] | None = None
        self._ws: ClientConnection | None = None
        self._live = False
        """The outbox went out on this socket: a new point may be sent at once."""
        self._lock = asyncio.Lock()
        self._answered = asyncio.Event()
        self._resend = asyncio.Event()

    def fix(self, ts_ms: int, lon: float, lat: float, acc_m: float = 5.0) -> Point:
        """A new fix from the phone's GPS, kept in the outbox until acked."""
        return self.outbox.add(ts_ms, lon, lat, acc_m)

    async def submit(self, point: Point) -> None:
        """Send a point just added to the outbox if the socket is live; it waits there otherwise."""
        self.points_sent += 1
        async with self._lock:
            if self._live and self._ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(pos_frame(point))

    async def drained(self, timeout_s: float) -> bool:
        """Wait until every point is acked or rejected; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.pending:
            self._answered.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), min(remaining, 0.5))
        return True

    def first_ack_after(self, at: float) -> float | None:
        """When the first ack after `at` came, or None."""
        return next((t for t, _ in self.acks if t > at), None)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected to one of the gateways until `stop` is set."""
        failures = 0
        index = 0
        while not stop.is_set():
            url = self.urls[index % len(self.urls)]
            ws: ClientConnection | None = None
            try:
                async with connect(url, open_timeout=5, close_timeout=1) as ws:
                    self._ws = ws
                    self.connects.append((time.monotonic(), url))
                    self.connected.set()
                    failures = 0
                    await self._serve(ws, stop)
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            finally:
                self._ws = None
                self._live = False
                self.connected.clear()
                self._answered.set()
                if ws is not None:
                    self.drops.append(Drop(time.monotonic(), url, ws.close_code))
            if stop.is_set():
                return
            index += 1  # the next gateway: this one is gone or going
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.backoff.delay_s(failures, self.rng))

    async def _serve(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        reader = asyncio.create_task(self._read(ws))
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                await self._flush(ws, reader)
                resend = asyncio.create_task(self._resend.wait())
                done, _ = await asyncio.wait(
                    {reader, stopper, resend}, return_when=asyncio.FIRST_COMPLETED
                )
                resend.cancel()
                if reader in done:
                    reader.result()  # raises ConnectionClosed when the gateway went away
                    return
                if stopper in done:
                    await ws.close()
                    return
                await asyncio.sleep(RESEND_DELAY_S)
        finally:
            for task in (reader, stopper):
                task.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _flush(self, ws: ClientConnection, reader: asyncio.Task[None]) -> None:
        """Replay everything unacked, one batch per ack, then go live."""
        self._live = False
        self._resend.clear()
        sent_through = 0
        while not self._resend.is_set() and not reader.done():
            batch = [p for p in self.outbox.pending if p.seq > sent_through][:MAX_BATCH]
            if not batch:
                # Nothing awaits between this check and going live, so no
                # point can slip in behind a newer one.
                self._live = True
                return
            async with self._lock:
                await ws.send(batch_frame(batch))
            self.points_resent += len(batch)
            sent_through = batch[-1].seq
            if not await self._settled(sent_through, reader):
                ws.transport.abort()  # a stuck socket: reconnect and replay
                return

    async def _settled(self, seq: int, reader: asyncio.Task[None]) -> bool:
        """Wait until every point up to `seq` is answered (or a resend is due, or the socket
        is gone); False if nothing answered within ACK_TIMEOUT_S."""
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while self.outbox.oldest_pending_seq() <= seq:
            if self._resend.is_set() or reader.done():
                return True
            self._answered.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), remaining)
        return True

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._handle(orjson.loads(raw))
        finally:
            self._answered.set()  # whoever waits for an answer: the socket is gone

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ack":
            self.outbox.ack(frame["seq"])
            self.acks.append((time.monotonic(), frame["seq"]))
        elif kind == "error":
            code = frame.get("code", "")
            self.errors[code] += 1
            if "seq" in frame:
                self.outbox.reject(frame["seq"], code)
            elif code == "unavailable":
                # The frame was not stored, nor anything after it: replay the
                # outbox before sending anything new.
                self._live = False
                self._resend.set()
        elif kind == "trip":
            self.trip = frame.get("trip")
        self._answered.set()


class FailoverRider:
    """One rider's trip channel: reconnects with `since` to the next gateway after a drop."""

    def __init__(
        self,
        trip_id: str,
        token: str,
        ws_bases: Sequence[str],
        rng: random.Random,
        backoff: Backoff = FAILOVER_BACKOFF,
    ) -> None:
        """`ws_bases` are gateway bases (`ws://host:port`), tried in turn from the first."""
        self.trip_id = trip_id
        self.token = token
        self.ws_bases = list(ws_bases)
        self.rng = rng
        self.backoff = backoff
        self.start_seq: int | None = None
        """The seq of the first snapshot: the rider is owed every event after it."""
        self.last_seq: int | None = None
        self.received: list[Received] = []
        self.connects: list[tuple[float, str]] = []
        self.drops: list[Drop] = []
        self.resets = 0
        self.repeats = 0
        """Events received at or below a seq already received (must stay 0)."""
        self.ended = False
        self._progress = asyncio.Event()

    def url(self, base: str) -> str:
        since = "" if self.last_seq is None else f"&since={self.last_seq}"
        return f"{base}/v1/trips/{self.trip_id}/ws?token={self.token}{since}"

    async def wait_seq(self, seq: int, timeout_s: float) -> bool:
        """Wait until the rider has seen `seq` (or the trip ended); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.ended and (self.last_seq is None or self.last_seq < seq):
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.5))
        return True

    def live_after(self, at: float) -> float | None:
        """When, after `at`, an event newer than everything seen before `at` arrived."""
        before = [r.seq for r in self.received if r.at <= at]
        floor = max(before, default=self.start_seq or 0)
        return next((r.at for r in self.received if r.at > at and r.seq > floor), None)

    def resumed_after(self, at: float) -> float | None:
        """When the first event came on a socket opened after `at` (a failover), or None."""
        first = next((i for i, (t, _) in enumerate(self.connects) if t > at), None)
        if first is None:
            return None
        return next((r.at for r in self.received if r.connection >= first), None)

    def reconnected_after(self, at: float) -> float | None:
        """When the first socket opened after `at` came up, or None."""
        return next((t for t, _ in self.connects if t > at), None)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the trip until `stop` is set or the trip ends."""
        failures = 0
        index = 0
        while not stop.is_set() and not self.ended:
            base = self.ws_bases[index % len(self.ws_bases)]
            ws: ClientConnection | None = None
            try:
                async with connect(self.url(base), open_timeout=5, max_size=2**22) as ws:
                    self.connects.append((time.monotonic(), base))
                    failures = 0
                    await self._follow(ws, len(self.connects) - 1, stop)
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            finally:
                if ws is not None:
                    self.drops.append(Drop(time.monotonic(), base, ws.close_code))
                    self.ended = self.ended or ws.close_code == ENDED
                self._progress.set()
            if stop.is_set() or self.ended:
                return
            index += 1
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.backoff.delay_s(failures, self.rng))

    async def _follow(self, ws: ClientConnection, connection: int, stop: asyncio.Event) -> None:
        async for raw in frames_until(ws, stop):
            self._handle(orjson.loads(raw), connection)

    def _handle(self, frame: dict[str, Any], connection: int) -> None:
        kind = frame.get("type")
        if kind == "snapshot":
            seq = int(frame["trip"]["seq"])
            if frame.get("reset"):
                self.resets += 1
            if self.start_seq is None:
                self.start_seq = seq
            self.last_seq = seq
        elif "seq" in frame:
            seq = int(frame["seq"])
            if self.last_seq is not None and seq <= self.last_seq:
                self.repeats += 1
                return
            self.received.append(
                Received(time.monotonic(), connection, seq, str(kind), frame.get("status"))
            )
            self.last_seq = seq
        self._progress.set()
