"""The trip channel and the driver stream over real sockets and a real Redis.

Snapshot and resume (WebSocket and SSE), duplicate resends, batched replay,
heartbeats, signal lost/restored, terminal close, and driver `trip` frames.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import orjson
import pytest
import redis
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
from tracking.core.messages import trip_event_adapter
from tracking.store import keys
from tracking.store.embedded import EmbeddedRedis

Frame = dict[str, Any]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def point(seq: int, ts0: int) -> Frame:
    """Fix number `seq`: by DRIVER_START, alternating half a metre apart, one second apart.

    On the road, ~470 m from the pickup (no zone entry), never a jump.
    """
    lon, lat = DRIVER_START
    return {
        "seq": seq,
        "ts": ts0 + seq * 1000,
        "lon": lon + (seq % 2) * 1e-5,
        "lat": lat,
        "acc": 5.0,
    }


def single(seq: int, ts0: int) -> str:
    p = point(seq, ts0)
    return pos(p["seq"], p["lon"], p["lat"], p["ts"])


def batch(seqs: Iterable[int], ts0: int) -> str:
    return orjson.dumps({"type": "pos_batch", "points": [point(s, ts0) for s in seqs]}).decode()


async def send_acked(drv: ClientConnection, frame: str, upto: int) -> list[Frame]:
    """Send `frame`; every frame received until the ack reaches `upto` (the ack included)."""
    await drv.send(frame)
    ack, seen = await recv_until(drv, lambda f: f["type"] == "ack" and f["seq"] >= upto)
    frames = [*seen, ack]
    assert not [f for f in frames if f["type"] == "error"], frames
    return frames


async def events_until(ws: ClientConnection, seq: int, timeout_s: float = 10.0) -> list[Frame]:
    """Trip-channel frames (heartbeats dropped) until one carries a seq >= `seq`."""
    if seq <= 0:
        return []
    last, seen = await recv_until(ws, lambda f: f.get("seq", -1) >= seq, timeout_s)
    return [f for f in [*seen, last] if f["type"] != "heartbeat"]


async def fetch_trip(base: str, trip_id: str) -> Frame:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            f"{base}/v1/trips/{trip_id}", headers={"Authorization": f"Bearer {token('ops')}"}
        )
    assert response.status_code == 200, response.text
    trip: Frame = response.json()
    return trip


def assert_consecutive(events: list[Frame], after: int) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), seqs
    for event in events:
        trip_event_adapter.validate_python(event)


def test_snapshot_first_then_strictly_consecutive_events(gateway: Gateway, api: Api) -> None:
    """A rider gets one snapshot (trip.seq = its last event), then events seq+1, seq+2, …"""
    driver = uid("d-snap")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, list[Frame], list[Frame], int]:
        before = (await fetch_trip(gateway.base, trip["id"]))["seq"]
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"], since=0) as old:
            # Every event the snapshot includes, replayed: the last one is the snapshot's seq.
            included = await events_until(old, before)
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                for seq in range(1, 6):
                    await send_acked(drv, single(seq, ts0), seq)
            last = (await fetch_trip(gateway.base, trip["id"]))["seq"]
            events = await events_until(rider, last)
        return snapshot, included, events, before

    snapshot, included, events, before = asyncio.run(scenario())
    assert snapshot["type"] == "snapshot" and "reset" not in snapshot
    assert snapshot["trip"]["id"] == trip["id"] and snapshot["trip"]["status"] == "assigned"
    assert snapshot["trip"]["seq"] == before > 0
    assert included[-1]["seq"] == snapshot["trip"]["seq"]
    assert_consecutive(included, 0)
    assert all(e["type"] != "snapshot" for e in events)
    assert_consecutive(events, snapshot["trip"]["seq"])
    assert sum(e["type"] == "position" for e in events) == 5


def test_resume_with_since_replays_every_missed_event_without_snapshot(
    gateway: Gateway, api: Api
) -> None:
    """Reconnecting with since=N replays events N+1… in order, no gap, no dup, no snapshot."""
    driver = uid("d-resume")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[int, list[Frame], int, list[Frame]]:
        async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
            async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
                snapshot = await recv_json(rider)
                assert snapshot["type"] == "snapshot"
                for seq in range(1, 4):
                    await send_acked(drv, single(seq, ts0), seq)
                seen = await events_until(
                    rider, (await fetch_trip(gateway.base, trip["id"]))["seq"]
                )
            last_seen = seen[-1]["seq"]
            # The rider is away while the driver keeps moving.
            for seq in range(4, 9):
                await send_acked(drv, single(seq, ts0), seq)
            missed_upto = (await fetch_trip(gateway.base, trip["id"]))["seq"]
            assert missed_upto > last_seen
            async with trip_ws(
                gateway.ws_base, trip["id"], trip["rider_token"], since=last_seen
            ) as rider:
                replayed = await events_until(rider, missed_upto)
                # Then live, continuing the same sequence.
                await send_acked(drv, single(9, ts0), 9)
                upto = (await fetch_trip(gateway.base, trip["id"]))["seq"]
                replayed += await events_until(rider, upto)
            # Up to date already: nothing replayed, the next frame is the next live event.
            async with trip_ws(
                gateway.ws_base, trip["id"], trip["rider_token"], since=upto
            ) as rider:
                await send_acked(drv, single(10, ts0), 10)
                current = await recv_json(rider)
                assert current["type"] != "snapshot" and current["seq"] == upto + 1, current
        return last_seen, replayed, missed_upto, seen

    last_seen, replayed, missed_upto, seen = asyncio.run(scenario())
    assert_consecutive(seen, seen[0]["seq"] - 1)
    assert replayed[0]["type"] != "snapshot"
    assert all(e["type"] != "snapshot" for e in replayed)
    assert_consecutive(replayed, last_seen)
    assert replayed[-1]["seq"] > missed_upto
    assert sum(e["type"] == "position" for e in replayed) == 6  # fixes 4..9


def test_since_older_than_the_stream_gives_reset_snapshot(
    start_gateway: Callable[..., Gateway], redis_url: str
) -> None:
    """since=N no longer held (stream trimmed by MAXLEN) → snapshot with reset: true, then live."""
    gw = start_gateway(TRACKING_STREAM_MAXLEN="10")
    api = Api(gw.base, token("ops"))
    driver = uid("d-trim")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, list[Frame], int]:
        async with driver_ws(gw.ws_base, token("driver", driver)) as drv:
            await send_acked(drv, batch(range(1, 301), ts0), 300)
            current = (await fetch_trip(gw.base, trip["id"]))["seq"]
            async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"], since=1) as rider:
                reset = await recv_json(rider)
                await send_acked(drv, single(301, ts0), 301)
                upto = (await fetch_trip(gw.base, trip["id"]))["seq"]
                live = await events_until(rider, upto)
        return reset, live, current

    reset, live, current = asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as r:
        oldest = r.xrange(keys.events(trip["id"]), count=1)
    assert int(oldest[0][0].split(b"-")[0]) > 2, "the stream was not trimmed: test is moot"
    assert reset["type"] == "snapshot" and reset["reset"] is True
    assert reset["trip"]["seq"] == current >= 300
    assert_consecutive(live, reset["trip"]["seq"])


@pytest.mark.parametrize("resend", ["pos_batch", "pos"])
def test_points_resent_after_reconnect_are_stored_once(
    gateway: Gateway, api: Api, resend: str
) -> None:
    """1..10, reconnect, resend 5..15: cumulative acks reach 15; trail and rider see each once."""
    driver = uid("d-dup")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, list[int], list[Frame]]:
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                for seq in range(1, 11):
                    await send_acked(drv, single(seq, ts0), seq)
            acks: list[int] = []
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                if resend == "pos_batch":
                    frames = await send_acked(drv, batch(range(5, 16), ts0), 15)
                    acks += [f["seq"] for f in frames if f["type"] == "ack"]
                else:
                    for seq in range(5, 16):
                        frames = await send_acked(drv, single(seq, ts0), min(seq, 10))
                        acks += [f["seq"] for f in frames if f["type"] == "ack"]
            events = await events_until(rider, (await fetch_trip(gateway.base, trip["id"]))["seq"])
        return snapshot, acks, events

    snapshot, acks, events = asyncio.run(scenario())
    if resend == "pos_batch":
        assert acks == [15]
    else:
        assert acks == [10] * 6 + list(range(11, 16))
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, 16))
    assert trail["properties"]["timestamps"] == [ts0 + s * 1000 for s in range(1, 16)]
    assert_consecutive(events, snapshot["trip"]["seq"])
    assert sum(e["type"] == "position" for e in events) == 15


def test_points_resent_on_the_same_socket_are_stored_once(gateway: Gateway, api: Api) -> None:
    """Already-acked seqs resent on one socket are re-acked, stored and published once."""
    driver = uid("d-dup1")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, list[int], list[Frame]]:
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            acks: list[int] = []
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                for seq in range(1, 11):
                    await send_acked(drv, single(seq, ts0), seq)
                frames = await send_acked(drv, batch(range(5, 16), ts0), 15)
                acks += [f["seq"] for f in frames if f["type"] == "ack"]
                for seq in range(12, 16):
                    frames = await send_acked(drv, single(seq, ts0), 15)
                    acks += [f["seq"] for f in frames if f["type"] == "ack"]
            events = await events_until(rider, (await fetch_trip(gateway.base, trip["id"]))["seq"])
        return snapshot, acks, events

    snapshot, acks, events = asyncio.run(scenario())
    assert acks == [15] * 5
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, 16))
    assert_consecutive(events, snapshot["trip"]["seq"])
    assert sum(e["type"] == "position" for e in events) == 15


def test_pos_batch_after_offline_stretch_applies_all_points_in_order(
    gateway: Gateway, api: Api
) -> None:
    """50 buffered points in one pos_batch: applied in order, one cumulative ack (50)."""
    driver = uid("d-batch")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, list[Frame], list[Frame]]:
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
                frames = await send_acked(drv, batch(range(1, 51), ts0), 50)
            events = await events_until(rider, (await fetch_trip(gateway.base, trip["id"]))["seq"])
        return snapshot, frames, events

    snapshot, frames, events = asyncio.run(scenario())
    assert [f for f in frames if f["type"] == "ack"] == [{"type": "ack", "seq": 50}]
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, 51))
    assert trail["properties"]["timestamps"] == [ts0 + s * 1000 for s in range(1, 51)]
    expected = [point(s, ts0) for s in range(1, 51)]
    assert trail["geometry"]["coordinates"] == [
        [pytest.approx(p["lon"], abs=1e-7), pytest.approx(p["lat"], abs=1e-7)] for p in expected
    ]
    assert_consecutive(events, snapshot["trip"]["seq"])
    assert sum(e["type"] == "position" for e in events) == 50
    final = api.get(f"/v1/trips/{trip['id']}").json()
    assert final["driver"]["ts"] == ts0 + 50_000


def test_quiet_trip_gets_heartbeats(start_gateway: Callable[..., Gateway]) -> None:
    """With heartbeat_s=1 a rider on a quiet trip gets {"type":"heartbeat","ts":int} within 3 s."""
    gw = start_gateway(TRACKING_HEARTBEAT_S="1")
    trip = Api(gw.base, token("ops")).create_trip()

    async def scenario() -> tuple[Frame, Frame]:
        async with trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            beat = await recv_json(rider, timeout_s=3.0)
        return snapshot, beat

    snapshot, beat = asyncio.run(scenario())
    assert snapshot["type"] == "snapshot"
    assert beat["type"] == "heartbeat" and "seq" not in beat
    assert isinstance(beat["ts"], int) and abs(beat["ts"] - now_ms()) < 10_000


def test_signal_lost_after_silence_and_restored_by_next_fix(
    start_gateway: Callable[..., Gateway],
) -> None:
    """stale_after_s=1: silence → signal lost:true (trip signal_lost); next fix → lost:false."""
    # A Redis of its own: every gateway's sweeper ticks every due trip of its Redis with
    # its *own* stale_after_s, so the 15 s module gateway would push this trip's deadline.
    private = EmbeddedRedis().start()
    try:
        gw = start_gateway(TRACKING_STALE_AFTER_S="1", TRACKING_REDIS_URL=private.url)
        frames = _signal_scenario(gw)
        gw.stop()
    finally:
        private.stop()
    lost, lost_trip, restored_trip, events = frames
    assert lost["lost"] is True and lost_trip["signal_lost"] is True
    assert lost_trip["seq"] == lost["seq"]
    assert restored_trip["signal_lost"] is False
    restored = events[0]  # cleared before the fix's position event
    assert restored["type"] == "signal" and restored["lost"] is False
    assert [e["type"] for e in events[:2]] == ["signal", "position"]
    assert [e["type"] for e in events].count("signal") == 1
    assert_consecutive(events, lost["seq"])


def _signal_scenario(gw: Gateway) -> tuple[Frame, Frame, Frame, list[Frame]]:
    driver = uid("d-signal")
    trip = Api(gw.base, token("ops")).create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[Frame, Frame, Frame, list[Frame]]:
        async with (
            trip_ws(gw.ws_base, trip["id"], trip["rider_token"]) as rider,
            driver_ws(gw.ws_base, token("driver", driver)) as drv,
        ):
            assert (await recv_json(rider))["type"] == "snapshot"
            await send_acked(drv, single(1, ts0), 1)
            # (Assignment counts as a sign of life, so the trip may have been signal-lost
            # before this fix already: only a signal event after the fix is the silence's.)
            after_fix = (await fetch_trip(gw.base, trip["id"]))["seq"]
            lost, _ = await recv_until(
                rider, lambda f: f["type"] == "signal" and f["seq"] > after_fix, 8.0
            )
            lost_trip = await fetch_trip(gw.base, trip["id"])
            await send_acked(drv, single(2, ts0), 2)
            restored_trip = await fetch_trip(gw.base, trip["id"])
            events = await events_until(rider, restored_trip["seq"])
        return lost, lost_trip, restored_trip, [e for e in events if e["type"] != "heartbeat"]

    return asyncio.run(scenario())


class SseStream:
    """Events of a text/event-stream response: {"id"?: str, "data": str}; None at its end."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines: AsyncIterator[str] = response.aiter_lines()

    async def next(self, timeout_s: float = 10.0) -> dict[str, str] | None:
        event: dict[str, str] = {}
        while True:
            try:
                line = await asyncio.wait_for(anext(self._lines), timeout_s)
            except StopAsyncIteration:
                return None
            if line == "":
                if "data" in event:
                    return event
                event = {}
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                event["data"] = f"{event['data']}\n{value}" if "data" in event else value
            elif name == "id":
                event["id"] = value

    async def until(self, seq: int) -> list[tuple[str | None, Frame]]:
        """(id, data) pairs until data's seq reaches `seq`; heartbeats dropped."""
        out: list[tuple[str | None, Frame]] = []
        while not out or out[-1][1].get("seq", -1) < seq:
            event = await self.next()
            assert event is not None, f"stream ended before seq {seq}"
            data = orjson.loads(event["data"])
            if data["type"] != "heartbeat":
                out.append((event.get("id"), data))
        return out


