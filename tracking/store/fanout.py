"""Fan-out: one Redis pub/sub connection per gateway process.

Sockets register a callback per channel here; the process subscribes to a
Redis channel when its first local listener arrives and unsubscribes when
the last one leaves. A rider never costs a Redis connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Listener = Callable[[bytes], None]


class FanOut:
    """Routes Redis pub/sub messages to in-process listeners by channel."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # redis-py needs one subscription before it will read; this private
        # channel also keeps the connection in pub/sub mode when idle.
        self._control = f"trk:{{gw}}:{uuid.uuid4().hex}"
        self.reconnects = 0

    async def start(self) -> None:
        await self._pubsub.subscribe(self._control)
        self._task = asyncio.create_task(self._run(), name="fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def add(self, channel: str, listener: Listener) -> None:
        """Start delivering `channel`'s messages to `listener`."""
        async with self._lock:
            listeners = self._listeners.setdefault(channel, set())
            listeners.add(listener)
            if len(listeners) == 1:
                await self._pubsub.subscribe(channel)

    async def remove(self, channel: str, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.get(channel)
            if listeners is None:
                return
            listeners.discard(listener)
            if not listeners:
                del self._listeners[channel]
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                    await self._pubsub.unsubscribe(channel)

    @property
    def channel_count(self) -> int:
        return len(self._listeners)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # redis-py reconnects and re-subscribes every channel on the
                # next read; listeners repair any gap from the trip's stream.
                failures += 1
                self.reconnects += 1
                log.warning("fan-out lost Redis (%s); retrying", exc)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            for listener in tuple(self._listeners.get(channel, ())):
                try:
                    listener(message["data"])
                except Exception:  # a broken listener must not stop the fan-out
                    log.exception("listener failed on %s", channel)
