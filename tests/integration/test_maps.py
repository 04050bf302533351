"""The basemap endpoints of a real gateway: config, style, GeoJSON layers, caching headers."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.conftest import Gateway
from tracking.basemap import LAYER_NAMES

EXTRACT_BOX = (24.9351762, 60.164155, 24.9534145, 60.179113)
ATTRIBUTION = "© OpenStreetMap contributors"


def get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=30)


def test_config_points_at_the_builtin_style(gateway: Gateway) -> None:
    """Without TRACKING_MAP_STYLE_URL the config names the gateway's own style, absolutely."""
    response = get(f"{gateway.base}/map/config.json")
    assert response.status_code == 200
    config = response.json()
    assert set(config) == {"style_url", "bounds", "center", "attribution", "external"}
    assert config["style_url"] == f"{gateway.base}/map/style.json"
    assert config["external"] is False
    assert config["attribution"] == ATTRIBUTION
    assert config["bounds"] == pytest.approx(list(EXTRACT_BOX), abs=1e-7)
    assert config["center"] == pytest.approx([24.9442954, 60.171634], abs=1e-6)


def test_style_loads_every_layer_from_an_absolute_url(gateway: Gateway) -> None:
    """The style's GeoJSON sources are absolute URLs of this gateway serving FeatureCollections."""
    response = get(f"{gateway.base}/map/style.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    style = response.json()
    assert style["version"] == 8 and "glyphs" not in style and "sprite" not in style
    urls = {
        name.removeprefix("base-"): source["data"]
        for name, source in style["sources"].items()
        if isinstance(source["data"], str)
    }
    assert set(urls) == set(LAYER_NAMES)
    for layer, url in urls.items():
        assert url.startswith(f"{gateway.base}/map/data/{layer}.geojson?v=")
        data = get(url)
        assert data.status_code == 200, url
        assert data.json()["type"] == "FeatureCollection"
        assert data.json()["features"], layer
    ids = [layer["id"] for layer in style["layers"]]
    assert len(ids) == len(set(ids)) and all(i.startswith("base-") for i in ids)


@pytest.mark.parametrize("layer", LAYER_NAMES)
def test_layer_is_sent_gzipped_or_plain(gateway: Gateway, layer: str) -> None:
    """A layer comes gzip-encoded to clients that accept it, plain to others; same JSON."""
    url = f"{gateway.base}/map/data/{layer}.geojson"
    # Raw bytes: httpx would otherwise decode the gzip body before we see it.
    with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}, timeout=30) as zipped:
        zipped_body = b"".join(zipped.iter_raw())
    plain = get(url, **{"Accept-Encoding": "identity"})
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(zipped_body) == plain.content
    assert len(zipped_body) < len(plain.content)
    for response in (zipped, plain):
        assert response.headers["content-type"] == "application/geo+json"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert response.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["etag"] != plain.headers["etag"]
    assert orjson.loads(plain.content)["type"] == "FeatureCollection"


def test_matching_etag_gets_304(gateway: Gateway) -> None:
    """Revalidating with the layer's ETag gets 304 without a body; another ETag gets 200."""
    url = f"{gateway.base}/map/data/roads.geojson"
    first = get(url)
    etag = first.headers["etag"]
    again = get(url, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=3600"
    assert get(url, **{"If-None-Match": '"stale"'}).status_code == 200


def test_unknown_layer_is_404_with_the_error_body(gateway: Gateway) -> None:
    """A layer that does not exist is a 404 with the contract's error body."""
    response = get(f"{gateway.base}/map/data/contours.geojson")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "roads" in response.json()["error"]["detail"]


def test_concurrent_first_requests_build_once(start_gateway: Callable[..., Gateway]) -> None:
    """Requests racing for a cold basemap all get the same layer, built a single time."""
    gw = start_gateway()
    urls = [f"{gw.base}/map/data/{layer}.geojson" for layer in LAYER_NAMES] * 2
    with ThreadPoolExecutor(len(urls)) as pool:
        responses = list(pool.map(get, urls))
    assert all(response.status_code == 200 for response in responses)
    half = len(LAYER_NAMES)
    for first, second in zip(responses[:half], responses[half:], strict=True):
        assert first.content == second.content
    log = Path(gw.log.name).read_text()
    assert log.count("basemap ") == 1 and " built in " in log, log[-2000:]


def test_external_style_url_is_passed_through(start_gateway: Callable[..., Gateway]) -> None:
    """With TRACKING_MAP_STYLE_URL set the config points at that style and says it is external."""
    external = "https://tiles.example.com/styles/city/style.json"
    gw = start_gateway(TRACKING_MAP_STYLE_URL=external)
    config = get(f"{gw.base}/map/config.json").json()
    assert config["style_url"] == external
    assert config["external"] is True
    assert config["bounds"] == pytest.approx(list(EXTRACT_BOX), abs=1e-7)
