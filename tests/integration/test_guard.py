"""Connections per IP and the browser Origin allow-list, on every socket and the SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
from websockets.asyncio.client import connect

from tests.integration.client import Api, first_frame_or_close, recv_json, trip_ws
from tests.integration.conftest import Gateway, token


def test_connections_per_ip_are_capped_and_freed(start_gateway: Callable[..., Gateway]) -> None:
    """At the cap a new socket is closed 4429 and SSE gets 429; closing one frees a slot."""
    gw = start_gateway(TRACKING_MAX_CONNECTIONS_PER_IP="3")
    api = Api(gw.base, token("ops"))
    trip = api.create_trip()
    url = f"{gw.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}"

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            riders = [
                await stack.enter_async_context(
                    trip_ws(gw.ws_base, trip["id"], trip["rider_token"])
                )
                for _ in range(2)
            ]
            driver = await stack.enter_async_context(
                connect(f"{gw.ws_base}/v1/drivers/ws?token={token('driver', 'd-cap')}")
            )
            for rider in riders:
                assert (await recv_json(rider))["type"] == "snapshot"
            frame, code, reason = await first_frame_or_close(url)
            assert frame is None and code == 4429 and "connections" in reason
            sse = httpx.get(
                f"{gw.base}/v1/trips/{trip['id']}/events",
                headers={"Authorization": f"Bearer {trip['rider_token']}"},
            )
            assert sse.status_code == 429 and sse.json()["error"]["code"] == "rate_limited"
            # The connections that were admitted are unharmed.
            await driver.send('{"type":"pos","seq":1,"ts":1,"lon":24.94,"lat":60.17}')
            assert (await recv_json(driver))["type"] in ("ack", "error", "trip")
            await riders[0].close()
            await asyncio.sleep(0.2)
            frame, code, _ = await first_frame_or_close(url)
            assert frame is not None and frame["type"] == "snapshot" and code is None

    asyncio.run(scenario())
    assert 'tracking_errors_total{code="rate_limited"}' in httpx.get(f"{gw.base}/metrics").text


def test_browser_origins_outside_the_allow_list_are_refused(
    start_gateway: Callable[..., Gateway],
) -> None:
    """A foreign Origin gets 4403; allowed, same-origin and Origin-less clients get in."""
    gw = start_gateway(TRACKING_ALLOWED_ORIGINS="https://app.example.com, https://ops.example.com/")
    trip = Api(gw.base, token("ops")).create_trip()
    url = f"{gw.ws_base}/v1/trips/{trip['id']}/ws?token={trip['rider_token']}"

    async def first(origin: str | None) -> tuple[str | None, int | None, str]:
        headers = {"Origin": origin} if origin else None
        frame, code, reason = await first_frame_or_close(url, headers)
        return (frame or {}).get("type"), code, reason

    async def scenario() -> None:
        assert await first("https://evil.example.net") == (
            None,
            4403,
            "origin https://evil.example.net is not allowed",
        )
        for ok in ("https://app.example.com", "https://OPS.example.com", gw.base, None):
            kind, code, _ = await first(ok)
            assert (kind, code) == ("snapshot", None), ok
        driver_url = f"{gw.ws_base}/v1/drivers/ws?token={token('driver', 'd-origin')}"
        frame, code, _ = await first_frame_or_close(
            driver_url, {"Origin": "https://evil.example.net"}
        )
        assert frame is None and code == 4403

    asyncio.run(scenario())
