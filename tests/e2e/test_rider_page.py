"""The rider's share link in a real browser: map, car, ETA card, timeline, reconnects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.e2e.conftest import Gateway, browser, isolated_gateway, open_page, screenshot_path
from tests.e2e.driving import TestDriver, status_is
from tests.integration.client import Api, walk
from tests.integration.conftest import token

MARKER_OFFSET_JS = """([lon, lat]) => {
  const el = document.querySelector('.car-marker');
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const map = window.__rider.map;
  const box = map.getContainer().getBoundingClientRect();
  const p = map.project([lon, lat]);
  return Math.hypot(r.x + r.width / 2 - (box.x + p.x), r.y + r.height / 2 - (box.y + p.y));
}"""
ALL_STATUSES = ["assigned", "arrived_pickup", "in_progress", "arrived_dropoff", "completed"]


async def wait_live(page: Page, transport: str = "websocket") -> None:
    await page.wait_for_function(
        "t => window.__rider && window.__rider.channel && window.__rider.channel.state === 'live'"
        " && window.__rider.channel.transport === t",
        arg=transport,
        timeout=20_000,
    )


async def wait_status(page: Page, status: str, timeout_ms: int = 20_000) -> None:
    await page.wait_for_function(
        "s => window.__rider.trip && window.__rider.trip.status === s",
        arg=status,
        timeout=timeout_ms,
    )


async def step_state(page: Page, step: str) -> str | None:
    return await page.locator(f'#timeline li[data-step="{step}"]').get_attribute("data-state")


def test_rider_page_follows_a_whole_trip(gateway: Gateway, api: Api) -> None:
    """The car follows the driver's fixes; ETA text and timeline go through every status."""
    trip = api.create_trip(driver_id="d-e2e-ride")
    plan = trip["route"]["coordinates"]

    async def scenario() -> None:
        async with browser() as b, open_page(b, trip["share_url"]) as (page, problems):
            await wait_live(page)
            await expect(page.locator("#headline")).to_have_text(re.compile("on the way"))
            assert await step_state(page, "assigned") == "current"
            async with TestDriver(gateway.ws_base, gateway.base, "d-e2e-ride") as driver:
                await driver.start()
                leg = driver.trip(trip["id"])["route"]["coordinates"]
                # The marker is drawn where the driver is, fix after fix.
                offsets = []
                points = [list(p) for p in walk(leg)]
                for chunk in (points[:4], points[4:8], points[8:12]):
                    await driver.drive(chunk)
                    await page.wait_for_timeout(700)  # the glide lasts one fix interval
                    offsets.append(await page.evaluate(MARKER_OFFSET_JS, list(driver.sent[-1])))
                assert all(o is not None and o < 20 for o in offsets), offsets
                await expect(page.locator("#headline")).to_have_text(
                    re.compile(r"^Arriving at pickup in .+ · \d+ m$")
                )
                assert await driver.drive(points[12:], until=status_is("arrived_pickup"))
                await wait_status(page, "arrived_pickup")
                await expect(page.locator("#headline")).to_have_text(
                    "Driver has arrived at the pickup"
                )
                assert await step_state(page, "arrived_pickup") == "current"
                assert await step_state(page, "assigned") == "done"

                ride = [list(p) for p in walk(plan)]
                half = len(ride) // 2
                assert not await driver.drive(ride[:half])
                await wait_status(page, "in_progress")
                await expect(page.locator("#headline")).to_have_text(
                    re.compile(r"^Arriving at dropoff in .+ · [\d.]+ k?m$")
                )
                await page.wait_for_timeout(700)
                assert (await page.evaluate(MARKER_OFFSET_JS, list(driver.sent[-1]))) < 20
                await page.screenshot(path=screenshot_path("rider-mid-trip.png"))
                assert await driver.drive(ride[half:], until=status_is("arrived_dropoff"))
                await wait_status(page, "arrived_dropoff")
                await expect(page.locator("#headline")).to_have_text("Arrived at the dropoff")
                await driver.dwell(*plan[-1], fixes=6)  # the gateway completes after 2 s
            await expect(page.locator("#final")).to_be_visible(timeout=15_000)
            await expect(page.locator("#final-title")).to_have_text("You've arrived")
            await expect(page.locator("#final-stats")).to_have_text(re.compile("driven"))
            # The path actually driven is drawn on the map under the summary.
            await page.wait_for_function(
                "() => window.__rider.map.queryRenderedFeatures({layers: ['trail']}).length > 0"
            )
            assert await page.locator(".car-marker").count() == 0  # no driver after the end
            assert await page.evaluate("() => window.__rider.statusLog") == ALL_STATUSES
            await page.screenshot(path=screenshot_path("rider-completed.png"))
            assert not problems.errors, problems.errors

    asyncio.run(scenario())


