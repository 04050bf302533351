"""One client's view of a trip channel: snapshot or replay, then live events in seq order.

Shared by the WebSocket and the SSE endpoint. The fan-out pushes each live
event into every reader's outbox from its own callback (decoded once for
all of them); the reader's sender takes frames out as fast as its socket
lets it. So a reader costs no task and no timer per event, and a slow one
never holds up the others: what it is owed waits in its outbox, where a
newer `position` or `eta` replaces one that has waited 250 ms (`Outbox`).

A gap in seq (a message lost while Redis reconnected, or published before
our subscription took effect) is filled from the trip's stream, so a
client never misses an event it is owed. Heartbeats and the send deadline
are kept by one `Ticker` per process, not a timer per reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson

from tracking.api import metrics
from tracking.core import trip as core
from tracking.core.errors import NotFound, SlowConsumer
from tracking.core.messages import TERMINAL
from tracking.core.outbox import Outbox
from tracking.service import TrackingService
from tracking.store import keys
from tracking.store.fanout import FanOut
from tracking.store.trips import TripStore

log = logging.getLogger(__name__)

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
    """Frames for one reader: `async with feed: async for frame in feed`.

    Raises (from iteration):
        SlowConsumer: the reader is owed more than `max_kept` unskippable
            frames, or a send stayed blocked past the ticker's send timeout.
        TrackingError: the trip cannot be read (NotFound, Unavailable).
    """

    def __init__(
        self,
        service: TrackingService,
        fanout: FanOut,
        ticker: Ticker,
        trip_id: str,
        since: int | None,
        max_kept: int = MAX_KEPT,
    ) -> None:
        self.service = service
        self.fanout = fanout
        self.ticker = ticker
        self.trip_id = trip_id
        self.since = since
        self._channel = keys.trip_channel(trip_id)
        self._outbox: Outbox[Frame] = Outbox(max_kept)
        self._wake = asyncio.Event()
        self.last = 0
        """Seq of the last event queued (or included in the snapshot)."""
        self._live = False
        """Snapshot or replay queued: live events go to the outbox."""
        self._early: list[Frame] = []
        self._behind_through = 0
        """A live event came past `last + 1`: read the stream through this seq first."""
        self._done = False
        self._failure: BaseException | None = None
        self.taken_at = time.monotonic()
        """When the reader last took a frame (quiet for a heartbeat since then)."""
        self.beat_due = False
        """Asked for a heartbeat; the ticker is reading the trip's seq."""
        self._beat_after_catch_up = False
        self.sending_since: float | None = None
        """Set by the sender while a send is in progress."""
        self.sender: asyncio.Task[object] | None = None

    async def __aenter__(self) -> TripFeed:
        # Subscribe before reading state so nothing falls between the two.
        await self.fanout.add(self._channel, self._on_message)
        self.ticker.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ticker.discard(self)
        await self.fanout.remove(self._channel, self._on_message)

    # --- pushed by the fan-out and the ticker (no awaiting here) -------------

    def _on_message(self, data: bytes) -> None:
        frame = live_frame(data)
        if frame is None:
            return
        if not self._live:
            self._early.append(frame)
        else:
            self._offer(frame)

    def _offer(self, frame: Frame) -> None:
        assert frame.seq is not None
        if self._done or self._failure is not None:
            return
        if frame.seq <= self.last or frame.seq <= self._behind_through:
            return  # seen, or the catch-up will read it from the stream
        if frame.seq > self.last + 1 or self._behind_through:
            self._behind_through = frame.seq
            self._wake.set()
            return
        self._queue(frame)

    def _queue(self, frame: Frame) -> None:
        if frame.seq is not None:
            self.last = frame.seq
        key = frame.kind if frame.kind in SKIPPABLE else None
        try:
            self._outbox.push(frame, key, time.monotonic_ns() // 1_000_000)
        except SlowConsumer as exc:
            self._failure = exc
        if self._outbox.skipped:
            metrics.FRAMES_SKIPPED.inc(self._outbox.skipped)
            self._outbox.skipped = 0
        if frame.final:
            self._done = True
        self._wake.set()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def fail(self, exc: BaseException) -> None:
        """Stop the feed: the reader's next frame raises `exc`."""
        if self._failure is None:
            self._failure = exc
        self._wake.set()

    def beat(self, stored_seq: int | None) -> None:
        """The ticker: quiet for a heartbeat interval; the trip's stored seq is `stored_seq`.

        Events the reader missed (a publish lost while Redis reconnected, say
        the final status) are sent first, then the heartbeat. `None`: the
        seq could not be read (Redis unreachable): the heartbeat goes alone.
        """
        self.beat_due = False
        if stored_seq is not None and stored_seq > self.last and self._live:
            self._behind_through = max(self._behind_through, stored_seq)
            self._beat_after_catch_up = True
        else:
            self._queue_heartbeat()
        self._wake.set()

    def _queue_heartbeat(self) -> None:
        if not self._done:
            self._queue(Frame(b'{"type":"heartbeat","ts":%d}' % _now_ms(), None, kind="heartbeat"))

    # --- pulled by the reader's sender ----------------------------------------

    def __aiter__(self) -> TripFeed:
        return self

    async def __anext__(self) -> Frame:
        if self.sender is None:
            self.sender = asyncio.current_task()
        while True:
            if self._failure is not None:
                raise self._failure
            if not self._live:
                await self._start()
                continue
            if self._behind_through > self.last:
                await self._catch_up(self._behind_through)
                if self._beat_after_catch_up and not self._behind_through:
                    self._beat_after_catch_up = False
                    self._queue_heartbeat()
                continue
            frame = self._outbox.pop()
            if frame is not None:
                self.taken_at = time.monotonic()
                return frame
            if self._done:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def _start(self) -> None:
        state = await self.service.get_trip(self.trip_id)
        replay = None
        # A client ahead of the stored seq saw events this Redis no longer has
        # (a failover that lost writes): it gets a reset snapshot.
        if self.since is not None and self.since <= state.seq:
            replay = await self.service.store.events_after(self.trip_id, self.since, state.seq)
        if self.since is not None and replay is not None:
            self.last = self.since
            for i, data in enumerate(replay):
                self._queue(_event_frame(data, self.since + i + 1))
        else:
            snapshot: dict[str, object] = {"type": "snapshot", "trip": core.view(state)}
            if self.since is not None:
                snapshot["reset"] = True
            self._queue(
                Frame(
                    exact(orjson.dumps(snapshot)),
                    state.seq,
                    final=state.status in TERMINAL,
                    kind="snapshot",
                )
            )
        self._done = self._done or state.status in TERMINAL
        self._live = True
        early, self._early = self._early, []
        for frame in early:
            self._offer(frame)

    async def _catch_up(self, through_seq: int) -> None:
        """Queue events (last, through_seq] from the stream, or a reset snapshot if gone."""
        missing = await self.service.store.events_after(self.trip_id, self.last, through_seq)
        if missing is None:
            current = await self.service.get_trip(self.trip_id)
            reset = {"type": "snapshot", "trip": core.view(current), "reset": True}
            self._queue(
                Frame(
                    exact(orjson.dumps(reset)),
                    current.seq,
                    final=current.status in TERMINAL,
                    kind="snapshot",
                )
            )
        else:
            for data in missing:
                if self._done:
                    break
                self._queue(_event_frame(data, self.last + 1))
        if self._behind_through <= self.last:
            self._behind_through = 0


class Ticker:
    """One task per process for every reader's heartbeat and send deadline.

    Each tick, a reader whose send has been blocked for `send_timeout_s`
    (its client stopped reading) is failed with SlowConsumer and its sender
    cancelled out of the blocked send. Readers quiet for `heartbeat_s` get
    a heartbeat, after any events they missed: the stored seq of each of
    their trips is read once per tick for all of them, in one round trip.
    """

    def __init__(self, store: TripStore, heartbeat_s: float, send_timeout_s: float) -> None:
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self.period_s = min(1.0, heartbeat_s / 4, send_timeout_s / 4)
        self._feeds: set[TripFeed] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, feed: TripFeed) -> None:
        self._feeds.add(feed)

    def discard(self, feed: TripFeed) -> None:
        self._feeds.discard(feed)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feed-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            due = self.tick(time.monotonic())
            if due:
                await self._beat(due)

    def tick(self, now: float) -> list[TripFeed]:
        """Cut stuck senders; returns the readers due for a heartbeat."""
        due = []
        for feed in tuple(self._feeds):
            sending = feed.sending_since
            if sending is not None and now - sending >= self.send_timeout_s:
                feed.fail(SlowConsumer(f"a send stayed blocked for {self.send_timeout_s:g} s"))
                if feed.sender is not None:
                    feed.sender.cancel()
            elif sending is None and not feed.beat_due and now - feed.taken_at >= self.heartbeat_s:
                feed.beat_due = True
                due.append(feed)
        return due

    async def _beat(self, due: list[TripFeed]) -> None:
        trip_ids = sorted({feed.trip_id for feed in due})
        try:
            seqs: dict[str, int | None] = await self.store.stored_seqs(trip_ids)
        except Exception as exc:  # Redis unreachable: beat without the check
            log.info("heartbeat check skipped: %s", exc)
            seqs = {}
        for feed in due:
            if feed.trip_id in seqs and seqs[feed.trip_id] is None:
                feed.fail(NotFound(f"trip {feed.trip_id} is gone"))
            else:
                feed.beat(seqs.get(feed.trip_id))


_decoded: tuple[bytes, Frame | None] = (b"", None)


def live_frame(data: bytes) -> Frame | None:
    """The Frame of a published event (None if it is not one), decoded once for every reader.

    The fan-out hands the same bytes object to each listener of a channel
    in turn, so remembering the last one decodes each message once.
    """
    global _decoded
    if _decoded[0] is data:
        return _decoded[1]
    try:
        event = orjson.loads(data)
        frame: Frame | None = Frame(
            data, int(event["seq"]), final=_is_terminal(event), kind=str(event.get("type", ""))
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        frame = None
    _decoded = (data, frame)
    return frame


def exact(data: bytes) -> bytes:
    """A copy of exactly `data`'s size: orjson's result keeps a 4 KB buffer even
    for a few bytes, and a reader holds its last frame while it idles."""
    return bytes(memoryview(data))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event_frame(data: bytes, seq: int) -> Frame:
    event = orjson.loads(data)
    return Frame(data, seq, final=_is_terminal(event), kind=str(event.get("type", "")))


def _is_terminal(event: dict[str, object]) -> bool:
    return event.get("type") == "status" and event.get("status") in TERMINAL
