"""The Redis clients of a gateway process: one Redis, or a Redis Cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

REDIS_RETRIES = 15
REDIS_BACKOFF_CAP_S = 0.5
"""A command that finds Redis unreachable (refused, reset, still loading its data)
is retried with jittered exponential backoff for about 3.5 to 7 s in all: a Redis
restart or failover only delays it. Past that it fails as `unavailable`. A
timeout is not retried: a Redis that hangs should not hold requests longer."""
POOL_WAIT_S = 5.0
"""How long a command waits for a free pooled connection before it fails."""


def redis_retry() -> Retry:
    return Retry(
        EqualJitterBackoff(cap=REDIS_BACKOFF_CAP_S, base=0.05),
        REDIS_RETRIES,
        supported_errors=(RedisConnectionError,),
    )


@dataclass(slots=True)
class Clients:
    redis: Redis | RedisCluster
    probe: Redis | RedisCluster
    """Without retries: readiness must answer now."""

    @property
    def cluster(self) -> bool:
        return isinstance(self.redis, RedisCluster)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.probe.aclose()


async def is_cluster(url: str) -> bool:
    """Whether the Redis at `url` runs in cluster mode (`INFO cluster`)."""
    client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, retry=redis_retry())
    try:
        info = await client.info("cluster")
    finally:
        await client.aclose()
    return bool(info.get("cluster_enabled"))


async def connect(url: str, mode: Literal["auto", "on", "off"], max_connections: int) -> Clients:
    """Clients for `url`; `mode` says whether it names a Redis Cluster (auto: ask it)."""
    cluster = mode == "on" or (mode == "auto" and await is_cluster(url))
    if cluster:
        # Any one node's URL will do: the client learns the others from it.
        return Clients(
            RedisCluster.from_url(
                url,
                max_connections=max_connections,
                socket_timeout=5,
                socket_connect_timeout=2,
                retry=redis_retry(),
            ),
            RedisCluster.from_url(
                url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1)
            ),
        )
    # A bounded pool that makes a command wait for a free connection: the
    # default pool fails it with "Too many connections" under load.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=10,
        retry=redis_retry(),
    )
    # Readiness answers now: one immediate retry (a connection the last
    # Redis restart left stale), then 503.
    probe = Redis.from_url(
        url,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Clients(Redis(connection_pool=pool), probe)
