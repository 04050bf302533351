"""Tests of tracking.basemap: layers of the bundled central-Helsinki extract, the sea, the style."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import shapely
from shapely.geometry import shape

from tracking.api.maps import accepts_gzip, etag_matches
from tracking.basemap import LAYER_NAMES, BasemapLayers, build_basemap, build_style, read_layers
from tracking.basemap.bundle import encode_layer
from tracking.basemap.features import feature
from tracking.basemap.layers import extract_bounds
from tracking.basemap.sea import sea_polygon
from tracking.basemap.style import RAIL_WIDTHS, ROAD_WIDTHS
from tracking.basemap.tags import ROAD_CLASS_ORDER, landuse_class, rail_class, road_class
from tracking.routing import default_map_path

# The extract's box, from its header.
EXTRACT_BOX = (24.9351762, 60.164155, 24.9534145, 60.179113)
SEA_POINT = (24.9440, 60.1775)  # Kaisaniemenlahti, a bay of the sea
LAND_POINT = (24.9500, 60.1785)  # Siltasaari, the block north of the bay
PARK_POINT = (24.9450, 60.1745)  # Kaisaniemi park, south of the bay

GEOMETRY_TYPES = {
    "water": {"Polygon", "MultiPolygon"},
    "landuse": {"Polygon", "MultiPolygon"},
    "buildings": {"Polygon", "MultiPolygon"},
    "roads": {"LineString", "MultiLineString"},
    "rail": {"LineString", "MultiLineString"},
}


@pytest.fixture(scope="module")
def basemap() -> BasemapLayers:
    return read_layers(default_map_path())


def features(basemap: BasemapLayers, layer: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = basemap.layers[layer]["features"]
    return items


def classes(basemap: BasemapLayers, layer: str) -> Counter[str]:
    return Counter(item["properties"]["class"] for item in features(basemap, layer))


def test_layers_are_the_declared_ones(basemap: BasemapLayers) -> None:
    """Every layer of LAYER_NAMES is a FeatureCollection, and no other."""
    assert tuple(basemap.layers) == LAYER_NAMES
    for collection in basemap.layers.values():
        assert collection["type"] == "FeatureCollection"


def test_bounds_are_the_extract_header_box(basemap: BasemapLayers) -> None:
    """The basemap's bounds are the box the extract was cut to."""
    assert basemap.bounds == pytest.approx(EXTRACT_BOX, abs=1e-7)
    assert extract_bounds(default_map_path()) == basemap.bounds


def test_roads_carry_class_and_name(basemap: BasemapLayers) -> None:
    """Roads are classed (primary, residential, service, paths…) and named where OSM names them."""
    found = classes(basemap, "roads")
    for cls in ("primary", "secondary", "tertiary", "residential", "service", "path", "cycleway"):
        assert found[cls] > 0, cls
    assert set(found) <= set(ROAD_CLASS_ORDER)
    names = {
        item["properties"].get("name")
        for item in features(basemap, "roads")
        if item["properties"]["class"] == "primary"
    }
    assert "Mannerheimintie" in names


def test_rail_holds_trams_and_railways(basemap: BasemapLayers) -> None:
    """The railway layer has the station's tracks and the tram lines."""
    found = classes(basemap, "rail")
    assert found["rail"] > 50 and found["tram"] > 50


def test_areas_of_the_extract_are_present(basemap: BasemapLayers) -> None:
    """The extract's water, parks, grass, squares and buildings all reach their layers."""
    water = classes(basemap, "water")
    assert water["sea"] == 1 and water["water"] > 0 and water["basin"] > 0
    land = classes(basemap, "landuse")
    for cls in ("park", "grass", "square", "pier"):
        assert land[cls] > 0, cls
    assert len(features(basemap, "buildings")) > 400


def test_every_geometry_is_valid_geojson_inside_the_extract(basemap: BasemapLayers) -> None:
    """Each feature is a GeoJSON Feature of its layer's type, valid, within the box, 6 decimals."""
    min_lon, min_lat, max_lon, max_lat = EXTRACT_BOX
    for layer, collection in basemap.layers.items():
        for item in collection["features"]:
            assert item["type"] == "Feature"
            assert isinstance(item["properties"], dict)
            geometry = item["geometry"]
            assert geometry["type"] in GEOMETRY_TYPES[layer]
            parsed = shape(geometry)
            assert not parsed.is_empty
            assert parsed.is_valid, (layer, item["properties"], shapely.is_valid_reason(parsed))
            for lon, lat in shapely.get_coordinates(parsed).tolist():
                assert min_lon - 1e-6 <= lon <= max_lon + 1e-6
                assert min_lat - 1e-6 <= lat <= max_lat + 1e-6
                assert round(lon, 6) == lon and round(lat, 6) == lat


def test_polygon_rings_are_closed_with_ccw_exteriors(basemap: BasemapLayers) -> None:
    """Polygon rings are closed and exteriors counter-clockwise (RFC 7946)."""
    for layer in ("water", "landuse", "buildings"):
        for item in features(basemap, layer):
            parsed = shape(item["geometry"])
            for polygon in getattr(parsed, "geoms", [parsed]):
                ring = list(polygon.exterior.coords)
                assert ring[0] == ring[-1] and len(ring) >= 4
                assert polygon.exterior.is_ccw


