"""Inputs for the socket fuzz tests (hypothesis strategies) and what the contract says of them.

Every generator returns the bytes to send together with the answers the
contract allows for them (`docs/protocol.md`), so the tests can check each
answer as it arrives instead of only checking that nothing crashed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import orjson
from hypothesis import strategies as st

from tests.integration.client import DRIVER_START, now_ms
from tests.integration.conftest import SECRET, token
from tracking.api.auth import issue_token

ROOT = Path(__file__).resolve().parents[2]
LON, LAT = DRIVER_START
MAX_FRAME_BYTES = 64 * 1024
MAX_BATCH_POINTS = 500
DRIVER_TYPES = ("pos", "pos_batch", "action")
POINT_FIELDS = ("seq", "ts", "lon", "lat", "acc", "speed", "heading")


def documented_error_codes() -> frozenset[str]:
    """The codes of the "Error codes" table of docs/protocol.md."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    return frozenset(re.findall(r"^\| `([a-z_]+)`", section, re.MULTILINE))


CONTRACT_CODES = documented_error_codes()
STRIKES = frozenset({"bad_frame", "unknown_type"})
"""Errors that count toward the bad-frame limit."""
POINT_ERRORS = frozenset(
    {"invalid_position", "future_ts", "out_of_order", "implausible_jump", "unavailable"}
)
"""What a well-formed point may get: its own checks, or a write that kept conflicting."""
WHOLE_FRAME = frozenset({"bad_frame", "unknown_type", "batch_too_large", "unavailable"})
"""Errors that reject a frame with all its points."""

# --- hostile values -----------------------------------------------------------

YEAR_MS = 365 * 86_400_000
SPECIAL_NUMBERS = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63)]
SPECIAL_NUMBERS += [1e308, -1e308, 5e-324, -0.0, 90.0000001, 180.0000001, 85.0511288]
HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity go out as bare tokens
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(SPECIAL_NUMBERS),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
"""Anything that may stand where a number goes."""
JSON_SCALAR: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
"""Values that keep a frame valid JSON."""
TS_OFFSETS_MS = [-100 * YEAR_MS, -YEAR_MS, -60_000, 299_000, 301_000, YEAR_MS, 100 * YEAR_MS]


def dumps(obj: Any, ascii_only: bool) -> str:
    """JSON as a sloppy client writes it: NaN and Infinity as bare tokens, big ints exact."""
    return json.dumps(obj, ensure_ascii=ascii_only)


# --- driver frames ---------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One frame to send on the driver stream and what the contract allows as its answer."""

    kind: str
    raw: str | bytes
    allowed: frozenset[str]
    """Error codes this frame may get."""
    points: tuple[dict[str, Any], ...] = ()
    """The points it carries, as sent (for the stored-data check)."""
    is_batch: bool = False
    is_action: bool = False
    oversized: bool = False
    silent_ok: bool = False
    """May get no answer at all: an empty batch before the driver's first stored point."""


@dataclass
class DriverCtx:
    """The fuzzed driver's side of a session: its trips and its next good point."""

    own_trip: str
    other_trips: tuple[str, ...]
    next_seq: int = 1
    ts: int = 0

    def __post_init__(self) -> None:
        self.ts = now_ms() - 120_000

    def good_point(self) -> dict[str, Any]:
        """The next plausible fix: a new seq, 1 ms later, jittering by under a metre."""
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        self.ts += 1
        return {"seq": seq, "ts": self.ts, "lon": LON + (seq % 2) * 1e-5, "lat": LAT, "acc": 5.0}


