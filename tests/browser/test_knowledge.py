"""The Knowledge panel, driven in Debian's Chromium against the live stack: vector stores over
OpenAI's Files and Vector Stores APIs.

A file uploaded into a vector store shows its indexing progress from its status, grounds an
answer that cites it, and is deleted from the store and the gateway; markup in a document's text
or name, or in a prompt, stays text.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import FilePayload, Page, expect

from tests.browser.browser_ui import (
    ANSWER_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    ask,
    create_vector_store,
    last_answer,
    open_knowledge,
    sign_in,
    wait_answer_finished,
)

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Awaitable[None]]


FACTS = (
    "Zorbania is a small fictional island nation in the Glimmer Sea.\n"
    "The capital of Zorbania is Quillton.\n"
    "Zorbania's national animal is the purple otter.\n"
)


# Records every data-state each file row of the Knowledge panel goes through, by file name.
WATCH_FILE_STATES_JS = """
() => {
  window.__fileStates = {};
  const list = document.getElementById('upload-list');
  const record = () => {
    for (const li of list.querySelectorAll('.upload-item')) {
      const name = li.querySelector('.upload-name').textContent;
      const seen = (window.__fileStates[name] ||= []);
      if (li.dataset.state && seen[seen.length - 1] !== li.dataset.state) seen.push(li.dataset.state);
    }
  };
  new MutationObserver(record).observe(list, {subtree: true, childList: true, attributes: true});
}
"""


async def test_a_file_uploaded_into_a_vector_store_is_indexed_cited_and_deleted(
    page: Page,
    gateway_url: str,
    admin_key: str,
    store_name: str,
    api: httpx.AsyncClient,
    screenshot: Screenshot,
) -> None:
    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=48)
    await create_vector_store(page, store_name)
    await page.evaluate(WATCH_FILE_STATES_JS)

    # Several files at once, each with its own progress and result: one is indexed, one is
    # stored but cannot be indexed (its vector store file fails with last_error), one is refused
    # by /v1/files itself.
    await page.locator("#file-input").set_input_files(
        [
            FilePayload(name="zorbania.txt", mimeType="text/plain", buffer=FACTS.encode()),
            FilePayload(name="tool.exe", mimeType="application/octet-stream", buffer=b"MZ\x00\x01"),
            FilePayload(name="empty.txt", mimeType="text/plain", buffer=b""),
        ]
    )
    good = page.locator(".upload-item", has_text="zorbania.txt")
    bad = page.locator(".upload-item", has_text="tool.exe")
    empty = page.locator(".upload-item", has_text="empty.txt")
    await expect(good).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT_MS)
    await expect(good.locator(".upload-status")).to_contain_text("Ready")
    await expect(bad).to_have_attribute("data-state", "error", timeout=ANSWER_TIMEOUT_MS)
    await expect(bad.locator(".upload-status")).to_contain_text("unsupported file type")
    await expect(empty).to_have_attribute("data-state", "error", timeout=UI_TIMEOUT_MS)
    await expect(empty.locator(".upload-status")).to_contain_text("empty")
    await empty.get_by_role("button", name="Dismiss empty.txt").click()
    await expect(empty).to_have_count(0)
    states = await page.evaluate("window.__fileStates")
    assert states["zorbania.txt"] == ["uploading", "in_progress", "done"], states
    assert states["tool.exe"][-2:] == ["in_progress", "error"], states
    await expect(page.locator("#collection-list label", has_text=store_name)).to_contain_text("2 files")
    await screenshot(page, "05-uploads")

    # What the gateway holds behind the page: a vector store with the file, completed.
    stores = (await api.get("/v1/vector_stores", params={"limit": 100})).json()["data"]
    store = next(s for s in stores if s["name"] == store_name)
    names = {f["id"]: f["filename"] for f in (await api.get("/v1/files")).json()["data"]}
    vs_files = (await api.get(f"/v1/vector_stores/{store['id']}/files")).json()["data"]
    status = {names[f["id"]]: f["status"] for f in vs_files}
    assert status == {"zorbania.txt": "completed", "tool.exe": "failed"}
    file_id = next(i for i, n in names.items() if n == "zorbania.txt" and i in {f["id"] for f in vs_files})

    await ask(page, "What is the capital of Zorbania?")
    await wait_answer_finished(page)
    answer = last_answer(page)
    await expect(answer).to_have_attribute("data-status", "ok")
    await expect(answer.locator(".msg-body")).to_contain_text("Quillton")

    source = answer.locator(".sources-list").get_by_role("button").first
    await expect(source).to_contain_text("[1] zorbania.txt")
    await source.click()
    dialog = page.get_by_role("dialog", name=re.compile(r"Source \[1\]"))
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#citation-snippet")).to_contain_text("Quillton")
    await expect(dialog.locator("#citation-meta")).to_contain_text(f"Vector store: {store_name}")
    await screenshot(page, "06-citation")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()

    # Delete the file from the keyboard: the store loses it and the file itself is gone.
    await good.get_by_role("button", name="Delete zorbania.txt").focus()
    await page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete file?")
    await expect(confirm).to_contain_text("zorbania.txt")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(good).to_have_count(0, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#collection-list label", has_text=store_name)).to_contain_text("1 file")
    assert (await api.get(f"/v1/files/{file_id}")).status_code == 404
    assert (await api.get(f"/v1/vector_stores/{store['id']}/files/{file_id}")).status_code == 404

    # A reload shows the store's files as the gateway has them.
    await page.reload()
    await open_knowledge(page)
    await page.get_by_label("Files of").select_option(store["id"])
    await expect(page.locator(".upload-item")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(bad).to_have_attribute("data-state", "error")


EVIL_DOC = (
    "Security note for the Blorvian archive.\n"
    'Payload one: <img src=x onerror="window.__xss=1;alert(1)">\n'
    "Payload two: <script>window.__xss=2;alert(2)</script>\n"
    "The archive keeper of Blorvia is named Tessaly Wren.\n"
)
EVIL_PROMPT = (
    'Quote the payloads of the Blorvian archive. <img src=x onerror="window.__xss=3;alert(3)"> '
    "<script>window.__xss=4;alert(4)</script>"
)


async def test_markup_from_a_document_and_a_prompt_renders_as_text(
    page: Page, page_watch, gateway_url: str, admin_key: str, store_name: str, screenshot: Screenshot
) -> None:
    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=80)
    await create_vector_store(page, store_name)

    # Drag and drop the document onto the drop zone.
    data_transfer = await page.evaluate_handle(
        """(text) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], 'blorvia <b>notes</b>.txt', {type: 'text/plain'}));
            return dt;
        }""",
        EVIL_DOC,
    )
    await page.locator("#dropzone").dispatch_event("drop", {"dataTransfer": data_transfer})
    item = page.locator(".upload-item").first
    await expect(item).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT_MS)
    await expect(item.locator(".upload-name")).to_have_text("blorvia <b>notes</b>.txt")

    await ask(page, EVIL_PROMPT)
    await wait_answer_finished(page)
    await expect(page.locator("article.msg-user .msg-body").last).to_have_text(EVIL_PROMPT)

    answer = last_answer(page)
    await answer.locator(".sources-list").get_by_role("button").first.click()
    snippet = page.locator("#citation-snippet")
    await expect(snippet).to_contain_text("<script>window.__xss=2")
    await expect(snippet).to_contain_text('<img src=x onerror="window.__xss=1')
    await screenshot(page, "07-markup-as-text")
    await page.get_by_role("dialog").get_by_role("button", name="Close").click()

    # Nothing ran and nothing was turned into an element.
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert page_watch.dialogs == []
    for selector in ("img", "script", "iframe", "object", "embed", "svg", "b"):
        found = page.locator(f"#messages {selector}, #upload-list {selector}, dialog {selector}")
        assert await found.count() == 0, f"a <{selector}> element was created from text"
    handlers = await page.evaluate(
        """() => [...document.querySelectorAll('#messages *, #upload-list *, dialog *')]
               .flatMap(el => [...el.attributes].map(a => a.name))
               .filter(name => name.startsWith('on'))"""
    )
    assert handlers == []
