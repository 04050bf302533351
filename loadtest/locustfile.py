"""Locust users that speak the tracking protocol: drivers, riders and ops.

    TRACKING_JWT_SECRET=... locust -f loadtest/locustfile.py --host http://127.0.0.1:8000
    make load                     # a bounded headless run against a local stack

- DriverUser: creates a trip assigned to itself (`POST /v1/trips`), streams `pos`
  frames along the trip's current route on `/v1/drivers/ws` at --driver-hz, taps
  `start` at the pickup and `complete` at the dropoff, then takes the next trip.
  Reports "pos → ack" (send of a seq → its cumulative ack; error frames and
  missing acks are failures), "action start"/"action complete", "driver connect"
  and "trip lifecycle" (one per finished trip, its duration).
- RiderUser: watches a trip of this process's drivers on `/v1/trips/{id}/ws`;
  reports "position e2e" (receipt − the fix's `fix_ts`), "subscribe → snapshot"
  and "status event" (receipt − the event's server `ts`); reconnects with `since`.
- OpsUser: `GET /v1/ops/stats`, `/v1/drivers/nearby`, `/v1/trips/{id}` and its trail.

Drivers and riders are paired inside one locust process (see `wire.TripBoard`).
Frames are built and decoded with the service's own models (`tracking.core.messages`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import secrets
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import gevent
import websocket
from gevent import GreenletExit
from locust import HttpUser, User, between, constant, events, task
from locust.exception import StopUser
from pydantic import ValidationError

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `locust -f` from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.wire import (  # noqa: E402
    BOARD_IDLE_S,
    Closed,
    MissingSecret,
    Slot,
    Tokens,
    TripBoard,
    connect,
    fire,
    hang_up,
    now_ms,
    recv_text,
    ws_url,
)
from tracking.core.geo import bearing_deg  # noqa: E402
from tracking.core.messages import (  # noqa: E402
    TERMINAL,
    ActionFrame,
    NearbyOut,
    OpsStats,
    Point,
    PosBatchFrame,
    PosFrame,
    Trip,
    driver_inbound_adapter,
    trip_event_adapter,
)
from tracking.core.route import Route  # noqa: E402

log = logging.getLogger("loadtest")

# Inside the central-Helsinki extract the gateway routes on by default.
PICKUP = {"lon": 24.9384, "lat": 60.1699}
DROPOFF = {"lon": 24.9496, "lat": 60.1733}
CENTRE = {"lon": 24.944, "lat": 60.1716}

RIDER_IDLE_S = 40.0
"""No frame for this long (heartbeats come every 15 s) means a dead link."""
ACTION_TIMEOUT_S = 5.0
BATCH_MAX = 500
FATAL_CLOSES = {4400, 4401, 4403, 4404}

TOKENS = Tokens()
BOARD = TripBoard()
COUNTS: Counter[str] = Counter()
"""This process's tallies, logged when the test stops."""
_RUN = secrets.token_hex(3)
_DRIVER_IDS = itertools.count(1)
_REFUSED: set[str] = set()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    add = parser.add_argument
    add("--driver-hz", type=float, default=1.0, help="pos frames per second per driver")
    add("--driver-speed", type=float, default=12.0, help="driving speed, m/s (step = speed/hz)")
    add("--riders-per-trip", type=int, default=2, help="riders watching each driver's trip")
    add("--driver-weight", type=int, default=10, help="DriverUser weight (riders: × riders/trip)")
    add("--ops-weight", type=int, default=1, help="OpsUser weight")
    add("--pickup-wait-s", type=float, default=2.0, help="wait at the pickup before `start`")
    add("--dwell-s", type=float, default=3.0, help="wait at the dropoff before `complete`")
    add("--ack-timeout-s", type=float, default=10.0, help="a pos without ack this long fails")


@dataclass(frozen=True)
class Knobs:
    driver_hz: float = 1.0
    driver_speed: float = 12.0
    riders_per_trip: int = 2
    driver_weight: int = 10
    ops_weight: int = 1
    pickup_wait_s: float = 2.0
    dwell_s: float = 3.0
    ack_timeout_s: float = 10.0

    @classmethod
    def of(cls, environment: Any) -> Knobs:
        opts = getattr(environment, "parsed_options", None)
        defaults = cls()
        return cls(**{k: getattr(opts, k, v) for k, v in vars(defaults).items()})


