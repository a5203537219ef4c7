"""The web chat frontend, driven in Debian's Chromium against the live stack.

Each test is one thing a user does or must be protected from: signing in and reading a streamed
answer, stopping a long answer (and being billed for what was generated), coming back to a
conversation after a reload, Markdown rendered safely, and clear messages for a wrong key, 429
and 503. The Knowledge panel (vector stores and their files) is tested in test_knowledge.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.browser.browser_ui import (
    ANSWER_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    ask,
    conversation_id_from_url,
    last_answer,
    sign_in,
    wait_answer_finished,
)
from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Awaitable[None]]

# Records every text the newest answer showed while it streamed, to prove it grew in steps.
WATCH_ANSWER_JS = """
() => {
  window.__answerTexts = [];
  const box = document.getElementById('messages');
  new MutationObserver(() => {
    const answers = box.querySelectorAll('article.msg-assistant .msg-body');
    const last = answers[answers.length - 1];
    if (!last) return;
    const text = last.textContent;
    const seen = window.__answerTexts;
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  }).observe(box, {subtree: true, childList: true, characterData: true});
}
"""


async def test_sign_in_and_read_a_streamed_answer(
    page: Page, gateway_url: str, admin_key: str, screenshot: Screenshot
) -> None:
    await page.goto(f"{gateway_url}/")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await screenshot(page, "01-sign-in")

    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=48)
    await expect(page.locator("#credits")).to_have_text(re.compile(r"\d"))
    await page.evaluate(WATCH_ANSWER_JS)

    await ask(page, "What is the capital of France?")
    await expect(page.locator("article.msg-user").last).to_have_text(
        re.compile("What is the capital of France?")
    )
    await wait_answer_finished(page)
    answer = last_answer(page)
    await expect(answer).to_have_attribute("data-status", "ok")
    await expect(answer.locator(".msg-body")).to_contain_text("Paris")
    await expect(answer.locator(".msg-usage")).to_contain_text("completion tokens")

    texts: list[str] = await page.evaluate("window.__answerTexts")
    partial = [t for t in texts if "Thinking" not in t]
    assert len(partial) >= 2 and len(partial[0]) < len(partial[-1]), f"the answer was not streamed: {texts}"

    # The new conversation is listed in the sidebar and is the one shown.
    current = page.locator("#conversation-list .conv-open[aria-current='page']")
    await expect(current).to_have_count(1)
    await screenshot(page, "02-streamed-answer")


async def test_the_model_picker_offers_only_chat_models(page: Page, gateway_url: str, admin_key: str) -> None:
    # /v1/models also lists the retrieval service's embedder (mode "embedding"): chat with it is a 404.
    await sign_in(page, gateway_url, admin_key)
    options = page.locator("#model-select option")
    await expect(options).not_to_have_count(0)
    assert await options.evaluate_all("(os) => os.map((o) => o.value)") == [MODEL_NAME]


async def test_stop_ends_a_long_answer_and_the_server_bills_the_partial_answer(
    page: Page, gateway_url: str, admin_key: str, api: httpx.AsyncClient, screenshot: Screenshot
) -> None:
    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=400)
    await ask(page, "Write a long story about a dragon who learns to bake bread in a small village.")

    stop = page.get_by_role("button", name="Stop")
    await expect(stop).to_be_visible()
    # Let some tokens arrive, then stop.
    await page.wait_for_function(
        """() => {
            const a = [...document.querySelectorAll('article.msg-assistant')].pop();
            return a && a.dataset.status === 'streaming'
                && a.querySelector('.msg-body').textContent.trim().split(/\\s+/).length >= 6;
        }""",
        timeout=ANSWER_TIMEOUT_MS,
    )
    await stop.click()

    answer = last_answer(page)
    await expect(answer).to_have_attribute("data-status", "aborted", timeout=UI_TIMEOUT_MS)
    await expect(answer.locator(".msg-status")).to_have_text("Stopped")
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await expect(stop).to_be_hidden()
    shown = await answer.locator(".msg-body").inner_text()
    await screenshot(page, "03-stopped")

    # The server stopped generating and recorded the partial answer with its usage.
    conv_id = conversation_id_from_url(page.url)
    deadline = time.monotonic() + 60
    last_message: dict = {}
    while time.monotonic() < deadline:
        res = await api.get(f"/v1/conversations/{conv_id}")
        # A new conversation is written with its first exchange, once the server has seen the
        # disconnect and settled the bill; until then it is not there yet.
        if res.status_code == 404:
            await asyncio.sleep(0.5)
            continue
        assert res.status_code == 200, res.text
        messages = [m for m in res.json()["messages"] if m["role"] == "assistant"]
        if messages and messages[-1].get("usage"):
            last_message = messages[-1]
            break
        await asyncio.sleep(0.5)
    assert last_message, "the stopped answer was not recorded by the server"
    assert last_message["status"] == "aborted", last_message
    completion = last_message["usage"]["completion_tokens"]
    assert 0 < completion < 400, f"expected a partial completion, got {completion} tokens"
    assert last_message["content"].strip(), "the partial answer text was not kept"
    assert shown.strip()[:20] in last_message["content"] or last_message["content"][:20] in shown

    # The usage page shows what was billed and the remaining credits.
    await page.get_by_role("button", name=re.compile(r"^Credits")).click()
    usage = page.get_by_role("dialog", name="Usage")
    await expect(usage).to_be_visible()
    await expect(usage.locator("#usage-credits")).to_have_text(re.compile(r"\d"))
    await expect(usage.locator("tbody tr")).not_to_have_count(0)
    await screenshot(page, "03b-usage")
    await usage.get_by_role("button", name="Close").click()
    await expect(usage).to_be_hidden()


async def test_reload_restores_the_conversation_and_the_sidebar_manages_history(
    context: BrowserContext, page: Page, gateway_url: str, admin_key: str, screenshot: Screenshot
) -> None:
    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=24)
    await ask(page, "Name three primary colours.")
    await wait_answer_finished(page)
    answer_text = ((await last_answer(page).locator(".msg-body").text_content()) or "").strip()
    assert answer_text
    url = page.url
    conv_id = conversation_id_from_url(url)

    await page.reload()
    # Still signed in (the key is kept for the tab), the same conversation open and listed.
    await expect(page.locator("article.msg-user .msg-body")).to_have_text(["Name three primary colours."])
    await expect(last_answer(page).locator(".msg-body")).to_contain_text(answer_text[:30])
    assert page.url == url
    current = page.locator(f"#conversation-list li[data-id='{conv_id}'] .conv-open")
    await expect(current).to_have_attribute("aria-current", "page")
    await screenshot(page, "04-restored-after-reload")

    # The key was kept for this tab only: another tab asks to sign in.
    other = await context.new_page()
    await other.goto(f"{gateway_url}/")
    await expect(other.get_by_role("button", name="Sign in")).to_be_visible()
    await other.close()

    # Rename, newest first, delete.
    item = page.locator(f"#conversation-list li[data-id='{conv_id}']")
    await item.get_by_role("button", name=re.compile("^Rename")).click()
    title_box = item.get_by_label("New title")
    await title_box.fill("Colour chat")
    await title_box.press("Enter")
    await expect(item.locator(".conv-open")).to_have_text("Colour chat")
    await page.reload()
    await expect(page.locator(f"#conversation-list li[data-id='{conv_id}'] .conv-open")).to_have_text(
        "Colour chat"
    )

    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("article.msg")).to_have_count(0)
    await ask(page, "Say hi.")
    await wait_answer_finished(page)
    newest = conversation_id_from_url(page.url)
    assert newest != conv_id
    await expect(page.locator("#conversation-list li").first).to_have_attribute("data-id", newest)

    await (
        page.locator(f"#conversation-list li[data-id='{conv_id}']")
        .get_by_role("button", name=re.compile("^Delete"))
        .click()
    )
    await page.get_by_role("dialog", name="Delete conversation?").get_by_role("button", name="Delete").click()
    await expect(page.locator(f"#conversation-list li[data-id='{conv_id}']")).to_have_count(0)
    await page.reload()
    await expect(page.locator(f"#conversation-list li[data-id='{newest}']")).to_have_count(1)
    await expect(page.locator(f"#conversation-list li[data-id='{conv_id}']")).to_have_count(0)

    # Sign out forgets the key.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()


MARKDOWN_SAMPLE = """# Title

