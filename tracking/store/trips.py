"""Trip and driver state in Redis: atomic writes, replay, trail, geo index."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ParamSpec, TypeVar, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, MasterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracking.core.driver import DriverState
from tracking.core.errors import Unavailable
from tracking.core.geo import BBox
from tracking.core.messages import TripEvent
from tracking.core.state import TripState
from tracking.store import keys
from tracking.store.batcher import ScriptBatcher
from tracking.store.cluster import ClusterWriter

_WRITE_LUA = resources.files("tracking.store").joinpath("lua/write.lua").read_text()
_LEARN_PACE_LUA = """
-- Running mean for the first legs, then an exponential average that follows
-- the city's traffic through the day.
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') + 1
local pace = tonumber(redis.call('HGET', KEYS[1], 'pace') or ARGV[1])
local alpha = math.max(1 / n, tonumber(ARGV[2]))
pace = pace + alpha * (tonumber(ARGV[1]) - pace)
redis.call('HSET', KEYS[1], 'n', n, 'pace', tostring(pace))
return tostring(pace)
"""
_PRUNE_POSITIONS_LUA = """
-- Drivers silent since before ARGV[1] (server ms): their last position goes
-- from the GEO index and the seen set together, at most ARGV[2] at a time.
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then
  redis.call('ZREM', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[1], unpack(old))
end
return #old
"""
PACE_LEARNING_RATE = 0.05
GEO_MAX_LAT = 85.05112878
"""Redis GEO holds no point nearer the poles than this."""
GEO_EARTH_RADIUS_M = 6372797.560856
"""The radius Redis measures GEO distances with."""
PIPELINE_CHUNK = 500

UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    # A Redis Cluster between a node's loss and its replica's promotion.
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    SlotNotCoveredError,
)

P = ParamSpec("P")
R = TypeVar("R")


def redis_call(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Redis unreachable (after the client's retries) is `Unavailable`, as every caller expects.

    Callers then answer 503 or an `unavailable` error frame instead of
    failing with an unexpected exception. On a Cluster the call also waits
    for the store's gate (see `TripStore.__init__`).
    """
    return _redis_call(method, gated=True)


