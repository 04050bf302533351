"""The MapLibre style (v8) of the offline basemap (pure).

A light, muted ride-app look: warm grey land, blue water, soft green parks,
faint buildings, white roads with a light casing and cream major roads, so the
pages' own route and car layers stand out on top. No text or icons: the
service has no offline fonts or sprites, so the style has no ``glyphs`` and
no ``sprite``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracking.basemap.sea import Box
from tracking.basemap.tags import ROAD_CLASS_ORDER

ATTRIBUTION = "© OpenStreetMap contributors"
LAYER_PREFIX = "base-"
SOURCE_PREFIX = "base-"

LAND = "#f3f1ec"
OUTSIDE = "#e7e4de"
WATER = "#b7d4ea"
BUILDING = "#dcd7cf"
BUILDING_OUTLINE = "#cec8be"
ROAD = "#ffffff"
ROAD_CASING = "#dcd8d0"
MAJOR_ROAD = "#fdf3d0"
MAJOR_CASING = "#e8dcb8"
PATH = "#d3cdc3"
RAIL = "#c6c3bd"

LANDUSE_COLORS = {
    "park": "#d5eacb",
    "grass": "#dcedd3",
    "forest": "#cce3c0",
    "scrub": "#d9e9cf",
    "wetland": "#d2e6dc",
    "pitch": "#cfe7c6",
    "playground": "#dbeed4",
    "cemetery": "#d8e5d0",
    "square": "#f8f7f4",
    "railway": "#ebe8e3",
}

MAJOR_CLASSES = ("motorway", "trunk", "primary", "secondary")
PATH_CLASSES = ("path", "cycleway", "track")
STREET_CLASSES = tuple(c for c in ROAD_CLASS_ORDER if c not in PATH_CLASSES)
# Tunnels of these classes are drawn (faint); those of the others (service
# tunnels, underground walkways) would only clutter the streets above.
TUNNEL_CLASSES = ("motorway", "trunk", "primary", "secondary", "tertiary", "residential")

# Line width in pixels at zooms 12, 16 and 20 per class, growing exponentially
# in between: wide enough to read at street zoom, never as wide as the real road.
WIDTH_ZOOMS = (12, 16, 20)
ROAD_WIDTHS: dict[str, tuple[float, float, float]] = {
    "motorway": (1.5, 10.0, 60.0),
    "trunk": (1.5, 10.0, 60.0),
    "primary": (1.2, 9.0, 52.0),
    "secondary": (1.0, 8.0, 46.0),
    "tertiary": (0.8, 7.0, 40.0),
    "residential": (0.5, 5.5, 32.0),
    "service": (0.2, 3.0, 18.0),
    "pedestrian": (0.3, 3.5, 20.0),
    "track": (0.3, 1.2, 4.0),
    "cycleway": (0.3, 1.2, 4.0),
    "path": (0.3, 1.2, 4.0),
}
RAIL_WIDTHS: dict[str, tuple[float, float, float]] = {
    "rail": (0.5, 1.2, 3.0),
    "tram": (0.4, 1.0, 2.0),
}
# The casing shows this much wider than the road, at each of WIDTH_ZOOMS.
CASING_EXTRA = (0.6, 1.5, 5.0)
_WIDTH_BASE = 1.5
_DEFAULT_WIDTH = (0.3, 2.0, 12.0)


def build_style(
    data_urls: Mapping[str, str],
    bounds: Box | None = None,
    name: str = "tracking offline basemap",
) -> dict[str, Any]:
    """The MapLibre style v8 of the basemap.

    Args:
        data_urls: Absolute URL of each layer's GeoJSON, by layer name
            (``water``, ``landuse``, ``buildings``, ``roads``, ``rail``).
            Absolute, because MapLibre fetches GeoJSON from a web worker,
            where a relative URL does not resolve. A layer without a URL gets
            no source and no style layer.
        bounds: (min_lon, min_lat, max_lon, max_lat) of the map: sets the
            style's ``center``, ``metadata["tracking:bounds"]`` (for a page's
            ``maxBounds``) and an inline ``base-outside`` source and layer that
            shade the world beyond the extract.
        name: The style's name.

    Returns:
        The style: GeoJSON sources ``base-<layer>`` and layers with ids
        prefixed ``base-``, bottom to top. Every source but ``base-outside``
        loads its data from its URL.
    """
    sources: dict[str, dict[str, Any]] = {
        SOURCE_PREFIX + layer: {"type": "geojson", "data": url, "attribution": ATTRIBUTION}
        for layer, url in data_urls.items()
    }
    layers: list[dict[str, Any]] = [
        {
            "id": LAYER_PREFIX + "background",
            "type": "background",
            "paint": {"background-color": LAND},
        }
    ]
    if bounds is not None:
        # Beyond the extract there is no data: a darker tone says so.
        sources[SOURCE_PREFIX + "outside"] = {"type": "geojson", "data": _outside(bounds)}
        layers.append(_fill("outside", "outside", {"fill-color": OUTSIDE}))
    if "landuse" in data_urls:
        layers.append(_landuse())
    if "water" in data_urls:
        layers.append(_fill("water", "water", {"fill-color": WATER}))
    if "landuse" in data_urls:
        # Piers stand in the water: drawn as land over it.
        pier = _fill("pier", "landuse", {"fill-color": LAND})
        pier["filter"] = ["==", ["get", "class"], "pier"]
        layers.append(pier)
    if "buildings" in data_urls:
        layers.append(_buildings())
    if "rail" in data_urls:
        layers.append(_rail())
    if "roads" in data_urls:
        layers.extend(_roads())
    style: dict[str, Any] = {
        "version": 8,
        "name": name,
        "metadata": {"tracking:attribution": ATTRIBUTION, "tracking:layers": list(data_urls)},
        "sources": sources,
        "layers": layers,
    }
    if bounds is not None:
        min_lon, min_lat, max_lon, max_lat = bounds
        style["center"] = [(min_lon + max_lon) / 2, (min_lat + max_lat) / 2]
        style["zoom"] = 14
        style["metadata"]["tracking:bounds"] = list(bounds)
    return style


def _outside(bounds: Box) -> dict[str, Any]:
    """The world minus the extract's box, as an inline GeoJSON polygon."""
    min_lon, min_lat, max_lon, max_lat = bounds
    world = [[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]
    hole = [[min_lon, min_lat], [min_lon, max_lat], [max_lon, max_lat], [max_lon, min_lat]]
    return {"type": "Polygon", "coordinates": [world, [*hole, hole[0]]]}


def _fill(layer_id: str, source: str, paint: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": LAYER_PREFIX + layer_id,
        "type": "fill",
        "source": SOURCE_PREFIX + source,
        "paint": paint,
    }


def _landuse() -> dict[str, Any]:
    layer = _fill(
        "landuse",
        "landuse",
        {"fill-color": _match_class(LANDUSE_COLORS, LAND), "fill-antialias": True},
    )
    layer["filter"] = ["!=", ["get", "class"], "pier"]
    return layer


def _buildings() -> dict[str, Any]:
    layer = _fill(
        "buildings",
        "buildings",
        {
            "fill-color": BUILDING,
            "fill-outline-color": BUILDING_OUTLINE,
            # Fade in: at city zoom buildings would only add noise.
            "fill-opacity": ["interpolate", ["linear"], ["zoom"], 13, 0.0, 15, 0.7],
        },
    )
    layer["minzoom"] = 13
    return layer


def _rail() -> dict[str, Any]:
    return {
        "id": LAYER_PREFIX + "rail",
        "type": "line",
        "source": SOURCE_PREFIX + "rail",
        "filter": ["all", _class_in(tuple(RAIL_WIDTHS)), _not_tunnel()],
        "layout": {"line-join": "round"},
        "paint": {"line-color": RAIL, "line-width": _width(RAIL_WIDTHS)},
    }


def _roads() -> list[dict[str, Any]]:
    source = SOURCE_PREFIX + "roads"
    sort_key = _match_class(
        {cls: len(ROAD_CLASS_ORDER) - rank for rank, cls in enumerate(ROAD_CLASS_ORDER)}, 0
    )
    streets = [
        "all",
        _class_in(STREET_CLASSES),
        ["any", _not_tunnel(), _class_in(TUNNEL_CLASSES)],
    ]
    tunnel_opacity = ["case", ["==", ["get", "tunnel"], True], 0.4, 1.0]
    rounded = {"line-cap": "round", "line-join": "round", "line-sort-key": sort_key}
    casing_widths = {
        cls: (widths[0] + CASING_EXTRA[0], widths[1] + CASING_EXTRA[1], widths[2] + CASING_EXTRA[2])
        for cls, widths in ROAD_WIDTHS.items()
    }
    major = dict.fromkeys(MAJOR_CLASSES, MAJOR_CASING)
    return [
        {
            "id": LAYER_PREFIX + "paths",
            "type": "line",
            "source": source,
            "minzoom": 14,
            "filter": ["all", _class_in(PATH_CLASSES), _not_tunnel()],
            "layout": {"line-join": "round"},
            "paint": {
                "line-color": PATH,
                "line-width": _width(ROAD_WIDTHS),
                "line-dasharray": [2, 1.5],
                "line-opacity": ["interpolate", ["linear"], ["zoom"], 14, 0.0, 15.5, 0.9],
            },
        },
        {
            "id": LAYER_PREFIX + "roads-casing",
            "type": "line",
            "source": source,
            "filter": streets,
            "layout": dict(rounded),
            "paint": {
                "line-color": _match_class(major, ROAD_CASING),
                "line-width": _width(casing_widths),
                "line-opacity": tunnel_opacity,
            },
        },
        {
            "id": LAYER_PREFIX + "roads",
            "type": "line",
            "source": source,
            "filter": streets,
            "layout": dict(rounded),
            "paint": {
                "line-color": _match_class(dict.fromkeys(MAJOR_CLASSES, MAJOR_ROAD), ROAD),
                "line-width": _width(ROAD_WIDTHS),
                "line-opacity": tunnel_opacity,
            },
        },
    ]


def _width(widths: Mapping[str, tuple[float, float, float]]) -> list[Any]:
    expression: list[Any] = ["interpolate", ["exponential", _WIDTH_BASE], ["zoom"]]
    for index, zoom in enumerate(WIDTH_ZOOMS):
        at_zoom = {cls: values[index] for cls, values in widths.items()}
        expression.extend((zoom, _match_class(at_zoom, _DEFAULT_WIDTH[index])))
    return expression


def _match_class(values: Mapping[str, Any], default: Any) -> list[Any]:
    """``["match", ["get", "class"], c1, v1, c2, v2, …, default]``."""
    expression: list[Any] = ["match", ["get", "class"]]
    for cls, value in values.items():
        expression.extend((cls, value))
    expression.append(default)
    return expression


def _class_in(classes: Sequence[str]) -> list[Any]:
    return ["match", ["get", "class"], list(classes), True, False]


def _not_tunnel() -> list[Any]:
    return ["!=", ["get", "tunnel"], True]
