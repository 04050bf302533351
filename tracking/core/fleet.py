"""The fleet feed's policy: what one ops viewer is sent, and when.

Pure: updates go in through :meth:`FleetConflator.offer`, frames come out of
:meth:`FleetConflator.due`; the caller passes the time. The socket adapter
(`tracking.api.fleet`) only shuttles updates in and frames out.

- **Conflation:** only each driver's latest update is kept, so a viewer that
  reads slowly costs memory bounded by the number of drivers, never a queue.
- **Rate:** frames (snapshots included, except the first) are at least
  `interval_ms` apart, so no driver is ever sent twice within the interval.
- **Box:** only drivers inside the viewer's box are sent. A driver the
  viewer was shown that moves out of the box is named in `left` instead.
- **Moved:** an update that leaves the driver where the viewer already sees
  it (same position, trip and status) is not sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tracking.core.geo import BBox
from tracking.core.messages import ACTIVE, DriversMessage, FleetDriver


@dataclass(frozen=True, slots=True)
class FleetUpdate:
    """A driver's last fix and its active trip, as the fleet sees it."""

    id: str
    lon: float
    lat: float
    heading: float | None
    speed: float | None
    ts: int
    """The fix's time (driver clock). Per driver it never goes back."""
    trip_id: str | None = None
    status: str | None = None

    def same_place(self, other: FleetUpdate) -> bool:
        """Whether a viewer showing `other` would show nothing new for this update."""
        return (self.lon, self.lat, self.trip_id, self.status) == (
            other.lon,
            other.lat,
            other.trip_id,
            other.status,
        )

    def entry(self) -> FleetDriver:
        out: FleetDriver = {
            "id": self.id,
            "lon": self.lon,
            "lat": self.lat,
            "heading": self.heading,
            "speed": self.speed,
            "ts": self.ts,
        }
        if self.trip_id is not None and self.status is not None:
            out["trip_id"] = self.trip_id
            out["status"] = self.status  # type: ignore[typeddict-item]
        return out


def update_from(
    driver_id: str, fix: Mapping[str, Any], trip_id: str | None, status: str | None
) -> FleetUpdate:
    """The fleet update of a driver's fix (lon, lat, ts, heading?, speed?).

    The trip is kept only while it is active: a driver whose trip ended is a
    free driver on the dashboard.
    """
    active = trip_id is not None and status in ACTIVE
    return FleetUpdate(
        id=driver_id,
        lon=float(fix["lon"]),
        lat=float(fix["lat"]),
        heading=fix.get("heading"),
        speed=fix.get("speed"),
        ts=int(fix["ts"]),
        trip_id=trip_id if active else None,
        status=status if active else None,
    )


def encode_update(update: FleetUpdate) -> bytes:
    """The pub/sub payload: the same JSON object as the update's wire entry."""
    return orjson.dumps(update.entry())


def decode_update(raw: bytes | str) -> FleetUpdate:
    obj = orjson.loads(raw)
    return FleetUpdate(
        id=obj["id"],
        lon=obj["lon"],
        lat=obj["lat"],
        heading=obj.get("heading"),
        speed=obj.get("speed"),
        ts=obj["ts"],
        trip_id=obj.get("trip_id"),
        status=obj.get("status"),
    )


class NewestOnly:
    """Passes each driver's updates only in `ts` order.

    Every update is published in the write script, so they arrive in the
    order they were stored; but a status change without a point carries the
    trip's last fix, which can be older than a point stored just before it.
    """

    def __init__(self) -> None:
        self._ts: dict[str, int] = {}

    def admit(self, update: FleetUpdate) -> bool:
        """False for an update older than one already admitted for its driver."""
        last = self._ts.get(update.id)
        if last is not None and update.ts < last:
            return False
        self._ts[update.id] = update.ts
        return True

    def clear(self) -> None:
        self._ts.clear()


