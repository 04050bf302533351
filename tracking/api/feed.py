"""One client's view of a trip channel: snapshot or replay, then live events in seq order.

Shared by the WebSocket and the SSE endpoint. Live events come from the
process's fan-out; a gap in seq (a message lost while Redis reconnected, or
published before our subscription took effect) is filled from the trip's
stream, so a client never misses an event it is owed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from tracking.api import metrics
from tracking.core import trip as core
from tracking.core.errors import SlowConsumer
from tracking.core.messages import TERMINAL
from tracking.core.outbox import Outbox
from tracking.service import TrackingService
from tracking.store import keys
from tracking.store.fanout import FanOut

MAX_BACKLOG = 10_000
"""Pub/sub messages not yet taken from a feed: a safety net, `Conflated` keeps it near 0."""
MAX_KEPT = 1_000
"""Unskippable frames (status, route, signal, snapshots) owed to one reader before it is cut."""
SKIPPABLE = frozenset({"position", "eta", "heartbeat"})
"""Frames a slow reader gets only the newest of (the contract allows it)."""


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    seq: int | None
    """Where a client resumes after this frame (an event's seq, a snapshot's trip seq)."""
    final: bool = False
    """The last frame: the trip reached a terminal state."""
    kind: str = ""
    """The frame's `type`."""


class TripFeed:
    """Async context manager yielding the frames one client should receive."""

    def __init__(
        self,
        service: TrackingService,
        fanout: FanOut,
        trip_id: str,
        since: int | None,
        heartbeat_s: float,
    ) -> None:
        self.service = service
        self.fanout = fanout
        self.trip_id = trip_id
        self.since = since
        self.heartbeat_s = heartbeat_s
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._channel = keys.trip_channel(trip_id)
        self.last = 0
        """Seq of the last event delivered (or included in the snapshot)."""

    def _on_message(self, data: bytes) -> None:
        self._queue.put_nowait(data)

    async def __aenter__(self) -> TripFeed:
        # Subscribe before reading state so nothing falls between the two.
        await self.fanout.add(self._channel, self._on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fanout.remove(self._channel, self._on_message)

    async def frames(self) -> AsyncIterator[Frame]:
        state = await self.service.get_trip(self.trip_id)
        self.last = state.seq
        replay = None
        # A client ahead of the stored seq saw events this Redis no longer has
        # (a failover that lost writes): it gets a reset snapshot.
        if self.since is not None and self.since <= state.seq:
            replay = await self.service.store.events_after(self.trip_id, self.since, state.seq)
        if self.since is not None and replay is not None:
            for i, data in enumerate(replay):
                yield _event_frame(data, self.since + i + 1)
        else:
            snapshot: dict[str, object] = {"type": "snapshot", "trip": core.view(state)}
            if self.since is not None:
                snapshot["reset"] = True
            yield Frame(
                orjson.dumps(snapshot), state.seq, final=state.status in TERMINAL, kind="snapshot"
            )
        if state.status in TERMINAL:
            return
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can
                # swallow a cancel that lands with an event, and the feed
                # would outlive its client.
                async with asyncio.timeout(self.heartbeat_s):
                    data = await self._queue.get()
            except TimeoutError:
                # A quiet trip, or a lost publish (say, of the final status
                # while Redis reconnected): the stored seq tells which.
                current = await self.service.get_trip(self.trip_id)
                if current.seq > self.last:
                    async for frame in self._catch_up(current.seq):
                        yield frame
                        if frame.final:
                            return
                beat = {"type": "heartbeat", "ts": time.time_ns() // 1_000_000}
                yield Frame(orjson.dumps(beat), None, kind="heartbeat")
                continue
            if self._queue.qsize() > MAX_BACKLOG:
                raise SlowConsumer(f"more than {MAX_BACKLOG} events behind")
            event = orjson.loads(data)
            seq = event["seq"]
            if seq <= self.last:
                continue
            if seq > self.last + 1:
                async for frame in self._catch_up(seq - 1):
                    yield frame
                    if frame.final:
                        return
                if seq <= self.last:  # the catch-up was a reset snapshot past this event
                    continue
            self.last = seq
            terminal = _is_terminal(event)
            yield Frame(data, seq, final=terminal, kind=str(event.get("type", "")))
            if terminal:
                return

    async def _catch_up(self, through_seq: int) -> AsyncIterator[Frame]:
        """Events (last, through_seq] from the stream, or a reset snapshot if gone."""
        missing = await self.service.store.events_after(self.trip_id, self.last, through_seq)
        if missing is None:
            current = await self.service.get_trip(self.trip_id)
            reset = {"type": "snapshot", "trip": core.view(current), "reset": True}
            self.last = current.seq
            yield Frame(
                orjson.dumps(reset), current.seq, final=current.status in TERMINAL, kind="snapshot"
            )
            return
        for data in missing:
            self.last += 1
            yield _event_frame(data, self.last)


class Conflated:
    """`frames` at the pace the reader takes them, skipping superseded positions and ETAs.

    A task keeps draining `frames` into an `Outbox` while the reader is busy
    (a send blocked on a full socket), so a slow reader costs one pending
    frame per skippable kind plus what it must not miss, never a backlog,
    and never holds up the fan-out for the other readers.

    Use as `async with Conflated(feed.frames()) as frames: async for frame in
    frames`: leaving the block stops the task, however the reader ends (an
    async generator would leave it running when its reader is cancelled).

    Raises (from iteration):
        SlowConsumer: the reader is owed more than `max_kept` unskippable frames.
    """

    def __init__(
        self, frames: AsyncIterator[Frame], trip_id: str = "", max_kept: int = MAX_KEPT
    ) -> None:
        self._frames = frames
        self._trip_id = trip_id
        self._outbox: Outbox[Frame] = Outbox(max_kept)
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._finished = False
        self._producer: asyncio.Task[None] | None = None
        self._stopped = False

    async def __aenter__(self) -> Conflated:
        self._producer = asyncio.create_task(self._produce(), name="feed-producer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        producer = self._producer
        if producer is None or producer.done():
            return
        # The reader is gone: the handler must not wait for the task. A
        # cancel can fail to land while the feed is inside redis-py or
        # Python 3.11's timeout machinery (seen under load), so the task also
        # stops by itself at its next frame (a heartbeat at the latest).
        self._stopped = True
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({producer}, timeout=0.05)

    def __aiter__(self) -> Conflated:
        return self

    async def __anext__(self) -> Frame:
        while True:
            if self._failure is not None:
                raise self._failure
            frame = self._outbox.pop()
            if frame is not None:
                return frame
            if self._finished:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def _produce(self) -> None:
        try:
            async for frame in self._frames:
                if self._stopped:
                    return
                key = frame.kind if frame.kind in SKIPPABLE else None
                self._outbox.push(frame, key, time.monotonic_ns() // 1_000_000)
                if self._outbox.skipped:
                    metrics.FRAMES_SKIPPED.inc(self._outbox.skipped)
                    self._outbox.skipped = 0
                self._ready.set()
                if frame.final:
                    return
        except Exception as exc:  # handed to the reader, raised in its task
            self._failure = exc
        finally:
            self._finished = True
            self._ready.set()


def _event_frame(data: bytes, seq: int) -> Frame:
    event = orjson.loads(data)
    return Frame(data, seq, final=_is_terminal(event), kind=str(event.get("type", "")))


def _is_terminal(event: dict[str, object]) -> bool:
    return event.get("type") == "status" and event.get("status") in TERMINAL