def test_sse_fallback_snapshot_ids_resume_and_terminal_end(gateway: Gateway, api: Api) -> None:
    """SSE: snapshot (id = seq), `id: N` events, Last-Event-ID resume; cancel ends it (WS: 1000)."""
    driver = uid("d-sse")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000
    url = f"{gateway.base}/v1/trips/{trip['id']}/events"
    params = {"token": trip["rider_token"]}
    result: dict[str, Any] = {}

    async def scenario() -> None:
        timeout = httpx.Timeout(10.0, read=30.0)
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            driver_ws(gateway.ws_base, token("driver", driver)) as drv,
        ):
            async with http.stream("GET", url, params=params) as response:
                result["status"] = response.status_code
                result["content_type"] = response.headers["content-type"]
                sse = SseStream(response)
                first = await sse.next()
                assert first is not None
                result["snapshot"] = (first.get("id"), orjson.loads(first["data"]))
                for seq in range(1, 4):
                    await send_acked(drv, single(seq, ts0), seq)
                upto = (await fetch_trip(gateway.base, trip["id"]))["seq"]
                result["live"] = await sse.until(upto)
            last_id = result["live"][-1][0]
            for seq in range(4, 7):
                await send_acked(drv, single(seq, ts0), seq)
            upto = (await fetch_trip(gateway.base, trip["id"]))["seq"]
            headers = {"Last-Event-ID": str(last_id)}
            async with (
                http.stream("GET", url, params=params, headers=headers) as response,
                trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider,
            ):
                sse = SseStream(response)
                result["resumed"] = await sse.until(upto)
                assert (await recv_json(rider))["type"] == "snapshot"
                cancel = await http.post(
                    f"{gateway.base}/v1/trips/{trip['id']}/actions",
                    json={"action": "cancel"},
                    headers={"Authorization": f"Bearer {token('ops')}"},
                )
                assert cancel.status_code == 200, cancel.text
                result["terminal"] = await sse.until(cancel.json()["seq"])
                result["after_terminal"] = await sse.next()
                status, _ = await recv_until(rider, lambda f: f["type"] == "status")
                result["ws_status"] = status
                try:
                    extra = await recv_json(rider)
                    result["ws_close"] = f"unexpected frame {extra}"
                except ConnectionClosed as closed:
                    result["ws_close"] = closed.rcvd.code if closed.rcvd else None

    asyncio.run(scenario())
    assert result["status"] == 200 and result["content_type"].startswith("text/event-stream")
    snap_id, snapshot = result["snapshot"]
    assert snapshot["type"] == "snapshot" and snap_id == str(snapshot["trip"]["seq"])
    live = result["live"]
    assert all(event_id == str(data["seq"]) for event_id, data in live)
    assert_consecutive([data for _, data in live], snapshot["trip"]["seq"])
    resumed = result["resumed"]
    assert resumed[0][1]["type"] != "snapshot"
    assert all(event_id == str(data["seq"]) for event_id, data in resumed)
    assert_consecutive([data for _, data in resumed], int(live[-1][0]))
    terminal_id, terminal = result["terminal"][-1]
    assert terminal["type"] == "status" and terminal["status"] == "cancelled"
    assert terminal_id == str(terminal["seq"])
    assert result["after_terminal"] is None  # the stream ended
    assert result["ws_status"]["status"] == "cancelled"
    assert result["ws_status"]["seq"] == terminal["seq"]
    assert result["ws_close"] == 1000


