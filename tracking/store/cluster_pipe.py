"""Batched commands on a Redis Cluster: one pipeline per node per event-loop tick.

redis-py's cluster client costs a few hundred microseconds of CPU per
command here, and a point's write on a Cluster is four or five commands in
two rounds. So, as on one Redis (`store/batcher.py`), every command a tick
queues goes to its slot's master as one pipeline on a bare connection to
that node, with the slot map that redis-py's client keeps.

Whatever the fast path cannot settle goes through redis-py's client, which
follows the cluster: a redirect (`MOVED`, `ASK`: the slot moved), `TRYAGAIN`
or `CLUSTERDOWN` (mid-failover), or a node unreachable. redis-py then
refreshes its slot map, so the next tick's pipelines go to the new owner.
A command sent again this way after a lost connection may have run once
already; each of ours is safe to repeat (compare-and-set scripts, sets,
a duplicate fleet update that loses to the newer by `ts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracking.store.batcher import BatchedScript, Batcher
from tracking.store.resp import Endpoint

REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "LOADING")
"""Error replies that mean "not here, not now": the cluster client sorts them out."""


class ClusterPipe:
    """Commands routed to their key's master, batched per node."""

    def __init__(self, cluster: RedisCluster, slow_path_limit: int = 16) -> None:
        """`slow_path_limit`: commands at once through redis-py's client, whose
        connections per node run out (MaxConnectionsError) where a pool would wait."""
        self._cluster = cluster
        self._batchers: dict[str, Batcher] = {}
        self._slow_path = asyncio.Semaphore(slow_path_limit)

    async def call(self, key: str, command: Sequence[Any]) -> Any:
        """`command` (which touches `key`'s slot only) run on the slot's master."""
        batcher = self._batcher(key)
        if batcher is not None:
            try:
                return await batcher.call(command)
            except ResponseError as exc:
                if not str(exc).startswith(REDIRECTS):
                    raise
            except (RedisConnectionError, RedisTimeoutError, OSError):
                pass
        async with self._slow_path:
            return await self._cluster.execute_command(*command)

    async def script(self, script: BatchedScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """`script` run with `keys` (one slot) on their master."""
        batcher = self._batcher(keys[0])
        if batcher is not None:
            try:
                return await script.run(batcher, keys, args)
            except ResponseError as exc:
                if not str(exc).startswith(REDIRECTS):
                    raise
            except (RedisConnectionError, RedisTimeoutError, OSError):
                pass
        async with self._slow_path:
            try:
                return await self._cluster.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # The call did not run: load the script on every master, run it again.
                await self._cluster.script_load(script.source)
                return await self._cluster.evalsha(script.sha, len(keys), *keys, *args)

    def _batcher(self, key: str) -> Batcher | None:
        """The batcher of the master serving `key`'s slot, by redis-py's slot map."""
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        except (SlotNotCoveredError, KeyError):  # no slot map yet: the slow path
            return None
        batcher = self._batchers.get(node.name)
        if batcher is None:
            endpoint = Endpoint.of_node(node)
            # Fail fast: the slow path retries, following the cluster.
            endpoint.retry = Retry(NoBackoff(), 0)
            batcher = self._batchers[node.name] = Batcher(endpoint)
        return batcher

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
