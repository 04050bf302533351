"""Who may call what: every endpoint of the contract × every kind of caller, over real sockets."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.integration.client import (
    DRIVER_START,
    DROPOFF,
    PICKUP,
    Api,
    first_frame_or_close,
    now_ms,
    recv_json,
)
from tests.integration.conftest import SECRET, Gateway, token
from tracking.api.auth import issue_token

DRIVER = "d-auth"
OTHER_DRIVER = "d-auth-other"
BAD_TOKEN_CALLERS = ("none", "garbage", "expired", "other_secret")
CALLERS = ("ops", "driver", "other_driver", "rider", "other_rider")
_SEQ = itertools.count(1)


@dataclass(frozen=True)
class World:
    trip_id: str
    tokens: dict[str, str | None]


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> Iterator[World]:
    api = Api(gateway.base, token("ops"))
    trip = api.create_trip(driver_id=DRIVER, id=f"t-auth-{uuid.uuid4().hex[:8]}")
    other = api.create_trip()
    # Long enough that PyJWT does not warn about a short HMAC key.
    other_secret = "another-secret-" + os.urandom(24).hex()
    tokens: dict[str, str | None] = {
        "none": None,
        "garbage": "not-a-jwt",
        "expired": issue_token(SECRET, "ops", "ops", ttl_s=-10),
        "other_secret": issue_token(other_secret, "ops", "ops"),
        "ops": token("ops"),
        "driver": token("driver", DRIVER),
        "other_driver": token("driver", OTHER_DRIVER),
        "rider": trip["rider_token"],
        "other_rider": other["rider_token"],
    }
    yield World(trip["id"], tokens)


def _points() -> dict[str, Any]:
    """One fresh fix at DRIVER_START, ~400 m from the pickup: the trip stays `assigned`."""
    lon, lat = DRIVER_START
    return {"points": [{"seq": next(_SEQ), "ts": now_ms(), "lon": lon, "lat": lat}]}


# endpoint: (method, path, body or a function making it, query)
ENDPOINTS: dict[str, tuple[str, str, Any, dict[str, Any]]] = {
    "create": ("POST", "/v1/trips", {"pickup": PICKUP, "dropoff": DROPOFF}, {}),
    "get": ("GET", "/v1/trips/{trip}", None, {}),
    "assign": ("POST", "/v1/trips/{trip}/assign", {"driver_id": DRIVER}, {}),
    # `start` while `assigned` is illegal: 409 illegal_transition proves auth passed.
    "action": ("POST", "/v1/trips/{trip}/actions", {"action": "start"}, {}),
    "trail": ("GET", "/v1/trips/{trip}/trail", None, {}),
    "events": ("GET", "/v1/trips/{trip}/events", None, {}),
    "positions_own": ("POST", f"/v1/drivers/{DRIVER}/positions", _points, {}),
    "positions_other": ("POST", f"/v1/drivers/{OTHER_DRIVER}/positions", _points, {}),
    "nearby": (
        "GET",
        "/v1/drivers/nearby",
        None,
        {"lon": DRIVER_START[0], "lat": DRIVER_START[1], "radius_m": 1000},
    ),
}

# Expected status per authenticated caller; every bad token is 401 everywhere.
MATRIX: dict[str, dict[str, int]] = {
    #                  ops  driver  other_driver  rider  other_rider
    "create": dict(zip(CALLERS, (201, 403, 403, 403, 403), strict=True)),
    "get": dict(zip(CALLERS, (200, 200, 403, 200, 403), strict=True)),
    "assign": dict(zip(CALLERS, (200, 403, 403, 403, 403), strict=True)),
    "action": dict(zip(CALLERS, (409, 409, 403, 403, 403), strict=True)),
    "trail": dict(zip(CALLERS, (200, 403, 403, 200, 403), strict=True)),
    # PROTOCOL.md: ops and the trip's rider (the driver has its own stream).
    "events": dict(zip(CALLERS, (200, 403, 403, 200, 403), strict=True)),
    "positions_own": dict(zip(CALLERS, (403, 200, 403, 403, 403), strict=True)),
    "positions_other": dict(zip(CALLERS, (403, 403, 200, 403, 403), strict=True)),
    "nearby": dict(zip(CALLERS, (200, 403, 403, 403, 403), strict=True)),
}


def _cases() -> Iterator[Any]:
    for endpoint, row in MATRIX.items():
        expected = {**dict.fromkeys(BAD_TOKEN_CALLERS, 401), **row}
        for caller, status in expected.items():
            for via in ("header", "query"):
                if caller == "none" and via == "query":
                    continue  # no token is no token, whichever way it is not sent
                yield pytest.param(endpoint, caller, via, status, id=f"{endpoint}-{caller}-{via}")


def call(gateway: Gateway, world: World, endpoint: str, caller: str, via: str) -> tuple[int, bytes]:
    """Make the endpoint's request as `caller`; the status and (the start of) the body."""
    method, path, body, query = ENDPOINTS[endpoint]
    if callable(body):
        body = body()
    params = dict(query)
    headers = {}
    tok = world.tokens[caller]
    if tok is not None and via == "header":
        headers["Authorization"] = f"Bearer {tok}"
    elif tok is not None:
        params["token"] = tok
    url = gateway.base + path.format(trip=world.trip_id)
    with httpx.stream(
        method, url, json=body, params=params, headers=headers, timeout=10
    ) as response:
        if endpoint == "events" and response.status_code == 200:
            # An endless stream: the first bytes are enough, then hang up.
            return response.status_code, next(response.iter_bytes())
        return response.status_code, response.read()


