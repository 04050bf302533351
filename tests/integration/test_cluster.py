"""The gateway on a real three-master Redis Cluster, over real sockets.

Two gateways: A with `TRACKING_REDIS_CLUSTER=on` seeded with the first node,
B left on `auto` (the default) seeded with the third. A trip's keys share
one slot, and its channel is a shard channel (SSUBSCRIBE / SPUBLISH) on the
node that owns that slot: never classic pub/sub, which every node would
relay to every other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.cluster import RedisCluster
from redis.exceptions import MovedError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.integration.client import (
    DRIVER_START,
    Api,
    driver_ws,
    now_ms,
    pos,
    recv_json,
    recv_until,
    trip_ws,
)
from tests.integration.conftest import Gateway, token
from tests.integration.test_channel import (
    SseStream,
    assert_consecutive,
    events_until,
    fetch_trip,
    send_acked,
    single,
    uid,
)
from tests.integration.test_lifecycle import drive_ride
from tracking.store import keys
from tracking.store.embedded_cluster import SLOTS, LocalCluster

Frame = dict[str, Any]
RIDE = ["arrived_pickup", "in_progress", "arrived_dropoff", "completed"]


def assert_clean(gw: Gateway) -> None:
    """No tracebacks or errors (`problems()`), and no WARNING either.

    Nothing fails in these tests, so a warning is a bug too: the sweeper and
    the fan-out log Redis errors (a MOVED, say) as warnings and go on.
    """
    assert not gw.problems(), gw.problems()
    text = Path(gw.log.name).read_text(errors="replace")
    warnings = [line for line in text.splitlines() if " WARNING " in line]
    assert not warnings, "\n".join(warnings[:10])


def _serve(redis_url: str, env: dict[str, str], tmp: Path) -> Iterator[Gateway]:
    gw = Gateway(redis_url, {"TRACKING_DWELL_COMPLETE_S": "2", **env}, tmp)
    yield gw
    gw.stop()
    assert_clean(gw)


@pytest.fixture(scope="module")
def gateway_a(
    redis_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """Cluster mode forced on; knows the first node only."""
    env = {"TRACKING_REDIS_CLUSTER": "on"}
    yield from _serve(redis_cluster.urls[0], env, tmp_path_factory.mktemp("gw-a"))


@pytest.fixture(scope="module")
def gateway_b(
    redis_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """TRACKING_REDIS_CLUSTER unset (auto: detected by INFO cluster); knows the third node only."""
    yield from _serve(redis_cluster.urls[2], {}, tmp_path_factory.mktemp("gw-b"))


def id_on(cluster: LocalCluster, prefix: str, port: int, key: Callable[[str], str]) -> str:
    """A fresh id `<prefix>-<hex>` whose key `key(id)` the node on `port` serves."""
    for _ in range(1000):
        candidate = uid(prefix)
        if cluster.owner(key(candidate)) == port:
            return candidate
    raise AssertionError(f"no {prefix} id on port {port} in 1000 tries")


def other_port(cluster: LocalCluster, port: int) -> int:
    return next(p for p in cluster.ports if p != port)


def shard_channels(cluster: LocalCluster) -> dict[int, set[str]]:
    """PUBSUB SHARDCHANNELS of every node (each lists only its own slots' channels)."""
    out: dict[int, set[str]] = {}
    for port in cluster.ports:
        with cluster.node(port) as node:
            out[port] = set(node.execute_command("PUBSUB", "SHARDCHANNELS"))
    return out


def classic_channels(cluster: LocalCluster) -> dict[int, set[str]]:
    """PUBSUB CHANNELS * of every node: classic pub/sub subscriptions made on it."""
    out: dict[int, set[str]] = {}
    for port in cluster.ports:
        with cluster.node(port) as node:
            out[port] = set(node.execute_command("PUBSUB", "CHANNELS", "*"))
    return out


def shard_subscribers(cluster: LocalCluster, channel: str) -> int:
    with cluster.node(cluster.owner(channel)) as node:
        name, count = node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    assert name == channel
    return int(count)


# --- the harness ------------------------------------------------------------------


def harness_key(key_id: str) -> str:
    return f"harness:{{{key_id}}}"


def test_local_cluster_is_three_masters_sharing_all_slots(redis_cluster: LocalCluster) -> None:
    """Three masters, 16384 slots split over them; a cluster client's write lands on the owner."""
    cluster = redis_cluster
    with cluster.node(cluster.ports[0]) as node:
        nodes: str = node.execute_command("CLUSTER", "NODES")
        slots: list[list[Any]] = node.execute_command("CLUSTER", "SLOTS")
    masters = sorted(
        int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for fields in (line.split() for line in nodes.splitlines() if line.strip())
        if "master" in fields[2].split(",") and fields[7] == "connected"
    )
    assert masters == sorted(cluster.ports) and len(set(masters)) == 3
    ranges = sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)
    assert ranges == cluster.slot_ranges()
    assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in zip(ranges, ranges[1:], strict=False))
    assert {port for *_, port in ranges} == set(cluster.ports)

    client = RedisCluster(host="127.0.0.1", port=cluster.ports[2], decode_responses=True)
    try:
        for port in cluster.ports:
            key = harness_key(id_on(cluster, "k", port, harness_key))
            assert client.set(key, f"on {port}")
            slot = cluster.slot(key)
            with cluster.node(port) as owner:
                assert owner.execute_command("CLUSTER", "KEYSLOT", key) == slot
                assert owner.get(key) == f"on {port}"
            for elsewhere in set(cluster.ports) - {port}:
                with cluster.node(elsewhere) as node, pytest.raises(MovedError) as moved:
                    node.get(key)  # a plain client is redirected: MOVED <slot> <owner>
                assert moved.value.slot_id == slot
                assert moved.value.node_addr == ("127.0.0.1", port)
            assert client.delete(key) == 1
    finally:
        client.close()