@dataclass(slots=True)
class FleetBatch:
    """One `drivers` frame to send."""

    drivers: list[FleetUpdate]
    left: list[str] = field(default_factory=list)
    snapshot: bool = False

    def message(self, ts_ms: int) -> DriversMessage:
        """The wire frame, stamped with the server time `ts_ms`."""
        out: DriversMessage = {
            "type": "drivers",
            "ts": ts_ms,
            "drivers": [u.entry() for u in self.drivers],
        }
        if self.snapshot:
            out["snapshot"] = True
        if self.left:
            out["left"] = self.left
        return out


class FleetConflator:
    """One viewer's fleet feed: conflates updates per driver, rate-limits frames.

    A new conflator is waiting for its first snapshot: offer live updates at
    once, read the stored drivers, then call :meth:`finish_snapshot`.
    """

    def __init__(self, bbox: BBox, interval_ms: int) -> None:
        self.bbox = bbox
        self.interval_ms = interval_ms
        self._shown: dict[str, FleetUpdate] = {}
        """What the viewer currently shows, by driver: all inside the box."""
        self._pending: dict[str, FleetUpdate] = {}
        """Latest update per driver not yet sent and different from what is shown."""
        self._last_frame_ms: int | None = None
        self._snapshotting = True

    @property
    def pending(self) -> int:
        """Drivers with an update waiting (memory is bounded by the fleet's size)."""
        return len(self._pending)

    def offer(self, update: FleetUpdate) -> None:
        """A live update of one driver (any driver, anywhere)."""
        held = self._pending.get(update.id) or self._shown.get(update.id)
        if held is not None and update.ts < held.ts:
            return  # older than what we hold: a reordered publish
        shown = self._shown.get(update.id)
        if self.bbox.contains(update.lon, update.lat):
            if shown is not None and shown.same_place(update):
                self._pending.pop(update.id, None)
                self._shown[update.id] = update  # nothing to send; remember it is newer
                return
            self._pending[update.id] = update
        elif shown is not None or self._snapshotting:
            # Outside: keep it to tell the viewer the driver left, or (while a
            # snapshot is read) to know the stored position is already stale.
            self._pending[update.id] = update
        else:
            self._pending.pop(update.id, None)

    def can_send(self, now_ms: int) -> bool:
        """Whether a frame may be sent at `now_ms` (the interval since the last one passed)."""
        return self._last_frame_ms is None or now_ms - self._last_frame_ms >= self.interval_ms

    def due(self, now_ms: int) -> FleetBatch | None:
        """The frame to send now, if the interval has passed and any driver moved."""
        if self._snapshotting or not self._pending or not self.can_send(now_ms):
            return None
        batch = FleetBatch([])
        for driver_id, update in self._pending.items():
            if self.bbox.contains(update.lon, update.lat):
                batch.drivers.append(update)
                self._shown[driver_id] = update
            else:  # only drivers the viewer was shown are kept pending outside the box
                batch.left.append(driver_id)
                self._shown.pop(driver_id, None)
        self._pending.clear()
        self._last_frame_ms = now_ms
        return batch

    def start_snapshot(self, bbox: BBox) -> None:
        """The viewer asked for another box: hold frames until :meth:`finish_snapshot`."""
        self.bbox = bbox
        self._snapshotting = True
        self._shown.clear()

    def finish_snapshot(self, stored: Iterable[FleetUpdate], now_ms: int) -> FleetBatch:
        """The snapshot frame, from the stored drivers read after :meth:`start_snapshot`.

        Live updates offered meanwhile win over stored ones that are not newer.
        """
        newest = {u.id: u for u in stored}
        for driver_id, update in self._pending.items():
            old = newest.get(driver_id)
            if old is None or update.ts >= old.ts:
                newest[driver_id] = update
        drivers = [u for u in newest.values() if self.bbox.contains(u.lon, u.lat)]
        self._shown = {u.id: u for u in drivers}
        self._pending.clear()
        self._snapshotting = False
        self._last_frame_ms = now_ms
        return FleetBatch(drivers, snapshot=True)
