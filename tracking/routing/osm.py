"""Read the drivable ways of an .osm.pbf file with pyosmium."""

from __future__ import annotations

from dataclasses import dataclass

import osmium

from tracking.routing.tags import RELEVANT_KEYS, WayRule, classify_way


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


def read_drivable_ways(path: str) -> list[DrivableWay]:
    """Read every drivable way of an OSM PBF/XML file.

    A way whose nodes are partly missing from the file (clipped at the
    extract's edge) is split at the gaps rather than bridged by a straight line
    that would cross buildings.

    Args:
        path: Path of the .osm.pbf (or any format libosmium reads).

    Returns:
        The drivable way pieces, each with at least two located nodes.

    Raises:
        OSError / RuntimeError: When the file cannot be read (from pyosmium).
    """
    processor = (
        osmium.FileProcessor(path, osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        # Nodes are still fed to the location cache; only ways reach the loop.
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    ways: list[DrivableWay] = []
    for way in processor:
        if not isinstance(way, osmium.osm.Way):
            continue  # the entity filter already drops the rest; this narrows the type
        tags = {key: value for key in RELEVANT_KEYS if (value := way.tags.get(key)) is not None}
        rule = classify_way(tags)
        if rule is None:
            continue
        run_ids: list[int] = []
        run_lons: list[float] = []
        run_lats: list[float] = []
        for ref in way.nodes:
            location = ref.location
            if location.valid():
                run_ids.append(ref.ref)
                run_lons.append(location.lon)
                run_lats.append(location.lat)
                continue
            _flush(ways, run_ids, run_lons, run_lats, rule)
            run_ids, run_lons, run_lats = [], [], []
        _flush(ways, run_ids, run_lons, run_lats, rule)
    return ways


def _flush(
    ways: list[DrivableWay],
    node_ids: list[int],
    lons: list[float],
    lats: list[float],
    rule: WayRule,
) -> None:
    if len(node_ids) >= 2:
        ways.append(DrivableWay(tuple(node_ids), tuple(lons), tuple(lats), rule))
