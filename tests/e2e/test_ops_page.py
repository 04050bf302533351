"""The ops dashboard in a real browser: the live fleet on the map, counts, a driver's trip."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import browser, isolated_gateway, open_page, screenshot_path
from tests.e2e.driving import TestDriver
from tests.integration.client import DRIVER_START, Api, walk
from tests.integration.conftest import Gateway, token

RENDERED_IDS_JS = """() => [...new Set(window.__ops.map
  .queryRenderedFeatures({layers: ['drivers']}).map(f => f.properties.id))].sort()"""


@pytest.fixture(scope="module")
def lone_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway on its own Redis: the fleet holds exactly this module's drivers."""
    with isolated_gateway(Path(tmp_path_factory.mktemp("ops"))) as gw:
        yield gw


def test_ops_page_shows_every_driver_that_sends_positions(lone_gateway: Gateway) -> None:
    """N drivers stream positions → N drivers on the map and in the counts; one opens its trip."""
    gw = lone_gateway
    api = Api(gw.base, token("ops"))
    trip = api.create_trip(driver_id="d-ops-0")
    route = [list(p) for p in walk(trip["route"]["coordinates"], 60.0)]
    starts = [DRIVER_START, *[tuple(p) for p in route[1:4]]]
    ids = [f"d-ops-{i}" for i in range(len(starts))]

    async def scenario() -> None:
        url = f"{gw.base}/ops?token={token('ops')}"
        async with browser() as b, open_page(b, url, width=1280, height=800) as (page, problems):
            await page.wait_for_function("() => window.__ops !== undefined")
            assert "token=" not in page.url  # kept out of the address bar and history
            drivers = [TestDriver(gw.ws_base, gw.base, i, clock_offset_ms=-5_000) for i in ids]
            for driver in drivers:
                await driver.__aenter__()
            try:
                for _ in range(3):
                    for driver, (lon, lat) in zip(drivers, starts, strict=True):
                        await driver.fix(lon, lat)
                    await asyncio.sleep(0.4)
                total = page.locator('#counts li[data-status="total"] .count')
                await expect(total).to_have_text(str(len(ids)), timeout=10_000)
                await page.wait_for_function(
                    f"() => ({RENDERED_IDS_JS})().length === {len(ids)}", timeout=10_000
                )
                assert await page.evaluate(RENDERED_IDS_JS) == sorted(ids)
                on_trip = page.locator('#counts li[data-status="assigned"] .count')
                await expect(on_trip).to_have_text("1")
                # Click the driver on the trip: its route and ETA open in the panel.
                await page.wait_for_timeout(1200)  # glides settle
                x, y = await page.evaluate(
                    """([lon, lat]) => { const p = window.__ops.map.project([lon, lat]);
                       const r = window.__ops.map.getContainer().getBoundingClientRect();
                       return [r.x + p.x, r.y + p.y]; }""",
                    list(starts[0]),
                )
                await page.mouse.click(x, y)
                await expect(page.locator("#panel-title")).to_have_text(f"Trip {trip['id']}")
                await expect(page.locator("#panel-facts")).to_contain_text("Status")
                await expect(page.locator("#panel-facts")).to_contain_text(re.compile("assigned"))
                await page.screenshot(path=screenshot_path("ops-dashboard.png"))
                await expect(page.locator("#stats")).to_contain_text("Drivers connected")
            finally:
                for driver in drivers:
                    await driver.__aexit__(None, None, None)
            assert not problems.errors, problems.errors

    asyncio.run(scenario())


def test_ops_page_asks_for_a_token(lone_gateway: Gateway) -> None:
    """No token → a form; a rider's token → told it is not an ops token."""

    async def scenario() -> None:
        async with browser() as b, open_page(b, f"{lone_gateway.base}/ops") as (page, problems):
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#login-token", token("rider", "r", trip="t-1"))
            await page.click("#login button")
            await expect(page.locator("#login-error")).to_have_text(
                "That token is not an ops token."
            )
            problems.allow("Failed to load resource")  # the 403 of the figures
            assert not problems.errors, problems.errors

    asyncio.run(scenario())
