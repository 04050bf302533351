"""Every bad input gets its error code, and harms nothing: not the socket, the data, or others."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.client import (
    DRIVER_START,
    DROPOFF,
    PICKUP,
    Api,
    driver_ws,
    now_ms,
    pos,
    recv_json,
    recv_until,
    trip_ws,
)
from tests.integration.conftest import Gateway, token

Frame = dict[str, Any]
LON, LAT = DRIVER_START
MAX_FRAME_BYTES = 64 * 1024
BAD_SEQ = 2
"""Seq of a bad point; the first good fix is 1 and the good fix after it 3."""
OMIT = object()
"""A field left out of a frame or body."""
UNCHECKED = object()
"""The error frame's seq is not checked (the frame's own seq was not a valid one)."""


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def bad_pos(first_ts: int, **override: Any) -> str:
    """A pos frame with seq BAD_SEQ, one second after the first fix, with fields overridden."""
    fields: Frame = {"type": "pos", "seq": BAD_SEQ, "ts": first_ts + 1000, "lon": LON, "lat": LAT}
    fields.update(override)
    return frame(**{k: v for k, v in fields.items() if v is not OMIT})


def assert_error_body(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "detail"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"], body


def assert_error_frame(error: Frame, code: str, seq: object) -> None:
    assert error["type"] == "error" and error["code"] == code, error
    assert isinstance(error["detail"], str) and error["detail"], error
    if seq is None:
        assert "seq" not in error, error
    elif seq is not UNCHECKED:
        assert error["seq"] == seq, error


# --- bad driver frames ------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    trip_id: str
    other_trip_id: str
    ts: int
    """ts of the driver's first, accepted fix."""


@dataclass(frozen=True)
class BadFrame:
    make: Callable[[Ctx], str]
    code: str
    seq: object = None


def _batch(c: Ctx) -> str:
    points = [
        {"seq": BAD_SEQ + i, "ts": c.ts + 1000 + i, "lon": LON, "lat": LAT} for i in range(501)
    ]
    return frame(type="pos_batch", points=points)


