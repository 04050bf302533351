"""The ops fleet feed and stats over real gateways, a real Redis and real sockets.

Drivers stream on the driver socket (or post over HTTP); ops viewers watch
`/v1/fleet/ws?bbox=…`. Every test uses its own drivers (and, where it can, its
own patch of the map), and looks only at them: other tests' drivers share
the Redis.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.client import (
    DRIVER_START,
    PICKUP,
    Api,
    driver_ws,
    first_frame_or_close,
    now_ms,
    pos,
    recv_json,
    recv_until,
)
from tests.integration.conftest import Gateway, token
from tracking.core.messages import fleet_outbound_adapter

Frame = dict[str, Any]
Box = tuple[float, float, float, float]
HELSINKI: Box = (24.92, 60.16, 24.96, 60.18)
"""Holds DRIVER_START and the pickup; trips need the bundled map's coverage."""


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def spot() -> tuple[float, float]:
    """A random place of this test's own, away from Helsinki and from other tests."""
    rng = random.Random(uuid.uuid4().int)
    return 5.0 + rng.random() * 5, 45.0 + rng.random() * 5


def around(lon: float, lat: float, half_deg: float = 0.01) -> Box:
    return (lon - half_deg, lat - half_deg, lon + half_deg, lat + half_deg)


def fleet_url(ws_base: str, tok: str | None, bbox: Box | str | None) -> str:
    params: dict[str, str] = {}
    if tok is not None:
        params["token"] = tok
    if bbox is not None:
        params["bbox"] = bbox if isinstance(bbox, str) else ",".join(f"{v:.6f}" for v in bbox)
    return f"{ws_base}/v1/fleet/ws" + (f"?{urlencode(params)}" if params else "")


def fleet_ws(ws_base: str, bbox: Box | str, tok: str | None = None) -> Any:
    return connect(fleet_url(ws_base, tok or token("ops"), bbox), max_size=2**24)


async def next_drivers(ws: ClientConnection, timeout_s: float = 10.0) -> Frame:
    """The next `drivers` frame (heartbeats skipped), checked against the fleet models."""
    frame, _ = await recv_until(ws, lambda f: f["type"] == "drivers", timeout_s)
    fleet_outbound_adapter.validate_python(frame)
    return frame


async def frames_for(ws: ClientConnection, duration_s: float) -> list[Frame]:
    """Every frame received within `duration_s`."""
    frames: list[Frame] = []
    deadline = time.monotonic() + duration_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return frames


def entries(frames: list[Frame], driver: str) -> list[tuple[int, Frame]]:
    """(frame ts, entry) of one driver across `drivers` frames."""
    return [
        (f["ts"], d)
        for f in frames
        if f["type"] == "drivers"
        for d in f["drivers"]
        if d["id"] == driver
    ]


def inside(box: Box, lon: float, lat: float) -> bool:
    return box[0] <= lon <= box[2] and box[1] <= lat <= box[3]


def post_fix(api: Api, driver: str, lon: float, lat: float, ts: int, seq: int = 1) -> None:
    point = {"seq": seq, "ts": ts, "lon": lon, "lat": lat, "acc": 5.0, "heading": 45.0}
    response = api.post(
        f"/v1/drivers/{driver}/positions", {"points": [point]}, token=token("driver", driver)
    )
    assert response.status_code == 200 and response.json()["ack"] == seq, response.text


async def stream(ws_base: str, driver: str, places: list[tuple[float, float]], gap_s: float) -> int:
    """Send `places` as live points `gap_s` apart on the driver socket; the last ts, once acked."""
    ts = now_ms()
    async with driver_ws(ws_base, token("driver", driver)) as drv:
        for seq, (lon, lat) in enumerate(places, start=1):
            ts = max(ts + 1, now_ms())
            await drv.send(pos(seq, lon, lat, ts, heading=90.0, speed=3.0))
            if gap_s:
                await asyncio.sleep(gap_s)
        await recv_until(drv, lambda f: f["type"] == "ack" and f["seq"] == len(places))
    return ts