def test_rider_reconnects_after_1012_and_misses_no_status(
    start_gateway: Callable[..., Gateway],
) -> None:
    """The page's gateway restarts (close 1012); the page resumes with `since`, no status lost."""
    page_gw = start_gateway()
    driver_gw = start_gateway()
    api = Api(driver_gw.base, token("ops"))
    trip = api.create_trip(driver_id="d-e2e-1012")
    url = trip["share_url"].replace(driver_gw.base, page_gw.base)

    async def scenario() -> None:
        nonlocal page_gw
        async with browser() as b, open_page(b, url) as (page, problems):
            await wait_live(page)
            async with TestDriver(driver_gw.ws_base, driver_gw.base, "d-e2e-1012") as driver:
                await driver.start()
                leg = driver.trip(trip["id"])["route"]["coordinates"]
                await driver.drive(leg, limit=5)
                await asyncio.to_thread(page_gw.stop)  # SIGTERM: sockets close with 1012
                await page.wait_for_function(
                    "() => window.__rider.connLog.some("
                    "e => e.state === 'reconnecting' && e.code === 1012)"
                )
                # While the page is cut off, the driver reaches the pickup.
                assert await driver.drive(leg, until=status_is("arrived_pickup"), pause_s=0.02)
                page_gw = await asyncio.to_thread(start_gateway, port=page_gw.port)
                await wait_live(page)
                await wait_status(page, "arrived_pickup")
                server = api.get(f"/v1/trips/{trip['id']}").json()
                await page.wait_for_function(
                    "seq => window.__rider.trip.seq === seq", arg=server["seq"]
                )
            assert await page.evaluate("() => window.__rider.statusLog") == [
                "assigned",
                "arrived_pickup",
            ]
            assert await page.locator("#conn").get_attribute("data-state") == "live"
            # A service that was down is not a network that blocks WebSockets: no SSE.
            transports = await page.evaluate("() => window.__rider.connLog.map(e => e.transport)")
            assert set(transports) == {"websocket"}
            # The refused attempts (socket and /healthz probe) while it was down.
            problems.allow("WebSocket connection to")
            problems.allow("ERR_CONNECTION_REFUSED")
            assert not problems.errors, problems.errors

    asyncio.run(scenario())


def test_rider_page_falls_back_to_sse_when_websockets_are_blocked(
    gateway: Gateway, api: Api
) -> None:
    """WebSocket upgrades fail but HTTP works: the page goes live over SSE and keeps updating."""
    trip = api.create_trip(driver_id="d-e2e-sse")

    async def scenario() -> None:
        async with browser() as b, open_page(b) as (page, problems):
            await page.route_web_socket(re.compile(r".*/v1/trips/.*"), lambda ws: ws.close())
            await page.goto(trip["share_url"])
            await wait_live(page, transport="sse")
            await expect(page.locator("#conn-label")).to_have_text("Live · fallback")
            async with TestDriver(gateway.ws_base, gateway.base, "d-e2e-sse") as driver:
                await driver.start()
                leg = driver.trip(trip["id"])["route"]["coordinates"]
                assert await driver.drive(leg, until=status_is("arrived_pickup"), pause_s=0.03)
            await wait_status(page, "arrived_pickup")
            await expect(page.locator("#headline")).to_have_text("Driver has arrived at the pickup")
            assert await page.evaluate("() => window.__rider.statusLog") == [
                "assigned",
                "arrived_pickup",
            ]
            assert not problems.errors, problems.errors

    asyncio.run(scenario())


def test_bad_links_get_a_clear_message_not_a_blank_map(gateway: Gateway, api: Api) -> None:
    """Bad links (missing, expired, wrong, unknown) explain themselves; ended trips end-screen."""
    trip = api.create_trip()
    other = api.create_trip()
    base = f"{gateway.base}/track/{trip['id']}"
    cases: list[tuple[str, str]] = [
        (base, "This tracking link is incomplete"),
        (f"{base}?token=not-a-jwt", "This tracking link has expired"),
        (
            f"{base}?token={token('rider', 'r', trip=trip['id'], ttl_s=-10)}",
            "This tracking link has expired",
        ),
        (f"{base}?token={other['rider_token']}", "This link is for a different trip"),
        (
            f"{gateway.base}/track/t-nope?token={token('rider', 'r', trip='t-nope')}",
            "We can't find this trip",
        ),
    ]

    cancelled = api.create_trip(driver_id="d-e2e-cancelled")
    assert api.post(f"/v1/trips/{cancelled['id']}/actions", {"action": "cancel"}).status_code == 200

    async def scenario() -> None:
        async with browser() as b:
            # A link to a trip that is over opens on the final screen.
            async with open_page(b, cancelled["share_url"]) as (page, problems):
                await expect(page.locator("#final-title")).to_have_text("Trip cancelled")
                await expect(page.locator("#conn-label")).to_have_text("Trip ended")
                assert await page.locator(".car-marker").count() == 0
                assert not problems.errors, problems.errors
            for url, title in cases:
                async with open_page(b, url) as (page, problems):
                    await expect(page.locator("#problem")).to_be_visible()
                    await expect(page.locator("#problem-title")).to_have_text(title)
                    assert await page.locator("#sheet").is_hidden()
                    problems.allow("Failed to load resource")  # the 401/403/404 itself
                    assert not problems.errors, (url, problems.errors)

    asyncio.run(scenario())