def _json_ok(raw: str | bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _by_parse(raw: str | bytes) -> frozenset[str]:
    """What the driver stream may answer to arbitrary text or bytes, judged by parsing it."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return frozenset({"bad_frame"})
    if not isinstance(obj, dict):
        return frozenset({"bad_frame"})
    if obj.get("type") not in DRIVER_TYPES:
        return frozenset({"unknown_type"})
    return CONTRACT_CODES  # a real frame by chance: anything documented


@st.composite
def hostile_point(draw: st.DrawFn, ctx: DriverCtx) -> dict[str, Any]:
    """A good point with one to three fields replaced by hostile values or left out."""
    point = ctx.good_point()
    # A list, not a set: a set's order changes with the hash seed, and with it every later draw.
    for field in draw(st.lists(st.sampled_from(POINT_FIELDS), min_size=1, max_size=3, unique=True)):
        how = draw(st.sampled_from(["drop", "hostile", "hostile", "edge"]))
        if how == "drop":
            point.pop(field, None)
        elif how == "edge" and field == "ts":
            point["ts"] = now_ms() + draw(st.sampled_from(TS_OFFSETS_MS))
        elif how == "edge" and field in ("lon", "lat"):
            limit = 180.0 if field == "lon" else 90.0
            point[field] = draw(st.sampled_from([limit, -limit, 85.05112878, -85.0511288]))
        else:
            point[field] = draw(HOSTILE)
    return point


@st.composite
def junk_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Unknown fields (ignored by contract): unicode names, nesting, big values."""
    names = st.text(min_size=1, max_size=8).filter(lambda k: k not in (*POINT_FIELDS, "type"))
    values = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=3), max_leaves=8)
    result: dict[str, Any] = draw(st.dictionaries(names, values, max_size=3))
    return result


