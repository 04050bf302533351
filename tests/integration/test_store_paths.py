"""The store's own Redis paths: batched writes on a bare RESP connection, and the fan-out.

Real Redis, no gateway: what these promise is below the sockets.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tracking.core.driver import DriverState
from tracking.core.errors import Unavailable
from tracking.store.embedded import EmbeddedRedis
from tracking.store.fanout import FanOut
from tracking.store.trips import TripStore, Write


def _store(url: str) -> tuple[Redis, TripStore]:
    redis = Redis.from_url(url, socket_timeout=2)
    return redis, TripStore(redis, stream_maxlen=100, ttl_s=600)


def _driver_write(driver_id: str, seq: int) -> Write:
    fix = {"lon": 24.94, "lat": 60.17, "ts": 1_700_000_000_000 + seq, "heading": None}
    driver = DriverState(driver_id, last_seq=seq, fix={**fix, "speed": None, "acc": 5.0})
    return Write(driver=driver, seen_ms=1, first_seq=seq)


def test_writes_of_one_tick_share_a_round_trip_and_each_gets_its_own_reply(
    redis_url: str,
) -> None:
    async def scenario() -> tuple[list[bool], int, int]:
        redis, store = _store(redis_url)
        prefix = uuid.uuid4().hex[:8]
        # 40 drivers' first points, then the same 40 again: stored once, so
        # the second round is refused, each write answered on its own.
        first = [store.write(_driver_write(f"{prefix}-{i}", 1)) for i in range(40)]
        again = [store.write(_driver_write(f"{prefix}-{i}", 1)) for i in range(40)]
        results = await asyncio.gather(*first, *again)
        batcher = store._writes
        await store.close()
        await redis.aclose()
        return list(results), batcher.batches, batcher.writes

    results, batches, writes = asyncio.run(scenario())
    assert results == [True] * 40 + [False] * 40
    assert writes == 80 and batches <= 2, (batches, writes)


def test_a_flushed_script_cache_is_reloaded_and_the_write_goes_through(redis_url: str) -> None:
    async def scenario() -> tuple[bool, bool]:
        redis, store = _store(redis_url)
        name = uuid.uuid4().hex
        before = await store.write(_driver_write(name, 1))
        await redis.script_flush()  # as after a Redis restart without persistence
        after = await store.write(_driver_write(name, 2))
        await store.close()
        await redis.aclose()
        return before, after

    assert asyncio.run(scenario()) == (True, True)


def test_a_write_to_a_stopped_redis_fails_as_unavailable() -> None:
    async def scenario() -> None:
        server = EmbeddedRedis().start()
        redis, store = _store(server.url)
        assert await store.write(_driver_write("d-stop", 1))
        server.stop()
        try:
            with pytest.raises(Unavailable):
                await store.write(_driver_write("d-stop", 2))
        finally:
            await store.close()
            await redis.aclose()

    asyncio.run(scenario())


def test_a_publish_right_after_add_reaches_the_listener(redis_url: str) -> None:
    """add() returns once Redis confirmed the subscription: nothing published after is lost."""

    async def scenario() -> list[bytes]:
        redis = Redis.from_url(redis_url)
        fanout = FanOut(redis)
        await fanout.start()
        got: list[bytes] = []
        try:
            for i in range(50):
                channel = f"trk:test:{uuid.uuid4().hex}"
                await fanout.add(channel, got.append)
                await redis.publish(channel, b"%d" % i)
            for _ in range(100):
                if len(got) == 50:
                    break
                await asyncio.sleep(0.02)
        finally:
            await fanout.stop()
            await redis.aclose()
        return got

    assert asyncio.run(scenario()) == [b"%d" % i for i in range(50)]


def test_the_fanout_resubscribes_after_redis_restarts_and_refuses_while_down() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        server = EmbeddedRedis().start()
        port = server.port
        redis = Redis.from_url(server.url)
        fanout = FanOut(redis)
        await fanout.start()
        got: list[bytes] = []
        try:
            await fanout.add("trk:test:a", got.append)
            server.stop()
            for _ in range(100):  # until the fan-out has seen its connection go
                if not fanout.connected:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(Unavailable):
                await fanout.add("trk:test:b", got.append)
            server = EmbeddedRedis(port=port).start()
            publisher = Redis.from_url(server.url)
            # Back within the reconnect backoff (0.5 s at most between tries).
            for _ in range(100):
                if await publisher.publish("trk:test:a", b"after") == 1:
                    break
                await asyncio.sleep(0.05)
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.02)
            await publisher.aclose()
            return got, fanout.reconnects
        finally:
            await fanout.stop()
            await redis.aclose()
            server.stop()

    got, reconnects = asyncio.run(scenario())
    assert got == [b"after"] and reconnects >= 1