@events.init.add_listener
def _weights(environment: Any, **_: Any) -> None:
    knobs = Knobs.of(environment)
    if not 0 < knobs.driver_hz <= 50:
        raise SystemExit("--driver-hz must be in (0, 50] (the gateway's default cap is 25)")
    DriverUser.weight = knobs.driver_weight
    RiderUser.weight = knobs.driver_weight * knobs.riders_per_trip
    OpsUser.weight = knobs.ops_weight
    if TOKENS.secret is None:
        log.warning("TRACKING_JWT_SECRET is unset: only OpsUser can run (with LOAD_OPS_TOKEN)")


@events.test_stop.add_listener
def _tally(environment: Any, **_: Any) -> None:
    if COUNTS:
        log.info("loadtest tallies: %s", dict(sorted(COUNTS.items())))


def _refuse(user: str, why: str) -> NoReturn:
    """Stop a user that cannot run, saying why once per class."""
    if user not in _REFUSED:
        _REFUSED.add(user)
        log.error("%s stopped: %s", user, why)
    raise StopUser()


def _backoff(attempt: int) -> None:
    gevent.sleep(min(5.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))


# --- drivers ------------------------------------------------------------------


class DriverUser(HttpUser):
    """A driver app: one socket kept across trips, a trip at a time."""

    weight = 10
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.knobs = Knobs.of(environment)
        # The pid too: `--processes N` forks workers after this module is imported.
        self.driver_id = f"load-{_RUN}-{os.getpid()}-{next(_DRIVER_IDS)}"
        self.token = self.ops_headers = None
        with contextlib.suppress(MissingSecret):
            self.token = TOKENS.driver(self.driver_id)
            self.ops_headers = {"Authorization": f"Bearer {TOKENS.ops()}"}
        self.ws: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.link_error: Closed | None = None
        self.connect_failures = 0
        self.seq = 0
        self.pending: OrderedDict[int, tuple[float, PosFrame]] = OrderedDict()
        """Sent, not yet acked: seq → (monotonic send time, the frame), oldest first."""
        self.resend = False
        self.trip_id: str | None = None
        self.trip: dict[str, Any] = {}
        self.position: tuple[float, float] | None = None
        self.action: tuple[str, str, float] | None = None
        """The action awaiting its answer: (action, status it leads to, monotonic send time)."""

    def on_stop(self) -> None:
        self._disconnect()
        if self.trip_id is not None:
            BOARD.close(self.trip_id)

    # The socket.

    def _connect(self) -> bool:
        started = time.monotonic()
        try:
            ws = connect(ws_url(self.host, f"/v1/drivers/ws?token={self.token}"))
        except Exception as exc:
            fire(self.environment, "driver connect", _ms_since(started), exception=exc)
            self.connect_failures += 1
            return False
        fire(self.environment, "driver connect", _ms_since(started))
        ws.settimeout(None)
        self.ws, self.link_error, self.connect_failures = ws, None, 0
        self.reader = gevent.spawn(self._read, ws)
        if self.pending:  # resend every unacked point, oldest first, as batches
            self.resend = True
        return True

    def _disconnect(self) -> None:
        if self.reader is not None and self.reader is not gevent.getcurrent():
            self.reader.kill(block=True)
        self.reader = None
        hang_up(self.ws)
        self.ws = None

    def _ensure_link(self) -> None:
        if self.ws is not None and self.link_error is None:
            return
        if self.link_error is not None:
            closed = self.link_error
            fire(self.environment, "driver socket", 0, exception=closed)
            self._disconnect()
            if closed.code in FATAL_CLOSES:
                log.error("driver %s: %s; stopping this user", self.driver_id, closed)
                raise StopUser()
        while not self._connect():
            _backoff(self.connect_failures)

    def _read(self, ws: websocket.WebSocket) -> None:
        try:
            while True:
                raw = recv_text(ws)
                try:
                    self._on_frame(raw)
                except Exception as exc:  # a bug here must not look like a dead link
                    fire(self.environment, "driver frame", 0, exception=exc)
        except Closed as closed:
            if self.ws is ws:
                self.link_error = closed
        except GreenletExit:
            raise
        except Exception as exc:
            if self.ws is ws:
                self.link_error = Closed(None, repr(exc))

    def _send(self, text: str) -> None:
        assert self.ws is not None
        try:
            self.ws.send(text)
        except Exception as exc:
            self.link_error = self.link_error or Closed(None, f"send failed: {exc!r}")

    # Frames from the server (decoded with the service's own adapter).

    def _on_frame(self, raw: str) -> None:
        try:
            frame = driver_inbound_adapter.validate_json(raw)
        except ValidationError as exc:
            fire(self.environment, "driver frame", 0, exception=exc)
            return
        kind = frame["type"]
        COUNTS[f"driver {kind} frames"] += 1
        if kind == "ack":
            self._on_ack(frame["seq"], len(raw))
        elif kind == "error":
            self._on_error(frame)
        else:
            self._on_trip(frame["trip"])

    def _on_ack(self, seq: int, length: int) -> None:
        sent = self.pending.get(seq)
        if sent is not None:
            fire(self.environment, "pos → ack", _ms_since(sent[0]), length=length)
        while self.pending and next(iter(self.pending)) <= seq:
            self.pending.popitem(last=False)

    def _on_error(self, frame: dict[str, Any]) -> None:
        problem = f"{frame['code']}: {frame['detail']}"
        seq = frame.get("seq")
        if seq is not None:  # one point rejected: do not resend it
            sent = self.pending.pop(seq, None)
            elapsed = _ms_since(sent[0]) if sent else 0.0
            fire(self.environment, "pos → ack", elapsed, exception=problem)
        elif frame["code"] == "unavailable":  # points not stored: resend them all
            fire(self.environment, "pos → ack", 0, exception=problem)
            self.resend = True
        elif self.action is not None:
            action, _, sent_at = self.action
            self.action = None
            fire(self.environment, f"action {action}", _ms_since(sent_at), exception=problem)
        else:
            fire(self.environment, "driver error", 0, exception=problem)

    def _on_trip(self, trip: dict[str, Any]) -> None:
        if trip.get("id") != self.trip_id or trip.get("seq", 0) < self.trip.get("seq", 0):
            return  # another trip, or an older copy (a change can arrive twice)
        self.trip = trip
        if self.action is not None and trip["status"] == self.action[1]:
            action, _, sent_at = self.action
            self.action = None
            fire(self.environment, f"action {action}", _ms_since(sent_at))

    # Frames to the server (built with the service's own models).

    def _send_pos(self, lon: float, lat: float, speed: float) -> None:
        heading = None
        if self.position is not None and speed > 0:
            heading = bearing_deg(*self.position, lon, lat)
        self.seq += 1
        frame = PosFrame(
            type="pos",
            seq=self.seq,
            ts=now_ms(),
            lon=lon,
            lat=lat,
            acc=5.0,
            speed=speed,
            heading=heading,
        )
        self.pending[self.seq] = (time.monotonic(), frame)
        self.position = (lon, lat)
        self._send(frame.model_dump_json(exclude_none=True))

    def _resend_pending(self) -> None:
        self.resend = False
        points = [Point.model_validate(frame.model_dump()) for _, frame in self.pending.values()]
        for i in range(0, len(points), BATCH_MAX):
            batch = PosBatchFrame(type="pos_batch", points=points[i : i + BATCH_MAX])
            self._send(batch.model_dump_json(exclude_none=True))
        COUNTS["driver resent points"] += len(points)

    def _act(self, action: str, leads_to: str) -> None:
        if self.action is not None:
            if time.monotonic() - self.action[2] < ACTION_TIMEOUT_S:
                return
            fire(
                self.environment,
                f"action {self.action[0]}",
                _ms_since(self.action[2]),
                exception=f"no answer within {ACTION_TIMEOUT_S:g} s",
            )
        assert self.trip_id is not None
        frame = ActionFrame(type="action", trip_id=self.trip_id, action=action)
        self.action = (action, leads_to, time.monotonic())
        self._send(frame.model_dump_json())

    def _expire_acks(self) -> None:
        limit = self.knobs.ack_timeout_s
        while self.pending:
            seq, (sent_at, _) = next(iter(self.pending.items()))
            if time.monotonic() - sent_at < limit:
                return
            self.pending.popitem(last=False)
            fire(
                self.environment,
                "pos → ack",
                _ms_since(sent_at),
                exception=f"no ack within {limit:g} s",
            )

    # One trip.

    @task
    def drive(self) -> None:
        if self.token is None:
            _refuse("DriverUser", "set TRACKING_JWT_SECRET: drivers mint their own tokens")
        self._ensure_link()
        body = {"pickup": PICKUP, "dropoff": DROPOFF, "driver_id": self.driver_id}
        with self.client.post(
            "/v1/trips",
            json=body,
            headers=self.ops_headers,
            name="/v1/trips",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(_http_problem(response))
                gevent.sleep(1.0)
                return
            created = response.json()
        self.trip_id, self.trip = created["id"], created
        BOARD.post(created["id"], created["rider_token"])
        started = time.monotonic()
        try:
            problem = self._run_trip()
        finally:
            BOARD.close(created["id"])
            self.trip_id, self.action = None, None
        COUNTS["trips completed" if problem is None else "trips abandoned"] += 1
        fire(self.environment, "trip lifecycle", _ms_since(started), exception=problem)

    def _run_trip(self) -> str | None:
        """Drive the trip to its end; None if it completed, else what went wrong."""
        knobs = self.knobs
        interval = 1.0 / knobs.driver_hz
        step_m = knobs.driver_speed / knobs.driver_hz
        route_coords: list[Any] = []
        route: Route | None = None
        along = 0.0
        stuck_s = 60.0
        status, status_since = "", time.monotonic()
        next_tick = time.monotonic()
        while True:
            self._ensure_link()
            if self.resend:
                self._resend_pending()
            trip = self.trip
            if trip.get("driver_id") != self.driver_id:
                return "the trip was assigned to another driver"
            now = time.monotonic()
            if trip["status"] != status:
                status, status_since = trip["status"], now
            if status in TERMINAL:
                return None if status == "completed" else f"trip {status}"
            coords = trip["route"]["coordinates"]
            if route is None or coords != route_coords:
                route, route_coords = Route(coords), coords
                if self.position is None:  # a new driver starts somewhere on the route
                    along = random.uniform(0.0, route.length_m)
                else:
                    along = route.snap(*self.position).along_m
                stuck_s = 60.0 + 2.0 * route.length_m / knobs.driver_speed
            moving = status in ("assigned", "in_progress") and along < route.length_m
            if moving:
                along = min(route.length_m, along + step_m)
            elif status == "arrived_pickup" and now - status_since >= knobs.pickup_wait_s:
                self._act("start", "in_progress")
            elif status == "arrived_dropoff" and now - status_since >= knobs.dwell_s:
                self._act("complete", "completed")
            self._send_pos(*route.point_at(along), speed=knobs.driver_speed if moving else 0.0)
            self._expire_acks()
            if now - status_since > stuck_s:
                return f"stuck in {status} for {stuck_s:.0f} s"
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay < -interval:  # fell behind (CPU): do not burst to catch up
                next_tick, delay = time.monotonic(), 0.0
            gevent.sleep(max(0.0, delay))


# --- riders -------------------------------------------------------------------


class RiderUser(User):
    """A rider's page: watches one trip's channel until it ends, then another."""

    weight = 20
    wait_time = constant(0)

    def on_start(self) -> None:
        self.knobs = Knobs.of(self.environment)
        self.ws: websocket.WebSocket | None = None
        self.trip_over = False

    def on_stop(self) -> None:
        hang_up(self.ws)
        self.ws = None

    @task
    def watch(self) -> None:
        slot = BOARD.take(self.knobs.riders_per_trip)
        if slot is None:
            gevent.sleep(BOARD_IDLE_S)
            return
        try:
            self._follow(slot)
        finally:
            TripBoard.leave(slot)
            hang_up(self.ws)
            self.ws = None

    def _follow(self, slot: Slot) -> None:
        last_seq: int | None = None
        self.trip_over = False
        failures = 0
        while slot.open or last_seq is None:
            query = f"?token={slot.rider_token}"
            if last_seq is not None:
                query += f"&since={last_seq}"
            opened_ms, started = now_ms(), time.monotonic()
            try:
                ws = connect(ws_url(self.host, f"/v1/trips/{slot.trip_id}/ws{query}"))
            except Exception as exc:
                fire(self.environment, "rider connect", _ms_since(started), exception=exc)
                failures += 1
                if failures > 5:
                    return
                _backoff(failures)
                continue
            self.ws = ws
            ws.settimeout(RIDER_IDLE_S)
            replaying = last_seq is not None
            if replaying:
                COUNTS["rider reconnects"] += 1
            try:
                while True:
                    raw = recv_text(ws)
                    failures = 0
                    last_seq = self._on_event(raw, last_seq, started, opened_ms, replaying)
                    if not slot.open and last_seq is not None and not self.trip_over:
                        # The driver gave the trip up without ending it: stop watching.
                        COUNTS["rider left an abandoned trip"] += 1
                        return
            except Closed as closed:
                if closed.code == 1000:  # the trip ended: nobody else should pick it now
                    COUNTS["rider saw its trip end"] += 1
                    BOARD.close(slot.trip_id)
                    return
                fire(self.environment, "rider socket", 0, exception=closed)
                if closed.code in FATAL_CLOSES:
                    return
            except websocket.WebSocketTimeoutException:
                fire(
                    self.environment,
                    "rider socket",
                    RIDER_IDLE_S * 1000,
                    exception=f"no frame within {RIDER_IDLE_S:g} s",
                )
            finally:
                hang_up(ws)
                self.ws = None
            failures += 1
            if failures > 5:
                return
            _backoff(failures)

    def _on_event(
        self, raw: str, last_seq: int | None, started: float, opened_ms: int, replaying: bool
    ) -> int | None:
        """Record one trip-channel frame; returns the last seq seen."""
        env = self.environment
        try:
            event = trip_event_adapter.validate_json(raw)
        except ValidationError as exc:
            fire(env, "rider frame", 0, exception=exc)
            return last_seq
        kind = event["type"]
        COUNTS[f"rider {kind} frames"] += 1
        if kind == "snapshot":
            self.trip_over = event["trip"]["status"] in TERMINAL
            if last_seq is None:
                fire(env, "subscribe → snapshot", _ms_since(started), length=len(raw))
            return int(event["trip"]["seq"])
        if kind == "heartbeat":
            return last_seq
        seq = int(event["seq"])
        if last_seq is not None and seq <= last_seq:
            fire(env, "rider seq order", 0, exception=f"seq {seq} after {last_seq}")
            return last_seq
        if last_seq is not None and seq > last_seq + 1:
            COUNTS["rider seq gaps"] += 1
        if kind == "position":
            # Replayed after a reconnect: old by design, kept apart from live latency.
            name = "position e2e (replayed)" if replaying and event["ts"] < opened_ms else None
            fire(env, name or "position e2e", now_ms() - event["fix_ts"], length=len(raw))
        elif kind == "status":
            self.trip_over = event["status"] in TERMINAL
            fire(env, "status event", now_ms() - event["ts"], length=len(raw))
        return seq


# --- ops ------------------------------------------------------------------------


class OpsUser(HttpUser):
    """The ops backend and dashboard: figures, nearby drivers, trips."""

    weight = 1
    wait_time = between(0.5, 1.5)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.headers: dict[str, str] = {}
        with contextlib.suppress(MissingSecret):
            self.headers = {"Authorization": f"Bearer {TOKENS.ops()}"}

    def _get(self, path: str, name: str, model: Any, **params: Any) -> None:
        if not self.headers:
            _refuse("OpsUser", "set TRACKING_JWT_SECRET or LOAD_OPS_TOKEN")

        with self.client.get(
            path, headers=self.headers, params=params or None, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(_http_problem(response))
                return
            if model is not None:
                try:
                    model.model_validate_json(response.content)
                except ValidationError as exc:
                    response.failure(f"answer does not match {model.__name__}: {exc}")

    @task(3)
    def stats(self) -> None:
        self._get("/v1/ops/stats", "/v1/ops/stats", OpsStats)

    @task(3)
    def nearby(self) -> None:
        self._get("/v1/drivers/nearby", "/v1/drivers/nearby", NearbyOut, radius_m=2000, **CENTRE)

    @task(2)
    def trip(self) -> None:
        trip_id = BOARD.any_trip()
        if trip_id is not None:
            self._get(f"/v1/trips/{trip_id}", "/v1/trips/[id]", Trip)

    @task(1)
    def trail(self) -> None:
        trip_id = BOARD.any_trip()
        if trip_id is not None:
            self._get(f"/v1/trips/{trip_id}/trail", "/v1/trips/[id]/trail", None)


def _http_problem(response: Any) -> str:
    if response.status_code == 0:  # no answer: the connection failed
        return repr(response.error)
    return f"{response.status_code}: {response.text[:200]}"


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