def assert_error_body(raw: bytes, code: str) -> None:
    body = orjson.loads(raw)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "detail"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"], body


@pytest.mark.parametrize(("endpoint", "caller", "via", "expected"), list(_cases()))
def test_role_endpoint_matrix(
    gateway: Gateway, world: World, endpoint: str, caller: str, via: str, expected: int
) -> None:
    """Each endpoint answers each caller, by header or ?token=, with the contract's status."""
    status, raw = call(gateway, world, endpoint, caller, via)
    assert status == expected, raw[:300]
    if status == 401:
        assert_error_body(raw, "unauthorized")
    elif status == 403:
        assert_error_body(raw, "forbidden")
    elif status == 409:
        assert_error_body(raw, "illegal_transition")
    elif endpoint == "events":
        assert raw.startswith((b"retry:", b"id:", b"data:")), raw[:300]
    else:
        assert isinstance(orjson.loads(raw), dict)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_ops_endpoints_need_no_token(gateway: Gateway, path: str) -> None:
    """Health, readiness and metrics answer 200 without any token."""
    response = httpx.get(gateway.base + path, timeout=10)
    assert response.status_code == 200, response.text
    if path == "/metrics":
        assert response.headers["content-type"].startswith("text/plain")


def _ws_url(base: str, path: str, tok: str | None) -> str:
    return base + path + ("" if tok is None else f"?token={tok}")


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("none", 4401),
        ("garbage", 4401),
        ("expired", 4401),
        ("other_secret", 4401),
        ("rider", 4403),
        ("other_rider", 4403),
        ("ops", 4403),
    ],
)
def test_driver_stream_refuses(gateway: Gateway, world: World, caller: str, code: int) -> None:
    """The driver stream accepts, then closes 4401 for a bad token and 4403 for a non-driver."""
    url = _ws_url(gateway.ws_base, "/v1/drivers/ws", world.tokens[caller])
    frame, closed, reason = asyncio.run(first_frame_or_close(url))
    assert frame is None, frame
    assert closed == code and reason