BAD_FRAMES = {
    "malformed_json": BadFrame(lambda c: '{"type": "pos", "seq": 2, "lon": ', "bad_frame"),
    "json_array": BadFrame(lambda c: '[{"type": "pos", "seq": 2}]', "bad_frame"),
    "unknown_type": BadFrame(lambda c: frame(type="nope"), "unknown_type"),
    "no_type": BadFrame(lambda c: frame(seq=2, lon=LON, lat=LAT), "unknown_type"),
    "lon_not_a_number": BadFrame(lambda c: bad_pos(c.ts, lon="abc"), "invalid_position", 2),
    "lon_200": BadFrame(lambda c: bad_pos(c.ts, lon=200), "invalid_position", 2),
    "lat_minus_95": BadFrame(lambda c: bad_pos(c.ts, lat=-95), "invalid_position", 2),
    # Found by test_fuzz: the geo index holds no latitude past ±85.05112878, and such a
    # point used to fail the whole write and drop the socket without a close frame.
    "lat_beyond_geo_index": BadFrame(
        lambda c: bad_pos(c.ts, lat=85.0511288), "invalid_position", 2
    ),
    "missing_seq": BadFrame(lambda c: bad_pos(c.ts, seq=OMIT), "bad_frame"),
    "seq_zero": BadFrame(lambda c: bad_pos(c.ts, seq=0), "bad_frame", UNCHECKED),
    "seq_negative": BadFrame(lambda c: bad_pos(c.ts, seq=-5), "bad_frame", UNCHECKED),
    "seq_a_string": BadFrame(lambda c: bad_pos(c.ts, seq="2"), "bad_frame", UNCHECKED),
    "ts_a_string": BadFrame(lambda c: bad_pos(c.ts, ts=str(c.ts + 1000)), "bad_frame", 2),
    "heading_400": BadFrame(lambda c: bad_pos(c.ts, heading=400), "bad_frame", 2),
    "acc_negative": BadFrame(lambda c: bad_pos(c.ts, acc=-1.0), "bad_frame", 2),
    "ts_10_min_ahead": BadFrame(lambda c: bad_pos(c.ts, ts=now_ms() + 600_000), "future_ts", 2),
    "ts_before_last_fix": BadFrame(lambda c: bad_pos(c.ts, ts=c.ts - 1000), "out_of_order", 2),
    # ~11 km in one second: far above 90 m/s.
    "implausible_jump": BadFrame(lambda c: bad_pos(c.ts, lon=LON + 0.2), "implausible_jump", 2),
    "batch_of_501": BadFrame(_batch, "batch_too_large"),
    "action_on_others_trip": BadFrame(
        lambda c: frame(type="action", trip_id=c.other_trip_id, action="cancel"), "forbidden"
    ),
    "action_on_unknown_trip": BadFrame(
        lambda c: frame(type="action", trip_id=uid("t-missing"), action="cancel"), "not_found"
    ),
    "action_fly": BadFrame(
        lambda c: frame(type="action", trip_id=c.trip_id, action="fly"), "bad_frame"
    ),
    "start_while_assigned": BadFrame(
        lambda c: frame(type="action", trip_id=c.trip_id, action="start"), "illegal_transition"
    ),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_bad_driver_frame(gateway: Gateway, api: Api, case: BadFrame) -> None:
    """A bad frame gets its error code; the socket, the stored trip and the rider carry on."""
    driver_id = uid("d-bad")
    trip = api.create_trip(driver_id=driver_id)
    other = api.create_trip(driver_id=uid("d-bad-other"))
    ctx = Ctx(trip["id"], other["id"], now_ms() - 60_000)
    good_ts = ctx.ts + 2000

    async def scenario() -> None:
        async with (
            driver_ws(gateway.ws_base, token("driver", driver_id)) as drv,
            httpx.AsyncClient(base_url=gateway.base, headers=api.headers, timeout=10) as http,
        ):

            async def both_trips() -> list[Frame]:
                return [
                    (await http.get(f"/v1/trips/{t}")).json() for t in (trip["id"], other["id"])
                ]

            await recv_until(drv, lambda f: f["type"] == "trip")
            await drv.send(pos(1, LON, LAT, ctx.ts))
            await recv_until(drv, lambda f: f["type"] == "ack" and f["seq"] == 1)
            async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
                snapshot = await recv_json(rider)
                assert snapshot["type"] == "snapshot"
                before = await both_trips()
                assert snapshot["trip"]["seq"] == before[0]["seq"]

                await drv.send(case.make(ctx))
                error, seen = await recv_until(drv, lambda f: f["type"] == "error")
                assert_error_frame(error, case.code, case.seq)
                assert await both_trips() == before, "a rejected frame changed a trip"

                # Still open: the next good fix is acked, and only it is.
                await drv.send(pos(3, LON, LAT, good_ts))
                _, more = await recv_until(drv, lambda f: f["type"] == "ack" and f["seq"] == 3)
                for f in seen + more:
                    assert f["type"] in ("trip", "ack"), f
                    assert f["type"] != "ack" or f["seq"] == 1, f

                # The rider's next event is the good fix's position: the bad frame made none.
                position, _ = await recv_until(rider, lambda f: f["type"] == "position")
                assert position["seq"] == before[0]["seq"] + 1

            after = (await http.get(f"/v1/trips/{trip['id']}")).json()
            assert after["status"] == "assigned" and after["driver"]["ts"] == good_ts
            trail = (await http.get(f"/v1/trips/{trip['id']}/trail")).json()
            assert trail["properties"]["seqs"] == [1, 3]
            assert trail["properties"]["timestamps"] == [ctx.ts, good_ts]
            assert (await http.get(f"/v1/trips/{other['id']}")).json() == before[1]

    asyncio.run(scenario())


def _padded_pos(seq: int, ts: int, size: int) -> str:
    """A valid pos frame of exactly `size` bytes (an unknown field is ignored)."""
    base = pos(seq, LON, LAT, ts, pad="")
    text = base[:-2] + "x" * (size - len(base)) + base[-2:]
    assert len(text.encode()) == size and orjson.loads(text)["seq"] == seq
    return text


def test_frame_of_64_kib_is_accepted_and_one_byte_more_closes_1009(gateway: Gateway) -> None:
    """A frame of exactly 64 KiB is handled; a frame over 64 KiB closes the socket with 1009."""
    driver_id = uid("d-big")
    ts = now_ms() - 60_000

    async def scenario() -> int | None:
        async with driver_ws(gateway.ws_base, token("driver", driver_id)) as drv:
            await drv.send(_padded_pos(1, ts, MAX_FRAME_BYTES))
            ack = await recv_json(drv)
            assert ack == {"type": "ack", "seq": 1}
            await drv.send(_padded_pos(2, ts + 1000, MAX_FRAME_BYTES + 1))
            try:
                extra = await recv_json(drv)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
            raise AssertionError(f"still open after an oversized frame: {extra}")

    assert asyncio.run(scenario()) == 1009


async def _frames_until_closed(ws: Any, timeout_s: float = 10.0) -> tuple[list[Frame], int | None]:
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await recv_json(ws, timeout_s))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


