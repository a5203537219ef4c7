// The chat page: sign-in, model picker, streamed chat with Stop/Retry/Copy, the history
// sidebar, RAG collections and uploads, citations, usage and credits.
//
// All HTTP goes through api.js; every piece of text that came from a user, a model or a
// document is put into the page with textContent or through markdown.js (which builds DOM
// nodes, never HTML), so nothing it contains can run or load.

import { ApiError, createClient } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, className, label) {
  const b = el("button", className, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  return b;
}

const state = {
  key: "",
  client: null,
  me: null,
  settings: store.loadSettings(),
  conversations: [],
  hasMore: false,
  currentId: null,
  currentTitle: "",
  messages: [], // {role, content, status, citations, usage, finishReason, error, node}
  busy: null, // the AbortController of the answer being streamed
  collections: [],
  openToken: 0, // guards against a slow conversation load overwriting a newer one
};

// ------------------------------------------------------------------ errors and notices

/** A sentence a person can act on, for any error the API layer throws. */
function describeError(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  switch (err.status) {
    case 0:
      return `${err.message} Check your connection, or the gateway URL in Settings.`;
    case -1:
      return `The answer stopped with an error: ${err.message}`;
    case 401:
      return `Your API key was not accepted (401). ${err.message}`;
    case 402:
      return `You are out of credits (402). ${err.message}`;
    case 403:
      return `Not allowed (403). ${err.message}`;
    case 404:
      return `Not found (404). ${err.message}`;
    case 429:
      return err.retryAfter != null
        ? `Too many requests (429). Try again in ${err.retryAfter} s. ${err.message}`
        : `Too many requests (429). Try again shortly. ${err.message}`;
    case 503:
      return `The service is unavailable right now (503). Try again in a moment. ${err.message}`;
    default:
      return `Error ${err.status}: ${err.message}`;
  }
}

let noticeTimer = null;

function hideNotice() {
  clearInterval(noticeTimer);
  noticeTimer = null;
  $("notice").hidden = true;
  $("notice-text").textContent = "";
}

function showNotice(text, { kind = "error", retryAfter = null } = {}) {
  clearInterval(noticeTimer);
  const box = $("notice");
  box.dataset.kind = kind;
  box.hidden = false;
  $("notice-text").textContent = text;
  if (retryAfter != null && retryAfter > 0) {
    // Count the wait down so the message stays true while it is on screen.
    const until = Date.now() + retryAfter * 1000;
    noticeTimer = setInterval(() => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      $("notice-text").textContent = text.replace(/Try again in \d+ s\./, left > 0 ? `Try again in ${left} s.` : "You can try again now.");
      if (left <= 0) clearInterval(noticeTimer);
    }, 1000);
  }
}

/** Shows an error; a 401 means the key no longer works, so it signs out. Returns the text. */
function handleError(err) {
  if (err && err.name === "AbortError") return null;
  const text = describeError(err);
  if (err instanceof ApiError && err.status === 401 && state.client) {
    signOut(text);
    return text;
  }
  showNotice(text, { retryAfter: err instanceof ApiError && err.status === 429 ? err.retryAfter : null });
  return text;
}

// ------------------------------------------------------------------ sign in / out

function showSignIn(errorText = "") {
  $("app-view").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = errorText;
  $("signin-api").value = store.loadApiBase();
  $("signin-key").focus();
}

