"""A test driver that drives real routes over the driver WebSocket, at a watchable pace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.client import DRIVER_START, driver_ws, now_ms, pos, recv_until, walk
from tests.integration.conftest import token


class TestDriver:
    __test__ = False  # not a test class

    def __init__(
        self, ws_base: str, http_base: str, driver_id: str, clock_offset_ms: int = -600_000
    ) -> None:
        self.ws_base = ws_base
        self.http_base = http_base
        self.driver_id = driver_id
        self.token = token("driver", driver_id)
        self.seq = 0
        # Starting in the past leaves room for one fix per second of driver
        # time however fast the test sends them (ts may not be in the future).
        self.ts = now_ms() + clock_offset_ms
        self.ws: Any = None
        self.frames: list[dict[str, Any]] = []
        self.sent: list[tuple[float, float]] = []

    async def __aenter__(self) -> TestDriver:
        self.ws = await driver_ws(self.ws_base, self.token).__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.__aexit__(*exc)

    async def fix(self, lon: float, lat: float) -> None:
        """One position, acknowledged."""
        self.seq += 1
        self.ts += 1000
        await self.ws.send(pos(self.seq, lon, lat, self.ts))
        self.sent.append((lon, lat))
        ack, seen = await recv_until(self.ws, lambda f: f["type"] == "ack")
        assert ack["seq"] == self.seq
        self.frames += seen

    async def start(self, at: tuple[float, float] = DRIVER_START) -> None:
        await self.fix(*at)

    def trip(self, trip_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.http_base}/v1/trips/{trip_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        trip: dict[str, Any] = response.json()
        return trip

    async def drive(
        self,
        coords: list[list[float]],
        until: Callable[[dict[str, Any]], bool] = lambda f: False,
        pause_s: float = 0.12,
        limit: int | None = None,
        step_m: float = 12.0,
    ) -> bool:
        """Fixes every `step_m` along `coords`; True once a frame matches `until`."""
        for i, (lon, lat) in enumerate(walk(coords, step_m)):
            if limit is not None and i >= limit:
                return False
            before = len(self.frames)
            await self.fix(lon, lat)
            if any(until(f) for f in self.frames[before:]):
                return True
            await asyncio.sleep(pause_s)
        return False

    async def dwell(self, lon: float, lat: float, fixes: int, pause_s: float = 0.5) -> None:
        for _ in range(fixes):
            await self.fix(lon, lat)
            await asyncio.sleep(pause_s)


def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "trip" and f["trip"]["status"] == status