def test_too_many_bad_frames_close_4429(start_gateway: Callable[..., Gateway]) -> None:
    """Up to TRACKING_MAX_BAD_FRAMES bad frames are tolerated; one more closes with 4429."""
    gw = start_gateway(TRACKING_MAX_BAD_FRAMES="3")
    driver_id = uid("d-strikes")
    ts = now_ms() - 60_000

    async def scenario() -> tuple[list[Frame], int | None]:
        async with driver_ws(gw.ws_base, token("driver", driver_id)) as drv:
            for _ in range(3):
                await drv.send("not json")
                assert_error_frame(await recv_json(drv), "bad_frame", None)
            # Rejected points are not bad frames: they do not count toward the limit.
            await drv.send(pos(1, LON, LAT, ts))
            assert await recv_json(drv) == {"type": "ack", "seq": 1}
            for seq in (2, 3, 4):
                await drv.send(pos(seq, LON, 95.0, ts + 1000))
                assert_error_frame(await recv_json(drv), "invalid_position", seq)
                assert await recv_json(drv) == {"type": "ack", "seq": 1}
            await drv.send(pos(5, LON, LAT, ts + 2000))
            assert await recv_json(drv) == {"type": "ack", "seq": 5}
            await drv.send("[]")
            return await _frames_until_closed(drv)

    frames, code = asyncio.run(scenario())
    assert code == 4429
    assert [f["code"] for f in frames] == ["bad_frame", "rate_limited"]


def test_too_many_live_points_close_4429(start_gateway: Callable[..., Gateway]) -> None:
    """More pos frames at once than TRACKING_MAX_POINTS_PER_S closes with 4429."""
    gw = start_gateway(TRACKING_MAX_POINTS_PER_S="5")
    driver_id = uid("d-flood")
    ts = now_ms() - 60_000

    async def scenario() -> tuple[list[Frame], int | None]:
        async with driver_ws(gw.ws_base, token("driver", driver_id)) as drv:
            try:
                for seq in range(1, 21):
                    await drv.send(pos(seq, LON, LAT, ts + seq * 1000))
            except ConnectionClosed:
                pass  # closed while we were still sending: what we want
            return await _frames_until_closed(drv)

    frames, code = asyncio.run(scenario())
    assert code == 4429
    # Acks are cumulative: frames read while a write was in flight share one.
    acks = [f["seq"] for f in frames if f["type"] == "ack"]
    assert acks == sorted(set(acks)) and acks and 5 <= acks[-1] < 20, frames
    assert frames[len(acks)]["type"] == "error" and frames[len(acks)]["code"] == "rate_limited"


def test_long_replays_are_paced_not_refused(start_gateway: Callable[..., Gateway]) -> None:
    """Batches beyond the burst (2 × max_batch_points) are slowed down, all stored and acked."""
    gw = start_gateway(TRACKING_MAX_BATCH_POINTS="50")
    driver_id = uid("d-replay")
    ts = now_ms() - 600_000

    def batch(first_seq: int) -> str:
        points = [
            {"seq": s, "ts": ts + s * 100, "lon": LON, "lat": LAT}
            for s in range(first_seq, first_seq + 50)
        ]
        return frame(type="pos_batch", points=points)

    async def scenario() -> list[Frame]:
        async with driver_ws(gw.ws_base, token("driver", driver_id)) as drv:
            acks = []
            for first_seq in range(1, 251, 50):  # 250 points: 2.5 × the burst
                await drv.send(batch(first_seq))
                acks.append(await recv_json(drv))
            return acks

    acks = asyncio.run(scenario())
    assert acks == [{"type": "ack", "seq": s} for s in range(50, 251, 50)]