async function signIn(key, { remember } = {}) {
  const client = createClient({ baseUrl: store.loadApiBase(), key });
  const me = await client.me();
  state.key = key;
  state.client = client;
  state.me = me;
  if (remember !== undefined) store.saveKey(key, remember);
  $("signin-key").value = "";
  $("signin-error").textContent = "";
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  updateCredits(me.credits);
  $("prompt").value = store.loadDraft();
  autoGrow();
  $("rag-panel").open = Boolean(state.settings.ragOpen);
  const results = await Promise.allSettled([loadModels(), loadConversations(), loadCollections()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) handleError(failed.reason);
  if (!state.client) return; // a 401 above signed us out again
  const id = conversationIdFromHash();
  if (id) await openConversation(id, { fromHash: true });
  else startNewChat({ focus: false });
  $("prompt").focus();
}

function signOut(errorText = "") {
  if (state.busy) state.busy.abort();
  store.clearKey();
  state.key = "";
  state.client = null;
  state.me = null;
  state.conversations = [];
  state.currentId = null;
  state.messages = [];
  state.collections = [];
  hideNotice();
  clearMessages();
  $("conversation-list").replaceChildren();
  $("upload-list").replaceChildren();
  if (window.location.hash) history.replaceState(null, "", window.location.pathname + window.location.search);
  document.title = "ragway chat";
  showSignIn(errorText);
}

// ------------------------------------------------------------------ credits and usage

function formatCredits(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: 4 });
}

function updateCredits(value) {
  $("credits").textContent = formatCredits(value);
}

async function refreshCredits() {
  if (!state.client) return;
  try {
    state.me = await state.client.me();
    updateCredits(state.me.credits);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) handleError(err);
  }
}

async function openUsage() {
  const dialog = $("usage-dialog");
  const tbody = $("usage-table").querySelector("tbody");
  tbody.replaceChildren();
  $("usage-empty").hidden = true;
  try {
    const usage = await state.client.usage();
    $("usage-credits").textContent = formatCredits(usage.credits);
    updateCredits(usage.credits);
    for (const row of usage.data || []) {
      const tr = el("tr");
      for (const value of [
        row.date,
        row.model,
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        formatCredits(row.cost),
      ]) {
        tr.append(el("td", null, String(value ?? "")));
      }
      tbody.append(tr);
    }
    $("usage-empty").hidden = (usage.data || []).length > 0;
    dialog.showModal();
  } catch (err) {
    handleError(err);
  }
}

// ------------------------------------------------------------------ models

async function loadModels() {
  const select = $("model-select");
  const list = await state.client.models();
  const models = (list.data || []).map((m) => m.id);
  select.replaceChildren(...models.map((id) => {
    const opt = el("option", null, id);
    opt.value = id;
    return opt;
  }));
  if (models.includes(state.settings.model)) select.value = state.settings.model;
  if (!models.length) {
    const opt = el("option", null, "No models available");
    opt.value = "";
    select.append(opt);
  }
}

// ------------------------------------------------------------------ conversations sidebar

function conversationIdFromHash() {
  const m = window.location.hash.match(/^#\/?c\/([^/?#]+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function setHash(id) {
  const target = id ? `#/c/${encodeURIComponent(id)}` : "";
  if (window.location.hash === target || (!id && !window.location.hash)) return;
  if (id) history.pushState(null, "", target);
  else history.pushState(null, "", window.location.pathname + window.location.search);
}

async function loadConversations({ more = false } = {}) {
  const after = more && state.conversations.length ? state.conversations[state.conversations.length - 1].id : null;
  const page = await state.client.listConversations({ limit: 20, after });
  const data = page.data || [];
  if (more) {
    const seen = new Set(state.conversations.map((c) => c.id));
    state.conversations.push(...data.filter((c) => !seen.has(c.id)));
  } else {
    state.conversations = data;
  }
  state.hasMore = Boolean(page.has_more);
  renderConversations();
}

function sortConversations() {
  state.conversations.sort((a, b) => (b.updated_at || 0) - (a.updated_at || 0));
}

function renderConversations() {
  sortConversations();
  const list = $("conversation-list");
  list.replaceChildren(...state.conversations.map(conversationItem));
  $("history-empty").hidden = state.conversations.length > 0;
  $("load-more").hidden = !state.hasMore;
}

function conversationItem(conv) {
  const li = el("li", "conv");
  li.dataset.id = conv.id;
  const title = conv.title || "New chat";
  const open = button(title, "conv-open");
  open.title = title;
  if (conv.id === state.currentId) open.setAttribute("aria-current", "page");
  open.addEventListener("click", () => openConversation(conv.id));
  const rename = button("✎", "icon-button conv-rename", `Rename “${title}”`);
  rename.addEventListener("click", () => startRename(li, conv));
  const del = button("✕", "icon-button conv-delete", `Delete “${title}”`);
  del.addEventListener("click", () => confirmDelete(conv));
  li.append(open, rename, del);
  return li;
}

function startRename(li, conv) {
  const form = el("form", "rename-form");
  const label = el("label", "sr-only", "New title");
  const input = el("input");
  input.id = `rename-${conv.id}`;
  label.htmlFor = input.id;
  input.type = "text";
  input.maxLength = 200;
  input.value = conv.title || "";
  form.append(label, input);
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== conv.title) {
      try {
        await state.client.renameConversation(conv.id, title);
        conv.title = title;
        if (conv.id === state.currentId) setTitle(title);
      } catch (err) {
        handleError(err);
      }
    }
    renderConversations();
    const again = $("conversation-list").querySelector(`li[data-id="${CSS.escape(conv.id)}"] .conv-rename`);
    if (again) again.focus();
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    finish(true);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  li.replaceChildren(form);
  input.focus();
  input.select();
}