def test_fleet_shows_streaming_drivers_with_trip_and_status(gateway: Gateway, api: Api) -> None:
    """Five drivers streaming in the box appear with their trip and status (none when free);
    a driver outside the box never appears; a cancelled trip clears the driver's trip at once."""
    free = [uid("d-fl-free"), uid("d-fl-free")]
    assigned = [uid("d-fl-asg"), uid("d-fl-asg")]
    at_pickup = uid("d-fl-pick")
    outside = uid("d-fl-out")
    trips = {d: api.create_trip(driver_id=d)["id"] for d in [*assigned, at_pickup]}
    lon0, lat0 = DRIVER_START
    walks = {
        d: [(lon0 + i * 1e-5 + k * 1e-4, lat0) for i in range(4)]
        for k, d in enumerate([*free, *assigned])
    }
    walks[at_pickup] = [(PICKUP["lon"], PICKUP["lat"] + i * 1e-6) for i in range(4)]
    walks[outside] = [(25.3 + i * 1e-5, 60.3) for i in range(4)]
    expected = {d: {} for d in free} | {
        d: {"trip_id": trips[d], "status": "assigned"} for d in assigned
    }
    expected[at_pickup] = {"trip_id": trips[at_pickup], "status": "arrived_pickup"}

    def shown(latest: dict[str, Frame]) -> dict[str, dict[str, str]]:
        return {
            d: {k: e[k] for k in ("trip_id", "status") if k in e}
            for d, e in latest.items()
            if d in expected
        }

    async def scenario() -> tuple[list[Frame], dict[str, Frame], Frame]:
        async with fleet_ws(gateway.ws_base, HELSINKI) as fleet:
            frames = [await next_drivers(fleet)]
            await asyncio.gather(*(stream(gateway.ws_base, d, w, 0.2) for d, w in walks.items()))
            latest: dict[str, Frame] = {}
            deadline = time.monotonic() + 8
            while shown(latest) != expected and time.monotonic() < deadline:
                frames.append(await next_drivers(fleet, deadline - time.monotonic()))
                latest.update({d["id"]: d for d in frames[-1]["drivers"]})
            # A status change with no new point reaches the fleet too.
            cancelled = assigned[0]
            response = api.post(f"/v1/trips/{trips[cancelled]}/actions", {"action": "cancel"})
            assert response.status_code == 200, response.text
            after, _ = await recv_until(
                fleet,
                lambda f: any(d["id"] == cancelled for d in f.get("drivers", ())),
                timeout_s=5,
            )
            frames.append(after)
        return frames, latest, after

    frames, latest, after = asyncio.run(scenario())
    assert shown(latest) == expected
    for driver, walk in walks.items():
        if driver != outside:
            assert (latest[driver]["lon"], latest[driver]["lat"]) == pytest.approx(walk[-1])
            assert latest[driver]["heading"] == 90.0 and latest[driver]["speed"] == 3.0
    assert not entries(frames, outside)
    for frame in frames:
        for d in frame["drivers"]:
            assert inside(HELSINKI, d["lon"], d["lat"]), d
    (entry,) = [d for d in after["drivers"] if d["id"] == assigned[0]]
    assert "trip_id" not in entry and "status" not in entry
    assert (entry["lon"], entry["lat"]) == pytest.approx(walks[assigned[0]][-1])


def test_fast_driver_is_conflated_to_one_update_per_interval(gateway: Gateway) -> None:
    """A driver sending 10 points/s for 3 s is sent about once a second (frames at least
    ~1 s apart by their server ts), and its last point is sent in the end."""
    driver = uid("d-fl-fast")
    lon0, lat0 = spot()
    walk = [(lon0 + i * 1e-5, lat0) for i in range(30)]

    async def scenario() -> tuple[list[Frame], int]:
        async with fleet_ws(gateway.ws_base, around(lon0, lat0)) as fleet:
            first = await next_drivers(fleet)
            watcher = asyncio.create_task(frames_for(fleet, 5.5))
            last_ts = await stream(gateway.ws_base, driver, walk, 0.1)
            return [first, *await watcher], last_ts

    frames, last_ts = asyncio.run(scenario())
    drivers_frames = [f for f in frames if f["type"] == "drivers"]
    gaps = [b["ts"] - a["ts"] for a, b in zip(drivers_frames, drivers_frames[1:], strict=False)]
    assert all(gap >= 900 for gap in gaps), gaps
    sent = entries(frames, driver)
    assert 2 <= len(sent) <= 5, [e["ts"] for _, e in sent]
    assert sent[-1][1]["ts"] == last_ts
    assert (sent[-1][1]["lon"], sent[-1][1]["lat"]) == pytest.approx(walk[-1])
    assert [e["ts"] for _, e in sent] == sorted(e["ts"] for _, e in sent)