def test_driver_gets_trip_frames_on_assign_and_cancel(gateway: Gateway, api: Api) -> None:
    """A connected driver gets {"type":"trip"} when ops assigns it a trip and when ops cancels."""
    driver = uid("d-frames")
    trip = api.create_trip()
    assert trip["status"] == "requested"

    async def scenario() -> tuple[Frame, Frame]:
        async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
            assigned = await asyncio.to_thread(
                api.post, f"/v1/trips/{trip['id']}/assign", {"driver_id": driver}
            )
            assert assigned.status_code == 200, assigned.text
            on_assign, _ = await recv_until(drv, lambda f: f["type"] == "trip")
            cancelled = await asyncio.to_thread(
                api.post, f"/v1/trips/{trip['id']}/actions", {"action": "cancel"}
            )
            assert cancelled.status_code == 200, cancelled.text
            on_cancel, _ = await recv_until(
                drv, lambda f: f["type"] == "trip" and f["trip"]["status"] == "cancelled"
            )
        return on_assign, on_cancel

    on_assign, on_cancel = asyncio.run(scenario())
    assert on_assign["trip"]["id"] == trip["id"]
    assert on_assign["trip"]["status"] == "assigned"
    assert on_assign["trip"]["driver_id"] == driver
    assert on_cancel["trip"]["id"] == trip["id"] and on_cancel["trip"]["driver_id"] == driver


