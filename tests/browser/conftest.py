"""Browser fixtures: Debian's Chromium driven by Playwright (async API), plus helpers.

The live stack comes from `tests/conftest.py` (the `gateway` fixture: real gateway, model and
retrieval processes); `gateway_url` (serving the frontend at `/` and the API) and `admin_key` are
taken from it here. The async Playwright API is used so that the
session event loop keeps running while a test waits on the browser, whatever runs on it.

Screenshots of the main states are saved under `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import Gateway

CHROMIUM = os.environ.get("RAGWAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def gateway_url(gateway: Gateway) -> str:
    return gateway.url


@pytest.fixture(scope="session")
def admin_key(gateway: Gateway) -> str:
    return gateway.admin_key


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; a missing browser fails the tests rather than skipping them."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium`")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


class PageWatch:
    """What a page did that a user would notice but a locator does not show."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test: empty localStorage/sessionStorage."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def watched_page(context: BrowserContext) -> AsyncIterator[tuple[Page, PageWatch]]:
    """A page whose uncaught JavaScript errors and alert/confirm dialogs are recorded.

    The test fails at teardown when the page threw an uncaught error: a frozen page usually
    starts as one.
    """
    page = await context.new_page()
    watch = PageWatch()
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))

    async def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page, watch
    assert watch.errors == [], f"uncaught errors in the page: {watch.errors}"


@pytest.fixture
def page(watched_page: tuple[Page, PageWatch]) -> Page:
    return watched_page[0]


@pytest.fixture
def page_watch(watched_page: tuple[Page, PageWatch]) -> PageWatch:
    return watched_page[1]


@pytest.fixture
def screenshot() -> Callable[[Page, str], Awaitable[None]]:
    """Saves a full-page screenshot as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Page, name: str) -> None:
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")

    return take


@pytest_asyncio.fixture(loop_scope="session")
async def api(gateway_url: str, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's HTTP API, to check what the server recorded behind the page."""
    async with httpx.AsyncClient(
        base_url=gateway_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def store_name(api: httpx.AsyncClient) -> AsyncIterator[str]:
    """A unique vector store name; after the test, stores of that name go with their files."""
    name = f"ui_test_{uuid.uuid4().hex[:8]}"
    yield name
    stores = (await api.get("/v1/vector_stores", params={"limit": 100})).json()["data"]
    for store in (s for s in stores if s["name"] == name):
        files = (await api.get(f"/v1/vector_stores/{store['id']}/files", params={"limit": 100})).json()
        for f in files["data"]:
            await api.delete(f"/v1/files/{f['id']}")
        await api.delete(f"/v1/vector_stores/{store['id']}")
