"""Fan-out: one Redis pub/sub connection per gateway process (per node on a Cluster).

Sockets register a callback per channel here; the process subscribes to a
Redis channel when its first local listener arrives and unsubscribes when
the last one leaves. A rider never costs a Redis connection.

Each connection is read directly (RESP parsed by hiredis): every event of
every trip this process serves comes through here, and redis-py's pub/sub
reader costs several times more per message. `add` returns once Redis has
confirmed the subscription, so whatever a caller reads after it, every
later publish reaches it.

On a Redis Cluster the channels are shard channels (`SSUBSCRIBE`): each is
subscribed on the node that owns its slot, so a trip's events load only
the shard that holds the trip. When a slot moves (resharding, a failover)
the node ends the subscription or the connection drops; the channel is then
subscribed again where the cluster now says it lives.
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
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
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
MAX_REHOMES = 3
"""Times `add` follows a slot that moved (MOVED) before giving up."""


def reconnect_delay_s(failures: int) -> float:
    """Wait before connecting again after `failures` failed attempts in a row (1 = the first)."""
    return min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2.0 ** max(0, failures - 1))


class Moved(Exception):
    """The node does not own the shard channel's slot (any more)."""


class _Link:
    """One pub/sub connection: subscribes its channels, reconnects, resubscribes."""

    def __init__(
        self,
        endpoint: Endpoint,
        listeners: dict[str, set[Listener]],
        *,
        sharded: bool,
        on_moved: Callable[[_Link, str], None] | None = None,
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


class FanOut:
    """Routes Redis pub/sub messages to in-process listeners by channel."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._links: dict[str, _Link] = {}
        self._home: dict[str, _Link] = {}
        self._rehoming: set[str] = set()
        self._rehomer: asyncio.Task[None] | None = None
        self._retired_reconnects = 0
        if isinstance(redis, Redis):
            self._single: _Link | None = _Link(Endpoint(redis), self._listeners, sharded=False)
        else:
            self._single = None

    async def start(self) -> None:
        """Connect; raises if Redis is unreachable."""
        if self._single is not None:
            await self._single.start()
        else:
            assert self._cluster is not None
            await self._cluster.initialize()

    async def stop(self) -> None:
        if self._rehomer is not None:
            self._rehomer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rehomer
        for link in self._all_links():
            await link.stop()

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
                link = self._home.pop(channel, None) or self._single
                if link is not None:
                    link.channels.discard(channel)
                raise

    async def remove(self, channel: str, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.get(channel)
            if listeners is None:
                return
            listeners.discard(listener)
            if not listeners:
                del self._listeners[channel]
                link = self._single or self._home.pop(channel, None)
                if link is not None:
                    link.unsubscribe(channel)

    @property
    def channel_count(self) -> int:
        return len(self._listeners)

    @property
    def connected(self) -> bool:
        """Every pub/sub connection is up (none lost and not yet back)."""
        return all(link.connected for link in self._all_links())

    @property
    def reconnects(self) -> int:
        return self._retired_reconnects + sum(link.reconnects for link in self._all_links())

    def _all_links(self) -> list[_Link]:
        return [self._single] if self._single is not None else list(self._links.values())

    # --- Redis Cluster: a link per node, channels where their slot lives ------

    async def _subscribe(self, channel: str) -> None:
        if self._single is not None:
            await self._single.subscribe(channel)
            return
        for attempt in range(MAX_REHOMES):
            link = await self._link_for(channel, refresh=attempt > 0)
            self._home[channel] = link
            try:
                await link.subscribe(channel)
                return
            except (Moved, RedisError) as exc:
                link.channels.discard(channel)
                log.info("fan-out: %s is not on %s: %s", channel, link.endpoint.address, exc)
        raise Unavailable(f"redis cluster: no node took the subscription to {channel}")

    async def _link_for(self, channel: str, *, refresh: bool) -> _Link:
        cluster = self._cluster
        assert cluster is not None
        try:
            if refresh:
                await cluster.nodes_manager.initialize()
            node = cluster.get_node_from_key(channel)
            if node is None:
                raise Unavailable(f"redis cluster: no node owns {channel}'s slot")
        except (RedisError, OSError) as exc:
            raise Unavailable(f"redis cluster unreachable: {exc}") from exc
        endpoint = Endpoint.of_node(node)
        link = self._links.get(endpoint.address)
        if link is None:
            link = _Link(endpoint, self._listeners, sharded=True, on_moved=self._moved)
            try:
                await link.start()
            except RedisConnectionError as exc:
                raise Unavailable(f"redis unreachable: {exc}") from exc
            self._links[endpoint.address] = link
        return link

    def _moved(self, link: _Link, channel: str) -> None:
        """`channel` may have left `link`'s node: find where it lives now, in the background."""
        if channel not in self._listeners:
            return
        self._rehoming.add(channel)
        if self._rehomer is None or self._rehomer.done():
            self._rehomer = asyncio.create_task(self._rehome(), name="fanout-rehome")

    async def _rehome(self) -> None:
        failures = 0
        while self._rehoming:
            await asyncio.sleep(reconnect_delay_s(failures + 1))
            try:
                async with self._lock:
                    await self._rehome_once()
                failures = 0
            except (Unavailable, RedisError, OSError) as exc:
                failures += 1
                log.info("fan-out: cluster topology not reachable yet: %s", exc)

    async def _rehome_once(self) -> None:
        assert self._cluster is not None
        await self._cluster.nodes_manager.initialize()
        channels, self._rehoming = self._rehoming, set()
        for channel in channels:
            if channel not in self._listeners:
                continue
            old = self._home.get(channel)
            link = await self._link_for(channel, refresh=False)
            if link is old:
                continue  # same node: its own reconnect resubscribes
            if old is not None:
                old.channels.discard(channel)
            self._home[channel] = link
            link.adopt(channel)
            log.info("fan-out: %s now on %s", channel, link.endpoint.address)
        await self._retire_idle_links()

    async def _retire_idle_links(self) -> None:
        for address, link in list(self._links.items()):
            if not link.channels:
                del self._links[address]
                self._retired_reconnects += link.reconnects
                await link.stop()