@pytest.mark.parametrize("via", ["header", "query"])
def test_driver_stream_admits_its_driver(gateway: Gateway, world: World, via: str) -> None:
    """The trip's driver, by header or ?token=, is admitted and told its current trip."""
    tok = world.tokens["driver"]
    assert tok is not None
    if via == "header":
        url, headers = gateway.ws_base + "/v1/drivers/ws", {"Authorization": f"Bearer {tok}"}
    else:
        url, headers = _ws_url(gateway.ws_base, "/v1/drivers/ws", tok), None
    frame, closed, _ = asyncio.run(first_frame_or_close(url, headers))
    assert closed is None
    assert frame is not None and frame["type"] == "trip"
    assert frame["trip"]["id"] == world.trip_id


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("none", 4401),
        ("garbage", 4401),
        ("expired", 4401),
        ("other_secret", 4401),
        ("other_rider", 4403),
        ("other_driver", 4403),
        ("driver", 4403),
    ],
)
def test_trip_channel_refuses(gateway: Gateway, world: World, caller: str, code: int) -> None:
    """The trip channel accepts, then closes 4401 for a bad token and 4403 for a stranger."""
    url = _ws_url(gateway.ws_base, f"/v1/trips/{world.trip_id}/ws", world.tokens[caller])
    frame, closed, reason = asyncio.run(first_frame_or_close(url))
    assert frame is None, frame
    assert closed == code and reason


@pytest.mark.parametrize("caller", ["ops", "rider"])
def test_trip_channel_admits_its_readers(gateway: Gateway, world: World, caller: str) -> None:
    """Ops and the trip's rider get the trip's snapshot first."""
    url = _ws_url(gateway.ws_base, f"/v1/trips/{world.trip_id}/ws", world.tokens[caller])
    frame, closed, _ = asyncio.run(first_frame_or_close(url))
    assert closed is None
    assert frame is not None and frame["type"] == "snapshot"
    assert frame["trip"]["id"] == world.trip_id and frame["trip"]["driver_id"] == DRIVER


def _one_point(seq: int) -> dict[str, Any]:
    lon, lat = DRIVER_START
    return {"points": [{"seq": seq, "ts": now_ms(), "lon": lon, "lat": lat, "acc": 5.0}]}


def _report_once(gateway: Gateway) -> tuple[str, str]:
    """A fresh driver whose first point is stored; its id and token."""
    driver_id = f"d-auth-{uuid.uuid4().hex[:8]}"
    tok = token("driver", driver_id)
    first = Api(gateway.base, tok).post(f"/v1/drivers/{driver_id}/positions", _one_point(1))
    assert first.status_code == 200 and first.json()["ack"] == 1, first.text
    return driver_id, tok


def test_driver_may_post_positions_again(gateway: Gateway) -> None:
    """A driver's second POST of its own positions is admitted like the first."""
    driver_id, tok = _report_once(gateway)
    again = Api(gateway.base, tok).post(f"/v1/drivers/{driver_id}/positions", _one_point(2))
    assert again.status_code == 200, again.text
    assert again.json() == {"ack": 2, "errors": []}


def test_driver_stream_admits_a_driver_that_reported_before(gateway: Gateway) -> None:
    """A driver with stored positions is admitted to the driver stream (and acked)."""
    driver_id, tok = _report_once(gateway)

    async def scenario() -> dict[str, Any]:
        async with connect(f"{gateway.ws_base}/v1/drivers/ws?token={tok}") as ws:
            await ws.send(orjson.dumps({"type": "pos", **_one_point(2)["points"][0]}).decode())
            return await recv_json(ws)

    assert asyncio.run(scenario()) == {"type": "ack", "seq": 2}


def test_nearby_lists_a_driver_that_reported(gateway: Gateway) -> None:
    """Ops see a driver that has reported a position among the drivers nearby."""
    driver_id, _ = _report_once(gateway)
    lon, lat = DRIVER_START
    response = Api(gateway.base, token("ops")).get(
        "/v1/drivers/nearby", lon=lon, lat=lat, radius_m=50
    )
    assert response.status_code == 200, response.text
    assert driver_id in [d["id"] for d in response.json()["drivers"]]