def test_trip_channel_with_a_bad_since_is_closed_readably(gateway: Gateway, api: Api) -> None:
    """A non-integer `since` is accepted and then closed with a close frame, not refused."""
    trip = api.create_trip(driver_id=uid("d-since"))

    async def scenario() -> tuple[list[Frame], int | None]:
        url = f"{gateway.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}&since=abc"
        async with connect(url) as ws:
            return await _frames_until_closed(ws)

    frames, code = asyncio.run(scenario())
    assert frames == [] and code not in (None, 1000, 1006)


# --- frames a rider sends ---------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        pytest.param("{not json", "bad_frame", id="malformed_json"),
        pytest.param(b"\x00\xff", "bad_frame", id="binary_garbage"),
        pytest.param(frame(type="subscribe"), "unknown_type", id="unknown_type"),
        pytest.param(frame(type="pos", seq=1, ts=1, lon=LON, lat=LAT), "unknown_type", id="pos"),
        pytest.param(frame(hello=1), "bad_frame", id="no_type"),
        pytest.param("[1, 2]", "bad_frame", id="json_array"),
    ],
)
def test_rider_frame_gets_error_and_keeps_receiving(
    gateway: Gateway, api: Api, sent: str | bytes, code: str
) -> None:
    """A frame from a rider gets an error frame; the rider keeps receiving the trip's events."""
    driver_id = uid("d-rider-talks")
    trip = api.create_trip(driver_id=driver_id)

    async def scenario() -> None:
        async with trip_ws(gateway.ws_base, trip["id"], trip["rider_token"]) as rider:
            snapshot = await recv_json(rider)
            assert snapshot["type"] == "snapshot"
            await rider.send(sent)
            error = await recv_json(rider)
            assert set(error) == {"type", "code", "detail"}, error
            assert_error_frame(error, code, None)
            async with driver_ws(gateway.ws_base, token("driver", driver_id)) as drv:
                await drv.send(pos(1, LON, LAT, now_ms() - 1000))
                await recv_until(drv, lambda f: f["type"] == "ack")
            position, _ = await recv_until(rider, lambda f: f["type"] == "position")
            assert position["seq"] == snapshot["trip"]["seq"] + 1

    asyncio.run(scenario())


def test_trip_channel_for_unknown_trip_closes_4404(gateway: Gateway) -> None:
    """Subscribing to a trip that does not exist is accepted, then closed with 4404."""

    async def scenario() -> int | None:
        async with trip_ws(gateway.ws_base, uid("t-missing"), token("ops")) as ws:
            frames, code = await _frames_until_closed(ws)
            assert frames == []
            return code

    assert asyncio.run(scenario()) == 4404


# --- bad HTTP requests ------------------------------------------------------

HTTP_DRIVER = uid("d-http-bad")
MISSING = uid("t-missing")
OUTSIDE = {"lon": 25.5, "lat": 60.2}  # ~30 km east of the map
NO_BODY = object()


def _points(n: int) -> dict[str, Any]:
    ts = now_ms() - 600_000
    return {"points": [{"seq": i + 1, "ts": ts + i, "lon": LON, "lat": LAT} for i in range(n)]}


@dataclass(frozen=True)
class BadRequest:
    method: str
    path: str
    body: Any = NO_BODY
    status: int = 422
    code: str = "validation_error"
    params: dict[str, Any] | None = None
    as_driver: bool = False


def _trip_body(**override: Any) -> dict[str, Any]:
    body = {"pickup": PICKUP, "dropoff": DROPOFF, **override}
    return {k: v for k, v in body.items() if v is not OMIT}


