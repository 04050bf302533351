"""Fan-out: one Redis pub/sub connection per gateway process.

Sockets register a callback per channel here; the process subscribes to a
Redis channel when its first local listener arrives and unsubscribes when
the last one leaves. A rider never costs a Redis connection.

The connection is read directly (RESP parsed by hiredis): every event of
every trip this process serves comes through here, and redis-py's pub/sub
reader costs several times more per message. `add` returns once Redis has
confirmed the subscription, so whatever a caller reads after it, every
later publish reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

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


class FanOut:
    """Routes Redis pub/sub messages to in-process listeners by channel."""

    def __init__(self, redis: Redis) -> None:
        self._endpoint = Endpoint(redis)
        self._listeners: dict[str, set[Listener]] = {}
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # A private channel keeps the connection in pub/sub mode when idle.
        self._control = f"trk:{{gw}}:{uuid.uuid4().hex}"
        self.reconnects = 0

    async def start(self) -> None:
        """Connect and subscribe the control channel; raises if Redis is unreachable."""
        reader = await self._connect()
        self._task = asyncio.create_task(self._run(reader), name="fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    async def add(self, channel: str, listener: Listener) -> None:
        """Start delivering `channel`'s messages to `listener`.

        Returns once Redis has confirmed the subscription. Raises Unavailable
        if Redis cannot be reached to subscribe; nothing is registered then.
        """
        async with self._lock:
            listeners = self._listeners.setdefault(channel, set())
            listeners.add(listener)
            if len(listeners) > 1:
                return
            try:
                await self._subscribe(channel)
            except Unavailable:
                # Registered without a subscription, the channel would stay
                # silent for this listener and every later one.
                self._listeners.pop(channel, None)
                raise

    async def remove(self, channel: str, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.get(channel)
            if listeners is None:
                return
            listeners.discard(listener)
            if not listeners:
                del self._listeners[channel]
                self._send(["UNSUBSCRIBE", channel])

    @property
    def channel_count(self) -> int:
        return len(self._listeners)

    # --- the connection -------------------------------------------------------

    async def _subscribe(self, channel: str) -> None:
        if not self._connected.is_set() or self._writer is None:
            raise Unavailable("redis unreachable: the fan-out is reconnecting")
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channel.encode(), []).append(confirmed)
        self._send(["SUBSCRIBE", channel])
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await confirmed
        except (TimeoutError, RedisConnectionError) as exc:
            raise Unavailable(f"redis unreachable: no subscription to {channel}") from exc

    def _send(self, command: list[str]) -> None:
        """Best effort: while reconnecting, the resubscription covers what is lost."""
        if self._writer is not None:
            self._writer.write(pack(command))

    async def _connect(self) -> asyncio.StreamReader:
        reader, writer = await self._endpoint.open()
        self._writer = writer
        # Every channel with listeners, again (after a reconnect; the feeds
        # repair any gap from the trips' streams).
        channels = [self._control, *self._listeners]
        writer.write(pack(["SUBSCRIBE", *channels]))
        self._connected.set()
        return reader

    def _drop(self) -> None:
        self._connected.clear()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        failed = RedisConnectionError("fan-out connection lost")
        for waiting in self._confirming.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(failed)
        self._confirming.clear()

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
                log.warning("fan-out lost Redis (%s); reconnecting", exc)
            while True:
                failures += 1
                self.reconnects += 1
                await asyncio.sleep(reconnect_delay_s(failures))
                try:
                    reader = await self._connect()
                    break
                except RedisConnectionError:
                    continue
            log.info(
                "fan-out back after %.1f s (%d channels)",
                time.monotonic() - lost_at,
                len(self._listeners),
            )
            failures = 0

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        listeners = self._listeners
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
                kind = reply[0]
                if kind == b"message":
                    for listener in tuple(listeners.get(reply[1].decode(), ())):
                        try:
                            listener(reply[2])
                        except Exception:  # a broken listener must not stop the fan-out
                            log.exception("listener failed on %s", reply[1])
                elif kind == b"subscribe":
                    for future in self._confirming.pop(reply[1], ()):
                        if not future.done():
                            future.set_result(None)