def test_resume_after_terminal_replays_to_the_status_then_closes_1000(
    gateway: Gateway, api: Api
) -> None:
    """since=N on a cancelled trip replays the events after N up to `cancelled`, then close 1000."""
    driver = uid("d-late")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000

    async def scenario() -> tuple[int, list[Frame], int | None]:
        async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
            await send_acked(drv, single(1, ts0), 1)
        since = (await fetch_trip(gateway.base, trip["id"]))["seq"]
        async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
            await send_acked(drv, single(2, ts0), 2)
        cancelled = await asyncio.to_thread(
            api.post, f"/v1/trips/{trip['id']}/actions", {"action": "cancel"}
        )
        assert cancelled.status_code == 200, cancelled.text
        frames: list[Frame] = []
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"], since=since) as rider:
            try:
                while True:
                    frames.append(await recv_json(rider))
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
        return since, frames, code

    since, frames, code = asyncio.run(scenario())
    assert code == 1000
    assert_consecutive(frames, since)
    assert frames[-1]["type"] == "status" and frames[-1]["status"] == "cancelled"
    assert any(f["type"] == "position" for f in frames)


def test_negative_since_is_answered_not_dropped(gateway: Gateway, api: Api) -> None:
    """since=-3 gets a snapshot or a clean 4xxx close, never a dropped connection."""
    trip = api.create_trip(driver_id=uid("d-neg"))

    async def scenario() -> Frame | int | None:
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"], since=-3) as rider:
            try:
                return await recv_json(rider)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    answer = asyncio.run(scenario())
    if isinstance(answer, dict):
        assert answer["type"] == "snapshot"
    else:
        assert answer is not None and 4000 <= answer < 5000, answer