Some **bold**, *italic*, `code` and a [safe link](https://example.org/a) and
a [bad link](javascript:alert(1)) and ![remote](https://example.org/x.png).

- one
- two
  - nested

1. first
2. second

| name | value |
|------|------:|
| a    | 1     |

```html
<script>alert(1)</script><img src=x onerror=alert(2)>
```

<img src=x onerror=alert(3)> <script>alert(4)</script> <iframe src="https://example.org"></iframe>
"""


async def test_markdown_renders_structure_and_stays_safe(page: Page, gateway_url: str) -> None:
    await page.goto(f"{gateway_url}/")
    result = await page.evaluate(
        """async (source) => {
            const { renderMarkdown } = await import('./js/markdown.js');
            const box = document.createElement('div');
            box.append(renderMarkdown(source, { citations: [] }));
            document.body.append(box);
            const q = (s) => box.querySelectorAll(s).length;
            const out = {
                h1: q('h1'), strong: q('strong'), em: q('em'), code: q('code'), ul: q('ul'), ol: q('ol'),
                nested: q('ul ul'), table: q('table'), th: q('th'), td: q('td'), pre: q('pre'),
                dangerous: q('img, script, iframe, object, embed, style, svg, link'),
                hrefs: [...box.querySelectorAll('a')].map(a => a.getAttribute('href')),
                text: box.textContent,
                onAttrs: [...box.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))
                    .filter(n => n.startsWith('on')),
            };
            box.remove();
            return out;
        }""",
        MARKDOWN_SAMPLE,
    )
    assert result["h1"] == 1 and result["strong"] == 1 and result["em"] == 1
    assert result["ul"] == 2 and result["nested"] == 1 and result["ol"] == 1
    assert result["table"] == 1 and result["th"] == 2 and result["td"] == 2
    assert result["pre"] == 1
    assert result["dangerous"] == 0 and result["onAttrs"] == []
    # Links keep only http(s)/mailto targets; an image becomes a link that loads nothing.
    assert "https://example.org/a" in result["hrefs"]
    assert all(h.startswith("https://") for h in result["hrefs"]), result["hrefs"]
    assert "<script>alert(1)</script>" in result["text"]
    assert "<img src=x onerror=alert(3)>" in result["text"]
    assert "[image: remote]" in result["text"]


async def test_a_wrong_key_shows_an_error(page: Page, gateway_url: str, screenshot: Screenshot) -> None:
    await page.goto(f"{gateway_url}/")
    await page.get_by_label("API key").fill("sk-this-key-does-not-exist")
    await page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    await expect(error).to_contain_text("not accepted")
    await expect(error).to_contain_text("401")
    await expect(page.get_by_label("Message", exact=True)).to_be_hidden()
    await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
    await screenshot(page, "08-wrong-key")


async def test_rate_limit_and_unavailable_service_are_clear_messages(
    page: Page, gateway_url: str, admin_key: str, screenshot: Screenshot
) -> None:
    """429 and 503 are injected at the browser (fault injection); everything else is live."""
    await sign_in(page, gateway_url, admin_key, temperature=0, max_tokens=16)
    replies = [
        (429, {"Retry-After": "17"}, "Rate limit exceeded for this key."),
        (503, {}, "The model service is not reachable."),
    ]

    async def fail(route: Route) -> None:
        status, headers, message = replies.pop(0)
        await route.fulfill(
            status=status,
            headers={**headers, "Content-Type": "application/json"},
            body=json.dumps({"error": {"message": message, "type": "x", "code": None, "param": None}}),
        )

    await page.route("**/v1/chat/completions", fail)
    notice = page.get_by_role("alert").filter(has_text=re.compile("429|503"))

    await ask(page, "Hello?")
    await expect(notice).to_contain_text(re.compile(r"Too many requests \(429\)\. Try again in 1[0-7] s\."))
    await expect(last_answer(page)).to_have_attribute("data-status", "failed")
    await screenshot(page, "09-rate-limited")

    await ask(page, "Hello again?")
    await expect(notice).to_contain_text("unavailable right now (503)")
    await expect(notice).to_contain_text("The model service is not reachable.")
    await expect(last_answer(page)).to_have_attribute("data-status", "failed")

    # Not frozen: the page still answers once the service is back.
    await page.unroute("**/v1/chat/completions")
    await last_answer(page).get_by_role("button", name="Retry this answer").click()
    await wait_answer_finished(page)
    await expect(last_answer(page)).to_have_attribute("data-status", "ok")


async def test_narrow_screen_and_keyboard_only(
    browser, gateway_url: str, admin_key: str, screenshot: Screenshot
) -> None:
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await ctx.new_page()
        await page.goto(f"{gateway_url}/")
        # The key field has focus on load; type and press Enter, no mouse.
        await expect(page.get_by_label("API key")).to_be_focused()
        await page.keyboard.type(admin_key)
        await page.keyboard.press("Enter")
        prompt = page.get_by_label("Message", exact=True)
        await expect(prompt).to_be_focused(timeout=UI_TIMEOUT_MS)

        # Shift+Enter adds a line, Enter sends.
        await page.keyboard.type("Say hello")
        await page.keyboard.press("Shift+Enter")
        await page.keyboard.type("in one word.")
        assert await prompt.input_value() == "Say hello\nin one word."
        await expect(page.locator("article.msg")).to_have_count(0)
        await page.keyboard.press("Enter")
        await expect(page.locator("article.msg-user .msg-body")).to_have_text(["Say hello\nin one word."])
        await wait_answer_finished(page)

        # Nothing is wider than the screen.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0

        # Every control has a name a screen reader can announce.
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(el => el.offsetParent !== null || el.type === 'file')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                              && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
                .map(el => el.outerHTML.slice(0, 80))"""
        )
        assert unlabelled == []

        # The history drawer opens and closes from the keyboard.
        sidebar = page.get_by_role("complementary", name="Conversations")
        await expect(sidebar).to_be_hidden()
        toggle = page.get_by_role("button", name="Show conversations")
        await toggle.focus()
        await page.keyboard.press("Enter")
        await expect(sidebar).to_be_visible()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await expect(page.locator("#conversation-list li")).not_to_have_count(0)
        await screenshot(page, "10-mobile-history")
        await page.keyboard.press("Escape")
        await expect(sidebar).to_be_hidden()
        await expect(toggle).to_be_focused()
        await screenshot(page, "11-mobile-chat")
    finally:
        await ctx.close()