# --- the gateway on the cluster ---------------------------------------------------------


async def watch_ws(gw: Gateway, trip: Frame, frames: list[Frame], watching: asyncio.Event) -> None:
    """The rider's WebSocket on `gw`: every frame, then {"closed": code}."""
    async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as rider:
        try:
            while True:
                frames.append(await recv_json(rider, 60))
                watching.set()  # the snapshot is in: nothing after it can be missed
        except ConnectionClosed as closed:
            frames.append({"closed": closed.rcvd.code if closed.rcvd else None})


async def watch_sse(
    gw: Gateway, trip: Frame, events: list[tuple[str | None, Frame]], watching: asyncio.Event
) -> None:
    """The trip's SSE feed on `gw`: every (id, data) until the stream ends."""
    url = f"{gw.base}/v1/trips/{trip['id']}/events"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as http,
        http.stream("GET", url, params={"token": trip["rider_token"]}) as response,
    ):
        assert response.status_code == 200, await response.aread()
        sse = SseStream(response)
        while (event := await sse.next(60)) is not None:
            events.append((event.get("id"), orjson.loads(event["data"])))
            watching.set()


async def first_frame(task: asyncio.Task[None], watching: asyncio.Event) -> None:
    """Wait until `watching` is set; a watcher that failed first raises its own error."""
    waiter = asyncio.ensure_future(watching.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done() and not watching.is_set():
        task.result()
    assert watching.is_set(), "no first frame in 10 s"


def test_full_ride_on_the_cluster_with_sharded_trip_channel(
    redis_cluster: LocalCluster, gateway_a: Gateway, gateway_b: Gateway
) -> None:
    """Driver on A, WebSocket rider on B, SSE on A: the whole ride, one shard channel per trip."""
    cluster = redis_cluster
    # The trip on the middle node, which neither gateway was given; the driver elsewhere.
    trip_id = id_on(cluster, "t-ride", cluster.ports[1], keys.trip)
    driver = id_on(cluster, "d-ride", cluster.ports[0], keys.driver)
    channel = keys.trip_channel(trip_id)
    owner = cluster.owner(channel)
    api = Api(gateway_a.base, token("ops"))
    trip = api.create_trip(id=trip_id, driver_id=driver)
    assert trip["id"] == trip_id and trip["status"] == "assigned"

    async def scenario() -> tuple[list[Frame], list[tuple[str | None, Frame]], dict[str, Any]]:
        ws_frames: list[Frame] = []
        sse_events: list[tuple[str | None, Frame]] = []
        ws_in, sse_in = asyncio.Event(), asyncio.Event()
        on_b = asyncio.create_task(watch_ws(gateway_b, trip, ws_frames, ws_in))
        on_a = asyncio.create_task(watch_sse(gateway_a, trip, sse_events, sse_in))
        await first_frame(on_b, ws_in)
        await first_frame(on_a, sse_in)
        async with driver_ws(gateway_a.ws_base, token("driver", driver)) as drv:
            first = await recv_json(drv)
            assert first["type"] == "trip" and first["trip"]["id"] == trip_id
            ts = now_ms() - 600_000
            await drv.send(pos(1, *DRIVER_START, ts))
            await recv_until(drv, lambda f: f["type"] == "ack")
            # Both readers and the driver are connected: what the cluster sees now.
            pubsub = {
                "shard": shard_channels(cluster),
                "classic": classic_channels(cluster),
                "subscribers": shard_subscribers(cluster, channel),
            }
            current = await fetch_trip(gateway_a.base, trip_id)
            await drive_ride(drv, current["route"]["coordinates"], trip["route"]["coordinates"], ts)
        await asyncio.wait_for(asyncio.gather(on_b, on_a), 30)
        return ws_frames, sse_events, pubsub

    ws_frames, sse_events, pubsub = asyncio.run(scenario())

    # Sharded pub/sub: the trip channel on its slot's node only, one subscription per gateway.
    assert {port for port, names in pubsub["shard"].items() if channel in names} == {owner}
    assert pubsub["subscribers"] == 2
    prefix = f"trk:{{{trip_id}}}:"
    classic = {
        port: [c for c in names if c.startswith(prefix)]
        for port, names in pubsub["classic"].items()
    }
    assert not any(classic.values()), classic

    # The rider on B: snapshot, the ride, close 1000.
    snapshot = ws_frames[0]
    assert snapshot["type"] == "snapshot" and snapshot["trip"]["status"] == "assigned"
    assert ws_frames[-1] == {"closed": 1000}
    ws_events = [f for f in ws_frames[1:-1] if f["type"] != "heartbeat"]
    assert_consecutive(ws_events, snapshot["trip"]["seq"])
    assert [e["status"] for e in ws_events if e["type"] == "status"] == RIDE
    assert {"position", "eta", "route", "status"} <= {e["type"] for e in ws_events}

    # SSE on A: the same snapshot seq and exactly the same events, `id:` = seq.
    snap_id, sse_snapshot = sse_events[0]
    assert sse_snapshot["type"] == "snapshot" and snap_id == str(snapshot["trip"]["seq"])
    sse_live = [(i, f) for i, f in sse_events[1:] if f["type"] != "heartbeat"]
    assert all(event_id == str(f["seq"]) for event_id, f in sse_live)
    assert [f for _, f in sse_live] == ws_events

    # All the trip's keys in the channel's slot, on its node.
    names = [keys.trip(trip_id), keys.events(trip_id), keys.trail(trip_id)]
    with cluster.node(owner) as node:
        slots = {node.execute_command("CLUSTER", "KEYSLOT", name) for name in [*names, channel]}
        assert slots == {cluster.slot(channel)}
        assert node.execute_command("EXISTS", *names) == len(names)

    # Read back through B, which knows only the third node.
    api_b = Api(gateway_b.base, token("ops"))
    final = api_b.get(f"/v1/trips/{trip_id}").json()
    assert final["status"] == "completed" and final["driver"] is None
    trail = api_b.get(f"/v1/trips/{trip_id}/trail").json()
    seqs = trail["properties"]["seqs"]
    assert seqs == sorted(set(seqs)) and len(seqs) > 20
    for gw in (gateway_a, gateway_b):
        assert_clean(gw)


def test_rider_resumes_on_the_other_gateway_with_since_no_gap_no_duplicate(
    redis_cluster: LocalCluster, gateway_a: Gateway, gateway_b: Gateway
) -> None:
    """A rider leaves B mid-trip and comes back on A with since=N: exactly the events it missed."""
    cluster = redis_cluster
    trip_id = id_on(cluster, "t-resume", cluster.ports[2], keys.trip)
    driver = id_on(cluster, "d-resume", cluster.ports[1], keys.driver)
    trip = Api(gateway_a.base, token("ops")).create_trip(id=trip_id, driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[list[Frame], list[Frame], int]:
        async with driver_ws(gateway_a.ws_base, token("driver", driver)) as drv:
            async with trip_ws(gateway_b.ws_base, trip_id, trip["rider_token"]) as rider:
                snapshot = await recv_json(rider)
                assert snapshot["type"] == "snapshot"
                for seq in range(1, 4):
                    await send_acked(drv, single(seq, ts0), seq)
                upto = (await fetch_trip(gateway_a.base, trip_id))["seq"]
                seen = await events_until(rider, upto)
            # The rider is away while the driver keeps moving.
            for seq in range(4, 9):
                await send_acked(drv, single(seq, ts0), seq)
            missed_upto = (await fetch_trip(gateway_a.base, trip_id))["seq"]
            async with trip_ws(
                gateway_a.ws_base, trip_id, trip["rider_token"], since=seen[-1]["seq"]
            ) as rider:
                replayed = await events_until(rider, missed_upto)
                # Then live, continuing the same sequence.
                await send_acked(drv, single(9, ts0), 9)
                upto = (await fetch_trip(gateway_a.base, trip_id))["seq"]
                replayed += await events_until(rider, upto)
        return seen, replayed, missed_upto

    seen, replayed, missed_upto = asyncio.run(scenario())
    last_seen = seen[-1]["seq"]
    assert missed_upto > last_seen
    assert_consecutive(seen, seen[0]["seq"] - 1)
    assert all(e["type"] != "snapshot" for e in replayed)
    assert_consecutive(replayed, last_seen)
    assert replayed[-1]["seq"] > missed_upto
    assert sum(e["type"] == "position" for e in seen) == 3  # fixes 1..3
    assert sum(e["type"] == "position" for e in replayed) == 6  # fixes 4..9
    for gw in (gateway_a, gateway_b):
        assert_clean(gw)


def test_gateway_seeded_with_one_node_serves_trips_on_every_node(
    redis_cluster: LocalCluster, gateway_a: Gateway, gateway_b: Gateway
) -> None:
    """B knows only the third node's URL, yet creates, reads and streams trips on all three."""
    cluster = redis_cluster
    api_b = Api(gateway_b.base, token("ops"))

    async def one_fix(trip: Frame, driver: str) -> tuple[Frame, list[Frame]]:
        async with (
            trip_ws(gateway_b.ws_base, trip["id"], trip["rider_token"]) as rider,
            driver_ws(gateway_b.ws_base, token("driver", driver)) as drv,
        ):
            snapshot = await recv_json(rider)
            await send_acked(drv, single(1, now_ms() - 60_000), 1)
            upto = (await fetch_trip(gateway_b.base, trip["id"]))["seq"]
            return snapshot, await events_until(rider, upto)

    for port in cluster.ports:
        trip_id = id_on(cluster, "t-any", port, keys.trip)
        driver = id_on(cluster, "d-any", other_port(cluster, port), keys.driver)
        trip = api_b.create_trip(id=trip_id, driver_id=driver)
        snapshot, events = asyncio.run(one_fix(trip, driver))
        assert snapshot["type"] == "snapshot" and snapshot["trip"]["id"] == trip_id
        assert_consecutive(events, snapshot["trip"]["seq"])
        assert [e["type"] for e in events].count("position") == 1
        via_a = Api(gateway_a.base, token("ops")).get(f"/v1/trips/{trip_id}").json()
        assert via_a["seq"] == events[-1]["seq"] and via_a["driver"]["ts"] is not None
        with cluster.node(port) as node:
            assert node.execute_command("EXISTS", keys.trip(trip_id)) == 1
    for gw in (gateway_a, gateway_b):
        assert_clean(gw)


# --- failover ------------------------------------------------------------------------


async def send_until_acked(drv: ClientConnection, frame: str, seq: int) -> int:
    """Send `frame` until it is acked; returns how many `unavailable` errors came first.

    While a failover is under way a write may find no master for its slot:
    the driver app resends, as the protocol says (bounded here).
    """
    errors = 0
    for _ in range(50):
        await drv.send(frame)
        reply, _ = await recv_until(
            drv, lambda f: (f["type"] == "ack" and f["seq"] >= seq) or f["type"] == "error"
        )
        if reply["type"] == "ack":
            return errors
        assert reply["code"] == "unavailable", reply
        errors += 1
        await asyncio.sleep(0.2)
    raise AssertionError(f"fix {seq} never acked")


@pytest.mark.timeout(120)
def test_a_master_lost_mid_trip_fails_over_and_driver_and_rider_carry_on(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Three masters with a replica each. The master holding the trip is killed mid-trip.

    Its replica takes over; the driver on A keeps its trip, and the rider on
    B, whose shard subscription lived on the lost master, keeps receiving:
    every event once, in order. (Writes are acknowledged before they reach
    the replica: the test waits for replication before the kill, since a
    failover may lose the last writes; docs/deploy.md says so.)
    """
    with LocalCluster(replicas=1) as cluster:
        masters = sorted({port for _, _, port in cluster.slot_ranges()})
        victim = masters[1]
        trip_id = id_on(cluster, "t-failover", victim, keys.trip)
        driver = id_on(cluster, "d-failover", masters[0], keys.driver)
        gw_a = Gateway(
            cluster.urls[cluster.ports.index(masters[0])], {}, tmp_path_factory.mktemp("a")
        )
        gw_b = Gateway(
            cluster.urls[cluster.ports.index(masters[2])], {}, tmp_path_factory.mktemp("b")
        )
        try:
            trip = Api(gw_a.base, token("ops")).create_trip(id=trip_id, driver_id=driver)
            ts0 = now_ms() - 600_000

            async def scenario() -> tuple[list[Frame], int, int, int]:
                async with (
                    driver_ws(gw_a.ws_base, token("driver", driver)) as drv,
                    trip_ws(gw_b.ws_base, trip_id, trip["rider_token"]) as rider,
                ):
                    snapshot = await recv_json(rider)
                    assert snapshot["type"] == "snapshot"
                    for seq in range(1, 4):
                        await send_acked(drv, single(seq, ts0), seq)
                    upto = (await fetch_trip(gw_a.base, trip_id))["seq"]
                    events = await events_until(rider, upto)
                    with cluster.node(victim) as node:
                        assert node.execute_command("WAIT", 1, 5000) == 1
                    cluster.kill(victim)
                    promoted = await asyncio.to_thread(cluster.current_owner, keys.trip(trip_id))
                    errors = 0
                    for seq in range(4, 9):
                        errors += await send_until_acked(drv, single(seq, ts0), seq)
                    upto = (await fetch_trip(gw_a.base, trip_id))["seq"]
                    events += await events_until(rider, upto, timeout_s=30)
                return [snapshot, *events], promoted, errors, upto

            frames, promoted, errors, upto = asyncio.run(scenario())
        finally:
            gw_a.stop()
            gw_b.stop()
    snapshot, events = frames[0], frames[1:]
    assert promoted != victim
    assert_consecutive(events, snapshot["trip"]["seq"])
    assert events[-1]["seq"] == upto
    assert sum(e["type"] == "position" for e in events) == 8  # fixes 1..8, each once
    assert errors <= 10, errors
    for gw in (gw_a, gw_b):
        assert not gw.problems(), gw.problems()