function confirmDelete(conv) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = `“${conv.title || "New chat"}” and its messages will be deleted.`;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "ok") return;
      try {
        await state.client.deleteConversation(conv.id);
        state.conversations = state.conversations.filter((c) => c.id !== conv.id);
        renderConversations();
        if (conv.id === state.currentId) startNewChat();
      } catch (err) {
        handleError(err);
      }
    },
    { once: true },
  );
  dialog.showModal();
}

function setTitle(title) {
  state.currentTitle = title || "";
  document.title = title ? `${title} – ragway chat` : "ragway chat";
}

function startNewChat({ focus = true } = {}) {
  if (state.busy) state.busy.abort();
  state.openToken++; // a conversation still loading must not replace the new chat
  state.currentId = null;
  state.messages = [];
  clearMessages();
  setTitle("");
  setHash(null);
  renderConversations();
  closeSidebar();
  if (focus) $("prompt").focus();
}

async function openConversation(id, { fromHash = false } = {}) {
  if (state.busy) state.busy.abort();
  const token = ++state.openToken;
  closeSidebar();
  try {
    const conv = await state.client.getConversation(id);
    if (token !== state.openToken) return;
    state.currentId = conv.id;
    setTitle(conv.title);
    clearMessages();
    state.messages = [];
    for (const m of conv.messages || []) {
      if (m.role !== "user" && m.role !== "assistant") continue;
      addMessage({
        role: m.role,
        content: m.content || "",
        status: m.status || "ok",
        citations: m.citations || [],
        usage: m.usage || null,
        finishReason: m.finish_reason || null,
      });
    }
    if (!fromHash) setHash(conv.id);
    if (!state.conversations.some((c) => c.id === conv.id)) {
      state.conversations.push({ id: conv.id, title: conv.title, model: conv.model, updated_at: conv.updated_at });
    }
    renderConversations();
    scrollToBottom(true);
  } catch (err) {
    if (token !== state.openToken) return;
    if (err instanceof ApiError && err.status === 404) {
      showNotice("That conversation no longer exists.");
      startNewChat({ focus: false });
      return;
    }
    handleError(err);
  }
}

// ------------------------------------------------------------------ messages

function clearMessages() {
  const box = $("messages");
  box.replaceChildren($("empty-state") || el("div"));
  $("empty-state").hidden = false;
}

function isNearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom(force = false) {
  const box = $("messages");
  if (force || isNearBottom()) box.scrollTop = box.scrollHeight;
}

const STATUS_TEXT = {
  aborted: "Stopped",
  failed: "Failed",
};

function addMessage(msg) {
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
  state.messages.push(m);
  renderMessage(m);
  return m;
}

function renderMessage(m) {
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
      b.setAttribute("aria-label", `Source ${c.index}: ${c.collection}, ${b.textContent}`);
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
      retry.addEventListener("click", () => retryMessage(m));
      actions.append(retry);
    }
    footer.append(actions);
  }
}

