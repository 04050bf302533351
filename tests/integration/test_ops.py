"""Ops surface over a real gateway: nearby, HTTP positions, health, metrics, OpenAPI, CLI."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.client import DRIVER_START, Api, driver_ws, now_ms, pos, recv_until
from tests.integration.conftest import Gateway, token
from tracking.api.auth import decode_token
from tracking.core.geo import haversine_m
from tracking.store.embedded import EmbeddedRedis

M_PER_DEG_LAT = 111_195.0


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def post_points(api: Api, driver: str, points: list[dict[str, Any]]) -> httpx.Response:
    return api.post(
        f"/v1/drivers/{driver}/positions", {"points": points}, token=token("driver", driver)
    )


def fixes(seqs: range, ts0: int) -> list[dict[str, Any]]:
    lon, lat = DRIVER_START
    return [
        {"seq": s, "ts": ts0 + s * 1000, "lon": lon + (s % 2) * 1e-5, "lat": lat, "acc": 5.0}
        for s in seqs
    ]


def assert_validation_error(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "validation_error"
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"]


def test_nearby_returns_drivers_within_radius_nearest_first(api: Api) -> None:
    """GET /v1/drivers/nearby: drivers within radius_m, nearest first, haversine distance_m, ts."""
    # A random spot far from every other test's drivers (no map coverage needed).
    rng = random.Random(uuid.uuid4().int)
    lon0, lat0 = 13.0 + rng.random(), 52.0 + rng.random()
    offsets_m = {"mid": 350.0, "far": 700.0, "out": 1300.0, "near": 120.0, "way-out": 2500.0}
    ts = now_ms() - 5_000
    sent: dict[str, tuple[float, float]] = {}
    for name, north_m in offsets_m.items():  # not in distance order
        driver = uid(f"d-nb-{name}")
        place = (lon0, lat0 + north_m / M_PER_DEG_LAT)
        response = post_points(
            api, driver, [{"seq": 1, "ts": ts, "lon": place[0], "lat": place[1]}]
        )
        assert response.json()["ack"] == 1, response.text
        sent[driver] = place

    response = api.get("/v1/drivers/nearby", lon=lon0, lat=lat0, radius_m=1000)
    assert response.status_code == 200, response.text
    found = response.json()["drivers"]
    distances = [d["distance_m"] for d in found]
    assert distances == sorted(distances)
    ours = [d for d in found if d["id"] in sent]
    names = [d["id"].rsplit("-", 1)[0].removeprefix("d-nb-") for d in ours]
    assert names == ["near", "mid", "far"]
    for d in ours:
        place = sent[d["id"]]
        assert d["distance_m"] == pytest.approx(haversine_m(lon0, lat0, *place), abs=1.0)
        assert haversine_m(d["lon"], d["lat"], *place) < 1.0
        assert d["ts"] == ts


@pytest.mark.parametrize(
    "query",
    [
        {"lon": "abc", "lat": 60.17, "radius_m": 500},
        {"lon": 24.94, "lat": 60.17, "radius_m": -1},
        {"lon": 24.94, "lat": 91, "radius_m": 500},
        {"lat": 60.17, "radius_m": 500},
    ],
)
def test_nearby_rejects_invalid_query(api: Api, query: dict[str, Any]) -> None:
    """An invalid nearby query (non-numeric, negative radius, out of range, missing) is 422."""
    assert_validation_error(api.get("/v1/drivers/nearby", **query))


def test_http_positions_fallback_acks_last_seq(api: Api) -> None:
    """POST /v1/drivers/{id}/positions stores the points and answers {"ack": last_seq}."""
    driver = uid("d-http")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000
    response = post_points(api, driver, fixes(range(1, 4), ts0))
    assert response.status_code == 200, response.text
    assert response.json()["ack"] == 3 and not response.json().get("errors")
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == [1, 2, 3]
    other = post_points(api, uid("d-http-other"), fixes(range(1, 2), ts0))
    assert other.status_code == 200
    forbidden = api.post(
        f"/v1/drivers/{driver}/positions",
        {"points": fixes(range(4, 5), ts0)},
        token=token("driver", uid("d-intruder")),
    )
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"


def test_http_positions_resend_is_idempotent(api: Api) -> None:
    """Resending acked points over HTTP re-acks them and stores each seq once."""
    driver = uid("d-http-dup")
    trip = api.create_trip(driver_id=driver)
    ts0 = now_ms() - 600_000
    assert post_points(api, driver, fixes(range(1, 4), ts0)).json()["ack"] == 3
    again = post_points(api, driver, fixes(range(1, 4), ts0))
    assert again.status_code == 200, again.text
    assert again.json()["ack"] == 3 and not again.json().get("errors")
    overlap = post_points(api, driver, fixes(range(2, 6), ts0))
    assert overlap.status_code == 200, overlap.text
    assert overlap.json()["ack"] == 5
    trail = api.get(f"/v1/trips/{trip['id']}/trail").json()
    assert trail["properties"]["seqs"] == [1, 2, 3, 4, 5]


def test_http_positions_reanchor_after_repeated_jumps(api: Api) -> None:
    """One point per POST: three >90 m/s jumps are rejected, the fourth re-anchors the driver."""
    from tracking.core.driver import JUMP_REJECTS_TO_REANCHOR

    driver = uid("d-http-jump")
    ts0 = now_ms() - 600_000
    lon, lat = DRIVER_START
    first = {"seq": 1, "ts": ts0, "lon": lon, "lat": lat, "acc": 5.0}
    assert post_points(api, driver, [first]).json()["ack"] == 1
    far = {"lon": lon + 0.01, "lat": lat, "acc": 5.0}  # ~550 m in 1 s
    for i in range(JUMP_REJECTS_TO_REANCHOR):
        answer = post_points(api, driver, [{**far, "seq": 2 + i, "ts": ts0 + 1000 * (i + 1)}])
        assert answer.json()["ack"] == 1
        assert [e["code"] for e in answer.json()["errors"]] == ["implausible_jump"]
    seq = 2 + JUMP_REJECTS_TO_REANCHOR
    answer = post_points(api, driver, [{**far, "seq": seq, "ts": ts0 + 1000 * seq}])
    assert answer.json() == {"ack": seq, "errors": []}


def test_health_and_readiness_with_redis_up(gateway: Gateway) -> None:
    """/healthz is 200 {"status":"ok"}; /readyz is 200 while Redis answers."""
    health = httpx.get(f"{gateway.base}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.base}/readyz", timeout=5)
    assert ready.status_code == 200


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_expose_connections_frames_errors_latency(gateway: Gateway) -> None:
    """/metrics (Prometheus text) has connections, frames in, errors, point-to-publish latency."""
    driver = uid("d-metrics")

    async def traffic() -> str:
        async with driver_ws(gateway.ws_base, token("driver", driver)) as drv:
            await drv.send(pos(1, *DRIVER_START, now_ms() - 1000))
            await recv_until(drv, lambda f: f["type"] == "ack")
            await drv.send("{not json")
            error, _ = await recv_until(drv, lambda f: f["type"] == "error")
            assert error["code"] == "bad_frame"
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"{gateway.base}/metrics")  # socket still open
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    samples = metric_samples(asyncio.run(traffic()))
    assert samples[("tracking_connections", (("kind", "driver"),))] >= 1
    assert samples[("tracking_frames_in_total", (("kind", "driver"),))] >= 2
    assert samples[("tracking_errors_total", (("code", "bad_frame"),))] >= 1
    assert samples[("tracking_point_to_publish_seconds_count", ())] >= 2
    assert ("tracking_point_to_publish_seconds_bucket", (("le", "+Inf"),)) in samples


def poll(url: str, until: Callable[[httpx.Response], bool], health_url: str) -> httpx.Response:
    """GET `url` until `until` holds (20 s at most); /healthz must stay 200 all along."""
    deadline = time.monotonic() + 20
    while True:
        assert httpx.get(health_url, timeout=5).status_code == 200
        response = httpx.get(url, timeout=10)
        if until(response):
            return response
        assert time.monotonic() < deadline, f"{url} still {response.status_code}"
        time.sleep(0.1)


def test_readyz_follows_redis_down_and_back(start_gateway: Callable[..., Gateway]) -> None:
    """Redis stopped → /readyz 503 `unavailable`; Redis back on its port → 200; /healthz 200."""
    private = EmbeddedRedis().start()
    revived: EmbeddedRedis | None = None
    gw: Gateway | None = None
    try:
        gw = start_gateway(TRACKING_REDIS_URL=private.url)
        ready, health = f"{gw.base}/readyz", f"{gw.base}/healthz"
        assert httpx.get(ready, timeout=5).status_code == 200
        private.stop()
        down = poll(ready, lambda r: r.status_code != 200, health)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "unavailable"
        revived = EmbeddedRedis(port=private.port).start()
        up = poll(ready, lambda r: r.status_code == 200, health)
        assert up.status_code == 200
    finally:
        if gw is not None:
            gw.stop()
        private.stop()
        if revived is not None:
            revived.stop()


CONTRACT_PATHS = {
    ("post", "/v1/trips"),
    ("get", "/v1/trips/{}"),
    ("post", "/v1/trips/{}/assign"),
    ("post", "/v1/trips/{}/actions"),
    ("get", "/v1/trips/{}/trail"),
    ("get", "/v1/trips/{}/events"),
    ("post", "/v1/drivers/{}/positions"),
    ("get", "/v1/drivers/nearby"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


def test_openapi_lists_every_contract_path_and_docs_render(gateway: Gateway) -> None:
    """/openapi.json has every HTTP operation of the contract; /docs is an HTML page."""
    spec = httpx.get(f"{gateway.base}/openapi.json", timeout=5)
    assert spec.status_code == 200
    listed = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in spec.json()["paths"].items()
        for method in operations
    }
    assert CONTRACT_PATHS <= listed, CONTRACT_PATHS - listed
    docs = httpx.get(f"{gateway.base}/docs", timeout=5)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "<html" in docs.text.lower()


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACKING_")}
    return subprocess.run(
        [sys.executable, "-m", "tracking.cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_rider_token_needs_trip(tmp_path: Path) -> None:
    """`tracking token rider` without --trip exits non-zero, saying so on stderr."""
    done = run_cli(["token", "rider"], tmp_path, TRACKING_JWT_SECRET="s" * 32)
    assert done.returncode != 0
    assert "--trip" in done.stderr
    assert done.stdout == ""


def test_cli_ops_token_is_accepted(tmp_path: Path) -> None:
    """`tracking token ops` prints a JWT signed with TRACKING_JWT_SECRET, role ops."""
    secret = "cli-secret-" + uuid.uuid4().hex
    done = run_cli(["token", "ops"], tmp_path, TRACKING_JWT_SECRET=secret)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    who = decode_token(secret, lines[0])
    assert who.role == "ops"
    assert not (tmp_path / ".tracking").exists()  # no dev secret made when one is configured
