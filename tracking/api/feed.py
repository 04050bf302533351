"""One client's view of a trip channel: snapshot or replay, then live events in seq order.

Shared by the WebSocket and the SSE endpoint. Live events come from the
process's fan-out; a gap in seq (a message lost while Redis reconnected, or
published before our subscription took effect) is filled from the trip's
stream, so a client never misses an event it is owed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from tracking.core import trip as core
from tracking.core.errors import TrackingError
from tracking.core.messages import TERMINAL
from tracking.service import TrackingService
from tracking.store import keys
from tracking.store.fanout import FanOut

MAX_BACKLOG = 10_000
"""A client this far behind is not reading; it is disconnected."""


class SlowConsumer(TrackingError):
    """The client does not read its events fast enough."""

    code = "slow_consumer"


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    seq: int | None
    """Where a client resumes after this frame (an event's seq, a snapshot's trip seq)."""
    final: bool = False
    """The last frame: the trip reached a terminal state."""


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
                yield Frame(data, self.since + i + 1, final=_is_terminal(orjson.loads(data)))
        else:
            snapshot: dict[str, object] = {"type": "snapshot", "trip": core.view(state)}
            if self.since is not None:
                snapshot["reset"] = True
            yield Frame(orjson.dumps(snapshot), state.seq, final=state.status in TERMINAL)
        if state.status in TERMINAL:
            return
        while True:
            try:
                data = await asyncio.wait_for(self._queue.get(), self.heartbeat_s)
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
                yield Frame(orjson.dumps(beat), None)
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
            yield Frame(data, seq, final=terminal)
            if terminal:
                return

    async def _catch_up(self, through_seq: int) -> AsyncIterator[Frame]:
        """Events (last, through_seq] from the stream, or a reset snapshot if gone."""
        missing = await self.service.store.events_after(self.trip_id, self.last, through_seq)
        if missing is None:
            current = await self.service.get_trip(self.trip_id)
            reset = {"type": "snapshot", "trip": core.view(current), "reset": True}
            self.last = current.seq
            yield Frame(orjson.dumps(reset), current.seq, final=current.status in TERMINAL)
            return
        for data in missing:
            self.last += 1
            yield Frame(data, self.last, final=_is_terminal(orjson.loads(data)))


def _is_terminal(event: dict[str, object]) -> bool:
    return event.get("type") == "status" and event.get("status") in TERMINAL
