"""Which basemap layer and class an OSM object's tags put it in (pure)."""

from __future__ import annotations

from collections.abc import Mapping

# Every tag key the classifiers below read: the reader copies only these.
KEYS = (
    "highway",
    "railway",
    "natural",
    "waterway",
    "landuse",
    "leisure",
    "amenity",
    "man_made",
    "place",
    "building",
    "area",
    "tunnel",
    "indoor",
    "name",
)

# Link roads are drawn as their parent class.
_ROAD_CLASSES = {
    "motorway": "motorway",
    "motorway_link": "motorway",
    "trunk": "trunk",
    "trunk_link": "trunk",
    "primary": "primary",
    "primary_link": "primary",
    "secondary": "secondary",
    "secondary_link": "secondary",
    "tertiary": "tertiary",
    "tertiary_link": "tertiary",
    "residential": "residential",
    "unclassified": "residential",
    "living_street": "residential",
    "road": "residential",
    "service": "service",
    "pedestrian": "pedestrian",
    "track": "track",
    "cycleway": "cycleway",
    "footway": "path",
    "path": "path",
    "bridleway": "path",
    "steps": "path",
    "trail": "path",
}

# Every road class, most important first (the style draws them in this order).
ROAD_CLASS_ORDER = (
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "residential",
    "service",
    "pedestrian",
    "track",
    "cycleway",
    "path",
)

_RAIL_CLASSES = {
    "rail": "rail",
    "light_rail": "rail",
    "narrow_gauge": "rail",
    "preserved": "rail",
    "funicular": "rail",
    "monorail": "rail",
    "subway": "subway",
    "tram": "tram",
}

# (key, value) → landuse class; the first listed pair an object has wins.
_LANDUSE_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("leisure", "park", "park"),
    ("leisure", "garden", "park"),
    ("landuse", "recreation_ground", "park"),
    ("landuse", "village_green", "park"),
    ("leisure", "pitch", "pitch"),
    ("leisure", "playground", "playground"),
    ("landuse", "cemetery", "cemetery"),
    ("amenity", "grave_yard", "cemetery"),
    ("landuse", "forest", "forest"),
    ("natural", "wood", "forest"),
    ("landuse", "grass", "grass"),
    ("landuse", "meadow", "grass"),
    ("natural", "grassland", "grass"),
    ("natural", "scrub", "scrub"),
    ("natural", "heath", "scrub"),
    ("natural", "wetland", "wetland"),
    ("man_made", "pier", "pier"),
    ("landuse", "railway", "railway"),
)

# Squares and pedestrian areas: plazas, drawn a shade lighter than the land.
_SQUARE_HIGHWAYS = frozenset({"pedestrian", "footway", "service", "living_street"})

_WATER_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("natural", "water", "water"),
    ("waterway", "riverbank", "river"),
    ("waterway", "dock", "dock"),
    ("landuse", "basin", "basin"),
    ("landuse", "reservoir", "basin"),
    ("landuse", "pond", "basin"),
)


def road_class(tags: Mapping[str, str]) -> str | None:
    """Basemap class of a ``highway=*`` way drawn as a line, or None to leave it out.

    Areas (``area=yes``), indoor corridors, platforms and roads under
    construction are not drawn as lines.
    """
    highway = tags.get("highway")
    if highway is None or tags.get("area") == "yes" or tags.get("indoor", "no") != "no":
        return None
    return _ROAD_CLASSES.get(highway)


def rail_class(tags: Mapping[str, str]) -> str | None:
    """Basemap class of a ``railway=*`` way (``rail``, ``tram``, ``subway``) or None."""
    railway = tags.get("railway")
    return None if railway is None else _RAIL_CLASSES.get(railway)


def is_tunnel(tags: Mapping[str, str]) -> bool:
    """True for a way that runs underground (``tunnel=*`` other than ``no``)."""
    return tags.get("tunnel", "no") not in ("no", "false", "0")


def is_coastline(tags: Mapping[str, str]) -> bool:
    """True for a ``natural=coastline`` way (land on its left, sea on its right)."""
    return tags.get("natural") == "coastline"


def water_class(tags: Mapping[str, str]) -> str | None:
    """Class of a water area (``water``, ``river``, ``dock``, ``basin``) or None."""
    for key, value, cls in _WATER_CLASSES:
        if tags.get(key) == value:
            return cls
    return None


def landuse_class(tags: Mapping[str, str], from_way: bool) -> str | None:
    """Class of a land cover area (park, grass, forest, square …) or None.

    Args:
        tags: The area's tags.
        from_way: True when the area is a closed way, False for a multipolygon
            relation: a closed ``highway=pedestrian`` way is a plaza only with
            ``area=yes``, a multipolygon always is.
    """
    for key, value, cls in _LANDUSE_CLASSES:
        if tags.get(key) == value:
            return cls
    if tags.get("highway") in _SQUARE_HIGHWAYS and (not from_way or tags.get("area") == "yes"):
        return "square"
    if tags.get("place") == "square":
        return "square"
    return None


def is_building(tags: Mapping[str, str]) -> bool:
    """True for a building outline (``building=*`` other than ``no``)."""
    return tags.get("building", "no") != "no"