def test_sea_fills_the_bay_and_spares_the_land(basemap: BasemapLayers) -> None:
    """The sea built from the coastline covers Kaisaniemenlahti, not Siltasaari or the park."""
    sea = next(
        shape(item["geometry"])
        for item in features(basemap, "water")
        if item["properties"]["class"] == "sea"
    )
    assert basemap.has_sea
    assert sea.contains(shapely.Point(SEA_POINT))
    assert not sea.contains(shapely.Point(LAND_POINT))
    assert not sea.contains(shapely.Point(PARK_POINT))


def test_tags_map_link_roads_to_their_parent_and_skip_areas() -> None:
    """A link road is drawn as its parent; areas, platforms and indoor ways are not roads."""
    assert road_class({"highway": "primary_link"}) == "primary"
    assert road_class({"highway": "unclassified"}) == "residential"
    assert road_class({"highway": "footway"}) == "path"
    assert road_class({"highway": "pedestrian", "area": "yes"}) is None
    assert road_class({"highway": "platform"}) is None
    assert road_class({"highway": "corridor"}) is None
    assert road_class({"highway": "footway", "indoor": "yes"}) is None
    assert rail_class({"railway": "tram"}) == "tram"
    assert rail_class({"railway": "abandoned"}) is None


def test_a_closed_pedestrian_way_is_a_square_only_when_tagged_as_area() -> None:
    """A pedestrian loop is a street; with area=yes, or as a multipolygon, it is a square."""
    assert landuse_class({"highway": "pedestrian"}, from_way=True) is None
    assert landuse_class({"highway": "pedestrian", "area": "yes"}, from_way=True) == "square"
    assert landuse_class({"highway": "pedestrian"}, from_way=False) == "square"
    assert landuse_class({"leisure": "park", "landuse": "grass"}, from_way=True) == "park"


BOX = (0.0, 0.0, 1.0, 1.0)


def test_sea_is_right_of_the_coastline() -> None:
    """A coastline running south through the box has the sea on its right: the west half."""
    sea = sea_polygon([[(0.5, 0.999), (0.5, 0.001)]], BOX)
    assert sea is not None
    assert sea.contains(shapely.Point(0.25, 0.5))
    assert not sea.contains(shapely.Point(0.75, 0.5))
    assert sea.area == pytest.approx(0.5, rel=1e-6)
    north = sea_polygon([[(0.5, 0.001), (0.5, 0.999)]], BOX)
    assert north is not None and north.contains(shapely.Point(0.75, 0.5))


def test_sea_joins_pieces_of_one_coastline() -> None:
    """Two runs that continue each other are one coastline: a bay cut out of the land."""
    first = [(0.2, 0.999), (0.2, 0.5), (0.5, 0.4)]
    second = [(0.5, 0.4), (0.8, 0.5), (0.8, 0.999)]
    sea = sea_polygon([second, first], BOX)
    assert sea is not None
    # Walking south then east then north, the right-hand side is outside the bay.
    assert sea.contains(shapely.Point(0.1, 0.5)) and sea.contains(shapely.Point(0.5, 0.1))
    assert not sea.contains(shapely.Point(0.5, 0.7))


def test_an_island_is_land_in_the_sea() -> None:
    """A closed counter-clockwise coastline is an island: the sea is the box around it."""
    island = [(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6), (0.4, 0.4)]
    sea = sea_polygon([island], BOX)
    assert sea is not None
    assert sea.area == pytest.approx(1.0 - 0.04)
    assert not sea.contains(shapely.Point(0.5, 0.5))


def test_no_sea_when_the_coastline_cannot_be_closed() -> None:
    """No coastline, or a piece ending far inside the box, gives no sea rather than a wrong one."""
    assert sea_polygon([], BOX) is None
    assert sea_polygon([[(0.5, 0.99), (0.5, 0.5)]], BOX) is None


def test_feature_rounds_and_drops_what_collapses() -> None:
    """Coordinates are rounded to 6 decimals; a polygon smaller than the grid is dropped."""
    line = feature(shapely.LineString([(24.93517612, 60.1641551), (24.9400004, 60.17)]), {})
    assert line is not None
    assert line["geometry"]["coordinates"] == [[24.935176, 60.164155], [24.94, 60.17]]
    speck = shapely.box(24.9400001, 60.1700001, 24.9400002, 60.1700002)
    assert feature(speck, {"class": "grass"}) is None


def test_layer_encoding_is_deterministic_and_gzip_round_trips() -> None:
    """The encoded bytes, and so the ETags, are the same on every build (every gateway)."""
    collection = {"type": "FeatureCollection", "features": []}
    first, second = encode_layer(collection), encode_layer(dict(collection))
    assert first == second
    assert gzip.decompress(first.gzipped) == first.plain
    assert orjson.loads(first.plain) == collection


def test_two_builds_of_the_extract_are_identical() -> None:
    """Two builds of the bundled extract give the same layer bytes."""
    one, two = build_basemap(default_map_path()), build_basemap(default_map_path())
    assert one.layers == two.layers
    assert one.build_time_s > 0


