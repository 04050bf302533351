"""Fan-out: one Redis pub/sub connection per gateway process (per node on a Cluster).

Sockets register a callback per channel here; the process subscribes to a
Redis channel when its first local listener arrives and unsubscribes when
the last one leaves. A rider never costs a Redis connection.

Each connection is a `Link` (store/pubsub_link.py), read directly. `add`
returns once Redis has confirmed the subscription, so whatever a caller
reads after it, every later publish reaches it.

On a Redis Cluster the channels are shard channels (`SSUBSCRIBE`): each is
subscribed on the node that owns its slot, so a trip's events load only
the shard that holds the trip. When a slot moves (resharding, a failover)
the node ends the subscription or the connection drops; the channel is then
subscribed again where the cluster now says it lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tracking.core.errors import Unavailable
from tracking.store.pubsub_link import Link, Listener, Moved, reconnect_delay_s
from tracking.store.resp import Endpoint

log = logging.getLogger(__name__)

MAX_REHOMES = 3
"""Times `add` follows a slot that moved (MOVED) before giving up."""


class FanOut:
    """Routes Redis pub/sub messages to in-process listeners by channel."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._links: dict[str, Link] = {}
        self._home: dict[str, Link] = {}
        self._rehoming: set[str] = set()
        self._rehomer: asyncio.Task[None] | None = None
        self._retired_reconnects = 0
        if isinstance(redis, Redis):
            self._single: Link | None = Link(Endpoint(redis), self._listeners, sharded=False)
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

    def _all_links(self) -> list[Link]:
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

    async def _link_for(self, channel: str, *, refresh: bool) -> Link:
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
            link = Link(endpoint, self._listeners, sharded=True, on_moved=self._moved)
            try:
                await link.start()
            except RedisConnectionError as exc:
                raise Unavailable(f"redis unreachable: {exc}") from exc
            self._links[endpoint.address] = link
        return link

    def _moved(self, link: Link, channel: str) -> None:
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
