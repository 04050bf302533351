"""Every frame of the wire protocol, one model each, one decoder per direction.

Inbound driver frames are pydantic models (validated once, at the edge).
Outbound events are TypedDicts: the core builds them as plain dicts on the
hot path at no cost, and clients (simulator, load tests, acceptance tests)
decode them with the same definitions through :data:`trip_event_adapter`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from tracking.core.errors import BadFrame, InvalidPosition, UnknownType
from tracking.core.geo import BBox

Status = Literal[
    "requested",
    "assigned",
    "arrived_pickup",
    "in_progress",
    "arrived_dropoff",
    "completed",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"completed", "cancelled"})
ACTIVE: frozenset[str] = frozenset({"assigned", "arrived_pickup", "in_progress", "arrived_dropoff"})
Action = Literal["start", "complete", "cancel"]
Kind = Literal["ride", "delivery"]

StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


# --- driver -> server ----------------------------------------------------


class Point(BaseModel):
    """One GPS fix from a driver's phone."""

    model_config = ConfigDict(extra="ignore")

    seq: Annotated[int, Field(strict=True, gt=0)]
    ts: Annotated[int, Field(strict=True, description="Unix epoch milliseconds")]
    lon: StrictFloat
    lat: StrictFloat
    acc: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    speed: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    heading: Annotated[float | None, Field(ge=0, le=360, allow_inf_nan=False)] = None


class PosFrame(Point):
    type: Literal["pos"]


class PosBatchFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["pos_batch"]
    points: list[Point]


class ActionFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["action"]
    trip_id: str = Field(min_length=1, max_length=128)
    action: Action


DriverFrame = Annotated[PosFrame | PosBatchFrame | ActionFrame, Field(discriminator="type")]
_driver_frame_adapter: TypeAdapter[PosFrame | PosBatchFrame | ActionFrame] = TypeAdapter(
    DriverFrame
)
DRIVER_FRAME_TYPES = ("pos", "pos_batch", "action")


def decode_driver_frame(raw: str | bytes) -> PosFrame | PosBatchFrame | ActionFrame:
    """Parse one driver frame.

    Raises:
        BadFrame: not JSON, not an object, or fields of the wrong shape.
        UnknownType: a `type` this endpoint does not accept.
        InvalidPosition: coordinates that are not finite numbers.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadFrame(f"malformed JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise BadFrame("a frame must be a JSON object")
    kind = obj.get("type")
    if kind not in DRIVER_FRAME_TYPES:
        raise UnknownType(f"unknown type {kind!r}; expected one of {', '.join(DRIVER_FRAME_TYPES)}")
    try:
        return _driver_frame_adapter.validate_python(obj)
    except ValidationError as exc:
        raise _frame_error(exc, obj) from None


def _frame_error(exc: ValidationError, obj: dict[str, Any]) -> BadFrame | InvalidPosition:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:])
    detail = f"{where or 'frame'}: {first['msg']}"
    if first["loc"][-1] in ("lon", "lat"):
        err: BadFrame | InvalidPosition = InvalidPosition(detail)
    else:
        err = BadFrame(detail)
    seq = obj.get("seq")
    if isinstance(seq, int):
        err.seq = seq
    return err


# --- server -> driver ----------------------------------------------------


class AckMessage(TypedDict):
    type: Literal["ack"]
    seq: int


class ErrorMessage(TypedDict):
    type: Literal["error"]
    code: str
    detail: str
    seq: NotRequired[int]


class TripMessage(TypedDict):
    type: Literal["trip"]
    trip: dict[str, Any]


DriverInbound = Annotated[AckMessage | TripMessage | ErrorMessage, Field(discriminator="type")]
driver_inbound_adapter: TypeAdapter[Any] = TypeAdapter(DriverInbound)
"""Decodes any frame the server sends on the driver stream (for driver apps)."""


# --- trip channel events ---------------------------------------------------


class PositionEvent(TypedDict):
    type: Literal["position"]
    seq: int
    ts: int
    lon: float
    lat: float
    heading: float | None
    speed: float | None
    progress: float
    fix_ts: int
    """The device time of the fix shown (an extension): how old the position is."""


class EtaEvent(TypedDict):
    type: Literal["eta"]
    seq: int
    ts: int
    target: Literal["pickup", "dropoff"]
    eta_s: int
    distance_m: int
    arrive_ts: int


class StatusEvent(TypedDict):
    type: Literal["status"]
    seq: int
    ts: int
    status: Status
    previous: Status


class RouteEvent(TypedDict):
    type: Literal["route"]
    seq: int
    ts: int
    route: dict[str, Any]


class SignalEvent(TypedDict):
    type: Literal["signal"]
    seq: int
    ts: int
    lost: bool


class HeartbeatMessage(TypedDict):
    type: Literal["heartbeat"]
    ts: int


class SnapshotMessage(TypedDict):
    type: Literal["snapshot"]
    trip: dict[str, Any]
    reset: NotRequired[bool]


TripEvent = PositionEvent | EtaEvent | StatusEvent | RouteEvent | SignalEvent
TripChannelMessage = Annotated[
    PositionEvent
    | EtaEvent
    | StatusEvent
    | RouteEvent
    | SignalEvent
    | HeartbeatMessage
    | SnapshotMessage,
    Field(discriminator="type"),
]
trip_event_adapter: TypeAdapter[Any] = TypeAdapter(TripChannelMessage)
"""Decodes any frame of the trip channel (for clients and tests)."""


# --- fleet feed (ops) -------------------------------------------------------


class FleetDriver(TypedDict):
    """One driver in a `drivers` frame: its last fix, and its active trip if any."""

    id: str
    lon: float
    lat: float
    heading: float | None
    speed: float | None
    ts: int
    """The fix's time (driver clock)."""
    trip_id: NotRequired[str]
    status: NotRequired[Status]
    """Present only while the trip is active (assigned … arrived_dropoff)."""


