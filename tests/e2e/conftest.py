"""Browser tests: Debian's chromium driven by Playwright, against real gateways and Redis."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.integration.conftest import (  # noqa: F401  (fixtures used by the tests)
    Gateway,
    api,
    gateway,
    redis_url,
    start_gateway,
)
from tracking.store.embedded import EmbeddedRedis

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
UI_BUILT = Path(__file__).resolve().parents[2] / "map_ui" / "dist" / "rider.html"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Our pages forbid eval (CSP): page.evaluate and wait_for_function take
    # "() => …" functions, never bare expressions.
    # A missing browser or build is a red test, never a skip: `make test`
    # installs chromium and builds the pages before it runs pytest.
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(180))


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it"
    assert UI_BUILT.exists(), "map pages not built: `make test` builds them (make ui)"
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


class PageProblems:
    """Uncaught exceptions and console errors of a page: any of them fails the test."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def allow(self, fragment: str) -> None:
        self.errors = [e for e in self.errors if fragment not in e]


@contextlib.asynccontextmanager
async def open_page(
    b: Browser, url: str | None = None, width: int = 390, height: int = 844, **context: Any
) -> AsyncIterator[tuple[Page, PageProblems]]:
    ctx = await b.new_context(viewport={"width": width, "height": height}, **context)
    page = await ctx.new_page()
    problems = PageProblems(page)
    if url:
        await page.goto(url)
    try:
        yield page, problems
    finally:
        await ctx.close()


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


@contextlib.contextmanager
def isolated_gateway(tmp: Path, **env: str) -> Iterator[Gateway]:
    """A gateway on a Redis of its own.

    For tests whose timing settings must rule alone: every gateway sweeps the
    shared deadline set with its own settings (a known gap, docs/architecture.md).
    """
    with EmbeddedRedis() as server:
        gw = Gateway(server.url, env, tmp)
        try:
            yield gw
        finally:
            gw.stop()
            assert not gw.problems(), gw.problems()