NEARBY = {"lon": LON, "lat": LAT, "radius_m": 100}
POSITIONS = f"/v1/drivers/{HTTP_DRIVER}/positions"
BAD_REQUESTS = {
    "create_missing_pickup": BadRequest("POST", "/v1/trips", _trip_body(pickup=OMIT)),
    "create_missing_dropoff": BadRequest("POST", "/v1/trips", _trip_body(dropoff=OMIT)),
    "create_lon_500": BadRequest("POST", "/v1/trips", _trip_body(pickup={"lon": 500, "lat": 60})),
    "create_lat_a_string": BadRequest(
        "POST", "/v1/trips", _trip_body(pickup={"lon": LON, "lat": "60.17"})
    ),
    "create_kind_boat": BadRequest("POST", "/v1/trips", _trip_body(kind="boat")),
    "create_id_with_space": BadRequest("POST", "/v1/trips", _trip_body(id="t 1")),
    "create_id_too_long": BadRequest("POST", "/v1/trips", _trip_body(id="t" * 129)),
    "create_malformed_json": BadRequest("POST", "/v1/trips", b'{"pickup": '),
    "create_body_not_utf8": BadRequest("POST", "/v1/trips", b'{"pickup": {"lon": "\xff"}}'),
    "positions_body_not_utf8": BadRequest("POST", POSITIONS, b'{"points": "\xe9"}', as_driver=True),
    "create_array_body": BadRequest("POST", "/v1/trips", []),
    "create_pickup_outside_map": BadRequest(
        "POST", "/v1/trips", _trip_body(pickup=OUTSIDE), code="outside_coverage"
    ),
    "create_dropoff_outside_map": BadRequest(
        "POST", "/v1/trips", _trip_body(dropoff=OUTSIDE), code="outside_coverage"
    ),
    "get_unknown_trip": BadRequest("GET", f"/v1/trips/{MISSING}", status=404, code="not_found"),
    "assign_unknown_trip": BadRequest(
        "POST", f"/v1/trips/{MISSING}/assign", {"driver_id": "d-x"}, 404, "not_found"
    ),
    "act_on_unknown_trip": BadRequest(
        "POST", f"/v1/trips/{MISSING}/actions", {"action": "cancel"}, 404, "not_found"
    ),
    "trail_of_unknown_trip": BadRequest(
        "GET", f"/v1/trips/{MISSING}/trail", status=404, code="not_found"
    ),
    "events_of_unknown_trip": BadRequest(
        "GET", f"/v1/trips/{MISSING}/events", status=404, code="not_found"
    ),
    "assign_empty_object": BadRequest("POST", "/v1/trips/{trip}/assign", {}),
    "assign_no_body": BadRequest("POST", "/v1/trips/{trip}/assign"),
    "assign_empty_driver_id": BadRequest("POST", "/v1/trips/{trip}/assign", {"driver_id": ""}),
    "action_fly": BadRequest("POST", "/v1/trips/{trip}/actions", {"action": "fly"}),
    "action_missing": BadRequest("POST", "/v1/trips/{trip}/actions", {}),
    "events_since_negative": BadRequest("GET", "/v1/trips/{trip}/events", params={"since": -1}),
    "nearby_lon_500": BadRequest("GET", "/v1/drivers/nearby", params={**NEARBY, "lon": 500}),
    # Found by schemathesis: Redis GEO refuses such a centre, which used to be a 500.
    "nearby_lat_89": BadRequest("GET", "/v1/drivers/nearby", params={**NEARBY, "lat": 89}),
    "nearby_no_lat": BadRequest("GET", "/v1/drivers/nearby", params={"lon": LON}),
    "nearby_radius_0": BadRequest("GET", "/v1/drivers/nearby", params={**NEARBY, "radius_m": 0}),
    "nearby_radius_over_cap": BadRequest(
        "GET", "/v1/drivers/nearby", params={**NEARBY, "radius_m": 100_001}
    ),
    "positions_no_points": BadRequest("POST", POSITIONS, {}, as_driver=True),
    "positions_seq_a_string": BadRequest(
        "POST",
        POSITIONS,
        {"points": [{"seq": "1", "ts": now_ms(), "lon": LON, "lat": LAT}]},
        as_driver=True,
    ),
    "positions_lon_not_a_number": BadRequest(
        "POST",
        POSITIONS,
        {"points": [{"seq": 1, "ts": now_ms(), "lon": "abc", "lat": LAT}]},
        as_driver=True,
    ),
    "positions_501_points": BadRequest(
        "POST", POSITIONS, _points(501), 413, "batch_too_large", as_driver=True
    ),
    "unknown_path": BadRequest("GET", "/v1/nope", status=404, code="not_found"),
    "wrong_method": BadRequest("DELETE", "/v1/trips/{trip}", status=405, code="method_not_allowed"),
}


