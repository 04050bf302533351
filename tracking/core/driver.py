"""Per-driver checks on incoming points: range, clock, duplicates, teleports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tracking.core.errors import FutureTimestamp, ImplausibleJump, InvalidPosition, OutOfOrder
from tracking.core.geo import haversine_m, valid_lon_lat
from tracking.core.messages import Point
from tracking.core.state import CoreConfig

MAX_INDEXED_LAT = 85.05112878
"""The geo index (Redis GEO, web-mercator cells) holds no point nearer the poles."""
JUMP_REJECTS_TO_REANCHOR = 3
"""After this many rejected jumps in a row the last accepted fix was the
outlier, not the new ones: the next point is accepted as a fresh start."""


@dataclass(slots=True)
class DriverState:
    """What the service keeps about a driver between points."""

    id: str
    last_seq: int = 0
    """Highest seq stored: every point up to it is acknowledged."""
    fix: dict[str, Any] | None = None
    """Last accepted point: lon, lat, ts, heading, speed, acc."""
    trip_id: str | None = None
    jump_rejects: int = 0

    def to_json(self) -> bytes:
        """The point-owned part; `trip_id` is stored apart, written by assignment only."""
        return orjson.dumps(
            {
                "id": self.id,
                "last_seq": self.last_seq,
                "fix": self.fix,
                "jump_rejects": self.jump_rejects,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str, trip_id: str | None = None) -> DriverState:
        data = orjson.loads(raw)
        data.pop("trip_id", None)
        return cls(**data, trip_id=trip_id)


def admit_point(driver: DriverState, point: Point, now_ms: int, cfg: CoreConfig) -> bool:
    """Check one point against the driver's history and record it.

    Returns False for a duplicate (seq already stored: acknowledge, store
    nothing). Raises a ValidationFailed subclass for a point to reject; a
    rejected point changes nothing except the teleport counter.
    """
    if point.seq <= driver.last_seq:
        return False
    if not valid_lon_lat(point.lon, point.lat):
        raise InvalidPosition(
            f"lon {point.lon}, lat {point.lat} out of range (lon -180..180, lat -90..90)",
            seq=point.seq,
        )
    if abs(point.lat) > MAX_INDEXED_LAT:
        # Refused here, like any out-of-range fix: storing it would fail the
        # whole write (and the socket) at the geo index.
        raise InvalidPosition(
            f"lat {point.lat} is beyond ±{MAX_INDEXED_LAT}, the latitudes the service can index",
            seq=point.seq,
        )
    if point.ts > now_ms + cfg.future_tolerance_ms:
        raise FutureTimestamp(
            f"ts {point.ts} is {(point.ts - now_ms) / 1000:.0f} s in the future", seq=point.seq
        )
    last = driver.fix
    if last is not None:
        if point.ts < last["ts"]:
            raise OutOfOrder(
                f"ts {point.ts} is older than the last accepted point ({last['ts']})",
                seq=point.seq,
            )
        distance_m = haversine_m(last["lon"], last["lat"], point.lon, point.lat)
        dt_s = max((point.ts - last["ts"]) / 1000.0, 1.0)
        implied_mps = distance_m / dt_s
        if implied_mps > cfg.max_speed_mps and driver.jump_rejects < JUMP_REJECTS_TO_REANCHOR:
            driver.jump_rejects += 1
            raise ImplausibleJump(
                f"{distance_m:.0f} m in {dt_s:.1f} s implies {implied_mps:.0f} m/s",
                seq=point.seq,
            )
    driver.jump_rejects = 0
    driver.last_seq = point.seq
    driver.fix = {
        "lon": point.lon,
        "lat": point.lat,
        "ts": point.ts,
        "heading": point.heading,
        "speed": point.speed,
        "acc": point.acc,
    }
    return True
