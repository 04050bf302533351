"""Plumbing shared by the load-test users: tokens, blocking WebSockets, the trip board.

Everything here runs under gevent (locust monkey-patches the process), so
"blocking" calls only block the calling greenlet.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from tracking.api.auth import issue_token

TOKEN_TTL_S = 12 * 3600
BOARD_IDLE_S = 0.25
"""How long a rider waits before looking at the trip board again when no trip is free."""
DEV_SECRET_FILE = Path(".tracking") / "dev-jwt-secret"
"""Where `tracking serve` keeps its secret when TRACKING_JWT_SECRET is unset (in its cwd)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- tokens -------------------------------------------------------------------


def jwt_secret() -> str | None:
    """TRACKING_JWT_SECRET, else the dev secret of a `tracking serve` run from this directory."""
    secret = os.environ.get("TRACKING_JWT_SECRET")
    if secret:
        return secret
    if DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip() or None
    return None


class Tokens:
    """Mints the JWTs the users need, with the gateway's secret.

    `LOAD_OPS_TOKEN` (an ops JWT) is enough for the ops users alone; drivers
    need the secret to mint driver tokens (riders get theirs from the trip).
    """

    def __init__(self) -> None:
        self.secret = jwt_secret()
        self._ops = os.environ.get("LOAD_OPS_TOKEN") or (
            issue_token(self.secret, "ops", "load-ops", ttl_s=TOKEN_TTL_S) if self.secret else None
        )

    def ops(self) -> str:
        if self._ops is None:
            raise MissingSecret("set TRACKING_JWT_SECRET (or LOAD_OPS_TOKEN for ops users only)")
        return self._ops

    def driver(self, driver_id: str) -> str:
        if self.secret is None:
            raise MissingSecret("set TRACKING_JWT_SECRET: drivers mint their own tokens")
        return issue_token(self.secret, "driver", driver_id, ttl_s=TOKEN_TTL_S)


class MissingSecret(RuntimeError):
    pass


# --- WebSockets (websocket-client, one greenlet reading each socket) ----------


class Closed(Exception):
    """The socket ended: the server's close code and reason, or None if it just dropped."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed {code if code is not None else '(no close frame)'} {reason}")
        self.code = code
        self.reason = reason


def ws_url(host: str, path: str) -> str:
    base = host.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + path


def connect(url: str, timeout_s: float = 10.0) -> websocket.WebSocket:
    """Open a WebSocket (the handshake is bounded by `timeout_s`); raises on failure."""
    return websocket.create_connection(url, timeout=timeout_s, enable_multithread=True)


def recv_text(ws: websocket.WebSocket) -> str:
    """The next data frame as text. Pings are answered; raises :class:`Closed` at the end."""
    try:
        opcode, frame = ws.recv_data_frame()
    except websocket.WebSocketTimeoutException:
        raise
    except (websocket.WebSocketException, OSError) as exc:
        raise Closed(None, str(exc) or type(exc).__name__) from None
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        data = frame.data or b""
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        raise Closed(code, data[2:].decode("utf-8", "replace"))
    data = frame.data
    return data.decode() if isinstance(data, bytes) else str(data)


def hang_up(ws: websocket.WebSocket | None) -> None:
    """Close from our side without waiting for the reply (the reader may be gone)."""
    if ws is None:
        return
    with contextlib.suppress(Exception):  # best effort: the socket may already be dead
        ws.send_close(websocket.STATUS_NORMAL)
    with contextlib.suppress(Exception):
        ws.shutdown()


# --- the trip board: drivers post their trips, riders pick one ----------------


@dataclass
class Slot:
    trip_id: str
    rider_token: str
    riders: int = 0
    open: bool = True


class TripBoard:
    """The live trips of this process's drivers.

    Drivers and riders are paired in-process: with several locust workers,
    each worker's riders watch that worker's drivers (which also keeps the
    end-to-end latency on one machine's clock).
    """

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}

    def post(self, trip_id: str, rider_token: str) -> None:
        self._slots[trip_id] = Slot(trip_id, rider_token)

    def close(self, trip_id: str) -> None:
        slot = self._slots.pop(trip_id, None)
        if slot is not None:
            slot.open = False

    def take(self, riders_per_trip: int) -> Slot | None:
        """A trip with fewer than `riders_per_trip` riders (the least watched), or None."""
        free = [s for s in self._slots.values() if s.riders < riders_per_trip]
        if not free:
            return None
        fewest = min(s.riders for s in free)
        slot = random.choice([s for s in free if s.riders == fewest])
        slot.riders += 1
        return slot

    @staticmethod
    def leave(slot: Slot) -> None:
        slot.riders -= 1

    def any_trip(self) -> str | None:
        return random.choice(list(self._slots)) if self._slots else None

    def __len__(self) -> int:
        return len(self._slots)


def fire(
    environment: Any,
    name: str,
    response_time_ms: float,
    *,
    length: int = 0,
    exception: BaseException | str | None = None,
) -> None:
    """Report one WebSocket measurement to locust (request_type "WS")."""
    if isinstance(exception, str):
        exception = WsFailure(exception)
    environment.events.request.fire(
        request_type="WS",
        name=name,
        response_time=max(0.0, response_time_ms),
        response_length=length,
        exception=exception,
        context={},
    )


class WsFailure(Exception):
    pass