def style_for(layers: tuple[str, ...] = LAYER_NAMES) -> dict[str, Any]:
    urls = {name: f"http://gw.test/map/data/{name}.geojson" for name in layers}
    return build_style(urls, EXTRACT_BOX)


def test_style_is_a_v8_style_without_fonts_or_sprites() -> None:
    """Version 8, no glyphs, sprite or symbol layers (nothing to fetch but the GeoJSON)."""
    style = style_for()
    assert style["version"] == 8
    assert "glyphs" not in style and "sprite" not in style
    assert all(layer["type"] in ("background", "fill", "line") for layer in style["layers"])
    assert style["center"] == pytest.approx([24.944295, 60.171634], abs=1e-6)
    assert style["metadata"]["tracking:bounds"] == list(EXTRACT_BOX)


def test_style_layers_are_unique_prefixed_and_their_sources_exist() -> None:
    """Layer ids are unique and start with base-; every layer's source is declared."""
    style = style_for()
    ids = [layer["id"] for layer in style["layers"]]
    assert len(ids) == len(set(ids))
    assert all(layer_id.startswith("base-") for layer_id in ids)
    assert style["layers"][0]["type"] == "background"
    for layer in style["layers"][1:]:
        assert layer["source"] in style["sources"], layer["id"]
    used = {layer.get("source") for layer in style["layers"]}
    assert set(style["sources"]) <= used


def test_style_sources_load_the_given_urls() -> None:
    """Each layer's source is GeoJSON loaded from the URL given for it, with attribution."""
    style = style_for()
    for name in LAYER_NAMES:
        source = style["sources"][f"base-{name}"]
        assert source["type"] == "geojson"
        assert source["data"] == f"http://gw.test/map/data/{name}.geojson"
        assert source["attribution"] == "© OpenStreetMap contributors"


def test_style_skips_layers_without_a_url() -> None:
    """A layer left out of the URLs has neither a source nor a style layer."""
    style = style_for(("roads",))
    assert {layer.get("source") for layer in style["layers"]} == {
        None,
        "base-outside",
        "base-roads",
    }


def test_every_class_has_a_width() -> None:
    """Every road and rail class the reader emits has its own width in the style."""
    assert set(ROAD_WIDTHS) == set(ROAD_CLASS_ORDER)
    assert set(RAIL_WIDTHS) <= {"rail", "tram", "subway"}


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (None, False),
        ("", False),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
        ("*;q=0", False),
        ("deflate, *;q=0.1", True),
    ],
)
def test_accepts_gzip(header: str | None, accepted: bool) -> None:
    """Accept-Encoding allows gzip when it names gzip (or *) with a non-zero quality."""
    assert accepts_gzip(header) is accepted


def test_etag_matches_either_encoding() -> None:
    """If-None-Match matches the plain or the gzip ETag of a digest, weak or strong, or *."""
    assert etag_matches('"abc"', "abc")
    assert etag_matches('W/"abc-gz"', "abc")
    assert etag_matches('"x", "abc-gz"', "abc")
    assert etag_matches("*", "abc")
    assert not etag_matches('"abd"', "abc")
    assert not etag_matches(None, "abc")


TINY_OSM = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
  <node id="1" version="1" lat="60.1700000" lon="24.9400000"/>
  <node id="2" version="1" lat="60.1710000" lon="24.9420000"/>
  <node id="3" version="1" lat="60.1702000" lon="24.9402000"/>
  <node id="4" version="1" lat="60.1702000" lon="24.9405000"/>
  <node id="5" version="1" lat="60.1704000" lon="24.9405000"/>
  <way id="10" version="1">
    <nd ref="1"/><nd ref="2"/><nd ref="99"/>
    <tag k="highway" v="trunk_link"/><tag k="name" v="Testikatu"/><tag k="tunnel" v="yes"/>
  </way>
  <way id="11" version="1">
    <nd ref="3"/><nd ref="4"/><nd ref="5"/><nd ref="3"/>
    <tag k="building" v="yes"/>
  </way>
</osm>
"""


def test_a_file_without_a_header_box_is_bounded_by_its_features(tmp_path: Path) -> None:
    """An .osm file with no bounds gets the box of what was drawn; missing nodes are skipped."""
    path = tmp_path / "tiny.osm"
    path.write_text(TINY_OSM)
    assert extract_bounds(str(path)) is None
    read = read_layers(str(path))
    assert read.bounds == (24.94, 60.17, 24.942, 60.171)
    assert not read.has_sea
    (road,) = features(read, "roads")
    assert road["properties"] == {"class": "trunk", "name": "Testikatu", "tunnel": True}
    assert road["geometry"] == {
        "type": "LineString",
        "coordinates": [[24.94, 60.17], [24.942, 60.171]],
    }
    (building,) = features(read, "buildings")
    assert building["properties"] == {}
    assert shape(building["geometry"]).equals(
        shapely.Polygon([(24.9402, 60.1702), (24.9405, 60.1702), (24.9405, 60.1704)])
    )