@st.composite
def driver_frame(draw: st.DrawFn, ctx: DriverCtx, kinds: list[str]) -> Sent:
    """One frame of one of these kinds, valid or hostile, for the driver stream."""
    kind = draw(st.sampled_from(kinds))
    ascii_only = draw(st.booleans())
    if kind in ("pos", "pos_binary", "pos_hostile", "deep"):
        point = draw(hostile_point(ctx)) if kind == "pos_hostile" else ctx.good_point()
        frame = {"type": "pos", **point, **draw(junk_fields())}
        if kind == "pos_hostile" and draw(st.integers(0, 5)) == 0:
            frame["type"] = draw(HOSTILE)  # a pos whose type went wrong
        raw: str | bytes = dumps(frame, ascii_only)
        if kind == "deep":  # orjson refuses nesting past 1024 levels: bad_frame
            depth = draw(st.integers(1, 1100))
            raw = raw[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
        if kind == "pos_hostile":
            allowed = POINT_ERRORS | {"bad_frame", "unknown_type"}
        else:
            allowed = POINT_ERRORS if _json_ok(raw) else frozenset({"bad_frame"})
        if kind == "pos_binary":
            raw = raw.encode()
        return Sent(kind, raw, allowed, (point,))
    if kind == "batch":
        if draw(st.integers(0, 15)) == 0:  # now and then, at and over the limit
            size = draw(st.sampled_from([MAX_BATCH_POINTS - 1, MAX_BATCH_POINTS, 501]))
            points = [ctx.good_point() for _ in range(size)]
        else:
            makers = st.one_of(st.builds(ctx.good_point), hostile_point(ctx))
            points = draw(st.lists(makers, max_size=8))
        batch: dict[str, Any] = {"type": "pos_batch", "points": points, **draw(junk_fields())}
        if draw(st.integers(0, 9)) == 0:
            batch["points"] = draw(HOSTILE)  # not a list of points at all
            points = []
        allowed = POINT_ERRORS | {"bad_frame", "batch_too_large"}
        silent = isinstance(batch["points"], list) and not batch["points"]
        return Sent(kind, dumps(batch, ascii_only), allowed, tuple(points), True, silent_ok=silent)
    if kind == "action":
        trip_id = draw(
            st.one_of(
                st.sampled_from([ctx.own_trip, *ctx.other_trips, "t-nope", ""]),
                st.text(max_size=140),
                HOSTILE,
            )
        )
        action = draw(st.one_of(st.sampled_from(["start", "complete", "cancel"]), HOSTILE))
        frame = {"type": "action", "trip_id": trip_id, "action": action, **draw(junk_fields())}
        allowed = frozenset({"bad_frame", "forbidden", "not_found", "illegal_transition"})
        return Sent(kind, dumps(frame, ascii_only), allowed | {"unavailable"}, is_action=True)
    if kind == "unknown_type":
        frame = {**ctx.good_point(), **draw(junk_fields())}
        if draw(st.booleans()):  # else: no type at all
            frame["type"] = draw(st.one_of(HOSTILE, st.sampled_from(["POS", "pos ", "bbox"])))
        raw = dumps(frame, ascii_only)
        return Sent(kind, raw, _by_parse(raw), silent_ok=_by_parse(raw) == CONTRACT_CODES)
    if kind == "not_object":
        raw = dumps(draw(st.one_of(st.lists(HOSTILE, max_size=3), HOSTILE)), ascii_only)
        return Sent(kind, raw, _by_parse(raw))
    if kind == "text":
        raw = draw(st.one_of(st.text(max_size=200), st.sampled_from(ODD_TEXT)))
        return Sent(kind, raw, _by_parse(raw), silent_ok=_by_parse(raw) == CONTRACT_CODES)
    if kind == "binary":
        raw = draw(st.binary(max_size=200))
        return Sent(kind, raw, _by_parse(raw), silent_ok=_by_parse(raw) == CONTRACT_CODES)
    assert kind == "oversized"
    frame = {"type": "pos", **ctx.good_point(), "pad": ""}
    text = dumps(frame, True)
    pad = MAX_FRAME_BYTES + draw(st.integers(1, 100)) - len(text)
    return Sent(kind, text[:-2] + "x" * pad + '"}', frozenset(), oversized=True)


ODD_TEXT = [
    "",
    " ",
    "null",
    "{}",
    "[]",
    '{"type":"pos"',
    '{"type":"action","trip_id":"\\ud800","action":"start"}',  # a lone surrogate
    '{"type":"pos","seq":1,"ts":1,"lon":NaN,"lat":1}',
    '{"type":"pos","seq":1e400,"ts":1,"lon":1,"lat":1}',
    "\x00",
    "\ufeff{}",
]
DRIVER_KINDS = [
    *["pos"] * 4,
    *["pos_hostile"] * 5,
    *["batch"] * 3,
    *["action"] * 2,
    "unknown_type",
    "not_object",
    "text",
    "binary",
    "pos_binary",
    "deep",
    "oversized",
]
"""Kinds, repeated to weigh them: valid-shaped frames with hostile values dominate."""
BAD_KINDS = [*["text", "binary", "not_object", "unknown_type"] * 3, "pos_hostile", "pos"]
"""Mostly frames that count toward the bad-frame limit."""


# --- tokens and query strings -----------------------------------------------------

TOKEN_KINDS = [
    "ops",
    "ops",
    "rider_of_it",
    "rider_of_it",
    "rider_of_other",
    "driver",
    "expired",
    "wrong_secret",
    "unknown_role",
    "rider_without_trip",
    "garbage",
    "empty",
    "missing",
]


def make_token(kind: str, trip_id: str, garbage: str) -> str | None:
    """A token of this kind for a socket about `trip_id` (None: no token at all)."""
    if kind == "ops":
        return token("ops")
    if kind == "rider_of_it":
        return token("rider", f"rider:{trip_id}", trip=trip_id)
    if kind == "rider_of_other":
        return token("rider", "rider:t-other", trip=f"{trip_id}-other")
    if kind == "driver":
        return token("driver", "d-fuzz")
    if kind == "expired":
        return issue_token(SECRET, "ops", "ops", ttl_s=-60)
    if kind == "wrong_secret":
        return issue_token("not-the-secret-" + "x" * 32, "ops", "ops")
    if kind == "unknown_role":
        claims = {"sub": "x", "role": "admin", "exp": now_ms() // 1000 + 600}
        return jwt.encode(claims, SECRET, algorithm="HS256")
    if kind == "rider_without_trip":
        return issue_token(SECRET, "rider", "rider:x")
    if kind == "garbage":
        return garbage
    if kind == "empty":
        return ""
    assert kind == "missing"
    return None


def token_close_code(kind: str, readers: tuple[str, ...]) -> int | None:
    """4401 for a token that is not valid; 4403 for a role not among `readers`, or a rider
    token of another trip; None for a token that may read."""
    if kind in ("expired", "wrong_secret", "unknown_role", "rider_without_trip"):
        return 4401
    if kind in ("missing", "garbage", "empty"):
        return 4401
    role = {"ops": "ops", "driver": "driver"}.get(kind, "rider")
    if role not in readers or kind == "rider_of_other":
        return 4403
    return None


GARBAGE_TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
"""Not a JWT (printable ASCII, so that it also fits in a header)."""


def query_string(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


EXTRA_PARAMS = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=6).filter(lambda k: k not in ("token", "since", "bbox")),
        st.text(max_size=10),
    ),
    max_size=2,
)


# --- trip channel -----------------------------------------------------------------

VALID_SINCE = st.one_of(st.none(), st.integers(0, 40).map(str), st.integers(0, 2**70).map(str))
SINCE = st.one_of(
    st.none(),
    st.integers(0, 40).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "00", "0x1", "1.5", "1e3", "+1", " 1", "-0", "NaN", "1_0"]),
    st.text(max_size=8),
)