class DriversMessage(TypedDict):
    type: Literal["drivers"]
    ts: int
    drivers: list[FleetDriver]
    snapshot: NotRequired[bool]
    """True: every fresh driver in the box; drop what you showed before."""
    left: NotRequired[list[str]]
    """Drivers shown before whose latest position is outside the box."""


FleetOutbound = Annotated[
    DriversMessage | HeartbeatMessage | ErrorMessage, Field(discriminator="type")
]
fleet_outbound_adapter: TypeAdapter[Any] = TypeAdapter(FleetOutbound)
"""Decodes any frame the server sends on the fleet feed (for dashboards and tests)."""


class BBoxFrame(BaseModel):
    """Viewer → server: watch another box (answered with a new snapshot)."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    type: Literal["bbox"]
    bbox: BBox


FLEET_FRAME_TYPES = ("bbox",)


def decode_fleet_frame(raw: str | bytes) -> BBoxFrame:
    """Parse one frame a fleet viewer sent.

    Raises:
        BadFrame: not JSON, not an object, or no `type`.
        UnknownType: a `type` other than `bbox`.
        ValidationFailed: a `bbox` frame without a valid box.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadFrame(f"malformed JSON: {exc.msg}") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise BadFrame("a frame must be a JSON object with a type")
    kind = obj["type"]
    if kind not in FLEET_FRAME_TYPES:
        raise UnknownType(f"unknown type {kind!r}; expected one of {', '.join(FLEET_FRAME_TYPES)}")
    box = obj.get("bbox")
    return BBoxFrame(type="bbox", bbox=BBox.of(box if isinstance(box, list) else ()))


# --- HTTP bodies and the Trip object ----------------------------------------


class LonLat(BaseModel):
    lon: StrictFloat = Field(ge=-180, le=180)
    lat: StrictFloat = Field(ge=-90, le=90)


class DriverView(BaseModel):
    lon: float
    lat: float
    heading: float | None = None
    speed: float | None = None
    ts: int


class EtaView(BaseModel):
    target: Literal["pickup", "dropoff"]
    eta_s: int
    distance_m: int
    arrive_ts: int


class Trip(BaseModel):
    """A trip as every endpoint returns it."""

    id: str
    kind: Kind
    status: Status
    driver_id: str | None
    pickup: LonLat
    dropoff: LonLat
    route: dict[str, Any] = Field(description="GeoJSON LineString of the current leg")
    driver: DriverView | None = Field(None, description="Last position; null when not shown")
    eta: EtaView | None = None
    progress: float = Field(description="0..1 along the current leg")
    signal_lost: bool
    seq: int = Field(description="Seq of the last event this state includes")
    updated_ts: int
    created_ts: int


class CreateTrip(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pickup": {"lon": 24.9384, "lat": 60.1699},
                    "dropoff": {"lon": 24.9496, "lat": 60.1733},
                    "kind": "ride",
                }
            ]
        }
    )

    pickup: LonLat
    dropoff: LonLat
    kind: Kind = "ride"
    driver_id: str | None = Field(None, min_length=1, max_length=128)
    id: str | None = Field(
        None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$"
    )


class CreatedTrip(Trip):
    rider_token: str
    share_url: str


class AssignTrip(BaseModel):
    driver_id: str = Field(min_length=1, max_length=128)


class TripAction(BaseModel):
    action: Action


class PositionsIn(BaseModel):
    points: list[Point]


class AckOut(BaseModel):
    ack: int = Field(description="Cumulative: every point with seq <= ack is stored")
    errors: list[dict[str, Any]] = Field(default_factory=list)


class NearbyDriver(BaseModel):
    id: str
    lon: float
    lat: float
    distance_m: float
    ts: int


class NearbyOut(BaseModel):
    drivers: list[NearbyDriver]


class ErrorBody(BaseModel):
    code: str
    detail: str


class ErrorOut(BaseModel):
    error: ErrorBody


class GatewayStats(BaseModel):
    """This gateway process's counters. Totals since start: rates need two samples."""

    instance: str = Field(description="host:pid of the process that answered")
    uptime_s: float
    connections: dict[str, int] = Field(description="Open sockets by kind (a gauge)")
    points: dict[str, int] = Field(description="Driver points by outcome (totals)")
    errors: dict[str, int] = Field(description="Errors returned to clients, by code (totals)")
    frames_in: dict[str, int]
    frames_out: dict[str, int]


class FleetStats(BaseModel):
    drivers_online: int = Field(description="Drivers heard from within online_window_s")
    online_window_s: float
    drivers_recent: int = Field(description="Drivers heard from within recent_window_s")
    recent_window_s: float
    ts: int = Field(description="Server time of these figures, ms")


class OpsStats(BaseModel):
    gateway: GatewayStats
    fleet: FleetStats
