"""Read the drivable ways and the traffic signals of an .osm.pbf file with pyosmium."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import osmium

from tracking.routing.tags import RELEVANT_KEYS, WayRule, classify_way

_SIGNAL_KEYS = ("highway", "crossing")


@dataclass(frozen=True, slots=True)
class DrivableWay:
    """A run of consecutive located nodes of one drivable OSM way.

    Attributes:
        node_ids: OSM node ids, in way order (at least 2).
        lons: Longitude of each node, degrees.
        lats: Latitude of each node, degrees.
        rule: Directions and expected speed of the way.
    """

    node_ids: tuple[int, ...]
    lons: tuple[float, ...]
    lats: tuple[float, ...]
    rule: WayRule


@dataclass(frozen=True, slots=True)
class OsmRoads:
    """What routing needs from an OSM extract.

    Attributes:
        ways: The drivable way pieces, each with at least two located nodes.
        signal_node_ids: OSM ids of the nodes that are traffic signals
            (``highway=traffic_signals``, or ``crossing=traffic_signals`` on a
            signalled pedestrian crossing); ids off the drivable ways included.
    """

    ways: list[DrivableWay]
    signal_node_ids: frozenset[int]


def is_traffic_signal(tags: Mapping[str, str]) -> bool:
    """True when a node's tags make it a traffic signal that stops cars.

    A signalled pedestrian crossing (``highway=crossing`` +
    ``crossing=traffic_signals``) stops cars just as a junction's lights do.
    """
    return tags.get("highway") == "traffic_signals" or tags.get("crossing") == "traffic_signals"


def read_roads(path: str) -> OsmRoads:
    """Read every drivable way and every traffic-signal node of an OSM PBF/XML file.

    A way whose nodes are partly missing from the file (clipped at the
    extract's edge) is split at the gaps rather than bridged by a straight line
    that would cross buildings.

    Args:
        path: Path of the .osm.pbf (or any format libosmium reads).

    Returns:
        The drivable way pieces and the signal node ids.

    Raises:
        OSError / RuntimeError: When the file cannot be read (from pyosmium).
    """
    processor = (
        osmium.FileProcessor(path, osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        # Every node still feeds the location cache; only tagged ones reach the loop.
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    ways: list[DrivableWay] = []
    signal_node_ids: set[int] = set()
    for entity in processor:
        if isinstance(entity, osmium.osm.Node):
            node_tags = {
                key: value for key in _SIGNAL_KEYS if (value := entity.tags.get(key)) is not None
            }
            if is_traffic_signal(node_tags):
                signal_node_ids.add(entity.id)
            continue
        if not isinstance(entity, osmium.osm.Way):
            continue  # the processor reads nodes and ways only; this narrows the type
        tags = {key: value for key in RELEVANT_KEYS if (value := entity.tags.get(key)) is not None}
        rule = classify_way(tags)
        if rule is None:
            continue
        run_ids: list[int] = []
        run_lons: list[float] = []
        run_lats: list[float] = []
        for ref in entity.nodes:
            location = ref.location
            if location.valid():
                run_ids.append(ref.ref)
                run_lons.append(location.lon)
                run_lats.append(location.lat)
                continue
            _flush(ways, run_ids, run_lons, run_lats, rule)
            run_ids, run_lons, run_lats = [], [], []
        _flush(ways, run_ids, run_lons, run_lats, rule)
    return OsmRoads(ways, frozenset(signal_node_ids))


def _flush(
    ways: list[DrivableWay],
    node_ids: list[int],
    lons: list[float],
    lats: list[float],
    rule: WayRule,
) -> None:
    if len(node_ids) >= 2:
        ways.append(DrivableWay(tuple(node_ids), tuple(lons), tuple(lats), rule))
