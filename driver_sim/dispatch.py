"""The dispatch backend's side: create and assign trips over HTTP with an ops token."""

from __future__ import annotations

from typing import Any

import httpx


class DispatchError(RuntimeError):
    """The gateway refused a dispatch request."""


class Dispatch:
    def __init__(self, base_url: str, ops_token: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {ops_token}"}, timeout=15
        )

    async def create_trip(
        self, pickup: tuple[float, float], dropoff: tuple[float, float], driver_id: str
    ) -> dict[str, Any]:
        """A trip assigned to `driver_id` at once; the answer has `share_url`."""
        body = {
            "pickup": {"lon": pickup[0], "lat": pickup[1]},
            "dropoff": {"lon": dropoff[0], "lat": dropoff[1]},
            "kind": "ride",
            "driver_id": driver_id,
        }
        response = await self.client.post("/v1/trips", json=body)
        if response.status_code != 201:
            raise DispatchError(f"create trip: {response.status_code} {response.text[:200]}")
        trip: dict[str, Any] = response.json()
        return trip

    async def get_trip(self, trip_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/trips/{trip_id}")
        if response.status_code != 200:
            raise DispatchError(f"get trip: {response.status_code} {response.text[:200]}")
        trip: dict[str, Any] = response.json()
        return trip

    async def act(self, trip_id: str, action: str) -> None:
        await self.client.post(f"/v1/trips/{trip_id}/actions", json={"action": action})

    async def close(self) -> None:
        await self.client.aclose()
