"""Writes on a Redis Cluster, where one script cannot touch every key a step changes.

On one Redis, `lua/write.lua` stores a step in one atomic script. On a
Cluster, a trip's keys, a driver's keys and the global indexes (deadlines,
the GEO index, the seen set) live in different slots, usually on different
nodes, so a write goes in two rounds:

1. the trip's part (`lua/cluster_trip.lua`), atomic on the trip's slot with
   the compare-and-set on its rev: this decides whether the write happens.
   A new deadline earlier than the indexed one is put in the deadlines set in
   the same round (`ZADD LT`), so that no crash leaves a trip unswept;
2. then, together: the driver's part (`lua/cluster_driver.lua`, its
   acknowledged seq never moves back), the trip's exact deadline
   (`lua/cluster_sched.lua`, the highest trip rev wins), the GEO index, the
   seen set and the fleet channel.

A driver point with no trip has only the driver's part to decide; the
indexes follow it. If the second round fails (a node unreachable), the write
raises: the driver resends, and the trip, which already holds the points
(its `driver_seq`), does not apply them twice. Every event is published with
`SPUBLISH` on the trip's shard channel, from inside the trip's script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio.cluster import RedisCluster

from tracking.store import keys
from tracking.store.batcher import BatchedScript
from tracking.store.cluster_pipe import ClusterPipe

if TYPE_CHECKING:
    from tracking.store.trips import Write

SCHED_REVS_KEY = "trk:{sched}:revs"
"""Hash: trip id -> the trip rev its deadline entry was written for."""


def _lua(name: str) -> str:
    return resources.files("tracking.store").joinpath(f"lua/{name}").read_text()


class _Script:
    """One of the Lua scripts, run on its keys' master (batched, see `cluster_pipe.py`)."""

    def __init__(self, pipe: ClusterPipe, name: str) -> None:
        self._pipe = pipe
        self._script = BatchedScript(_lua(name))

    async def __call__(self, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._pipe.script(self._script, keys_, args)


class ClusterWriter:
    """Stores a `Write` on a Redis Cluster in two rounds (see the module's docstring)."""

    def __init__(
        self, redis: RedisCluster, *, stream_maxlen: int, ttl_s: int, slow_path_limit: int = 16
    ) -> None:
        self.redis = redis
        self.stream_maxlen = stream_maxlen
        self.ttl_s = ttl_s
        self._pipe = pipe = ClusterPipe(redis, slow_path_limit)
        self._trip = _Script(pipe, "cluster_trip.lua")
        self._driver = _Script(pipe, "cluster_driver.lua")
        self._sched = _Script(pipe, "cluster_sched.lua")
        self._forget_silent = _Script(pipe, "cluster_forget.lua")

    async def close(self) -> None:
        await self._pipe.close()

    async def call(self, key: str, command: Sequence[Any]) -> Any:
        """One command on `key`'s master, batched with the tick's others."""
        return await self._pipe.call(key, command)

    async def write(self, w: Write) -> bool:
        """Store `w`; False on a compare-and-set conflict (nothing stored)."""
        trip, driver = w.trip, w.driver
        if trip is not None:
            trip.rev = w.expected_rev + 1
            first: list[Awaitable[Any]] = [self._trip_part(w)]
            if w.deadline_ms is not None:
                deadlines = keys.DEADLINES_KEY
                first.append(
                    self._pipe.call(deadlines, ("ZADD", deadlines, "LT", w.deadline_ms, trip.id))
                )
            result = (await asyncio.gather(*first))[0]
            if result[0] != 1:
                trip.rev = w.expected_rev
                return False
            later: list[Awaitable[Any]] = [
                self._sched(
                    keys_=[keys.DEADLINES_KEY, SCHED_REVS_KEY],
                    args=[trip.id, trip.rev, "" if w.deadline_ms is None else w.deadline_ms],
                )
            ]
            if driver is not None:
                later.append(self._driver_part(w, check_first_seq=False))
            later += self._index_updates(w)
            await asyncio.gather(*later)
            return True
        if driver is not None:
            written = await self._driver_part(w, check_first_seq=True)
            if written == -1:
                return False
            if written == 1:
                await asyncio.gather(*self._index_updates(w))
        return True

    async def _trip_part(self, w: Write) -> Any:
        trip = w.trip
        assert trip is not None
        args: list[Any] = [
            str(w.expected_rev),
            trip.state_json(),
            trip.route_json() if w.route_changed else "",
            self.stream_maxlen,
            keys.trip_channel(trip.id),
            self.ttl_s,
            len(w.events),
            len(w.trail),
        ]
        for event in w.events:
            args += (event["seq"], orjson.dumps(event))
        args += w.trail
        return await self._trip(
            [keys.trip(trip.id), keys.events(trip.id), keys.trail(trip.id)], args
        )

    async def _driver_part(self, w: Write, *, check_first_seq: bool) -> int:
        driver = w.driver
        assert driver is not None
        return int(
            await self._driver(
                [keys.driver(driver.id)],
                [
                    driver.to_json(),
                    driver.last_seq,
                    self.ttl_s,
                    w.first_seq if check_first_seq else 0,
                ],
            )
        )

    def _index_updates(self, w: Write) -> list[Awaitable[Any]]:
        """The driver's position, its sign of life and the fleet update: global keys."""
        out: list[Awaitable[Any]] = []
        driver = w.driver
        fix = driver.fix if driver is not None else None
        pipe, seen, geo, fleet = self._pipe, keys.SEEN_KEY, keys.GEO_KEY, keys.FLEET_CHANNEL
        if driver is not None and w.seen_ms is not None:
            out.append(pipe.call(seen, ("ZADD", seen, w.seen_ms, driver.id)))
        if driver is not None and fix is not None:
            out.append(pipe.call(geo, ("GEOADD", geo, fix["lon"], fix["lat"], driver.id)))
        if w.fleet and (driver is None or fix is not None):
            out.append(pipe.call(fleet, ("SPUBLISH", fleet, w.fleet)))
        return out

    async def clear_deadline(self, trip_id: str) -> None:
        await asyncio.gather(
            self.redis.zrem(keys.DEADLINES_KEY, trip_id),
            self.redis.hdel(SCHED_REVS_KEY, trip_id),
        )

    async def prune_positions(self, before_ms: int, batch: int) -> int:
        """The GEO index and the seen set are in different slots: not one script here.

        A driver whose point lands between the two steps loses its GEO entry
        until its next point, and stays in the seen set.
        """
        old = await self.redis.zrangebyscore(keys.SEEN_KEY, "-inf", before_ms, start=0, num=batch)
        if not old:
            return 0
        await self.redis.zrem(keys.GEO_KEY, *old)
        return int(await self._forget_silent([keys.SEEN_KEY], [before_ms, *old]))
