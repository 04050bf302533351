"""Fuzzing the sockets: hypothesis-generated frames and query strings against a real gateway.

All targets share the module's gateway subprocess (`gateway` fixture) on a real Redis:

- **Driver stream** (`/v1/drivers/ws`): sessions of valid and hostile frames from
  `fuzzing.driver_frame`. After each frame the session sends a sync marker (an action on a
  trip that does not exist, answered `not_found`), so the frames in between are exactly that
  frame's answer. It must be what the contract allows for that kind of frame: acks (cumulative,
  never going back), `trip` frames, error frames whose codes are in the "Error codes" table of
  docs/protocol.md and allowed for the frame, close 1009 for a frame over 64 KiB, and at the
  (TRACKING_MAX_BAD_FRAMES + 1)-th `bad_frame`/`unknown_type` of a connection, and only then,
  `rate_limited` and close 4429. The session then reconnects; it also reconnects every 6 s, so
  that the 10 s strike window never forgets a strike and the limit is predicted exactly. After
  each session, every point of the trip's trail must be one that was sent and not rejected.
- **Trip channel** and **fleet feed**: generated tokens (valid, expired, foreign, garbage…, in
  the query or the header), trip ids, `since` and `bbox` values and client frames. Each connect
  must get the close code the model predicts (4400, 4401, 4403, 4404, or 1000 after the
  snapshot of an ended trip) or stay open, and each client frame its error frame.

Throughout, a bystander driver sends a fix every 0.25 s on its own trip and a rider watches
that trip (`Bystander`, on its own thread): every point must be acked, the rider must keep
receiving events up to the trip's last, and the trip must end up holding exactly its points.
The gateway must stay up and log no traceback, error or warning.

**Counting.** Every input sent to the gateway is counted by target in `TALLY` (driver frames
by kind and connections; connects and client frames of the channel and the feed) together with
the closes the model predicted and saw. When the module ends, the counts are written as one
`fuzz:` line to the terminal through pytest's terminal reporter (so the line shows with `-q`,
without `-s`), and each test records its own counts with `record_property` (JUnit XML).
Examples are derandomized: a given command runs the same examples, with the same counts, every
time (Hypothesis also draws constants from the modules loaded, so the file alone and the
whole suite run different ones).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration import fuzzing as fz
from tests.integration.client import Api, driver_ws, now_ms, pos, recv_json, trip_ws
from tests.integration.conftest import Gateway, token
from tracking.core.messages import (
    driver_inbound_adapter,
    fleet_outbound_adapter,
    trip_event_adapter,
)
from tracking.settings import Settings

Frame = dict[str, Any]
TALLY: Counter[str] = Counter()
MAX_BAD_FRAMES: int = Settings.model_fields["max_bad_frames"].default
RECONNECT_AFTER_S = 6.0
ANSWER_TIMEOUT_S = 10.0
SLOW_S = 10.0
"""The longest a bystander's ack, or a pause in its rider's events, may take."""
ABNORMAL_CLOSURE = 1006
"""What the client sees when the connection ends without a close frame."""
MAX_SESSION_FRAMES = 40

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: each example is live I/O, and a failing one is printed and, derandomized,
    # comes back on every run.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # `fuzz_run` wraps the whole test, on purpose
    ],
)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- the bystander -------------------------------------------------------------------


class Bystander:
    """A well-behaved driver on its own trip, and a rider watching it, on a thread of their own."""

    INTERVAL_S = 0.25

    def __init__(self, gateway: Gateway, trip: Frame, driver_id: str) -> None:
        self.ws_base = gateway.ws_base
        self.trip = trip
        self.driver_id = driver_id
        self.acked = 0
        self.slowest_ack_s = 0.0
        self.rider_seq = 0
        self.rider_events = 0
        self.longest_gap_s = 0.0
        self.failures: list[str] = []
        self.ready = threading.Event()
        self._stop_driving = threading.Event()
        self._close = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(15), "the bystander's first point was not acked"

    def stop_driving(self) -> None:
        self._stop_driving.set()

    def close(self) -> None:
        self._stop_driving.set()
        self._close.set()
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported by the tests, not lost in the thread
            self.failures.append(f"bystander: {exc!r}")
        finally:
            self.ready.set()

    async def _main(self) -> None:
        async with (
            driver_ws(self.ws_base, token("driver", self.driver_id)) as drv,
            trip_ws(self.ws_base, self.trip["id"], self.trip["rider_token"]) as rider,
        ):
            watcher = asyncio.create_task(self._watch(rider))
            try:
                await self._drive(drv)
                while not self._close.is_set():
                    await asyncio.sleep(0.05)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _drive(self, drv: ClientConnection) -> None:
        lon, lat = fz.LON, fz.LAT
        seq = 0
        while not self._stop_driving.is_set():
            seq += 1
            sent_s = time.monotonic()
            await drv.send(pos(seq, lon + (seq % 2) * 1e-5, lat, now_ms()))
            while True:
                frame = await recv_json(drv, SLOW_S)
                if frame["type"] == "error":
                    self.failures.append(f"bystander got {frame}")
                if frame["type"] == "ack" and frame["seq"] >= seq:
                    break
            self.slowest_ack_s = max(self.slowest_ack_s, time.monotonic() - sent_s)
            self.acked = seq
            self.ready.set()
            await asyncio.sleep(self.INTERVAL_S)

    async def _watch(self, rider: ClientConnection) -> None:
        try:
            last_s = time.monotonic()
            while True:
                frame = await recv_json(rider, 60)
                trip_event_adapter.validate_python(frame)
                self.longest_gap_s = max(self.longest_gap_s, time.monotonic() - last_s)
                last_s = time.monotonic()
                self.rider_events += 1
                seq = frame["trip"]["seq"] if frame["type"] == "snapshot" else frame.get("seq")
                if seq is not None:
                    if seq <= self.rider_seq and frame["type"] != "snapshot":
                        self.failures.append(f"rider: seq {seq} after {self.rider_seq}")
                    self.rider_seq = seq
        except Exception as exc:
            self.failures.append(f"rider: {exc!r}")


@dataclass
class World:
    """What the fuzzed sockets can reach: a live trip, a quiet one, an ended one."""

    api: Api
    bystander: Bystander
    live: Frame
    quiet: Frame
    ended: Frame

    def trip_ids(self) -> tuple[str, ...]:
        return (self.live["id"], self.quiet["id"], self.ended["id"])


@pytest.fixture(scope="module")
def world(gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[World]:
    api = Api(gateway.base, token("ops"))
    bystander_id = uid("d-bystander")
    live = api.create_trip(driver_id=bystander_id)
    quiet = api.create_trip(driver_id=uid("d-quiet"))
    ended = api.create_trip()
    assert api.post(f"/v1/trips/{ended['id']}/actions", {"action": "cancel"}).status_code == 200
    ended_before = api.get(f"/v1/trips/{ended['id']}").json()
    bystander = Bystander(gateway, live, bystander_id)
    bystander.start()
    yield World(api, bystander, live, quiet, ended)

    bystander.stop_driving()
    time.sleep(Bystander.INTERVAL_S * 2)
    final_seq = api.get(f"/v1/trips/{live['id']}").json()["seq"]
    deadline = time.monotonic() + SLOW_S
    while bystander.rider_seq < final_seq and time.monotonic() < deadline:
        time.sleep(0.05)
    bystander.close()
    _report(request)
    assert not bystander.failures, bystander.failures
    assert bystander.rider_seq == final_seq, "the rider did not get the trip's last event"
    after = api.get(f"/v1/trips/{live['id']}").json()
    assert (after["status"], after["driver_id"]) == ("assigned", bystander_id)
    trail = api.get(f"/v1/trips/{live['id']}/trail").json()
    assert trail["properties"]["seqs"] == list(range(1, bystander.acked + 1))
    assert api.get(f"/v1/trips/{ended['id']}").json() == ended_before
    quiet_after = api.get(f"/v1/trips/{quiet['id']}").json()
    assert (quiet_after["status"], quiet_after["driver_id"]) == ("assigned", quiet["driver_id"])
    assert api.get(f"/v1/trips/{quiet['id']}/trail").json()["properties"]["seqs"] == []


def _report(request: pytest.FixtureRequest) -> None:
    t = TALLY
    kinds = ", ".join(f"{k} {t[f'driver frames: {k}']}" for k in dict.fromkeys(fz.DRIVER_KINDS))
    prefix = "driver error: "
    codes = ", ".join(f"{k[len(prefix) :]} {n}" for k, n in t.items() if k.startswith(prefix))
    line = (
        f"fuzz: driver stream {t['driver frames']} frames ({kinds}) on {t['driver connects']}"
        f" connections, closes as predicted: 1009 x{t['driver close 1009']}, 4429 x"
        f"{t['driver close 4429']}; trip channel {t['channel connects']} connects, "
        f"{t['channel client frames']} client frames; fleet feed {t['fleet connects']} connects,"
        f" {t['fleet client frames']} client frames; driver error frames seen: {codes};"
        f" rider handlers left open after their client left: {t['rider handlers left open']}"
    )
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@pytest.fixture
def fuzz_run(
    gateway: Gateway, world: World, record_property: Callable[[str, object], None]
) -> Iterator[None]:
    """Around a whole fuzz test: the bystander kept working, the gateway lived; counts recorded."""
    before, acked, events = TALLY.copy(), world.bystander.acked, world.bystander.rider_events
    yield
    # Every trip-channel handler ends with its client (only the bystander's stays).
    deadline = time.monotonic() + 3
    while open_sockets(gateway, "rider") > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    TALLY["rider handlers left open"] = open_sockets(gateway, "rider") - 1
    assert TALLY["rider handlers left open"] == 0, "trip-channel handlers outlived their client"
    for key, n in (TALLY - before).items():
        record_property(key, n)
    assert gateway.proc.poll() is None, "the gateway exited"
    assert not gateway.problems(), gateway.problems()
    by = world.bystander
    assert not by.failures, by.failures
    assert by.acked > acked and by.rider_events > events, "the bystander stalled"
    assert by.slowest_ack_s < SLOW_S and by.longest_gap_s < SLOW_S


def open_sockets(gateway: Gateway, kind: str) -> int:
    """The gateway's `tracking_connections` gauge for one kind of socket."""
    metrics = httpx.get(f"{gateway.base}/metrics", timeout=10).text
    found = re.search(rf'^tracking_connections{{kind="{kind}"}} (\S+)$', metrics, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


# --- driver stream -------------------------------------------------------------------


class DriverSession:
    """One fuzzed driver: its own trip, frames drawn one by one, each answer judged."""

    def __init__(self, gateway: Gateway, world: World, data: st.DataObject) -> None:
        self.gateway = gateway
        self.api = world.api
        self.data = data
        self.driver_id = uid("d-fuzz")
        own = self.api.create_trip(driver_id=self.driver_id)
        self.ctx = fz.DriverCtx(own["id"], world.trip_ids())
        self.max_ack = 0
        self.markers = 0
        self.nonce = uuid.uuid4().hex[:8]
        self.stored_ok: defaultdict[int, list[tuple[float, float, int]]] = defaultdict(list)
        """Points not rejected, by seq: the only ones the trail may hold."""

    async def connect(self) -> tuple[ClientConnection, float]:
        TALLY["driver connects"] += 1
        ws = await driver_ws(self.gateway.ws_base, token("driver", self.driver_id))
        return ws, time.monotonic()

    async def run(self) -> None:
        # One session in four sends mostly bad frames, past the bad-frame limit (4429).
        bad = self.data.draw(st.sampled_from([False, False, False, True]), label="bad session")
        kinds = fz.BAD_KINDS if bad else fz.DRIVER_KINDS
        least = MAX_BAD_FRAMES + 5 if bad else 1
        n_frames = self.data.draw(st.integers(least, MAX_SESSION_FRAMES), label="frames")
        ws, opened_s = await self.connect()
        strikes = 0
        try:
            for i in range(n_frames):
                sent = self.data.draw(fz.driver_frame(self.ctx, kinds), label=f"frame {i}")
                if time.monotonic() - opened_s > RECONNECT_AFTER_S:
                    await ws.close()
                    (ws, opened_s), strikes = await self.connect(), 0
                frames, closed = await self.exchange(ws, sent)
                TALLY["driver frames"] += 1
                TALLY[f"driver frames: {sent.kind}"] += 1
                strikes = self.judge(sent, frames, closed, strikes)
                if closed is not None:
                    (ws, opened_s), strikes = await self.connect(), 0
        finally:
            await ws.close()
        self.check_stored()

    async def exchange(self, ws: ClientConnection, sent: fz.Sent) -> tuple[list[Frame], int | None]:
        """Send a frame and a sync marker: the frames answering the first, and the close code."""
        self.markers += 1
        marker = f"sync-{self.nonce}-{self.markers}"
        frames: list[Frame] = []
        try:
            await ws.send(sent.raw)
            await ws.send(frame_text(type="action", trip_id=marker, action="cancel"))
            while True:
                frame = await recv_json(ws, ANSWER_TIMEOUT_S)
                if frame.get("code") == "not_found" and marker in frame.get("detail", ""):
                    return frames, None
                frames.append(frame)
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else ABNORMAL_CLOSURE

    def judge(self, sent: fz.Sent, frames: list[Frame], closed: int | None, strikes: int) -> int:
        """Check one answer against the contract; returns the connection's strike count."""
        raw = sent.raw if len(sent.raw) < 400 else sent.raw[:400]
        why = f"{sent.kind} frame {raw!r}\n  was answered {frames}, close {closed}"
        for frame in frames:
            driver_inbound_adapter.validate_python(frame)
        errors = [f for f in frames if f["type"] == "error"]
        assert {e["code"] for e in errors} <= fz.CONTRACT_CODES, why
        TALLY.update(f"driver error: {e['code']}" for e in errors)
        acks = [f["seq"] for f in frames if f["type"] == "ack"]
        if sent.oversized:
            # 1009, or no close frame at all: the server closes as soon as
            # the frame's header says it is too big, and the rest of the
            # frame still arriving makes the kernel reset the connection.
            assert closed in (1009, ABNORMAL_CLOSURE), why
            assert {e["code"] for e in errors} <= {"frame_too_large"}, why
            TALLY["driver close 1009"] += 1
            return 0
        strikes += sum(e["code"] in fz.STRIKES for e in errors)
        if strikes > MAX_BAD_FRAMES:
            assert errors and errors[-1]["code"] == "rate_limited" and closed == 4429, why
            TALLY["driver close 4429"] += 1
            errors = errors[:-1]
        else:
            assert closed is None, why
        assert {e["code"] for e in errors} <= sent.allowed, why
        acked_before = self.max_ack
        for ack in acks:
            assert ack >= self.max_ack, f"ack went back from {self.max_ack}: {why}"
            self.max_ack = ack
        if sent.is_action:
            assert any(f["type"] == "trip" for f in frames) or len(errors) == 1, why
        elif not (sent.silent_ok and acked_before == 0):
            assert errors or acks, f"no answer: {why}"
        self.note_stored(sent, errors)
        return strikes

    def note_stored(self, sent: fz.Sent, errors: list[Frame]) -> None:
        """Remember the points of this frame that were not rejected."""
        if sent.is_batch:
            whole = any(e["code"] in fz.WHOLE_FRAME or "seq" not in e for e in errors)
        else:
            whole = bool(errors)
        if whole:
            return
        rejected = {e["seq"] for e in errors}
        seqs = Counter(p.get("seq") for p in sent.points)
        for point in sent.points:
            seq, lon, lat, ts = (point.get(k) for k in ("seq", "lon", "lat", "ts"))
            if not (is_int(seq) and is_int(ts) and is_number(lon) and is_number(lat)):
                continue  # cannot have been stored; if it was, check_stored says so
            if seq in rejected and seqs[seq] == 1:
                continue
            self.stored_ok[seq].append((float(lon), float(lat), ts))

    def check_stored(self) -> None:
        """The trip holds only points that were sent and not rejected, in seq order."""
        trip_id = self.ctx.own_trip
        trail = self.api.get(f"/v1/trips/{trip_id}/trail").json()
        seqs, stamps = trail["properties"]["seqs"], trail["properties"]["timestamps"]
        assert seqs == sorted(set(seqs)), f"trail seqs not increasing: {seqs}"
        for (lon, lat), ts, seq in zip(trail["geometry"]["coordinates"], stamps, seqs, strict=True):
            sent = self.stored_ok.get(seq, [])
            assert any(
                abs(lon - s_lon) < 1e-6 and abs(lat - s_lat) < 1e-6 and ts == s_ts
                for s_lon, s_lat, s_ts in sent
            ), f"trail holds seq {seq} at {lon},{lat},{ts}; accepted: {sent}"
        trip = self.api.get(f"/v1/trips/{trip_id}").json()
        if trip["driver"] is not None and stamps:
            assert trip["driver"]["ts"] in stamps, (trip["driver"], stamps)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def frame_text(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_driver_stream_answers_every_frame_by_the_contract(
    gateway: Gateway, world: World, fuzz_run: None, data: st.DataObject
) -> None:
    """Every frame, valid or hostile, gets a contract answer; rejected points are not stored."""
    asyncio.run(DriverSession(gateway, world, data).run())
    assert gateway.proc.poll() is None


# --- trip channel and fleet feed ------------------------------------------------------

TRIP_ID_TEXT = st.text(min_size=1, max_size=40).filter(
    lambda t: "/" not in t and t not in (".", "..")  # else another path, not a trip id
)


def open_socket(url: str, headers: dict[str, str]) -> Any:
    # An unbounded queue: a client that stops reading must still get the close frame behind
    # a replay, instead of waiting out its close timeout.
    return connect(url, additional_headers=headers, max_size=2**22, max_queue=None)


async def frames_until_closed(ws: ClientConnection) -> tuple[list[Frame], int | None]:
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await recv_json(ws, ANSWER_TIMEOUT_S))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


def draw_auth(
    data: st.DataObject, trip_id: str, readers: tuple[str, ...]
) -> tuple[list[tuple[str, str]], dict[str, str], int | None]:
    """Query params and headers carrying a drawn token, and the close code it must get."""
    may_read = [k for k in ("ops", "rider_of_it") if fz.token_close_code(k, readers) is None]
    kinds = may_read if data.draw(st.booleans(), label="reader") else fz.TOKEN_KINDS
    kind = data.draw(st.sampled_from(kinds), label="token")
    jwt_or_none = fz.make_token(kind, trip_id, data.draw(fz.GARBAGE_TOKEN))
    params: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    if data.draw(st.booleans(), label="in header"):
        if jwt_or_none is not None:
            headers["Authorization"] = f"Bearer {jwt_or_none}"
        if data.draw(st.booleans(), label="and garbage in the query"):
            params.append(("token", data.draw(fz.GARBAGE_TOKEN)))  # the header wins
            if jwt_or_none is None:
                kind = "garbage"
    elif jwt_or_none is not None:
        params.append(("token", jwt_or_none))
    return params, headers, fz.token_close_code(kind, readers)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_trip_channel_answers_every_connect_and_client_frame(
    gateway: Gateway, world: World, fuzz_run: None, data: st.DataObject
) -> None:
    """Any token, trip id and `since` get their documented close code, or an open channel that
    answers every client frame with an error frame; never 1011."""
    trips = ["live", "quiet", "live", "quiet", "ended", "unknown", "text"]
    which = data.draw(st.sampled_from(trips), label="trip")
    known = {"live": world.live, "quiet": world.quiet, "ended": world.ended}
    trip_id = known[which]["id"] if which in known else uid("t-none")
    if which == "text":
        trip_id = data.draw(TRIP_ID_TEXT, label="trip id")
    params, headers, expected = draw_auth(data, trip_id, ("ops", "rider"))
    since_values = fz.VALID_SINCE if data.draw(st.booleans(), label="valid since") else fz.SINCE
    drawn = data.draw(st.lists(since_values, max_size=2), label="since")
    sinces = [s for s in drawn if s is not None]
    params += [("since", s) for s in sinces] + data.draw(fz.EXTRA_PARAMS, label="extra")
    params = data.draw(st.permutations(params), label="order")
    # Of repeated parameters, the last counts.
    since = next((v for k, v in reversed(params) if k == "since"), None)
    assume(not fz.since_is_known_bug(since))
    if expected is None and which not in known:
        expected = 4404
    if expected is None and not fz.since_is_valid(since):
        expected = 4400
    url = f"{gateway.ws_base}/v1/trips/{quote(trip_id, safe='')}/ws?{fz.query_string(params)}"

    async def scenario() -> None:
        async with open_socket(url, headers) as ws:
            TALLY["channel connects"] += 1
            if expected is not None or which == "ended":
                frames, code = await frames_until_closed(ws)
                for frame in frames:
                    trip_event_adapter.validate_python(frame)
                assert (code, expected is None or frames == []) == (expected or 1000, True)
                return
            sent = data.draw(st.lists(fz.CLIENT_FRAME, min_size=1, max_size=4), label="frames")
            for raw in sent:
                await ws.send(raw)
                TALLY["channel client frames"] += 1
            codes: list[str] = []
            try:
                while len(codes) < len(sent):
                    frame = await recv_json(ws, ANSWER_TIMEOUT_S)
                    if frame["type"] == "error":
                        assert set(frame) == {"type", "code", "detail"}, frame
                        codes.append(frame["code"])
                    else:
                        trip_event_adapter.validate_python(frame)
            except ConnectionClosed as closed:
                raise AssertionError(f"closed {closed.rcvd} after {sent!r}") from None
            assert codes == [fz.client_frame_code(raw, ()) for raw in sent], sent

    asyncio.run(scenario())


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fleet_feed_answers_every_connect_and_client_frame(
    gateway: Gateway, world: World, fuzz_run: None, data: st.DataObject
) -> None:
    """Any token and `bbox` get their documented close code, or a snapshot and an open feed
    that answers every bad client frame with its error frame; never 1011."""
    params, headers, expected = draw_auth(data, "t-fleet", ("ops",))
    valid = data.draw(st.booleans(), label="valid bbox")
    bbox = data.draw(fz.VALID_BBOX_QUERY if valid else fz.BBOX_QUERY, label="bbox")
    if bbox is not None:
        params.append(("bbox", bbox))
    params += data.draw(fz.EXTRA_PARAMS, label="extra")
    if expected is None and not fz.bbox_query_is_valid(bbox):
        expected = 4400
    url = f"{gateway.ws_base}/v1/fleet/ws?{fz.query_string(params)}"

    async def scenario() -> None:
        async with open_socket(url, headers) as ws:
            TALLY["fleet connects"] += 1
            if expected is not None:
                assert await frames_until_closed(ws) == ([], expected)
                return
            snapshot = await recv_json(ws, ANSWER_TIMEOUT_S)
            fleet_outbound_adapter.validate_python(snapshot)
            assert snapshot["type"] == "drivers" and snapshot["snapshot"] is True, snapshot
            sent = data.draw(st.lists(fz.FLEET_FRAME, min_size=1, max_size=4), label="frames")
            for raw in sent:
                marker = f"sync-{uuid.uuid4().hex[:8]}"
                await ws.send(raw)
                await ws.send(frame_text(type=marker))
                TALLY["fleet client frames"] += 1
                codes: list[str] = []
                try:
                    while True:
                        frame = await recv_json(ws, ANSWER_TIMEOUT_S)
                        fleet_outbound_adapter.validate_python(frame)
                        if frame["type"] != "error":
                            continue
                        if marker in frame["detail"] and frame["code"] == "unknown_type":
                            break
                        codes.append(frame["code"])
                except ConnectionClosed as closed:
                    raise AssertionError(f"closed {closed.rcvd} after {raw!r}") from None
                code = fz.fleet_frame_code(raw)
                assert codes == ([] if code is None else [code]), raw

    asyncio.run(scenario())
