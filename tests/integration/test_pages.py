"""The map pages as HTTP resources: HTML for browsers, JSON for API clients, built assets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.client import Api
from tests.integration.conftest import Gateway, token

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_share_link_serves_the_page_to_browsers_with_strict_headers(
    gateway: Gateway, api: Api
) -> None:
    """A browser gets the rider page; no-referrer keeps the token in the link to itself."""
    trip = api.create_trip()
    response = httpx.get(trip["share_url"], headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-eval" not in csp
    assert 'id="map"' in response.text and "/assets/rider-" in response.text


def test_share_link_page_loads_even_with_a_bad_token(gateway: Gateway) -> None:
    """The page itself is static: a bad link must load to explain itself (the API says 401)."""
    response = httpx.get(f"{gateway.base}/track/t-x?token=garbage", headers=HTML)
    assert response.status_code == 200 and 'id="problem"' in response.text


def test_share_link_still_answers_json_to_api_clients(gateway: Gateway, api: Api) -> None:
    """`Accept: application/json` keeps the token-checked JSON answer."""
    trip = api.create_trip()
    ok = httpx.get(trip["share_url"], headers={"Accept": "application/json"})
    assert ok.status_code == 200
    assert ok.json()["trip"]["id"] == trip["id"]
    assert ok.json()["channel"].startswith(f"/v1/trips/{trip['id']}/ws?token=")
    bad = httpx.get(
        f"{gateway.base}/track/{trip['id']}?token=garbage", headers={"Accept": "application/json"}
    )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    other = httpx.get(
        f"{gateway.base}/track/{trip['id']}",
        params={"token": token("rider", "r", trip="t-other")},
        headers={"Accept": "application/json"},
    )
    assert other.status_code == 403


def test_ops_page_and_assets(gateway: Gateway) -> None:
    """/ops is served; hashed assets are immutable and pre-gzipped; unknown assets 404."""
    page = httpx.get(f"{gateway.base}/ops", headers=HTML)
    assert page.status_code == 200 and "/assets/ops-" in page.text
    script = re.search(r'src="(/assets/ops-[A-Z0-9]+\.js)"', page.text)
    assert script
    zipped = httpx.get(gateway.base + script.group(1), headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "immutable" in zipped.headers["cache-control"]
    assert zipped.headers["content-type"].startswith("text/javascript")
    raw = httpx.get(gateway.base + script.group(1), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert zipped.content == raw.content  # httpx decoded the gzip body
    assert int(zipped.headers["content-length"]) < len(raw.content) / 2
    worker = httpx.get(f"{gateway.base}/assets/maplibre-gl-worker.mjs")
    assert worker.status_code == 200 and worker.headers["cache-control"] == "no-cache"
    for name in ("nope.js", "..%2Frider.html", ".built"):
        missing = httpx.get(f"{gateway.base}/assets/{name}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


def test_unbuilt_pages_say_how_to_build_them(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Without a build the pages answer 503 with the command to run, not a blank page."""
    gw = start_gateway(TRACKING_MAP_UI_DIR=str(tmp_path))
    response = httpx.get(f"{gw.base}/ops", headers=HTML)
    assert response.status_code == 503 and "make run" in response.text
