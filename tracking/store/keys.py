"""Redis key names. Every key of a trip or a driver carries its id as the hash
tag (`trk:{t-42}:…`) so that all of them live in one Redis Cluster slot."""

from __future__ import annotations

GEO_KEY = "trk:{geo}:drivers"
"""GEO index of drivers' last positions, for `nearby`."""
DEADLINES_KEY = "trk:{sched}:deadlines"
"""Sorted set: trip id scored by when the core next needs a tick (ms)."""
PACE_KEY = "trk:{model}:pace"
"""Hash: the fleet's learned pace (`pace`) and how many legs taught it (`n`)."""
FLEET_CHANNEL = "trk:{fleet}:pos"
"""Pub/sub: one compact JSON update per driver write (`core.fleet.FleetUpdate`)."""
SEEN_KEY = "trk:{fleet}:seen"
"""Sorted set: driver id scored by the server time (ms) of its last point."""


def trip(trip_id: str) -> str:
    """Hash: `rev`, `state` (per-point JSON), `route` (route geometry JSON)."""
    return f"trk:{{{trip_id}}}:trip"


def events(trip_id: str) -> str:
    """Stream of the trip channel's events, entry id `<seq>-0`, capped."""
    return f"trk:{{{trip_id}}}:events"


def trail(trip_id: str) -> str:
    """List of the driver's raw fixes on this trip: `lon,lat,ts,seq`."""
    return f"trk:{{{trip_id}}}:trail"


def trip_channel(trip_id: str) -> str:
    return f"trk:{{{trip_id}}}:tch"


def driver(driver_id: str) -> str:
    """Hash: `last_seq`, `state` (DriverState JSON)."""
    return f"trk:{{{driver_id}}}:drv"


def driver_channel(driver_id: str) -> str:
    return f"trk:{{{driver_id}}}:dch"