@pytest.fixture(scope="module")
def http_trip(gateway: Gateway) -> Iterator[str]:
    """One trip, assigned to HTTP_DRIVER, that the bad requests must leave alone."""
    trip = Api(gateway.base, token("ops")).create_trip(driver_id=HTTP_DRIVER)
    yield trip["id"]


@pytest.mark.parametrize("case", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_http_request(gateway: Gateway, api: Api, http_trip: str, case: BadRequest) -> None:
    """A bad HTTP request gets its status and error body, and changes no trip."""
    before = api.get(f"/v1/trips/{http_trip}").json()
    tok = token("driver", HTTP_DRIVER) if case.as_driver else token("ops")
    kwargs: dict[str, Any] = {}
    if isinstance(case.body, bytes):
        kwargs = {"content": case.body, "headers": {"Content-Type": "application/json"}}
    elif case.body is not NO_BODY:
        kwargs = {"json": case.body}
    response = httpx.request(
        case.method,
        gateway.base + case.path.format(trip=http_trip),
        params=case.params,
        headers={"Authorization": f"Bearer {tok}", **kwargs.pop("headers", {})},
        timeout=10,
        **kwargs,
    )
    assert_error_body(response, case.status, case.code)
    assert api.get(f"/v1/trips/{http_trip}").json() == before


def test_duplicate_trip_id_is_refused_and_keeps_the_first(api: Api) -> None:
    """Creating a trip with an existing id is 409 already_exists; the first trip is untouched."""
    trip_id = uid("t-dup")
    first = api.create_trip(id=trip_id)
    before = api.get(f"/v1/trips/{trip_id}").json()
    assert before["status"] == "requested"
    again = api.post(
        "/v1/trips",
        {"pickup": DROPOFF, "dropoff": PICKUP, "id": trip_id, "driver_id": uid("d-dup")},
    )
    assert_error_body(again, 409, "already_exists")
    assert api.get(f"/v1/trips/{trip_id}").json() == before
    assert before["created_ts"] == first["created_ts"]


BAD_POINTS: dict[str, tuple[Callable[[int], dict[str, Any]], str]] = {
    "lat_minus_95": (lambda ts: {"ts": ts + 1000, "lon": LON, "lat": -95.0}, "invalid_position"),
    "lon_200": (lambda ts: {"ts": ts + 1000, "lon": 200.0, "lat": LAT}, "invalid_position"),
    "lat_89": (lambda ts: {"ts": ts + 1000, "lon": LON, "lat": 89.0}, "invalid_position"),
    "ts_10_min_ahead": (lambda ts: {"ts": now_ms() + 600_000, "lon": LON, "lat": LAT}, "future_ts"),
    "ts_before_last_fix": (lambda ts: {"ts": ts - 1000, "lon": LON, "lat": LAT}, "out_of_order"),
    "implausible_jump": (
        lambda ts: {"ts": ts + 1000, "lon": LON + 0.2, "lat": LAT},
        "implausible_jump",
    ),
}


@pytest.mark.parametrize(("make", "code"), list(BAD_POINTS.values()), ids=list(BAD_POINTS))
def test_bad_point_among_good_ones_over_http(
    gateway: Gateway, api: Api, make: Callable[[int], dict[str, Any]], code: str
) -> None:
    """POST positions stores the good points, acks them, and lists the bad one with its code."""
    driver_id = uid("d-mixed")
    trip = api.create_trip(driver_id=driver_id)
    ts = now_ms() - 60_000
    points = [
        {"seq": 1, "ts": ts, "lon": LON, "lat": LAT},
        {"seq": 2, **make(ts)},
        {"seq": 3, "ts": ts + 2000, "lon": LON, "lat": LAT},
    ]
    response = api.post(
        f"/v1/drivers/{driver_id}/positions", {"points": points}, token("driver", driver_id)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ack"] == 3
    assert [(e["code"], e["seq"]) for e in body["errors"]] == [(code, 2)]
    assert isinstance(body["errors"][0]["detail"], str) and body["errors"][0]["detail"]
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == [1, 3]
    assert api.get(f"/v1/trips/{trip['id']}").json()["driver"]["ts"] == ts + 2000


@pytest.mark.parametrize("trip_id", ["..", "."])
def test_trip_id_that_is_a_dot_segment_is_refused(gateway: Gateway, api: Api, trip_id: str) -> None:
    """An explicit trip id must be usable in its URLs: "." and ".." are refused."""
    response = api.post("/v1/trips", {"pickup": PICKUP, "dropoff": DROPOFF, "id": trip_id})
    assert_error_body(response, 422, "validation_error")


# --- regressions found by fuzzing ------------------------------------------------------
# They run on a gateway of their own, which is killed at the end: its log is judged by
# each test for its own lines only.


@pytest.fixture(scope="module")
def scratch_gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(redis_url, {}, tmp_path_factory.mktemp("scratch"))
    yield gw
    gw.proc.kill()
    gw.proc.wait()
    gw.log.close()


def _log_size(gw: Gateway) -> int:
    return Path(gw.log.name).stat().st_size


def _log_problems_since(gw: Gateway, offset: int) -> list[str]:
    time.sleep(0.3)  # let the gateway's last lines reach the file
    with open(gw.log.name, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    return [line for line in lines if "Traceback" in line or " ERROR " in line]


def test_since_with_a_non_ascii_digit_closes_4400(scratch_gateway: Gateway) -> None:
    """`since` is ASCII digits: '²' is closed with 4400 like any other bad `since`."""
    gw = scratch_gateway
    trip = Api(gw.base, token("ops")).create_trip()
    offset = _log_size(gw)

    async def scenario() -> tuple[list[Frame], int | None]:
        query = f"token={trip['rider_token']}&since={quote('²')}"
        async with connect(f"{gw.ws_base}/v1/trips/{trip['id']}/ws?{query}") as ws:
            return await _frames_until_closed(ws, 2.0)

    assert asyncio.run(scenario()) == ([], 4400)
    assert not _log_problems_since(gw, offset)


def test_sse_ignores_a_last_event_id_that_is_not_ascii_digits(scratch_gateway: Gateway) -> None:
    """A Last-Event-ID that is not a number is ignored, as the protocol says, never a 500."""
    gw = scratch_gateway
    api = Api(gw.base, token("ops"))
    trip = api.create_trip()
    assert api.post(f"/v1/trips/{trip['id']}/actions", {"action": "cancel"}).status_code == 200
    offset = _log_size(gw)
    response = httpx.get(
        f"{gw.base}/v1/trips/{trip['id']}/events",
        headers={**api.headers, "Last-Event-ID": b"\xb2"},  # type: ignore[dict-item]
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert not _log_problems_since(gw, offset)


def test_riders_that_leave_a_live_trip_free_their_handlers(scratch_gateway: Gateway) -> None:
    """Riders that disconnect while events flow leave no handler (or connection slot) behind."""
    gw = scratch_gateway
    driver_id = uid("d-leak")
    trip = Api(gw.base, token("ops")).create_trip(driver_id=driver_id)

    async def scenario() -> None:
        drv_url = f"{gw.ws_base}/v1/drivers/ws?token={token('driver', driver_id)}"
        async with connect(drv_url, max_queue=None) as drv:  # its acks pile up unread

            async def drive() -> None:
                for seq in range(1, 10_000):
                    await drv.send(pos(seq, LON + (seq % 2) * 1e-5, LAT, now_ms()))
                    await asyncio.sleep(0.05)

            driving = asyncio.create_task(drive())
            await asyncio.sleep(1.0)
            for _ in range(20):
                url = f"{gw.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}&since=0"
                async with connect(url, max_queue=None) as rider:  # reads on to the close frame
                    await rider.send("x")
                    await recv_until(rider, lambda f: f["type"] == "error")
            driving.cancel()

    asyncio.run(scenario())
    deadline = time.monotonic() + 3
    while _open_riders(gw) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_riders(gw) == 0


def _open_riders(gw: Gateway) -> int:
    metrics = httpx.get(f"{gw.base}/metrics", timeout=10).text
    for line in metrics.splitlines():
        if line.startswith('tracking_connections{kind="rider"} '):
            return int(float(line.split()[-1]))
    return 0
