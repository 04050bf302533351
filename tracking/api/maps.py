"""The map pages' basemap: config, MapLibre style and GeoJSON layers (open endpoints).

The basemap is built from the road map's .osm.pbf on the first request that
needs it (in a thread, once per process and map path, however many requests
arrive together) and kept in memory, encoded: JSON and gzip per layer.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field

from tracking.basemap import (
    ATTRIBUTION,
    LAYER_NAMES,
    Basemap,
    build_basemap,
    build_style,
    extract_bounds,
)
from tracking.core.errors import NotFound
from tracking.service import TrackingService
from tracking.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["map"])

LAYER_CACHE_CONTROL = "public, max-age=3600"
GEOJSON = "application/geo+json"

# Built basemaps by map path: plain bytes, shared by every app of the process.
_BUILT: dict[str, Basemap] = {}
_BOUNDS: dict[str, tuple[float, float, float, float] | None] = {}


class MapConfig(BaseModel):
    """What a map page needs before it creates its map."""

    style_url: str = Field(description="Absolute URL of the MapLibre style to load")
    bounds: list[float] = Field(description="[min_lon, min_lat, max_lon, max_lat] of the map")
    center: list[float] = Field(description="[lon, lat] of the map's centre")
    attribution: str = Field(description="Attribution to show with the map")
    external: bool = Field(description="True when the style is TRACKING_MAP_STYLE_URL's")


@router.get("/map/config.json", response_model=MapConfig)
async def map_config(request: Request) -> MapConfig:
    """Style URL, bounds and attribution of the map pages' basemap (open)."""
    settings = _settings(request)
    external = bool(settings.map_style_url)
    style_url = settings.map_style_url or str(request.url_for("map_style"))
    bounds = await _map_bounds(request, settings.resolved_map())
    min_lon, min_lat, max_lon, max_lat = bounds
    return MapConfig(
        style_url=style_url,
        bounds=list(bounds),
        center=[(min_lon + max_lon) / 2, (min_lat + max_lat) / 2],
        attribution=ATTRIBUTION,
        external=external,
    )


@router.get("/map/style.json", name="map_style")
async def map_style(request: Request) -> Response:
    """The MapLibre style (v8) of the offline basemap (open).

    Its GeoJSON sources point at absolute ``/map/data/{layer}.geojson`` URLs
    carrying the layer's digest (``?v=``), so a new map is never hidden by a
    cached old layer.
    """
    basemap = await get_basemap(request)
    urls = {
        name: str(request.url_for("map_layer", layer=name).include_query_params(v=layer.digest))
        for name, layer in basemap.layers.items()
    }
    body = orjson.dumps(build_style(urls, basemap.bounds))
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


@router.get("/map/data/{layer}.geojson", name="map_layer")
async def map_layer(layer: str, request: Request) -> Response:
    """One basemap layer as a GeoJSON FeatureCollection (open).

    Sent gzip-compressed when the client accepts it, with an ETag (304 on a
    matching ``If-None-Match``) and ``Cache-Control: public, max-age=3600``.
    """
    if layer not in LAYER_NAMES:
        raise NotFound(f"no basemap layer {layer!r} (layers: {', '.join(LAYER_NAMES)})")
    encoded = (await get_basemap(request)).layers[layer]
    gzipped = accepts_gzip(request.headers.get("accept-encoding"))
    etag = f'"{encoded.digest}-gz"' if gzipped else f'"{encoded.digest}"'
    headers = {"Cache-Control": LAYER_CACHE_CONTROL, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag_matches(request.headers.get("if-none-match"), encoded.digest):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(encoded.gzipped, media_type=GEOJSON, headers=headers)
    return Response(encoded.plain, media_type=GEOJSON, headers=headers)


async def get_basemap(request: Request) -> Basemap:
    """The basemap of the service's road map, built on first use."""
    path = _settings(request).resolved_map()
    built = _BUILT.get(path)
    if built is not None:
        return built
    async with _build_lock(request.app):
        built = _BUILT.get(path)
        if built is None:
            built = await asyncio.to_thread(build_basemap, path)
            _BUILT[path] = built
            log.info(
                "basemap %s: built in %.2f s, sea %s; %s",
                path,
                built.build_time_s,
                "built" if built.has_sea else "not built",
                ", ".join(
                    f"{name} {layer.features} features {len(layer.gzipped)} B gzip"
                    for name, layer in built.layers.items()
                ),
            )
    return built


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an ``Accept-Encoding`` header allows gzip (``q`` > 0, or ``*``)."""
    if not accept_encoding:
        return False
    wildcard = False
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return _quality(params) > 0
        if coding == "*":
            wildcard = _quality(params) > 0
    return wildcard


def etag_matches(if_none_match: str | None, digest: str) -> bool:
    """True when ``If-None-Match`` names either encoding's ETag of ``digest`` (or ``*``)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/").strip('"')
        if tag in ("*", digest, f"{digest}-gz"):
            return True
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _settings(request: Request) -> Settings:
    service: TrackingService = request.app.state.service
    return service.settings


def _build_lock(app: FastAPI) -> asyncio.Lock:
    # Created on first use, inside the app's event loop; no await between the
    # check and the set, so two requests cannot create two locks.
    lock: asyncio.Lock | None = getattr(app.state, "basemap_lock", None)
    if lock is None:
        lock = app.state.basemap_lock = asyncio.Lock()
    return lock


async def _map_bounds(request: Request, path: str) -> tuple[float, float, float, float]:
    """The extract's box from the map's header, else the box of the built basemap."""
    if path not in _BOUNDS:
        _BOUNDS[path] = await asyncio.to_thread(extract_bounds, path)
    bounds = _BOUNDS[path]
    if bounds is not None:
        return bounds
    # A file without a header box (an osmium export, an .osm): read it all.
    return (await get_basemap(request)).bounds
