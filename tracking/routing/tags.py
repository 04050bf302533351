"""Which OSM ways a car may drive, in which direction, and how fast.

The rules here are deliberately small and explicit so a reader can check them
against the OSM wiki; they decide every edge of the routing graph.

Drivability: a way is drivable when its ``highway`` class is in
:data:`CLASS_DEFAULT_KMH`, it is not ``area=yes``, its most specific access tag
(``motorcar`` > ``motor_vehicle`` > ``vehicle`` > ``access``) is not ``no`` or
``private``, and it is not ``service=parking_aisle`` or ``service=driveway``.
Parking aisles and driveways are left out on purpose: they are dead ends into
car parks and courtyards, and a pickup snapped onto one would put the car off
the street where the rider is actually waiting. Reversible one-ways
(``oneway=reversible|alternating``) are left out too, since their direction at
a given time is unknown.

Speeds: the expected (routing and ETA) speed is the legal limit times
:data:`CITY_SPEED_FACTOR`, never below :data:`MIN_SPEED_KMH`. Cars in a city do
not drive at the limit (junctions, lights, traffic), and an ETA built on legal
limits is consistently optimistic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: Typical legal limit (km/h) per drivable ``highway`` class, used when the way
#: has no parseable ``maxspeed``. Values follow Finnish urban defaults.
CLASS_DEFAULT_KMH: dict[str, float] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "unclassified": 40.0,
    "residential": 30.0,
    "living_street": 20.0,
    "service": 20.0,
    "road": 30.0,
    "motorway_link": 60.0,
    "trunk_link": 50.0,
    "primary_link": 50.0,
    "secondary_link": 40.0,
    "tertiary_link": 40.0,
}

#: Expected speed as a fraction of the legal limit (see module docstring).
CITY_SPEED_FACTOR = 0.8
#: Floor of the expected speed, so no edge gets a near-zero speed and cost.
MIN_SPEED_KMH = 5.0

#: Tags the reader must copy out of each way for :func:`classify_way`.
RELEVANT_KEYS: tuple[str, ...] = (
    "highway",
    "area",
    "access",
    "vehicle",
    "motor_vehicle",
    "motorcar",
    "service",
    "oneway",
    "junction",
    "maxspeed",
)

_EXCLUDED_SERVICE = frozenset({"parking_aisle", "driveway"})
_DENIED_ACCESS = frozenset({"no", "private"})
_ACCESS_KEYS = ("motorcar", "motor_vehicle", "vehicle", "access")
_FORWARD_VALUES = frozenset({"yes", "true", "1"})
_BACKWARD_VALUES = frozenset({"-1", "reverse"})
_TWO_WAY_VALUES = frozenset({"no", "false", "0"})
_UNKNOWN_DIRECTION_VALUES = frozenset({"reversible", "alternating"})

_MPH_TO_KMH = 1.609344
_KNOT_TO_KMH = 1.852
_NUMERIC_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$")
# Zone tags like "FI:zone30", "DE:zone:30".
_ZONE_SPEED = re.compile(r"^[a-z]{2}:zone:?(\d+)$")
# Implicit limits by country-independent context; "fi:urban" and friends.
_CONTEXT_KMH: dict[str, float] = {
    "urban": 50.0,
    "rural": 80.0,
    "motorway": 120.0,
    "trunk": 100.0,
    "living_street": 20.0,
    "walk": 6.0,
}
_WORD_KMH: dict[str, float] = {"walk": 6.0, "none": 120.0}


@dataclass(frozen=True, slots=True)
class WayRule:
    """How a drivable way may be used.

    Attributes:
        forward: Cars may travel in the order of the way's nodes.
        backward: Cars may travel against the order of the way's nodes.
        speed_mps: Expected travel speed, metres per second.
    """

    forward: bool
    backward: bool
    speed_mps: float


def parse_maxspeed_kmh(raw: str | None) -> float | None:
    """Parse an OSM ``maxspeed`` value into km/h.

    Understands plain numbers ("50"), units ("50 km/h", "30 mph", "5 knots"),
    implicit country limits ("FI:urban" -> 50, "FI:rural" -> 80,
    "FI:motorway" -> 120), zones ("FI:zone30" -> 30), "walk" (6) and "none"
    (120). Several values separated by ";" yield the lowest.

    Args:
        raw: The tag value, or None when the way has no ``maxspeed``.

    Returns:
        The limit in km/h, or None when absent or unparseable (the caller then
        uses the class default).
    """
    if raw is None:
        return None
    parsed = [_parse_one_kmh(part) for part in raw.split(";")]
    speeds_kmh = [speed for speed in parsed if speed is not None]
    return min(speeds_kmh) if speeds_kmh else None


def _parse_one_kmh(raw: str) -> float | None:
    value = raw.strip().lower()
    if value in _WORD_KMH:
        return _WORD_KMH[value]
    numeric = _NUMERIC_SPEED.match(value)
    if numeric is not None:
        speed = float(numeric.group(1))
        unit = numeric.group(2)
        if unit == "mph":
            speed *= _MPH_TO_KMH
        elif unit == "knots":
            speed *= _KNOT_TO_KMH
        return speed if speed > 0 else None
    zone = _ZONE_SPEED.match(value)
    if zone is not None:
        speed = float(zone.group(1))
        return speed if speed > 0 else None
    country, sep, context = value.partition(":")
    if sep and len(country) == 2:
        return _CONTEXT_KMH.get(context)
    return None


def expected_speed_mps(highway: str, maxspeed: str | None) -> float:
    """Expected travel speed of a way in m/s.

    Args:
        highway: The way's ``highway`` class; must be a key of
            :data:`CLASS_DEFAULT_KMH`.
        maxspeed: The way's raw ``maxspeed`` tag, if any.

    Returns:
        ``max(MIN_SPEED_KMH, CITY_SPEED_FACTOR * limit)`` converted to m/s,
        where the limit is the parsed ``maxspeed`` or else the class default.
    """
    limit_kmh = parse_maxspeed_kmh(maxspeed)
    if limit_kmh is None:
        limit_kmh = CLASS_DEFAULT_KMH[highway]
    return max(MIN_SPEED_KMH, CITY_SPEED_FACTOR * limit_kmh) / 3.6


def classify_way(tags: Mapping[str, str]) -> WayRule | None:
    """Decide whether and how cars may use a way.

    Args:
        tags: The way's tags (at least those in :data:`RELEVANT_KEYS`).

    Returns:
        The way's directions and expected speed, or None when cars may not use
        it (see the module docstring for the rules).
    """
    highway = tags.get("highway")
    if highway is None or highway not in CLASS_DEFAULT_KMH:
        return None
    if tags.get("area") == "yes":
        return None
    if highway == "service" and tags.get("service") in _EXCLUDED_SERVICE:
        return None
    if _access_denied(tags):
        return None
    direction = _direction(highway, tags)
    if direction is None:
        return None
    forward, backward = direction
    return WayRule(forward, backward, expected_speed_mps(highway, tags.get("maxspeed")))


def _access_denied(tags: Mapping[str, str]) -> bool:
    # The most specific access tag present wins, so motorcar=yes re-opens a
    # way closed with access=no, and access=no closes it when nothing else is set.
    for key in _ACCESS_KEYS:
        value = tags.get(key)
        if value is not None:
            return value in _DENIED_ACCESS
    return False


def _direction(highway: str, tags: Mapping[str, str]) -> tuple[bool, bool] | None:
    oneway = tags.get("oneway", "").strip().lower()
    if oneway in _FORWARD_VALUES:
        return True, False
    if oneway in _BACKWARD_VALUES:
        return False, True
    if oneway in _UNKNOWN_DIRECTION_VALUES:
        return None
    if oneway in _TWO_WAY_VALUES:
        return True, True
    implied_oneway = highway == "motorway" or tags.get("junction") in {"roundabout", "circular"}
    return (True, False) if implied_oneway else (True, True)