let renderQueued = new Set();
function scheduleRender(m) {
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

function retryMessage(m) {
  const i = state.messages.indexOf(m);
  for (let j = i - 1; j >= 0; j--) {
    if (state.messages[j].role === "user") {
      send(state.messages[j].content);
      return;
    }
  }
}

function openCitation(m, index) {
  const c = (m.citations || []).find((x) => Number(x.index) === Number(index));
  if (!c) return;
  $("citation-title").textContent = `Source [${c.index}]`;
  const meta = [
    `Collection: ${c.collection}`,
    `Document: ${(c.metadata && c.metadata.filename) || c.document_id}`,
    `Chunk ${c.chunk_index}`,
  ];
  if (typeof c.score === "number") meta.push(`Score ${c.score.toFixed(3)}`);
  $("citation-meta").textContent = meta.join(" · ");
  $("citation-snippet").textContent = c.snippet || "";
  $("citation-dialog").showModal();
}

function setBusy(busy) {
  $("send-button").hidden = busy;
  $("stop-button").hidden = !busy;
  if (busy) $("stop-button").focus({ preventScroll: true });
}

function adoptConversation(id, title) {
  if (!id || state.currentId === id) return;
  state.currentId = id;
  setHash(id);
  if (!state.conversations.some((c) => c.id === id)) {
    state.conversations.unshift({ id, title, updated_at: Math.floor(Date.now() / 1000) });
  }
  setTitle(title);
  renderConversations();
}

function selectedCollections() {
  const names = new Set(state.collections.map((c) => c.name));
  return (state.settings.collections || []).filter((n) => names.has(n));
}

async function send(text) {
  if (state.busy || !state.client) return;
  const content = text.trim();
  if (!content) return;
  const model = $("model-select").value;
  if (!model) {
    showNotice("No model is available to answer. Try again when the model service is up.");
    return;
  }
  hideNotice();
  addMessage({ role: "user", content });
  const answer = addMessage({ role: "assistant", content: "", status: "streaming" });
  scrollToBottom(true);

  const controller = new AbortController();
  state.busy = controller;
  setBusy(true);
  const body = {
    model,
    messages: [{ role: "user", content }],
    max_tokens: Number(state.settings.maxTokens) || undefined,
    temperature: Number(state.settings.temperature),
  };
  if (state.currentId) body.conversation_id = state.currentId;
  const collections = selectedCollections();
  if (collections.length) body.rag = { collections, top_k: Number(state.settings.topK) || 4 };
  const title = content.slice(0, 60);

  try {
    const { conversationId, events } = await state.client.chatStream(body, { signal: controller.signal });
    adoptConversation(conversationId, title);
    for await (const chunk of events) {
      if (chunk.error) {
        throw new ApiError(-1, chunk.error.message || "unknown error", {
          type: chunk.error.type,
          code: chunk.error.code,
        });
      }
      if (chunk.conversation_id) adoptConversation(chunk.conversation_id, title);
      const choice = chunk.choices && chunk.choices[0];
      if (choice) {
        if (choice.delta && typeof choice.delta.content === "string") answer.content += choice.delta.content;
        if (choice.finish_reason) answer.finishReason = choice.finish_reason;
      }
      if (Array.isArray(chunk.citations)) answer.citations = chunk.citations;
      if (chunk.usage) answer.usage = chunk.usage;
      scheduleRender(answer);
    }
    answer.status = "ok";
  } catch (err) {
    if (err && err.name === "AbortError") {
      answer.status = "aborted";
    } else {
      answer.status = "failed";
      answer.error = describeError(err);
      handleError(err);
    }
  } finally {
    if (state.busy === controller) state.busy = null;
    setBusy(false);
    renderMessage(answer);
    scrollToBottom();
    if (state.client) {
      $("prompt").focus({ preventScroll: true });
      refreshCredits();
      loadConversations().catch(() => {});
    }
  }
}

// ------------------------------------------------------------------ collections and uploads

async function loadCollections() {
  const list = await state.client.listCollections();
  state.collections = list.data || [];
  renderCollections();
}

function renderCollections() {
  const box = $("collection-list");
  const chosen = new Set(state.settings.collections || []);
  box.replaceChildren(
    ...state.collections.map((c) => {
      const id = `col-${c.name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const wrap = el("div", "check");
      const input = el("input");
      input.type = "checkbox";
      input.id = id;
      input.value = c.name;
      input.checked = chosen.has(c.name);
      input.addEventListener("change", () => {
        const set = new Set(state.settings.collections || []);
        if (input.checked) set.add(c.name);
        else set.delete(c.name);
        state.settings.collections = [...set];
        store.saveSettings(state.settings);
        updateRagSummary();
      });
      const label = el("label");
      label.htmlFor = id;
      const docs = typeof c.document_count === "number" ? ` · ${c.document_count} doc${c.document_count === 1 ? "" : "s"}` : "";
      label.append(document.createTextNode(c.name), el("span", "muted small", `${c.shared ? " · shared" : ""}${docs}`));
      wrap.append(input, label);
      return wrap;
    }),
  );
  $("collections-empty").hidden = state.collections.length > 0;

  const target = $("upload-collection");
  const previous = target.value;
  target.replaceChildren(
    ...state.collections.map((c) => {
      const opt = el("option", null, c.name);
      opt.value = c.name;
      return opt;
    }),
  );
  if (state.collections.some((c) => c.name === previous)) target.value = previous;
  updateRagSummary();
}

function updateRagSummary() {
  const n = selectedCollections().length;
  $("rag-summary").textContent = n ? `(${n} selected)` : "(off)";
}

async function createCollection(name) {
  try {
    await state.client.createCollection(name);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) {
      handleError(err);
      return;
    }
  }
  state.settings.collections = [...new Set([...(state.settings.collections || []), name])];
  store.saveSettings(state.settings);
  await loadCollections().catch(handleError);
  $("upload-collection").value = name;
}

async function uploadFiles(files) {
  if (!files.length) return;
  const collection = $("upload-collection").value;
  if (!collection) {
    showNotice("Create or choose a collection to upload to first.");
    return;
  }
  const list = $("upload-list");
  const jobs = [...files].map((file) => {
    const li = el("li", "upload-item");
    const name = el("span", "upload-name", file.name);
    const progress = el("progress");
    progress.max = 1;
    progress.value = 0;
    progress.setAttribute("aria-label", `Uploading ${file.name}`);
    const status = el("span", "upload-status", "Waiting…");
    li.append(name, progress, status);
    list.prepend(li);
    return { file, li, progress, status };
  });
  // One request per file, one at a time: each file gets its own progress and its own error.
  for (const job of jobs) {
    job.status.textContent = "Uploading…";
    job.li.dataset.state = "uploading";
    try {
      const res = await state.client.uploadDocument(collection, job.file, {
        onProgress: (f) => {
          job.progress.value = f;
          if (f >= 1) job.status.textContent = "Indexing…";
        },
      });
      const doc = res && res.data && res.data[0];
      job.progress.value = 1;
      job.li.dataset.state = "done";
      job.status.textContent = doc ? `Added to ${collection} (${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"})` : `Added to ${collection}`;
    } catch (err) {
      job.li.dataset.state = "error";
      job.progress.remove();
      job.status.textContent = `Failed: ${err instanceof ApiError ? err.message : describeError(err)}`;
      if (err instanceof ApiError && err.status === 401) {
        handleError(err);
        return;
      }
    }
  }
  loadCollections().catch(handleError);
}

// ------------------------------------------------------------------ layout helpers

function openSidebar() {
  $("sidebar").classList.add("open");
  $("sidebar-backdrop").hidden = false;
  $("sidebar-toggle").setAttribute("aria-expanded", "true");
  const first = $("sidebar").querySelector("button");
  if (first) first.focus();
}

function closeSidebar() {
  if (!$("sidebar").classList.contains("open")) return;
  $("sidebar").classList.remove("open");
  $("sidebar-backdrop").hidden = true;
  $("sidebar-toggle").setAttribute("aria-expanded", "false");
}

function autoGrow() {
  const ta = $("prompt");
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`;
}

function openSettings() {
  $("settings-api").value = store.loadApiBase();
  $("settings-temperature").value = String(state.settings.temperature);
  $("settings-max-tokens").value = String(state.settings.maxTokens);
  $("settings-top-k").value = String(state.settings.topK);
  $("settings-dialog").showModal();
}

async function saveSettingsForm() {
  const temperature = Number($("settings-temperature").value);
  const maxTokens = parseInt($("settings-max-tokens").value, 10);
  const topK = parseInt($("settings-top-k").value, 10);
  if (Number.isFinite(temperature) && temperature >= 0 && temperature <= 2) state.settings.temperature = temperature;
  if (Number.isFinite(maxTokens) && maxTokens > 0) state.settings.maxTokens = maxTokens;
  if (Number.isFinite(topK) && topK > 0) state.settings.topK = topK;
  store.saveSettings(state.settings);
  const api = $("settings-api").value.trim();
  $("settings-dialog").close();
  if (api !== store.loadApiBase()) {
    store.saveApiBase(api);
    try {
      await signIn(state.key);
    } catch (err) {
      signOut(describeError(err));
    }
  }
}

// ------------------------------------------------------------------ wiring

function wire() {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("signin-key").value.trim();
    if (!key) {
      $("signin-error").textContent = "Enter your API key.";
      return;
    }
    store.saveApiBase($("signin-api").value);
    $("signin-submit").disabled = true;
    $("signin-error").textContent = "";
    try {
      await signIn(key, { remember: $("signin-remember").checked });
    } catch (err) {
      state.client = null;
      $("signin-error").textContent = describeError(err);
      $("signin-key").focus();
    } finally {
      $("signin-submit").disabled = false;
    }
  });

  $("signout-button").addEventListener("click", () => signOut());
  $("new-chat").addEventListener("click", () => startNewChat());
  $("load-more").addEventListener("click", () => loadConversations({ more: true }).catch(handleError));
  $("notice-close").addEventListener("click", hideNotice);
  $("usage-button").addEventListener("click", openUsage);
  $("settings-button").addEventListener("click", openSettings);
  $("settings-cancel").addEventListener("click", () => $("settings-dialog").close());
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveSettingsForm();
  });
  $("model-select").addEventListener("change", () => {
    state.settings.model = $("model-select").value;
    store.saveSettings(state.settings);
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value;
    if (!text.trim() || state.busy) return;
    $("prompt").value = "";
    store.saveDraft("");
    autoGrow();
    send(text);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("prompt").addEventListener("input", () => {
    autoGrow();
    store.saveDraft($("prompt").value);
  });
  $("stop-button").addEventListener("click", () => {
    if (state.busy) state.busy.abort();
  });

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

  $("sidebar-toggle").addEventListener("click", () => {
    if ($("sidebar").classList.contains("open")) closeSidebar();
    else openSidebar();
  });
  $("sidebar-backdrop").addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("sidebar").classList.contains("open")) {
      closeSidebar();
      $("sidebar-toggle").focus();
    }
  });
  window.addEventListener("popstate", () => {
    if (!state.client) return;
    const id = conversationIdFromHash();
    if (id && id !== state.currentId) openConversation(id, { fromHash: true });
    else if (!id && state.currentId) startNewChat({ focus: false });
  });

  $("rag-panel").addEventListener("toggle", () => {
    state.settings.ragOpen = $("rag-panel").open;
    store.saveSettings(state.settings);
  });
  $("new-collection-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-collection-name").value.trim();
    if (!name) return;
    $("new-collection-name").value = "";
    createCollection(name);
  });
  $("file-input").addEventListener("change", () => {
    const files = [...$("file-input").files];
    $("file-input").value = "";
    uploadFiles(files);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadFiles([...(e.dataTransfer ? e.dataTransfer.files : [])]);
  });
  // A file dropped next to the zone must not make the browser navigate away from the chat.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

async function boot() {
  wire();
  const key = store.loadKey();
  if (!key) {
    showSignIn();
    return;
  }
  try {
    await signIn(key);
  } catch (err) {
    state.client = null;
    if (err instanceof ApiError && err.status === 401) store.clearKey();
    showSignIn(describeError(err));
  }
}

boot();