def batched_call(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`redis_call` for the hot paths that go through the batchers: on a Cluster
    they hold no pooled connection (bar a redirect), so they pass no gate."""
    return _redis_call(method, gated=False)


def _redis_call(method: Callable[P, Awaitable[R]], *, gated: bool) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        gate = cast("TripStore", args[0]).gate if gated else None
        try:
            if gate is None:
                return await method(*args, **kwargs)
            async with gate:
                return await method(*args, **kwargs)
        except UNREACHABLE as exc:
            raise Unavailable(f"redis unreachable: {exc}") from exc

    return wrapper


@dataclass(slots=True)
class Write:
    """Everything one step changed, to be stored atomically."""

    trip: TripState | None = None
    expected_rev: int = 0
    route_changed: bool = False
    events: Sequence[TripEvent] = ()
    trail: list[str] = field(default_factory=list)
    deadline_ms: int | None = None
    driver: DriverState | None = None
    fleet: bytes | None = None
    """Fleet feed update (`core.fleet.encode_update`), published with the write."""
    seen_ms: int | None = None
    """Server time of the driver's point: marks the driver online."""
    first_seq: int = 0
    """Lowest seq of the driver's points in this write (0: none). If the driver
    has stored it already, nothing is written: a conflict, as for the trip's rev."""


def encode_event(event: TripEvent) -> bytes:
    return orjson.dumps(event)


def trail_entry(lon: float, lat: float, ts: int, seq: int) -> str:
    return f"{lon:.7f},{lat:.7f},{ts},{seq}"


class TripStore:
    """Redis access for trips and drivers. All keys are hash-tagged by id.

    `redis` is a client of one Redis, or of a Redis Cluster: there a write
    goes in per-slot parts (`store/cluster.py`) and events on shard channels.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        stream_maxlen: int,
        ttl_s: int,
        probe: Redis | RedisCluster | None = None,
        max_connections: int = 64,
    ) -> None:
        """`probe`, if given, is a client without retries, for readiness checks.

        `max_connections`: a cluster client fails a command past its
        connections per node where a single-Redis pool makes it wait. So on a
        Cluster, the calls that use redis-py's client wait at a gate of a
        quarter of them, and the batched hot paths' fallbacks at another
        (`cluster_pipe.py`): together at most half the connections per node.
        """
        self.redis = redis
        self.probe = probe or redis
        self.stream_maxlen = stream_maxlen
        self.ttl_s = ttl_s
        self.cluster: ClusterWriter | None = None
        self._writes: ScriptBatcher | None = None
        self.gate: asyncio.Semaphore | None = None
        if isinstance(redis, RedisCluster):
            limit = max(1, max_connections // 4)
            self.gate = asyncio.Semaphore(limit)
            self.cluster = ClusterWriter(
                redis, stream_maxlen=stream_maxlen, ttl_s=ttl_s, slow_path_limit=limit
            )
        else:
            self._writes = ScriptBatcher(redis, _WRITE_LUA)
        self._learn_pace = redis.register_script(_LEARN_PACE_LUA)
        self._prune_positions = redis.register_script(_PRUNE_POSITIONS_LUA)

    async def close(self) -> None:
        if self._writes is not None:
            await self._writes.close()
        if self.cluster is not None:
            await self.cluster.close()

    @redis_call
    async def ping(self) -> None:
        """Raises Unavailable unless Redis answers now (no retries: readiness must be quick)."""
        await self.probe.ping()

    @batched_call
    async def write(self, w: Write) -> bool:
        """Store `w` atomically. False on a compare-and-set conflict (nothing stored): the
        trip's rev moved, or the driver has stored `first_seq` already."""
        if self.cluster is not None:
            return await self.cluster.write(w)
        assert self._writes is not None
        trip, driver = w.trip, w.driver
        trip_id = trip.id if trip else ""
        driver_id = driver.id if driver else ""
        if trip is not None:
            trip.rev = w.expected_rev + 1
        fix = driver.fix if driver is not None else None
        args: list[Any] = [
            "" if trip is None else str(w.expected_rev),
            trip.state_json() if trip else "",
            trip.route_json() if trip and w.route_changed else "",
            self.stream_maxlen,
            keys.trip_channel(trip_id),
            trip_id,
            "" if w.deadline_ms is None else w.deadline_ms,
            driver.to_json() if driver else "",
            driver_id,
            driver.last_seq if driver else 0,
            fix["lon"] if fix else "",
            fix["lat"] if fix else "",
            self.ttl_s,
            len(w.events) if trip else 0,
            len(w.trail) if trip else 0,
            keys.FLEET_CHANNEL,
            w.fleet or "",
            "" if w.seen_ms is None or driver is None else w.seen_ms,
            w.first_seq if driver is not None else 0,
        ]
        if trip is not None:
            for event in w.events:
                args += (event["seq"], encode_event(event))
            args += w.trail
        result = await self._writes.call(
            [
                keys.trip(trip_id),
                keys.events(trip_id),
                keys.trail(trip_id),
                keys.DEADLINES_KEY,
                keys.driver(driver_id),
                keys.GEO_KEY,
                keys.SEEN_KEY,
            ],
            args,
        )
        if result[0] == 1:
            return True
        if trip is not None:
            trip.rev = w.expected_rev
        return False

    @batched_call
    async def load_trip(self, trip_id: str) -> TripState | None:
        raw = await self._hmget(keys.trip(trip_id), "rev", "state", "route")
        if raw[0] is None or raw[1] is None or raw[2] is None:
            return None
        state = TripState.from_json(raw[1], raw[2])
        state.rev = int(raw[0])
        return state

    async def _hmget(self, key: str, *fields: str) -> list[bytes | None]:
        """HMGET; on a Cluster batched with the tick's other commands on the key's master."""
        if self.cluster is not None:
            return cast("list[bytes | None]", await self.cluster.call(key, ("HMGET", key, *fields)))
        return cast("list[bytes | None]", await self.redis.hmget(key, list(fields)))

    @batched_call
    async def load_driver(self, driver_id: str) -> DriverState:
        state, trip = await self._hmget(keys.driver(driver_id), "state", "trip")
        trip_id = trip.decode() if trip else None
        if state is None:
            return DriverState(driver_id, trip_id=trip_id)
        return DriverState.from_json(state, trip_id)

    @redis_call
    async def load_drivers(self, driver_ids: Sequence[str]) -> list[DriverState]:
        """Several drivers in one round trip (per PIPELINE_CHUNK), in order."""
        out: list[DriverState] = []
        for start in range(0, len(driver_ids), PIPELINE_CHUNK):
            chunk = driver_ids[start : start + PIPELINE_CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for driver_id in chunk:
                    pipe.hmget(keys.driver(driver_id), ["state", "trip"])
                rows = cast("list[list[bytes | None]]", await pipe.execute())
            for driver_id, (state, trip) in zip(chunk, rows, strict=True):
                trip_id = trip.decode() if trip else None
                out.append(
                    DriverState(driver_id, trip_id=trip_id)
                    if state is None
                    else DriverState.from_json(state, trip_id)
                )
        return out

    @redis_call
    async def set_driver_trip(self, driver_id: str, trip_id: str | None) -> None:
        """Point the driver at its current trip, or at none."""
        key = keys.driver(driver_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if trip_id is None:
                pipe.hdel(key, "trip")
            else:
                pipe.hset(key, "trip", trip_id)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    @batched_call
    async def events_after(self, trip_id: str, since: int, last_seq: int) -> list[bytes] | None:
        """Stored events with seq in (since, last_seq], or None if some are no longer held."""
        if since >= last_seq:
            return []
        first, last = f"{since + 1}-0", f"{last_seq}-0"
        if self.cluster is not None:
            key = keys.events(trip_id)
            # Raw replies: [id, [field, value]] per entry; the field is `e` only.
            raw = await self.cluster.call(key, ("XRANGE", key, first, last))
            entries = [(entry_id, fields[1]) for entry_id, fields in raw]
        else:
            parsed = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                await self.redis.xrange(keys.events(trip_id), first, last),
            )
            entries = [(entry_id, fields[b"e"]) for entry_id, fields in parsed]
        if not entries or int(entries[0][0].split(b"-")[0]) != since + 1:
            return None
        if len(entries) != last_seq - since:
            return None
        return [payload for _, payload in entries]

    @batched_call
    async def stored_seqs(self, trip_ids: Sequence[str]) -> dict[str, int | None]:
        """Each trip's last event seq (the id of its stream's newest entry; 0 if none),
        read without loading the trips. None for a trip that is gone."""
        out: dict[str, int | None] = {}
        for start in range(0, len(trip_ids), PIPELINE_CHUNK):
            chunk = trip_ids[start : start + PIPELINE_CHUNK]
            if self.cluster is not None:
                # Every gateway's heartbeat check, each tick: batched per node,
                # like the writes, not through redis-py's cluster pipeline.
                calls = []
                for trip_id in chunk:
                    trip_key, events = keys.trip(trip_id), keys.events(trip_id)
                    calls.append(self.cluster.call(trip_key, ("EXISTS", trip_key)))
                    calls.append(
                        self.cluster.call(events, ("XREVRANGE", events, "+", "-", "COUNT", 1))
                    )
                replies = await asyncio.gather(*calls)
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for trip_id in chunk:
                        pipe.exists(keys.trip(trip_id))
                        pipe.xrevrange(keys.events(trip_id), count=1)
                    replies = await pipe.execute()
            for i, trip_id in enumerate(chunk):
                exists, newest = replies[2 * i], replies[2 * i + 1]
                out[trip_id] = (
                    (int(newest[0][0].split(b"-")[0]) if newest else 0) if exists else None
                )
        return out

    @redis_call
    async def trail(self, trip_id: str) -> list[tuple[float, float, int, int]]:
        out = []
        rows = cast("list[bytes]", await self.redis.lrange(keys.trail(trip_id), 0, -1))
        for raw in rows:
            lon, lat, ts, seq = raw.split(b",")
            out.append((float(lon), float(lat), int(ts), int(seq)))
        return out

    @redis_call
    async def due_trips(self, now_ms: int, limit: int = 100) -> list[str]:
        raw = cast(
            "list[bytes]",
            await self.redis.zrangebyscore(keys.DEADLINES_KEY, "-inf", now_ms, start=0, num=limit),
        )
        return [r.decode() for r in raw]

    @redis_call
    async def clear_deadline(self, trip_id: str) -> None:
        if self.cluster is not None:
            await self.cluster.clear_deadline(trip_id)
        else:
            await self.redis.zrem(keys.DEADLINES_KEY, trip_id)

    @redis_call
    async def nearby(
        self, lon: float, lat: float, radius_m: float, limit: int = 100
    ) -> list[tuple[str, float, float, float]]:
        """(driver_id, distance_m, lon, lat) within `radius_m`, nearest first."""
        rows = cast(
            "list[Any]",
            await self.redis.geosearch(
                keys.GEO_KEY,
                longitude=lon,
                latitude=lat,
                radius=radius_m,
                unit="m",
                sort="ASC",
                count=limit,
                withcoord=True,
                withdist=True,
            ),
        )
        return [(r[0].decode(), float(r[1]), float(r[2][0]), float(r[2][1])) for r in rows]

    @redis_call
    async def drivers_in_box(self, bbox: BBox) -> list[tuple[DriverState, str | None, str | None]]:
        """Drivers whose last position is in `bbox`: (state, active trip id, its status).

        The trip is given only while it is assigned to this driver; its status
        may be terminal (the caller decides what to show).
        """
        ids = await self._geo_ids_in_box(bbox)
        # A driver whose keys expired has only its GEO entry left: no state.
        drivers = [(d, d.trip_id) for d in await self.load_drivers(ids) if d.fix is not None]
        trips: dict[str, tuple[str, str]] = {}
        trip_ids = sorted({t for _, t in drivers if t})
        for start in range(0, len(trip_ids), PIPELINE_CHUNK):
            chunk = trip_ids[start : start + PIPELINE_CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for trip_id in chunk:
                    pipe.hget(keys.trip(trip_id), "state")
                states = cast("list[bytes | None]", await pipe.execute())
            for trip_id, raw in zip(chunk, states, strict=True):
                if raw is not None:
                    data = orjson.loads(raw)
                    trips[trip_id] = (data.get("driver_id") or "", data["status"])
        out: list[tuple[DriverState, str | None, str | None]] = []
        for driver, current in drivers:
            owner, status = trips.get(current or "", ("", ""))
            if current and owner == driver.id:
                out.append((driver, current, status))
            else:
                out.append((driver, None, None))
        return out

    async def _geo_ids_in_box(self, bbox: BBox) -> list[str]:
        """Members of the GEO index in a box that covers `bbox` (a superset).

        GEOSEARCH BYBOX takes a centre and a size in metres, measured along
        the point's parallel; the width is taken where the box is widest.
        """
        south = max(bbox.min_lat, -GEO_MAX_LAT)
        north = min(bbox.max_lat, GEO_MAX_LAT)
        if south > north:
            return []
        widest_lat = 0.0 if south <= 0.0 <= north else min(abs(south), abs(north))
        height_m = math.radians(north - south) * GEO_EARTH_RADIUS_M * 1.01 + 2.0
        width_m = (
            math.radians(bbox.max_lon - bbox.min_lon)
            * GEO_EARTH_RADIUS_M
            * math.cos(math.radians(widest_lat))
            * 1.01
            + 2.0
        )
        rows = cast(
            "list[bytes]",
            await self.redis.geosearch(
                keys.GEO_KEY,
                longitude=(bbox.min_lon + bbox.max_lon) / 2,
                latitude=(south + north) / 2,
                width=width_m,
                height=height_m,
                unit="m",
            ),
        )
        return [r.decode() for r in rows]

    @redis_call
    async def drivers_seen_since(self, since_ms: int) -> int:
        """How many drivers sent a point at or after server time `since_ms`."""
        return int(await self.redis.zcount(keys.SEEN_KEY, since_ms, "+inf"))

    @redis_call
    async def prune_positions(self, before_ms: int, batch: int = 500) -> int:
        """Forget the last position of drivers silent since before `before_ms`.

        The GEO index has no per-member expiry; this is its retention.
        Returns how many drivers were forgotten (at most `batch` per call).
        """
        if self.cluster is not None:
            return await self.cluster.prune_positions(before_ms, batch)
        removed = await self._prune_positions(
            keys=[keys.SEEN_KEY, keys.GEO_KEY], args=[before_ms, batch]
        )
        return int(removed)

    @redis_call
    async def pace_prior(self) -> float | None:
        """The fleet's learned pace, if any leg has taught it yet."""
        raw = await self.redis.hget(keys.PACE_KEY, "pace")
        return None if raw is None else float(raw)

    @redis_call
    async def learn_pace(self, sample: float) -> None:
        await self._learn_pace(keys=[keys.PACE_KEY], args=[sample, PACE_LEARNING_RATE])

    @redis_call
    async def publish_driver(self, driver_id: str, payload: bytes) -> None:
        channel = keys.driver_channel(driver_id)
        if self.cluster is not None:
            await self.redis.execute_command("SPUBLISH", channel, payload)
        else:
            await self.redis.publish(channel, payload)
