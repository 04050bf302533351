"""The stored state of one trip, and the configuration of the core."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

from tracking.core.eta import DEFAULT_PACE_PRIOR
from tracking.core.messages import ACTIVE, Status

Leg = Literal["plan", "pickup", "dropoff"]
LonLatTuple = tuple[float, float]


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Tunables of the geo core (from Settings in the service)."""

    arrival_radius_m: float = 50.0
    stale_after_s: float = 15.0
    dwell_complete_s: float = 30.0
    offroute_m: float = 40.0
    offroute_fixes: int = 3
    max_speed_mps: float = 90.0
    future_tolerance_ms: int = 300_000
    default_acc_m: float = 10.0
    max_acc_m: float = 200.0
    """Fixes less accurate than this never move progress or change status."""
    zone_fixes: int = 2
    """Consecutive fixes that must agree before a zone entry or exit counts."""
    reroute_backoff_ms: int = 30_000


# Fields kept in the route hash fields rather than the per-point state blob:
# they change rarely and are large.
ROUTE_FIELDS = ("route_coords", "route_speeds", "plan_coords", "plan_speeds")


@dataclass(slots=True)
class TripState:
    """Everything the service knows about one trip.

    The core mutates it in place; an adapter that fails to store the result
    throws the object away and reloads.
    """

    id: str
    kind: str
    status: Status
    pickup: LonLatTuple
    dropoff: LonLatTuple
    created_ts: int
    updated_ts: int
    driver_id: str | None = None
    seq: int = 0
    """Seq of the last event emitted on the trip channel."""
    rev: int = 0
    """Write counter, for compare-and-set in the store."""
    route_rev: int = 0
    leg: Leg = "plan"
    """What the current route leads to: the pickup→dropoff plan, or the driver's leg."""
    route_coords: list[LonLatTuple] = field(default_factory=list)
    route_speeds: list[float] = field(default_factory=list)
    plan_coords: list[LonLatTuple] = field(default_factory=list)
    plan_speeds: list[float] = field(default_factory=list)
    along_m: float = 0.0
    progress: float = 0.0
    back_fixes: int = 0
    off_fixes: int = 0
    in_zone: int = 0
    out_zone: int = 0
    dwell_since_ts: int | None = None
    reroute_wanted: bool = False
    reroute_after_ts: int = 0
    driver: dict[str, Any] | None = None
    """Last applied fix: lon, lat, heading, speed, ts (driver clock)."""
    driver_seq: int = 0
    """Seq of the last driver point applied to this trip (dedupe of resends)."""
    last_fix_ms: int | None = None
    """Server time of the driver's last sign of life: a fix, or the assignment
    (staleness uses the server clock)."""
    signal_lost: bool = False
    eta: dict[str, Any] | None = None
    eta_arrive_drv_ms: int | None = None
    """Smoothed predicted arrival in the driver's clock (ETA smoothing state)."""
    pace: float = DEFAULT_PACE_PRIOR
    """Road-time covered per second driven (1.0: exactly at OSM road speeds)."""
    pace_prior: float = DEFAULT_PACE_PRIOR
    """The fleet's learned pace when the trip was assigned."""
    pace_along_m: float = 0.0
    """Furthest point of the current route that pace has counted."""
    pace_gained_s: float = 0.0
    pace_elapsed_s: float = 0.0
    pace_sample: float | None = None
    """Set on arrival: this trip's pace, for the service to teach the fleet prior."""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def next_event(self, now_ms: int) -> tuple[int, int]:
        """Allocate the next event seq; returns (seq, ts)."""
        self.seq += 1
        self.updated_ts = now_ms
        return self.seq, now_ms

    def state_json(self) -> bytes:
        """The per-point part of the state (no route geometry)."""
        return orjson.dumps(
            {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ROUTE_FIELDS}
        )

    def route_json(self) -> bytes:
        """The route geometry part, stored only when `route_rev` changes."""
        return orjson.dumps({name: getattr(self, name) for name in ROUTE_FIELDS})

    @classmethod
    def from_json(cls, state: bytes | str, route: bytes | str) -> TripState:
        data = orjson.loads(state)
        data.update(orjson.loads(route))
        for key in ("pickup", "dropoff"):
            data[key] = tuple(data[key])
        for key in ("route_coords", "plan_coords"):
            data[key] = [tuple(c) for c in data[key]]
        return cls(**data)
