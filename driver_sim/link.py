"""A driver app's connection: survives tunnels, dropped sockets and server restarts.

Every point goes into the :class:`Outbox` first. While connected and in
signal, it is sent at once as `pos`; everything still unacked is sent again
as `pos_batch` after a reconnect or when the signal comes back. The server
stores a resent point once, so nothing acked is ever lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from driver_sim.backoff import Backoff
from driver_sim.device import Outbox
from driver_sim.stats import Stats
from tracking.core.messages import Point, driver_inbound_adapter

log = logging.getLogger(__name__)

MAX_BATCH = 500
FATAL_CLOSE_CODES = {4401, 4403}
"""A refused token will not get better by retrying."""
UNAVAILABLE_BACKOFF = Backoff(base_s=0.2, factor=2.0, max_s=5.0)
"""Replaying after `unavailable` (Redis unreachable, a failover under way):
soon, then less often while the gateway keeps refusing."""


def pos_frame(point: Point) -> str:
    return orjson.dumps({"type": "pos", **point.model_dump(exclude_none=True)}).decode()


def batch_frame(points: list[Point]) -> str:
    return orjson.dumps(
        {"type": "pos_batch", "points": [p.model_dump(exclude_none=True) for p in points]}
    ).decode()


class DriverLink:
    """One driver's WebSocket to the gateway, reconnecting with jittered backoff."""

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        stats: Stats,
        rng: random.Random,
        on_trip: Callable[[dict[str, Any]], None],
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url
        self.outbox = outbox
        self.stats = stats
        self.rng = rng
        self.on_trip = on_trip
        self.backoff = backoff or Backoff()
        self.in_signal = True
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._answered = asyncio.Event()
        """Set whenever the server acks or rejects a point."""
        self._flushed = False
        """True once the buffer went out on this connection: the server drops a
        seq at or below one it stored, so older points must never trail newer."""
        self._refusals = 0
        """`unavailable` answers in a row (reset by an ack): the replay's backoff."""
        self._refused_total = 0
        """Every `unavailable` answer so far: a replay in progress stops at a new one."""
        self._replayer: asyncio.Task[None] | None = None

    async def submit(self, point: Point) -> None:
        """Send a point just added to the outbox, if we can; it stays buffered otherwise."""
        self.stats.points_sent += 1
        async with self._send_lock:
            if self.in_signal and self._flushed:
                await self._send_unlocked(pos_frame(point))

    async def set_signal(self, in_signal: bool) -> None:
        """Enter or leave a tunnel; leaving it replays the buffer as `pos_batch`."""
        was = self.in_signal
        self.in_signal = in_signal
        if not in_signal:
            self._flushed = False
        elif not was:
            self.stats.dropouts += 1
            await self._flush()

    async def action(self, trip_id: str, action: str) -> None:
        frame = {"type": "action", "trip_id": trip_id, "action": action}
        async with self._send_lock:
            await self._send_unlocked(orjson.dumps(frame).decode())

    async def drop(self) -> None:
        """Lose the connection abruptly, as a phone switching networks does."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.transport.abort()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                async with connect(self.url, open_timeout=10, close_timeout=2) as ws:
                    self._ws = ws
                    self.connected.set()
                    failures = 0
                    reader = asyncio.create_task(self._read(ws, stop))
                    await self._flush()
                    await reader
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                if code in FATAL_CLOSE_CODES:
                    log.error("%s: refused (%s); giving up", self.url, code)
                    stop.set()
                    return
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
                log.debug("connect failed: %s", exc)
            finally:
                self._ws = None
                self._flushed = False
                self._answered.set()
                self.connected.clear()
            if stop.is_set():
                return
            failures += 1
            self.stats.reconnects += 1
            delay = self.backoff.delay_s(failures, self.rng)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def drained(self, timeout_s: float) -> bool:
        """Wait until every point is acked or rejected; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.outbox.pending:
            self._answered.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), min(remaining, 1.0))
        return True

    async def close(self) -> None:
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _read(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        async for raw in frames_until(ws, stop):
            self._handle(raw)

    def _handle(self, raw: str | bytes) -> None:
        frame = driver_inbound_adapter.validate_json(raw)
        kind = frame["type"]
        if kind == "ack":
            self.stats.points_acked += self.outbox.ack(frame["seq"])
            self._refusals = 0
            self._answered.set()
        elif kind == "error":
            self.stats.errors[frame["code"]] += 1
            if "seq" in frame:
                self.outbox.reject(frame["seq"], frame["code"])
                self._answered.set()
            elif frame["code"] == "unavailable":
                self._refused()
        elif kind == "trip":
            self.on_trip(frame["trip"])

    def _refused(self) -> None:
        """The gateway could not store a frame, nor will it store anything after it
        until that is resent (docs/protocol.md): buffer, and replay in a while."""
        self._refusals += 1
        self._refused_total += 1
        self._flushed = False
        self._answered.set()
        if self._replayer is None or self._replayer.done():
            delay = UNAVAILABLE_BACKOFF.delay_s(self._refusals, self.rng)
            self._replayer = asyncio.create_task(self._replay_after(delay))

    async def _replay_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not self._flushed:
            await self._flush()

    async def _flush(self) -> None:
        """Replay everything unacked, one batch per ack, then go live.

        Stops early if the gateway refuses a batch (`unavailable`): the
        replay that refusal scheduled starts over from the oldest point.
        """
        sent_through = 0
        refused = self._refused_total
        while self.in_signal and self._ws is not None:
            batch = [p for p in self.outbox.pending if p.seq > sent_through][:MAX_BATCH]
            if not batch:
                # Nothing awaits between this check and going live, so no
                # point can slip in behind a newer one.
                self._flushed = True
                return
            self.stats.points_resent += len(batch)
            async with self._send_lock:
                await self._send_unlocked(batch_frame(batch))
            sent_through = batch[-1].seq
            await self._acked(sent_through)
            if self._refused_total != refused:
                return

    async def _acked(self, seq: int, timeout_s: float = 10.0) -> None:
        """Wait until every point up to `seq` is acked or rejected (or we lose the socket)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        refused = self._refused_total
        while self._ws is not None and self.outbox.oldest_pending_seq() <= seq:
            if self._refused_total != refused:
                return
            self._answered.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), remaining)

    async def _send_unlocked(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)


async def frames_until(ws: ClientConnection, stop: asyncio.Event) -> AsyncIterator[str | bytes]:
    """Frames from `ws` until `stop` is set, then the socket is closed."""
    stopper = asyncio.create_task(stop.wait())
    try:
        while True:
            receive = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                receive.cancel()
                with contextlib.suppress(BaseException):
                    await receive
                await ws.close()
                return
            yield receive.result()
    finally:
        stopper.cancel()