def _claims(**claims: Any) -> dict[str, Any]:
    return {"sub": "ops", "role": "ops", "exp": int(time.time()) + 600, **claims}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(jwt.encode(_claims(role="admin"), SECRET, "HS256"), id="unknown_role"),
        pytest.param(jwt.encode(_claims(role="rider"), SECRET, "HS256"), id="rider_no_trip"),
        pytest.param(
            jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, "HS256"),
            id="no_exp",
        ),
        pytest.param(jwt.encode(_claims(), None, "none"), id="alg_none"),
    ],
)
def test_tokens_with_bad_claims_are_unauthorized(gateway: Gateway, world: World, bad: str) -> None:
    """A token with an unknown role, a rider without trip, no exp, or alg none is 401."""
    response = Api(gateway.base, bad).get(f"/v1/trips/{world.trip_id}")
    assert response.status_code == 401, response.text
    assert_error_body(response.content, "unauthorized")


@pytest.mark.parametrize(
    ("header", "query", "expected"), [("ops", "garbage", 200), ("garbage", "ops", 401)]
)
def test_header_token_wins_over_query(
    gateway: Gateway, world: World, header: str, query: str, expected: int
) -> None:
    """With both a header and a ?token=, the header decides."""
    response = httpx.get(
        f"{gateway.base}/v1/trips/{world.trip_id}",
        headers={"Authorization": f"Bearer {world.tokens[header]}"},
        params={"token": world.tokens[query]},
        timeout=10,
    )
    assert response.status_code == expected, response.text


def test_rider_of_another_trip_is_forbidden_even_for_unknown_trip(
    gateway: Gateway, world: World
) -> None:
    """A rider token for another trip is 403 on an unknown trip id, not 404: no lookup."""
    tok = world.tokens["other_rider"]
    assert tok is not None
    response = Api(gateway.base, tok).get(f"/v1/trips/t-missing-{uuid.uuid4().hex[:8]}")
    assert response.status_code == 403, response.text
    assert_error_body(response.content, "forbidden")


def _auth_case(
    case_id: str,
    caller: str,
    method: str,
    path: str,
    content: bytes | None,
    params: dict[str, Any] | None,
    expected: int,
) -> Any:
    return pytest.param(caller, method, path, content, params, expected, id=case_id)


@pytest.mark.parametrize(
    ("caller", "method", "path", "content", "params", "expected"),
    [
        _auth_case(
            "no_token-create-malformed_json",
            "none",
            "POST",
            "/v1/trips",
            b'{"pickup": ',
            None,
            401,
        ),
        _auth_case(
            "no_token-create-invalid_body",
            "none",
            "POST",
            "/v1/trips",
            b'{"pickup": {"lon": 500}}',
            None,
            401,
        ),
        _auth_case(
            "no_token-events-since_negative",
            "none",
            "GET",
            "/v1/trips/{trip}/events",
            None,
            {"since": -1},
            401,
        ),
        _auth_case(
            "no_token-nearby-lon_500",
            "none",
            "GET",
            "/v1/drivers/nearby",
            None,
            {"lon": 500, "lat": 0},
            401,
        ),
        _auth_case(
            "rider-create-invalid_body",
            "rider",
            "POST",
            "/v1/trips",
            b'{"pickup": {"lon": 500}}',
            None,
            403,
        ),
        _auth_case(
            "rider-nearby-lon_500",
            "rider",
            "GET",
            "/v1/drivers/nearby",
            None,
            {"lon": 500, "lat": 0},
            403,
        ),
        _auth_case(
            "other_driver-positions-invalid_body",
            "other_driver",
            "POST",
            f"/v1/drivers/{DRIVER}/positions",
            b'{"points": 1}',
            None,
            403,
        ),
    ],
)
def test_caller_is_checked_before_the_input(
    gateway: Gateway,
    world: World,
    caller: str,
    method: str,
    path: str,
    content: bytes | None,
    params: dict[str, Any] | None,
    expected: int,
) -> None:
    """A caller without access gets 401/403 even when its body or query is also invalid."""
    tok = world.tokens[caller]
    headers = {"Content-Type": "application/json"}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    response = httpx.request(
        method,
        gateway.base + path.format(trip=world.trip_id),
        content=content,
        params=params,
        headers=headers,
        timeout=10,
    )
    assert response.status_code == expected, response.text
    assert_error_body(response.content, "unauthorized" if expected == 401 else "forbidden")