def since_is_valid(raw: str | None) -> bool:
    """The contract's `since`: absent, or a whole number >= 0 (ASCII digits)."""
    return raw is None or raw == "" or re.fullmatch(r"[0-9]+", raw) is not None


def since_is_known_bug(raw: str | None) -> bool:
    """Non-ASCII digits ('²', '٣'): `str.isdigit()` says yes, so the handler crashes or accepts.

    See test_bad_input.test_since_with_a_non_ascii_digit_closes_4400 (xfail) and
    tracking/api/channels.py `parse_since`.
    """
    return raw is not None and not raw.isascii() and raw.isdigit()


def client_frame_code(raw: str | bytes, accepted: tuple[str, ...]) -> str | None:
    """The error a socket that takes only `accepted` types answers a client frame with.

    Not JSON, not an object, or no `type` → bad_frame; another type →
    unknown_type; None for a frame of an accepted type (judged elsewhere).
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "bad_frame"
    if not isinstance(obj, dict) or "type" not in obj:
        return "bad_frame"
    return None if obj["type"] in accepted else "unknown_type"


CLIENT_FRAME: st.SearchStrategy[str | bytes] = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=100),
    st.sampled_from(ODD_TEXT),
    st.builds(
        lambda obj, a: dumps(obj, a),
        st.one_of(
            st.dictionaries(st.sampled_from(["type", "seq", "bbox", "x"]), HOSTILE, max_size=3),
            st.lists(HOSTILE, max_size=3),
            HOSTILE,
        ),
        st.booleans(),
    ),
)


# --- fleet feed -------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-400, max_value=400).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "", " 1", "1_0", "+5", "0x10", "٣", "１"]),
    st.text(max_size=4),
)
VALID_BBOX_QUERY = st.one_of(
    st.tuples(
        st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180), st.floats(-90, 90)
    ).map(lambda b: f"{min(b[0], b[2])},{min(b[1], b[3])},{max(b[0], b[2])},{max(b[1], b[3])}"),
    st.sampled_from(["-180,-90,180,90", "24.9,60.1,25.0,60.2", "0,89,1,90", "0,0,0,0"]),
)
BBOX_QUERY = st.one_of(
    st.none(),
    st.lists(NUMBER_TEXT, max_size=6).map(",".join),
    st.sampled_from(["25,60,24,61", "0,1,1,0", "-181,0,0,1", "0,-91,1,0", "1,2,3", "1,2,3,4,5"]),
    VALID_BBOX_QUERY,
)


def box_is_valid(values: object) -> bool:
    """Four finite numbers (not booleans), lon -180..180, lat -90..90, min <= max."""
    if not isinstance(values, list) or len(values) != 4:
        return False
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return False
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (min_lon, min_lat, max_lon, max_lat)):
        return False
    in_range = all(-180 <= v <= 180 for v in (min_lon, max_lon)) and all(
        -90 <= v <= 90 for v in (min_lat, max_lat)
    )
    return in_range and min_lon <= max_lon and min_lat <= max_lat


def bbox_query_is_valid(raw: str | None) -> bool:
    """`bbox=minLon,minLat,maxLon,maxLat`, each part a number as Python's float() reads it."""
    if not raw:
        return False
    try:
        numbers = [float(part) for part in raw.split(",")]
    except ValueError:
        return False
    return box_is_valid(numbers)


def fleet_frame_code(raw: str | bytes) -> str | None:
    """The error the fleet feed answers a client frame with; None for a valid `bbox` frame."""
    code = client_frame_code(raw, ("bbox",))
    if code is not None:
        return code
    box = orjson.loads(raw).get("bbox")
    return None if box_is_valid(box) else "validation_error"


FLEET_FRAME: st.SearchStrategy[str | bytes] = st.one_of(
    CLIENT_FRAME,
    st.builds(
        lambda box, a: dumps({"type": "bbox", "bbox": box}, a),
        st.one_of(
            st.lists(st.one_of(st.floats(-200, 200), HOSTILE), min_size=3, max_size=5),
            st.tuples(
                st.floats(-180, 0), st.floats(-90, 0), st.floats(0, 180), st.floats(0, 90)
            ).map(list),
            HOSTILE,
        ),
        st.booleans(),
    ),
)