def test_snapshot_on_connect_has_fresh_drivers_even_if_they_stopped(
    gateway: Gateway, api: Api
) -> None:
    """The first frame is a snapshot of every driver in the box with a fix at most 5 min old,
    moving or not, with its active trip; older fixes are left out."""
    stopped, on_trip, stale = uid("d-fl-stop"), uid("d-fl-trip"), uid("d-fl-stale")
    trip = api.create_trip(driver_id=on_trip)
    lon0, lat0 = DRIVER_START
    ts = now_ms() - 2_000
    post_fix(api, stopped, lon0 + 3e-4, lat0, ts)
    post_fix(api, on_trip, lon0, lat0 + 3e-4, ts)
    post_fix(api, stale, lon0 - 3e-4, lat0, now_ms() - 400_000)

    async def scenario() -> Frame:
        async with fleet_ws(gateway.ws_base, HELSINKI) as fleet:
            return await recv_json(fleet)

    snapshot = asyncio.run(scenario())
    assert snapshot["type"] == "drivers" and snapshot["snapshot"] is True
    assert abs(snapshot["ts"] - now_ms()) < 10_000
    by_id = {d["id"]: d for d in snapshot["drivers"]}
    assert stale not in by_id
    assert by_id[stopped] == {
        "id": stopped, "lon": pytest.approx(lon0 + 3e-4), "lat": pytest.approx(lat0),
        "heading": 45.0, "speed": None, "ts": ts,
    }  # fmt: skip
    assert by_id[on_trip]["trip_id"] == trip["id"] and by_id[on_trip]["status"] == "assigned"


def test_bbox_frame_switches_the_box_with_a_new_snapshot(gateway: Gateway, api: Api) -> None:
    """`{"type":"bbox","bbox":[…]}` answers with a snapshot of the new box only; updates
    follow for the new box, not the old one."""
    here, there = uid("d-fl-here"), uid("d-fl-there")
    (lon1, lat1), (lon2, lat2) = spot(), spot()
    ts = now_ms() - 1_000
    post_fix(api, here, lon1, lat1, ts)
    post_fix(api, there, lon2, lat2, ts)

    async def scenario() -> tuple[Frame, Frame, list[Frame]]:
        async with fleet_ws(gateway.ws_base, around(lon1, lat1, 0.001)) as fleet:
            first = await next_drivers(fleet)
            await fleet.send(orjson.dumps({"type": "bbox", "bbox": around(lon2, lat2, 0.001)}))
            second = await next_drivers(fleet, 5)
            post_fix(api, here, lon1 + 1e-4, lat1, ts + 1_000, seq=2)
            post_fix(api, there, lon2 + 1e-4, lat2, ts + 1_000, seq=2)
            later = await frames_for(fleet, 2.5)
        return first, second, later

    first, second, later = asyncio.run(scenario())
    assert [d["id"] for d in first["drivers"]] == [here] and first["snapshot"] is True
    assert [d["id"] for d in second["drivers"]] == [there] and second["snapshot"] is True
    assert [e["lon"] for _, e in entries(later, there)] == [pytest.approx(lon2 + 1e-4)]
    assert not entries(later, here)


