"""Read an .osm.pbf with pyosmium into the basemap's GeoJSON layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import osmium
import shapely
from shapely.geometry.base import BaseGeometry

from tracking.basemap import tags as classify
from tracking.basemap.features import Feature, FeatureCollection, feature, feature_collection
from tracking.basemap.sea import Box, LonLat, sea_polygon

# The layers, each served as /map/data/{name}.geojson.
LAYER_NAMES = ("water", "landuse", "buildings", "roads", "rail")


@dataclass(frozen=True, slots=True)
class BasemapLayers:
    """The basemap of one extract.

    Attributes:
        layers: One FeatureCollection per name of :data:`LAYER_NAMES`.
        bounds: (min_lon, min_lat, max_lon, max_lat): the extract's box from
            the file header, else the box of the drawn features.
        has_sea: True when the ``water`` layer holds a sea polygon built from
            the coastline.
    """

    layers: dict[str, FeatureCollection]
    bounds: Box
    has_sea: bool


def extract_bounds(path: str) -> Box | None:
    """The extract's box from the file header (only the header is read), or None."""
    with osmium.io.Reader(path, osmium.osm.NOTHING) as reader:
        box = reader.header().box()
    if not box.valid():
        return None
    return (box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat)


def read_layers(path: str) -> BasemapLayers:
    """Read the water, land cover, buildings, roads and railways of an extract.

    Areas (closed ways and multipolygon relations) are assembled by pyosmium;
    an area cut by the extract's edge is left out. Roads and railways are split
    where the extract dropped their nodes. The sea is built from the
    ``natural=coastline`` ways when they are consistent (see
    :func:`tracking.basemap.sea.sea_polygon`).

    Args:
        path: Path of the .osm.pbf (or any format libosmium reads).

    Returns:
        The layers, each feature with a ``class`` (all but buildings), ``name``
        when the object has one, and ``tunnel: true`` on underground ways.

    Raises:
        OSError / RuntimeError: When the file cannot be read (from pyosmium).
    """
    features: dict[str, list[Feature]] = {name: [] for name in LAYER_NAMES}
    coastlines: list[list[LonLat]] = []
    wkb = osmium.geom.WKBFactory()
    processor = (
        osmium.FileProcessor(path)
        .with_locations()
        .with_areas()
        # Every object still feeds the location cache and the area assembler;
        # only tagged ways and the areas reach the loop.
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY | osmium.osm.AREA))
        .with_filter(osmium.filter.KeyFilter(*classify.KEYS))
    )
    for entity in processor:
        tags = {key: value for key in classify.KEYS if (value := entity.tags.get(key)) is not None}
        if isinstance(entity, osmium.osm.Area):
            try:
                geometry = shapely.from_wkb(wkb.create_multipolygon(entity))
            except (osmium.InvalidLocationError, RuntimeError):  # not assembled
                continue
            _add_area(features, tags, entity.from_way(), geometry)
        elif isinstance(entity, osmium.osm.Way):
            runs = _located_runs(entity)
            if classify.is_coastline(tags):
                coastlines.extend(runs)
            _add_way(features, tags, runs)

    bounds = extract_bounds(path) or _features_box(features)
    has_sea = False
    if coastlines and bounds is not None:
        sea = sea_polygon(coastlines, bounds)
        if sea is not None and (sea_feature := feature(sea, {"class": "sea"})) is not None:
            features["water"].insert(0, sea_feature)
            has_sea = True
    return BasemapLayers(
        {name: feature_collection(items) for name, items in features.items()},
        bounds or (0.0, 0.0, 0.0, 0.0),
        has_sea,
    )


def _add_area(
    features: dict[str, list[Feature]],
    tags: dict[str, str],
    from_way: bool,
    geometry: BaseGeometry,
) -> None:
    if (water := classify.water_class(tags)) is not None:
        _append(features["water"], geometry, _props(water, tags))
    if (land := classify.landuse_class(tags, from_way)) is not None:
        _append(features["landuse"], geometry, _props(land, tags))
    if classify.is_building(tags):
        _append(features["buildings"], geometry, {})


def _add_way(
    features: dict[str, list[Feature]], tags: dict[str, str], runs: list[list[LonLat]]
) -> None:
    if not runs:
        return
    if (road := classify.road_class(tags)) is not None:
        layer, props = features["roads"], _props(road, tags)
    elif (rail := classify.rail_class(tags)) is not None:
        layer, props = features["rail"], _props(rail, tags)
    else:
        return
    if classify.is_tunnel(tags):
        props["tunnel"] = True
    line = shapely.LineString(runs[0]) if len(runs) == 1 else shapely.MultiLineString(runs)
    _append(layer, line, props)


def _append(layer: list[Feature], geometry: BaseGeometry, props: dict[str, Any]) -> None:
    if (item := feature(geometry, props)) is not None:
        layer.append(item)


def _props(cls: str, tags: dict[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {"class": cls}
    if name := tags.get("name"):
        props["name"] = name
    return props


def _located_runs(way: osmium.osm.Way) -> list[list[LonLat]]:
    """The runs of consecutive nodes with a location (≥ 2 nodes each)."""
    runs: list[list[LonLat]] = []
    run: list[LonLat] = []
    for ref in way.nodes:
        location = ref.location
        if location.valid():
            run.append((location.lon, location.lat))
            continue
        if len(run) >= 2:
            runs.append(run)
        run = []
    if len(run) >= 2:
        runs.append(run)
    return runs


def _features_box(features: dict[str, list[Feature]]) -> Box | None:
    lons: list[float] = []
    lats: list[float] = []
    for items in features.values():
        for item in items:
            for lon, lat in _points(item["geometry"]["coordinates"]):
                lons.append(lon)
                lats.append(lat)
    if not lons:
        return None
    return (min(lons), min(lats), max(lons), max(lats))


def _points(coordinates: Any) -> list[tuple[float, float]]:
    if coordinates and isinstance(coordinates[0], float | int):
        return [(coordinates[0], coordinates[1])]
    return [point for part in coordinates for point in _points(part)]