def test_signal_lost_shows_on_the_card_and_clears(tmp_path: Path) -> None:
    """A driver silent for stale_after_s greys the car and says so; the next fix clears it."""

    async def scenario(gw: Gateway, trip: dict[str, Any]) -> None:
        async with browser() as b, open_page(b, trip["share_url"]) as (page, problems):
            await wait_live(page)
            async with TestDriver(gw.ws_base, gw.base, "d-e2e-signal") as driver:
                await driver.start()
                leg = driver.trip(trip["id"])["route"]["coordinates"]
                await driver.drive(leg, limit=3)
                await expect(page.locator("#signal")).to_be_visible(timeout=10_000)
                await expect(page.locator("#signal")).to_have_text(
                    re.compile(r"^Driver's signal lost · last update \d+ s ago$")
                )
                assert await page.locator(".car-marker.stale").count() == 1
                await driver.drive(leg[3:], limit=1)
                await expect(page.locator("#signal")).to_be_hidden(timeout=10_000)
                assert await page.locator(".car-marker.stale").count() == 0
            assert not problems.errors, problems.errors

    with isolated_gateway(tmp_path, TRACKING_STALE_AFTER_S="1.5") as gw:
        trip = Api(gw.base, token("ops")).create_trip(driver_id="d-e2e-signal")
        asyncio.run(scenario(gw, trip))


def test_readable_at_360_px_and_usable_from_the_keyboard(gateway: Gateway, api: Api) -> None:
    """Nothing overflows a 360 px screen; the skip link and controls are reachable by Tab."""
    trip = api.create_trip(driver_id="d-e2e-narrow")

    async def scenario() -> dict[str, Any]:
        async with (
            browser() as b,
            open_page(b, trip["share_url"], width=360, height=740) as (page, problems),
        ):
            await wait_live(page)
            await page.keyboard.press("Tab")
            focused = await page.evaluate("() => document.activeElement.textContent")
            assert focused == "Skip to trip status"
            layout: dict[str, Any] = await page.evaluate(
                """() => {
                  const sheet = document.getElementById('sheet').getBoundingClientRect();
                  const headline = getComputedStyle(document.getElementById('headline'));
                  const texts = document.querySelectorAll('#timeline li, #sheet p, #sheet h1');
                  const clipped = [...texts]
                    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.id || e.textContent);
                  return {pageWidth: document.documentElement.scrollWidth, sheetRight: sheet.right,
                          sheetTop: sheet.top, headlinePx: parseFloat(headline.fontSize), clipped};
                }"""
            )
            await page.screenshot(path=screenshot_path("rider-360px.png"))
            assert not problems.errors, problems.errors
            return layout

    layout = asyncio.run(scenario())
    assert layout["pageWidth"] <= 360 and layout["sheetRight"] <= 360, layout
    assert layout["headlinePx"] >= 18 and not layout["clipped"], layout
    assert layout["sheetTop"] > 740 * 0.35, layout  # the map keeps most of the screen


def test_camera_leaves_a_rider_who_pans_alone_until_recenter(gateway: Gateway, api: Api) -> None:
    """After a drag the camera stops following (a Recenter button shows); Recenter refits."""
    trip = api.create_trip(driver_id="d-e2e-camera")
    in_view_js = """([lon, lat]) => window.__rider.map.getBounds().contains([lon, lat])"""

    async def scenario() -> None:
        async with browser() as b, open_page(b, trip["share_url"]) as (page, problems):
            await wait_live(page)
            async with TestDriver(gateway.ws_base, gateway.base, "d-e2e-camera") as driver:
                await driver.start()
                leg = driver.trip(trip["id"])["route"]["coordinates"]
                await driver.drive(leg, limit=3)
                assert await page.locator("#recenter").is_hidden()
                box = await page.locator("#map").bounding_box()
                assert box
                x, y = box["x"] + box["width"] / 2, box["y"] + 200
                await page.mouse.move(x, y)
                await page.mouse.down()
                await page.mouse.move(x - 300, y + 250, steps=12)
                await page.mouse.up()
                await expect(page.locator("#recenter")).to_be_visible()
                center = await page.evaluate("() => window.__rider.map.getCenter().toArray()")
                await driver.drive(leg[3:], limit=6)
                await page.wait_for_timeout(1500)  # a follow-up refit would happen by now
                assert await page.evaluate("() => window.__rider.map.getCenter().toArray()") == (
                    center
                )
                assert not await page.evaluate(in_view_js, list(driver.sent[-1]))
                await page.click("#recenter")
                await expect(page.locator("#recenter")).to_be_hidden()
                await page.wait_for_function(in_view_js, arg=list(driver.sent[-1]))
                pickup = [trip["pickup"]["lon"], trip["pickup"]["lat"]]
                assert await page.evaluate(in_view_js, pickup)
            assert not problems.errors, problems.errors

    asyncio.run(scenario())
