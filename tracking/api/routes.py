"""The HTTP API of the contract (prefix /v1), health and metrics."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import geojson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracking.api.auth import Principal, authorize, issue_token, requires
from tracking.api.channels import authorize_trip_reader
from tracking.core import trip as core
from tracking.core.errors import BatchTooLarge, Unavailable
from tracking.core.messages import (
    AckOut,
    AssignTrip,
    CreatedTrip,
    CreateTrip,
    ErrorOut,
    NearbyOut,
    PositionsIn,
    Trip,
    TripAction,
)
from tracking.service import TrackingService
from tracking.store.trips import GEO_MAX_LAT

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="JWT; browsers may pass ?token= instead")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 422)
}


def caller(request: Request, _: Annotated[Any, Depends(_bearer)]) -> Principal:
    return authorize(request)


Caller = Annotated[Principal, Depends(caller)]


def svc(request: Request) -> TrackingService:
    service: TrackingService = request.app.state.service
    return service


Service = Annotated[TrackingService, Depends(svc)]


@router.post("/v1/trips", status_code=201, response_model=CreatedTrip, responses=ERRORS)
@requires("ops")
async def create_trip(body: CreateTrip, who: Caller, service: Service) -> dict[str, Any]:
    """Create a trip (ops). Returns the Trip with a rider token and a share link."""
    state = await service.create_trip(
        (body.pickup.lon, body.pickup.lat), (body.dropoff.lon, body.dropoff.lat), body.kind, body.id
    )
    if body.driver_id:
        state = await service.assign(state.id, body.driver_id)
    settings = service.settings
    token = issue_token(
        settings.resolved_jwt_secret(),
        "rider",
        f"rider:{state.id}",
        trip=state.id,
        ttl_s=settings.rider_token_ttl_s,
    )
    share_url = f"{settings.public_url.rstrip('/')}/track/{quote(state.id)}?token={token}"
    return {**core.view(state), "rider_token": token, "share_url": share_url}


@router.get("/v1/trips/{trip_id}", response_model=Trip, responses=ERRORS)
@requires("ops", "driver", "rider")
async def get_trip(trip_id: str, who: Caller, service: Service) -> dict[str, Any]:
    """A trip (ops, the trip's rider, its driver)."""
    await authorize_trip_reader(who, service, trip_id, allow_driver=True)
    return core.view(await service.get_trip(trip_id))


@router.post("/v1/trips/{trip_id}/assign", response_model=Trip, responses=ERRORS)
@requires("ops")
async def assign_trip(
    trip_id: str, body: AssignTrip, who: Caller, service: Service
) -> dict[str, Any]:
    """Assign a driver (ops)."""
    return core.view(await service.assign(trip_id, body.driver_id))


@router.post("/v1/trips/{trip_id}/actions", response_model=Trip, responses=ERRORS)
@requires("ops", "driver")
async def trip_action(
    trip_id: str, body: TripAction, who: Caller, service: Service
) -> dict[str, Any]:
    """`start`, `complete` or `cancel` (ops, or the trip's driver)."""
    driver_id = who.sub if who.role == "driver" else None
    return core.view(await service.act(trip_id, body.action, driver_id=driver_id))


@router.get("/v1/trips/{trip_id}/trail", responses=ERRORS)
@requires("ops", "rider")
async def trip_trail(trip_id: str, who: Caller, service: Service) -> JSONResponse:
    """The driver's path on this trip as a GeoJSON Feature (ops, the trip's rider)."""
    await authorize_trip_reader(who, service, trip_id)
    state = await service.get_trip(trip_id)
    points = await service.store.trail(trip_id)
    feature = geojson.Feature(
        geometry=geojson.LineString([(lon, lat) for lon, lat, _, _ in points]),
        properties={
            "trip_id": trip_id,
            "driver_id": state.driver_id,
            "timestamps": [ts for _, _, ts, _ in points],
            "seqs": [seq for _, _, _, seq in points],
        },
    )
    return JSONResponse(dict(feature))


@router.post("/v1/drivers/{driver_id}/positions", response_model=AckOut, responses=ERRORS)
@requires("driver")
async def post_positions(
    driver_id: str, body: PositionsIn, who: Caller, service: Service
) -> dict[str, Any]:
    """HTTP fallback of the driver stream (that driver). Acks like the WebSocket."""
    limit = service.settings.max_batch_points
    if len(body.points) > limit:
        raise BatchTooLarge(f"{len(body.points)} points; the limit is {limit}")
    session = await service.open_session(driver_id)
    result = await service.ingest(session, body.points)
    errors = [{"code": e.code, "detail": e.detail, "seq": e.seq} for e in result.errors]
    return {"ack": result.ack, "errors": errors}


@router.get("/v1/drivers/nearby", response_model=NearbyOut, responses=ERRORS)
@requires("ops")
async def nearby(
    who: Caller,
    service: Service,
    lon: float = Query(ge=-180, le=180),
    lat: float = Query(
        ge=-GEO_MAX_LAT,
        le=GEO_MAX_LAT,
        description="The geo index holds no point nearer the poles than ±85.05112878",
    ),
    radius_m: float = Query(1000.0, gt=0, le=100_000),
) -> dict[str, Any]:
    """Drivers whose last position is within `radius_m`, nearest first (ops)."""
    rows = await service.store.nearby(lon, lat, radius_m)
    drivers = []
    states = await service.store.load_drivers([row[0] for row in rows])
    for (driver_id, distance_m, d_lon, d_lat), driver in zip(rows, states, strict=True):
        ts = driver.fix["ts"] if driver.fix else 0
        drivers.append(
            {"id": driver_id, "lon": d_lon, "lat": d_lat, "distance_m": distance_m, "ts": ts}
        )
    return {"drivers": drivers}


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"model": ErrorOut}})
async def readyz(service: Service) -> dict[str, str]:
    """Readiness: Redis answers."""
    try:
        await service.store.ping()
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"redis unreachable: {type(exc).__name__}") from None
    return {"status": "ready"}


@router.get("/metrics", tags=["ops"], response_class=Response)
async def metrics_endpoint() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
