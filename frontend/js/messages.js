// The messages of the open chat as the page shows them: one <article> per message, rendered
// from its record (Markdown for answers, plain text for prompts), its sources, status, usage
// and Copy/Retry buttons; the citation dialog; keeping the view scrolled to the newest text.
//
// Every piece of text that came from a user, a model or a document is put into the page with
// textContent or through markdown.js (which builds DOM nodes, never HTML), so nothing it
// contains can run or load.

import { $, button, el } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { clearMessageList, pushMessage, state } from "./state.js";
import { formatCredits } from "./usage.js";

const STATUS_TEXT = {
  aborted: "Stopped",
  failed: "Failed",
};

let retryHandler = () => {};

/** What the Retry button of an answer does, called with the answer's record. */
export function onRetry(handler) {
  retryHandler = handler;
}

export function clearMessages() {
  clearMessageList();
  const box = $("messages");
  box.replaceChildren($("empty-state") || el("div"));
  $("empty-state").hidden = false;
}

function isNearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

export function scrollToBottom(force = false) {
  const box = $("messages");
  if (force || isNearBottom()) box.scrollTop = box.scrollHeight;
}

/** Show a new message at the end; its record (with `node`, its element) is returned. */
export function addMessage(msg) {
  const m = { status: "ok", citations: [], usage: null, finishReason: null, error: null, ...msg };
  const node = el("article", `msg msg-${m.role}`);
  node.setAttribute("aria-label", m.role === "user" ? "You" : "Assistant");
  node.append(
    el("div", "msg-role", m.role === "user" ? "You" : "Assistant"),
    el("div", "msg-body"),
    el("div", "msg-sources"),
    el("div", "msg-footer"),
  );
  m.node = node;
  $("empty-state").hidden = true;
  $("messages").append(node);
  pushMessage(m);
  renderMessage(m);
  return m;
}

export function renderMessage(m) {
  const node = m.node;
  node.dataset.status = m.status;
  node.setAttribute("aria-busy", m.status === "streaming" ? "true" : "false");
  const body = node.querySelector(".msg-body");
  if (m.role === "user") {
    body.textContent = m.content; // a prompt is shown exactly as typed, never interpreted
  } else if (!m.content && m.status === "streaming") {
    body.replaceChildren(el("span", "typing", "Thinking…"));
  } else {
    body.replaceChildren(renderMarkdown(m.content, { citations: m.citations }));
  }

  const sources = node.querySelector(".msg-sources");
  sources.replaceChildren();
  if (m.role === "assistant" && m.citations && m.citations.length) {
    sources.append(el("h3", "sources-title", "Sources"));
    const ol = el("ol", "sources-list");
    for (const c of m.citations) {
      const li = el("li");
      const b = button(`[${c.index}] ${c.metadata && c.metadata.filename ? c.metadata.filename : c.document_id}`, "source-link");
      b.dataset.cite = String(c.index);
      b.setAttribute("aria-label", `Source ${c.index}: ${storeName(c.collection)}, ${b.textContent}`);
      li.append(b);
      ol.append(li);
    }
    sources.append(ol);
  }

  const footer = node.querySelector(".msg-footer");
  footer.replaceChildren();
  if (m.status !== "streaming") {
    if (STATUS_TEXT[m.status]) footer.append(el("span", `msg-status status-${m.status}`, STATUS_TEXT[m.status]));
    if (m.error) footer.append(el("span", "msg-error", m.error));
    if (m.finishReason === "length") footer.append(el("span", "msg-status", "Cut off at the token limit"));
    if (m.usage) {
      const u = m.usage;
      const parts = [`${u.prompt_tokens ?? 0} prompt + ${u.completion_tokens ?? 0} completion tokens`];
      if (typeof u.cost === "number") parts.push(`${formatCredits(u.cost)} credits`);
      footer.append(el("span", "msg-usage", parts.join(" · ")));
    }
    const actions = el("span", "msg-actions");
    if (m.content) {
      const copy = button("Copy", "small-button msg-copy", m.role === "user" ? "Copy message" : "Copy answer");
      copy.addEventListener("click", () => copyText(m.content, copy));
      actions.append(copy);
    }
    if (m.role === "assistant") {
      const retry = button("Retry", "small-button msg-retry", "Retry this answer");
      retry.addEventListener("click", () => retryHandler(m));
      actions.append(retry);
    }
    footer.append(actions);
  }
}

const renderQueued = new Set();

/** Render a streaming message at the next frame, at most once per frame. */
export function scheduleRender(m) {
  if (renderQueued.has(m)) return;
  renderQueued.add(m);
  requestAnimationFrame(() => {
    renderQueued.delete(m);
    const follow = isNearBottom();
    renderMessage(m);
    if (follow) scrollToBottom(true);
  });
}

async function copyText(text, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Clipboard API needs a secure context; fall back to a hidden textarea.
    const ta = el("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.className = "offscreen";
    document.body.append(ta);
    ta.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
  }
  const original = btn.textContent;
  btn.textContent = ok ? "Copied" : "Copy failed";
  setTimeout(() => {
    btn.textContent = original;
  }, 1500);
}

/** A citation's collection as the Knowledge panel names it: a vector store's name, if listed. */
function storeName(collection) {
  const store = state.vectorStores.find((s) => s.id === collection || (!s.id.startsWith("vs_") && s.name === collection));
  return (store && store.name) || collection;
}

function openCitation(m, index) {
  const c = (m.citations || []).find((x) => Number(x.index) === Number(index));
  if (!c) return;
  $("citation-title").textContent = `Source [${c.index}]`;
  const meta = [
    `Vector store: ${storeName(c.collection)}`,
    `Document: ${(c.metadata && c.metadata.filename) || c.document_id}`,
    `Chunk ${c.chunk_index}`,
  ];
  if (typeof c.score === "number") meta.push(`Score ${c.score.toFixed(3)}`);
  $("citation-meta").textContent = meta.join(" · ");
  $("citation-snippet").textContent = c.snippet || "";
  $("citation-dialog").showModal();
}

export function wireMessages() {
  // Citation markers and code-block Copy buttons are made by markdown.js: one listener for all.
  $("messages").addEventListener("click", (e) => {
    const target = e.target instanceof Element ? e.target : null;
    if (!target) return;
    const cite = target.closest("[data-cite]");
    if (cite) {
      const node = cite.closest(".msg");
      const m = state.messages.find((x) => x.node === node);
      if (m) openCitation(m, cite.dataset.cite);
      return;
    }
    const copy = target.closest("[data-copy-code]");
    if (copy) {
      const code = copy.closest(".code-block").querySelector("pre").textContent;
      copyText(code, copy);
    }
  });
}
