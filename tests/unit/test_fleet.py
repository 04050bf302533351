"""The fleet feed's pure policy: boxes, frames, updates and conflation, with no event loop."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking.core.errors import TrackingError
from tracking.core.fleet import (
    FleetBatch,
    FleetConflator,
    FleetUpdate,
    NewestOnly,
    decode_update,
    encode_update,
    update_from,
)
from tracking.core.geo import BBox
from tracking.core.messages import decode_fleet_frame, fleet_outbound_adapter

BOX = BBox(0.0, 0.0, 10.0, 10.0)
INTERVAL_MS = 1000


def upd(driver: str, lon: float, lat: float, ts: int, **extra: Any) -> FleetUpdate:
    return FleetUpdate(driver, lon, lat, extra.pop("heading", 90.0), 5.0, ts, **extra)


def ready(bbox: BBox = BOX, stored: tuple[FleetUpdate, ...] = ()) -> FleetConflator:
    """A conflator past its first snapshot (sent at t=0)."""
    c = FleetConflator(bbox, INTERVAL_MS)
    c.finish_snapshot(stored, 0)
    return c


# --- boxes and frames ----------------------------------------------------------


def test_bbox_parses_the_query_parameter_and_includes_its_edges() -> None:
    """`minLon,minLat,maxLon,maxLat` parses; points on the edges are inside."""
    box = BBox.parse("24.9,60.1,25.0,60.2")
    assert box == BBox(24.9, 60.1, 25.0, 60.2)
    assert box.contains(24.9, 60.1) and box.contains(25.0, 60.2) and box.contains(24.95, 60.15)
    assert not box.contains(25.0001, 60.15) and not box.contains(24.95, 60.0999)


@pytest.mark.parametrize(
    "text",
    [None, "", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1,2,,4", "nan,0,1,1", "0,0,inf,1",
     "-181,0,0,1", "0,-91,1,1", "0,0,181,1", "3,0,1,1", "0,3,1,1",
     "٢٤,60,25,61", "24,60,2_5,61", " 24,60,25,61", "24,60,25,61 ", "+24,60,25,61"],
)  # fmt: skip
def test_bbox_query_parameter_rejects_anything_but_a_valid_box(text: str | None) -> None:
    """Missing, short, long, non-numeric, non-finite, out-of-range or swapped: validation_error."""
    with pytest.raises(TrackingError) as caught:
        BBox.parse(text)
    assert caught.value.code == "validation_error" and caught.value.detail


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "bad_frame"),
        (b"[1, 2]", "bad_frame"),
        (b'{"bbox": [0, 0, 1, 1]}', "bad_frame"),
        (b'{"type": "subscribe"}', "unknown_type"),
        (b'{"type": ["bbox"]}', "unknown_type"),
        (b'{"type": "bbox"}', "validation_error"),
        (b'{"type": "bbox", "bbox": "0,0,1,1"}', "validation_error"),
        (b'{"type": "bbox", "bbox": [0, 0, 1]}', "validation_error"),
        (b'{"type": "bbox", "bbox": [0, 0, true, 1]}', "validation_error"),
        (b'{"type": "bbox", "bbox": [0, 95, 1, 96]}', "validation_error"),
        (b'{"type": "bbox", "bbox": [2, 0, 1, 1]}', "validation_error"),
    ],
)
def test_fleet_client_frames_get_their_error_code(raw: bytes, code: str) -> None:
    """Non-JSON or typeless: bad_frame; another type: unknown_type; a bad box: validation_error."""
    with pytest.raises(TrackingError) as caught:
        decode_fleet_frame(raw)
    assert caught.value.code == code


def test_bbox_frame_decodes_ints_and_floats_and_ignores_unknown_fields() -> None:
    """`{"type":"bbox","bbox":[…]}` with ints or floats, extra fields ignored."""
    frame = decode_fleet_frame('{"type":"bbox","bbox":[24,60.1,25,60.2],"zoom":12}')
    assert frame.bbox == BBox(24.0, 60.1, 25.0, 60.2)


def test_update_keeps_only_an_active_trip() -> None:
    """A driver on an active trip carries trip_id and status; after the trip ends it is free."""
    fix = {"lon": 24.9, "lat": 60.1, "ts": 5, "heading": None, "speed": None, "acc": 5.0}
    on_trip = update_from("d-1", fix, "t-1", "in_progress")
    assert on_trip.entry() == {
        "id": "d-1", "lon": 24.9, "lat": 60.1, "heading": None, "speed": None, "ts": 5,
        "trip_id": "t-1", "status": "in_progress",
    }  # fmt: skip
    for status in ("completed", "cancelled", None):
        entry = update_from("d-1", fix, "t-1", status).entry()
        assert "trip_id" not in entry and "status" not in entry
    assert decode_update(encode_update(on_trip)) == on_trip


def test_batches_are_valid_wire_frames() -> None:
    """Snapshot and update frames decode with the published fleet models."""
    a = upd("a", 1, 1, 1, trip_id="t", status="assigned")
    for batch in (FleetBatch([a], snapshot=True), FleetBatch([a], left=["b"]), FleetBatch([])):
        message = batch.message(123)
        assert fleet_outbound_adapter.validate_python(orjson.loads(orjson.dumps(message)))
        assert message["ts"] == 123 and message["type"] == "drivers"
    assert FleetBatch([a], snapshot=True).message(1)["snapshot"] is True
    assert "snapshot" not in FleetBatch([a]).message(1)
    assert "left" not in FleetBatch([a]).message(1)


# --- conflation ------------------------------------------------------------------


def test_first_snapshot_is_sent_at_once_and_holds_frames_until_then() -> None:
    """Nothing is due before the first snapshot; the snapshot has the stored drivers in the box."""
    c = FleetConflator(BOX, INTERVAL_MS)
    c.offer(upd("live", 1, 1, 10))
    assert c.due(5_000) is None
    batch = c.finish_snapshot([upd("a", 2, 2, 1), upd("out", 20, 20, 1)], 5_000)
    assert batch.snapshot and {u.id for u in batch.drivers} == {"a", "live"}


def test_only_the_latest_update_per_driver_is_sent_once_per_interval() -> None:
    """Ten updates inside one interval give one frame with the last one."""
    c = ready()
    for i in range(10):
        c.offer(upd("a", 1 + i / 10, 1, 100 + i))
        assert c.due(100 + i * 90) is None  # within the interval of the snapshot
    batch = c.due(1_000)
    assert batch is not None and batch.drivers == [upd("a", 1.9, 1, 109)]
    assert c.pending == 0 and c.due(5_000) is None


def test_frames_are_at_least_one_interval_apart() -> None:
    """After a frame, the next one waits a full interval however many updates arrive."""
    c = ready()
    c.offer(upd("a", 1, 1, 1))
    assert c.due(1_500) is not None
    c.offer(upd("b", 2, 2, 2))
    assert c.due(2_499) is None
    batch = c.due(2_500)
    assert batch is not None and [u.id for u in batch.drivers] == ["b"]


def test_a_driver_that_did_not_move_is_not_sent_again() -> None:
    """Same position, trip and status as shown: nothing due; a new status is sent."""
    a = upd("a", 1, 1, 1, trip_id="t", status="assigned")
    c = ready(stored=(a,))
    c.offer(replace(a, ts=2, heading=180.0))
    assert c.due(2_000) is None
    c.offer(replace(a, ts=3, status="arrived_pickup"))
    batch = c.due(3_000)
    assert batch is not None and batch.drivers[0].status == "arrived_pickup"


def test_moving_away_and_back_before_the_frame_sends_nothing() -> None:
    """A pending move undone before the frame leaves nothing to send."""
    a = upd("a", 1, 1, 1)
    c = ready(stored=(a,))
    c.offer(replace(a, lon=2, ts=2))
    c.offer(replace(a, ts=3))
    assert c.due(2_000) is None


def test_drivers_outside_the_box_are_never_sent_and_leaving_is_told() -> None:
    """An unseen driver outside is dropped; a shown driver that leaves is named in `left`."""
    a = upd("a", 1, 1, 1)
    c = ready(stored=(a,))
    c.offer(upd("far", 50, 50, 1))
    assert c.pending == 0 and c.due(2_000) is None
    c.offer(replace(a, lon=11, ts=2))
    batch = c.due(2_000)
    assert batch is not None and batch.drivers == [] and batch.left == ["a"]
    c.offer(replace(a, lon=12, ts=3))
    assert c.due(9_000) is None  # no longer shown: nothing more to say


def test_a_new_driver_that_leaves_before_its_frame_is_not_sent() -> None:
    """A driver never shown that enters and leaves the box between frames is not sent."""
    c = ready()
    c.offer(upd("a", 1, 1, 1))
    c.offer(upd("a", 11, 1, 2))
    assert c.due(2_000) is None


def test_an_older_update_never_replaces_a_newer_one() -> None:
    """An update with an older ts than the one held is ignored."""
    c = ready()
    c.offer(upd("a", 2, 2, 10))
    c.offer(upd("a", 1, 1, 9))
    batch = c.due(1_000)
    assert batch is not None and batch.drivers == [upd("a", 2, 2, 10)]
    order = NewestOnly()
    assert order.admit(upd("a", 1, 1, 10)) and order.admit(upd("a", 1, 1, 10))
    assert not order.admit(upd("a", 1, 1, 9)) and order.admit(upd("b", 1, 1, 1))


def test_box_change_snapshot_merges_live_updates_newest_first() -> None:
    """Live updates that arrive while the store is read win over older stored ones."""
    c = ready(stored=(upd("old", 1, 1, 1),))
    c.start_snapshot(BBox(20, 20, 30, 30))
    c.offer(upd("a", 21, 21, 5))  # newer than the stored read below
    c.offer(upd("b", 22, 22, 3))  # older than it
    c.offer(upd("c", 40, 40, 9))  # moved out after the read: stored position is stale
    assert c.due(9_000) is None  # frames wait for the snapshot
    stored = [upd("a", 25, 25, 4), upd("b", 26, 26, 4), upd("c", 23, 23, 8)]
    batch = c.finish_snapshot(stored, 9_000)
    assert batch.snapshot and sorted(batch.drivers, key=lambda u: u.id) == [
        upd("a", 21, 21, 5),
        upd("b", 26, 26, 4),
    ]
    c.offer(upd("old", 1, 1, 2))  # the old box's driver is no longer of interest
    assert c.due(10_000) is None


# --- the property ------------------------------------------------------------------

BOXES = (BBox(0, 0, 10, 10), BBox(5, 5, 15, 15))
DRIVERS = ("d0", "d1", "d2", "d3")
STATUSES = (None, "assigned", "in_progress")

PLACES = ((1, 1), (2, 2), (7, 7), (10, 10), (12, 12), (-1, 3))
"""Few places, so drivers often return where they were: in one box, both, on an edge, neither."""

write_op = st.tuples(
    st.just("write"), st.sampled_from(DRIVERS), st.sampled_from(PLACES), st.sampled_from(STATUSES)
)
deliver_op = st.tuples(st.just("deliver"), st.integers(1, 4))
tick_op = st.tuples(st.just("tick"), st.integers(0, 1500))
ops = st.lists(
    st.one_of(  # writes, deliveries and ticks drawn more often than the rest
        write_op,
        write_op,
        deliver_op,
        deliver_op,
        tick_op,
        tick_op,
        st.tuples(st.just("stale"), st.sampled_from(DRIVERS)),
        st.tuples(st.just("start"), st.integers(0, len(BOXES) - 1)),
        st.tuples(st.just("read")),
    ),
    max_size=80,
)


@dataclass
class World:
    """Redis (truth), pub/sub in flight, one gateway's hub filter and one viewer."""

    conflator: FleetConflator = field(default_factory=lambda: FleetConflator(BOXES[0], 1000))
    order: NewestOnly = field(default_factory=NewestOnly)
    truth: dict[str, FleetUpdate] = field(default_factory=dict)
    history: dict[str, list[FleetUpdate]] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    inflight: list[FleetUpdate] = field(default_factory=list)
    read: list[FleetUpdate] | None = None
    snapshotting: bool = True
    now: int = 0
    ts: int = 0
    frames: list[tuple[int, BBox, FleetBatch]] = field(default_factory=list)
    client: dict[str, FleetUpdate] = field(default_factory=dict)

    def offer(self, update: FleetUpdate) -> None:
        if self.order.admit(update):
            self.conflator.offer(update)

    def store_read(self) -> list[FleetUpdate]:
        box = self.conflator.bbox
        return [u for u in self.truth.values() if box.contains(u.lon, u.lat)]

    def show(self, batch: FleetBatch | None) -> None:
        if batch is None:
            return
        self.frames.append((self.now, self.conflator.bbox, batch))
        if batch.snapshot:
            self.client = {}
        for u in batch.drivers:
            self.client[u.id] = u
        for driver_id in batch.left:
            self.client.pop(driver_id, None)

    def finish(self) -> None:
        stored = self.read if self.read is not None else self.store_read()
        self.show(self.conflator.finish_snapshot(stored, self.now))
        self.snapshotting, self.read = False, None

    def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "write":
            _, driver, (lon, lat), status = op
            self.ts += 1
            update = upd(driver, lon, lat, self.ts, trip_id="t" if status else None, status=status)
            self.truth[driver] = update
            self.history.setdefault(driver, []).append(update)
            self.inflight.append(update)
        elif kind == "deliver":
            for _ in range(min(op[1], len(self.inflight))):
                update = self.inflight.pop(0)
                self.delivered[update.id] = update.ts
                self.offer(update)
        elif kind == "stale":  # an older fix published after a newer one was delivered
            older = [u for u in self.history.get(op[1], []) if u.ts < self.delivered.get(op[1], 0)]
            if older:
                self.offer(older[0])
        elif kind == "tick":  # as the socket loop: a snapshot in progress completes first
            self.now += op[1]
            if self.snapshotting:
                self.finish()
            else:
                self.show(self.conflator.due(self.now))
        elif kind == "start":
            if not self.snapshotting and self.conflator.can_send(self.now):
                self.conflator.start_snapshot(BOXES[op[1]])
                self.snapshotting = True
        elif kind == "read":
            if self.snapshotting and self.read is None:
                self.read = self.store_read()


@settings(max_examples=500, deadline=None)
@given(ops=ops)
def test_conflation_properties(ops: list[tuple[Any, ...]]) -> None:
    """Never two frames (so never two emissions of a driver) within the interval; nothing
    outside the box is sent; once updates stop, the viewer shows exactly the drivers whose
    last update is in the box, where they last were."""
    world = World()
    for op in ops:
        world.run(op)
    world.run(("deliver", len(world.inflight)))
    if world.snapshotting:
        world.finish()
    world.run(("tick", 1000))

    times = [t for t, _, _ in world.frames]
    assert all(b - a >= 1000 for a, b in zip(times, times[1:], strict=False)), times
    for _, box, batch in world.frames:
        assert all(box.contains(u.lon, u.lat) for u in batch.drivers)
    box = world.conflator.bbox
    expected = {d: u for d, u in world.truth.items() if box.contains(u.lon, u.lat)}
    assert world.client.keys() == expected.keys()
    for driver, update in expected.items():
        assert world.client[driver].same_place(update), (world.client[driver], update)
