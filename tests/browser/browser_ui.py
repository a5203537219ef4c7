"""What a user does on the chat page, as reusable steps for the browser tests."""

from __future__ import annotations

import re

from playwright.async_api import Locator, Page, expect

# Model answers on 2 CPU cores: generous limits for waiting on them (not assertions on speed).
ANSWER_TIMEOUT_MS = 240_000
UI_TIMEOUT_MS = 15_000


async def sign_in(
    page: Page,
    gateway_url: str,
    key: str,
    *,
    temperature: float | None = 0.0,
    max_tokens: int | None = None,
    remember: bool = False,
) -> None:
    """Signs in through the form, then sets generation settings through the Settings dialog."""
    await page.goto(f"{gateway_url}/")
    await page.get_by_label("API key").fill(key)
    if remember:
        await page.get_by_label("Remember me on this device").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_label("Message", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#model-select option").first).to_have_attribute(
        "value", re.compile(r".+"), timeout=UI_TIMEOUT_MS
    )
    if temperature is not None or max_tokens is not None:
        await page.get_by_role("button", name="Settings").click()
        dialog = page.get_by_role("dialog", name="Settings")
        if temperature is not None:
            await dialog.get_by_label("Temperature").fill(str(temperature))
        if max_tokens is not None:
            await dialog.get_by_label("Max answer tokens").fill(str(max_tokens))
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden()


async def ask(page: Page, text: str) -> None:
    """Types a message and sends it with Enter, as a user does."""
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


def last_answer(page: Page) -> Locator:
    return page.locator("article.msg-assistant").last


async def wait_answer_finished(page: Page) -> None:
    """Waits until the newest answer is no longer streaming (finished, stopped or failed)."""
    await expect(last_answer(page)).to_have_attribute(
        "data-status", re.compile(r"^(ok|failed|aborted)$"), timeout=ANSWER_TIMEOUT_MS
    )


def conversation_id_from_url(url: str) -> str:
    m = re.search(r"#/c/([^/?#]+)$", url)
    assert m, f"no conversation id in the page address {url!r}"
    return m.group(1)


async def open_knowledge(page: Page) -> None:
    # Signing in (also after a reload) restores the panel as it was left; a click racing that
    # restore would close it again, so wait until the page says it has loaded.
    await expect(page.locator("#app-view")).to_have_attribute("data-loaded", "true", timeout=UI_TIMEOUT_MS)
    panel = page.locator("#rag-panel")
    if not await panel.evaluate("el => el.open"):
        await panel.locator("summary").click()


async def create_vector_store(page: Page, name: str) -> None:
    """Opens the Knowledge panel and creates a vector store, which is then selected for answers
    and shown under "Files of", ready for uploads."""
    await open_knowledge(page)
    await page.get_by_label("New vector store").fill(name)
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#collection-list").get_by_label(name)).to_be_checked()
    await expect(page.get_by_label("Files of").locator("option:checked")).to_have_text(name)
    await expect(page.locator("#dropzone")).to_be_visible()