def test_bad_client_frames_get_error_frames_and_the_feed_goes_on(
    gateway: Gateway, api: Api
) -> None:
    """Non-JSON: bad_frame; another type: unknown_type; a bad box: validation_error. The
    socket stays open and keeps delivering."""
    driver = uid("d-fl-bad")
    lon0, lat0 = spot()
    bad = [
        ("not json", "bad_frame"),
        ('{"no": "type"}', "bad_frame"),
        ('{"type": "zoom", "level": 3}', "unknown_type"),
        ('{"type": "bbox", "bbox": [1, 2, 3]}', "validation_error"),
        ('{"type": "bbox", "bbox": [3, 0, 1, 1]}', "validation_error"),
        ('{"type": "bbox", "bbox": [0, 0, 1, 91]}', "validation_error"),
    ]

    async def scenario() -> tuple[list[Frame], Frame]:
        async with fleet_ws(gateway.ws_base, around(lon0, lat0)) as fleet:
            await next_drivers(fleet)
            errors = []
            for raw, _ in bad:
                await fleet.send(raw)
                errors.append(await recv_json(fleet))
            post_fix(api, driver, lon0, lat0, now_ms())
            update = await next_drivers(fleet, 5)
        return errors, update

    errors, update = asyncio.run(scenario())
    assert [e["code"] for e in errors] == [code for _, code in bad]
    for error in errors:
        assert error["type"] == "error" and error["detail"]
        fleet_outbound_adapter.validate_python(error)
    assert [d["id"] for d in update["drivers"]] == [driver]


@pytest.mark.parametrize(
    ("caller", "bbox", "code"),
    [
        (None, HELSINKI, 4401),
        ("garbage", HELSINKI, 4401),
        ("rider", HELSINKI, 4403),
        ("driver", HELSINKI, 4403),
        ("driver", "nonsense", 4403),  # who may call comes before what they sent
        ("ops", None, 4400),
        ("ops", "", 4400),
        ("ops", "24.9,60.1,25.0", 4400),
        ("ops", "a,b,c,d", 4400),
        ("ops", "25.0,60.1,24.9,60.2", 4400),
        ("ops", "24.9,60.1,25.0,95", 4400),
    ],
)
def test_fleet_feed_refuses(
    gateway: Gateway, caller: str | None, bbox: Box | str | None, code: int
) -> None:
    """Accept, then close: 4401 without a valid token, 4403 for riders and drivers, 4400 for
    a missing or invalid bbox."""
    tokens = {
        None: None,
        "garbage": "not-a-jwt",
        "rider": token("rider", "rider:t-x", trip="t-x"),
        "driver": token("driver", "d-x"),
        "ops": token("ops"),
    }
    url = fleet_url(gateway.ws_base, tokens[caller], bbox)
    frame, closed, reason = asyncio.run(first_frame_or_close(url))
    assert frame is None, frame
    assert closed == code and reason


def test_fleet_feed_takes_the_token_from_the_authorization_header(gateway: Gateway) -> None:
    """An ops token in `Authorization: Bearer` is admitted like `?token=`."""
    url = fleet_url(gateway.ws_base, None, around(*spot()))
    headers = {"Authorization": f"Bearer {token('ops')}"}
    frame, closed, _ = asyncio.run(first_frame_or_close(url, headers))
    assert closed is None and frame is not None
    assert frame == {"type": "drivers", "ts": frame["ts"], "drivers": [], "snapshot": True}


def test_viewer_on_another_gateway_sees_the_driver(
    gateway: Gateway, start_gateway: Callable[..., Gateway]
) -> None:
    """A driver streaming to gateway A is seen by a fleet viewer on gateway B."""
    other = start_gateway()
    driver = uid("d-fl-gw")
    lon0, lat0 = spot()
    walk = [(lon0 + i * 1e-5, lat0) for i in range(3)]

    async def scenario() -> Frame:
        async with fleet_ws(other.ws_base, around(lon0, lat0)) as fleet:
            await next_drivers(fleet)
            await stream(gateway.ws_base, driver, walk, 0.05)
            frame, _ = await recv_until(
                fleet, lambda f: any(d["id"] == driver for d in f.get("drivers", ())), 5
            )
        return frame

    frame = asyncio.run(scenario())
    (entry,) = frame["drivers"]
    assert entry["id"] == driver and (entry["lon"], entry["lat"]) == pytest.approx(walk[-1])


