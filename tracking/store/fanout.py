"""Fan-out: one Redis pub/sub connection per gateway process.

Sockets register a callback per channel here; the process subscribes to a
Redis channel when its first local listener arrives and unsubscribes when
the last one leaves. A rider never costs a Redis connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracking.core.errors import Unavailable

log = logging.getLogger(__name__)

Listener = Callable[[bytes], None]

RECONNECT_BASE_S = 0.05
RECONNECT_CAP_S = 0.5


def reconnect_delay_s(failures: int) -> float:
    """Wait before reading again after `failures` failed reads in a row (1 = the first)."""
    return min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2.0 ** max(0, failures - 1))


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
        """Start delivering `channel`'s messages to `listener`.

        Raises Unavailable if Redis cannot be reached to subscribe; nothing is
        registered then.
        """
        async with self._lock:
            listeners = self._listeners.setdefault(channel, set())
            listeners.add(listener)
            if len(listeners) > 1:
                return
            try:
                await self._pubsub.subscribe(channel)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Registered without a subscription, the channel would stay
                # silent for this listener and every later one.
                del self._listeners[channel]
                raise Unavailable(f"redis unreachable: {exc}") from exc

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
        # redis-py reconnects on the next read and subscribes again to every
        # channel; listeners repair any gap from the trip's stream.
        failures = 0
        lost_at = 0.0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                failures += 1
                self.reconnects += 1
                if failures == 1:
                    lost_at = time.monotonic()
                    log.warning("fan-out lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(reconnect_delay_s(failures))
                continue
            except Exception:  # a bug, but the process's only subscription must go on
                failures += 1
                lost_at = lost_at if failures > 1 else time.monotonic()
                log.exception("fan-out read failed")
                await asyncio.sleep(reconnect_delay_s(failures))
                continue
            if failures:
                log.info(
                    "fan-out back after %.1f s (%d channels)",
                    time.monotonic() - lost_at,
                    len(self._listeners),
                )
                failures = 0
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            for listener in tuple(self._listeners.get(channel, ())):
                try:
                    listener(message["data"])
                except Exception:  # a broken listener must not stop the fan-out
                    log.exception("listener failed on %s", channel)
