"""One pub/sub connection read directly: subscribe, confirm, reconnect, resubscribe.

`FanOut` (store/fanout.py) keeps one of these per gateway process on one
Redis, or one per node on a Redis Cluster (shard channels, `SSUBSCRIBE`).
The connection is read directly (RESP parsed by hiredis): every event of
every trip the process serves comes through here, and redis-py's pub/sub
reader costs several times more per message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tracking.core.errors import Unavailable
from tracking.store.resp import READ_CHUNK, Endpoint, pack

log = logging.getLogger(__name__)


Listener = Callable[[bytes], None]

RECONNECT_BASE_S = 0.05
RECONNECT_CAP_S = 0.5
SUBSCRIBE_TIMEOUT_S = 5.0
IDLE_PING_S = 10.0
"""A connection silent this long is sent a PING; silent for as long again, it is dead."""


def reconnect_delay_s(failures: int) -> float:
    """Wait before connecting again after `failures` failed attempts in a row (1 = the first)."""
    return min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2.0 ** max(0, failures - 1))


class Moved(Exception):
    """The node does not own the shard channel's slot (any more)."""


class Link:
    """One pub/sub connection: subscribes its channels, reconnects, resubscribes."""

    def __init__(
        self,
        endpoint: Endpoint,
        listeners: dict[str, set[Listener]],
        *,
        sharded: bool,
        on_moved: Callable[[Link, str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.channels: set[str] = set()
        self._listeners = listeners
        self._sharded = sharded
        self._on_moved = on_moved
        self._sub, self._unsub = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self._message = b"smessage" if sharded else b"message"
        # Subscriptions not yet confirmed, in the order sent: a confirmation or
        # an error reply answers the oldest (channel, waiter or None).
        self._pending: collections.deque[tuple[bytes, asyncio.Future[None] | None]] = (
            collections.deque()
        )
        self._leaving: collections.Counter[bytes] = collections.Counter()
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        # A plain connection with no channel would leave pub/sub mode, and a
        # SUBSCRIBE of nothing is an error: a private channel keeps it in.
        self._control = None if sharded else f"trk:{{gw}}:{uuid.uuid4().hex}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and subscribe; raises if Redis is unreachable."""
        reader = await self._connect()
        self._task = asyncio.create_task(self._run(reader), name="fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis has confirmed. Raises Unavailable, or Moved (sharded)."""
        self.channels.add(channel)
        if not self._connected.is_set() or self._writer is None:
            raise Unavailable("redis unreachable: the fan-out is reconnecting")
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((channel.encode(), confirmed))
        self._send([self._sub, channel])
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await confirmed
        except (TimeoutError, RedisConnectionError) as exc:
            raise Unavailable(f"redis unreachable: no subscription to {channel}") from exc

    def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._sharded and self._connected.is_set():
            self._leaving[channel.encode()] += 1
        self._send([self._unsub, channel])

    def adopt(self, channel: str) -> None:
        """Subscribe `channel` with no one waiting (it moved here from another node)."""
        self.channels.add(channel)
        if self._connected.is_set():
            self._pending.append((channel.encode(), None))
            self._send([self._sub, channel])

    # --- the connection -------------------------------------------------------

    def _send(self, command: list[str]) -> None:
        """Best effort: while reconnecting, the resubscription covers what is lost."""
        if self._writer is not None:
            self._writer.write(pack(command))

    async def _connect(self) -> asyncio.StreamReader:
        reader, writer = await self.endpoint.open()
        self._writer = writer
        self._leaving.clear()
        # Every channel again (after a reconnect; the feeds repair any gap
        # from the trips' streams). Shard channels of different slots cannot
        # share one SSUBSCRIBE: one command each.
        if self._control is not None:
            channels = [self._control, *self.channels]
            writer.write(pack([self._sub, *channels]))
        else:
            for channel in self.channels:
                self._pending.append((channel.encode(), None))
                writer.write(pack([self._sub, channel]))
        self._connected.set()
        return reader

    def _drop(self) -> None:
        self._connected.clear()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        failed = RedisConnectionError("fan-out connection lost")
        for _, future in self._pending:
            if future is not None and not future.done():
                future.set_exception(failed)
        self._pending.clear()

    async def _run(self, reader: asyncio.StreamReader) -> None:
        failures = 0
        lost_at = 0.0
        while True:
            try:
                await self._read(reader)
                raise EOFError("Redis closed the connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the process's only subscription must go on
                self._drop()
                lost_at = time.monotonic()
                log.warning("fan-out lost Redis %s (%s); reconnecting", self.endpoint.address, exc)
                self._lost()
            while True:
                failures += 1
                self.reconnects += 1
                await asyncio.sleep(reconnect_delay_s(failures))
                try:
                    reader = await self._connect()
                    break
                except RedisConnectionError:
                    self._lost()
            log.info(
                "fan-out back on %s after %.1f s (%d channels)",
                self.endpoint.address,
                time.monotonic() - lost_at,
                len(self.channels),
            )
            failures = 0

    def _lost(self) -> None:
        """On a Cluster the node may be gone for good (a failover): its
        channels may live elsewhere now, so their owner is asked again."""
        if self._on_moved is not None:
            for channel in tuple(self.channels):
                self._on_moved(self, channel)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        listeners = self._listeners
        message = self._message
        pinged = False
        while True:
            try:
                async with asyncio.timeout(IDLE_PING_S):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                # A peer that vanished without a reset would leave us waiting forever.
                if pinged:
                    raise RedisConnectionError("no answer to PING") from None
                self._send(["PING"])
                pinged = True
                continue
            if not data:
                return
            pinged = False
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    self._refused(str(reply))
                    continue
                if not isinstance(reply, list):
                    continue  # PONG outside pub/sub mode (a link with no channel)
                kind = reply[0]
                if kind == message:
                    for listener in tuple(listeners.get(reply[1].decode(), ())):
                        try:
                            listener(reply[2])
                        except Exception:  # a broken listener must not stop the fan-out
                            log.exception("listener failed on %s", reply[1])
                elif kind in (b"subscribe", b"ssubscribe"):
                    self._confirmed(reply[1])
                elif kind == b"sunsubscribe":
                    self._ended(reply[1])

    def _confirmed(self, channel: bytes) -> None:
        if self._pending and self._pending[0][0] == channel:
            _, future = self._pending.popleft()
            if future is not None and not future.done():
                future.set_result(None)

    def _refused(self, error: str) -> None:
        """An error reply answers the oldest subscription sent (MOVED: the slot is elsewhere)."""
        if not self._pending:
            log.warning("fan-out: Redis %s answered %s", self.endpoint.address, error)
            return
        channel, future = self._pending.popleft()
        if future is not None:
            if not future.done():
                moved = error.startswith("MOVED")
                future.set_exception(Moved(error) if moved else RedisError(error))
        elif self._on_moved is not None:
            self._on_moved(self, channel.decode())

    def _ended(self, channel: bytes) -> None:
        """A shard subscription ended: asked for, or because its slot moved away."""
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
            if not self._leaving[channel]:
                del self._leaving[channel]
            return
        if self._on_moved is not None and channel.decode() in self.channels:
            self._on_moved(self, channel.decode())