def test_quiet_fleet_feed_gets_heartbeats(start_gateway: Callable[..., Gateway]) -> None:
    """With heartbeat_s=1, a viewer of an empty box gets {"type":"heartbeat","ts"} within 3 s."""
    gw = start_gateway(TRACKING_HEARTBEAT_S="1")

    async def scenario() -> tuple[Frame, Frame]:
        async with fleet_ws(gw.ws_base, around(*spot())) as fleet:
            return await recv_json(fleet), await recv_json(fleet, timeout_s=3.0)

    snapshot, beat = asyncio.run(scenario())
    assert snapshot["type"] == "drivers" and snapshot["drivers"] == []
    assert beat == {"type": "heartbeat", "ts": beat["ts"]} and abs(beat["ts"] - now_ms()) < 10_000


def test_ops_stats_reports_this_gateway_and_the_fleet(gateway: Gateway) -> None:
    """GET /v1/ops/stats (ops): connections by kind, totals of points, errors and frames,
    uptime, and drivers online; counters grow by what happened between two samples."""
    driver = uid("d-fl-stats")
    lon0, lat0 = spot()
    ops = Api(gateway.base, token("ops"))

    async def scenario() -> tuple[Frame, Frame]:
        async with fleet_ws(gateway.ws_base, around(lon0, lat0)) as fleet:
            await next_drivers(fleet)
            before = ops.get("/v1/ops/stats").json()
            await stream(gateway.ws_base, driver, [(lon0, lat0), (lon0 + 1e-5, lat0)], 0)
            await fleet.send("not json")
            await recv_until(fleet, lambda f: f["type"] == "error")
            after = ops.get("/v1/ops/stats").json()
        return before, after

    before, after = asyncio.run(scenario())
    gw, fleet = after["gateway"], after["fleet"]
    assert set(after) == {"gateway", "fleet"}
    assert set(gw) == {
        "instance", "uptime_s", "connections", "points", "errors", "frames_in", "frames_out"
    }  # fmt: skip
    assert set(gw["connections"]) >= {"driver", "rider", "sse", "fleet"}
    assert gw["connections"]["fleet"] >= 1
    assert gw["instance"] == before["gateway"]["instance"] and gw["uptime_s"] > 0
    for group in ("connections", "points", "errors", "frames_in", "frames_out"):
        assert all(isinstance(v, int) for v in gw[group].values()), gw[group]
    assert gw["points"]["stored"] - before["gateway"]["points"]["stored"] == 2
    assert gw["frames_in"]["driver"] - before["gateway"]["frames_in"]["driver"] == 2
    assert gw["frames_in"]["fleet"] - before["gateway"]["frames_in"].get("fleet", 0) == 1
    assert gw["errors"]["bad_frame"] - before["gateway"]["errors"].get("bad_frame", 0) == 1
    assert fleet["drivers_online"] >= 1 and fleet["online_window_s"] == 15.0
    assert fleet["drivers_recent"] >= fleet["drivers_online"] and fleet["recent_window_s"] == 300
    assert abs(fleet["ts"] - now_ms()) < 10_000


@pytest.mark.parametrize(
    ("caller", "status"), [("none", 401), ("garbage", 401), ("driver", 403), ("rider", 403)]
)
def test_ops_stats_is_for_ops_only(gateway: Gateway, caller: str, status: int) -> None:
    """No or invalid token: 401 unauthorized; a driver or rider token: 403 forbidden."""
    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer nope"},
        "driver": {"Authorization": f"Bearer {token('driver', 'd-x')}"},
        "rider": {"Authorization": f"Bearer {token('rider', 'rider:t-x', trip='t-x')}"},
    }[caller]
    response = httpx.get(f"{gateway.base}/v1/ops/stats", headers=headers, timeout=10)
    assert response.status_code == status, response.text
    expected = "unauthorized" if status == 401 else "forbidden"
    assert response.json()["error"]["code"] == expected
