// The history sidebar and which conversation is open: the list (paged, newest first), rename
// and delete, the `#/c/<id>` address of the open conversation (reload and Back work), opening
// one and starting a new chat, and the sidebar as a drawer on narrow screens.

import { ApiError } from "./api.js";
import { $, button, el } from "./dom.js";
import { addMessage, clearMessages, scrollToBottom } from "./messages.js";
import { handleError, showNotice } from "./notice.js";
import {
  abortAnswer,
  addConversation,
  nextOpenToken,
  removeConversation,
  renameConversation,
  setConversations,
  setCurrentConversation,
  setCurrentTitle,
  state,
} from "./state.js";

export function conversationIdFromHash() {
  const m = window.location.hash.match(/^#\/?c\/([^/?#]+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function setHash(id) {
  const target = id ? `#/c/${encodeURIComponent(id)}` : "";
  if (window.location.hash === target || (!id && !window.location.hash)) return;
  if (id) history.pushState(null, "", target);
  else history.pushState(null, "", window.location.pathname + window.location.search);
}

export async function loadConversations({ more = false } = {}) {
  const list = state.conversations;
  const after = more && list.length ? list[list.length - 1].id : null;
  const page = await state.client.listConversations({ limit: 20, after });
  setConversations(page.data || [], { more, hasMore: page.has_more });
  renderConversations();
}

function renderConversations() {
  const list = $("conversation-list");
  list.replaceChildren(...state.conversations.map(conversationItem));
  $("history-empty").hidden = state.conversations.length > 0;
  $("load-more").hidden = !state.hasMore;
}

/** Empty the sidebar (signing out). */
export function clearConversationList() {
  $("conversation-list").replaceChildren();
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
        renameConversation(conv.id, title);
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
  $("confirm-title").textContent = "Delete conversation?"; // the dialog is shared with file deletes
  $("confirm-text").textContent = `“${conv.title || "New chat"}” and its messages will be deleted.`;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "ok") return;
      try {
        await state.client.deleteConversation(conv.id);
        removeConversation(conv.id);
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
  setCurrentTitle(title);
  document.title = title ? `${title} – ragway chat` : "ragway chat";
}

export function startNewChat({ focus = true } = {}) {
  abortAnswer();
  nextOpenToken(); // a conversation still loading must not replace the new chat
  setCurrentConversation(null);
  clearMessages();
  setTitle("");
  setHash(null);
  renderConversations();
  closeSidebar();
  if (focus) $("prompt").focus();
}

export async function openConversation(id, { fromHash = false } = {}) {
  abortAnswer();
  const token = nextOpenToken();
  closeSidebar();
  try {
    const conv = await state.client.getConversation(id);
    if (token !== state.openToken) return;
    setCurrentConversation(conv.id);
    setTitle(conv.title);
    clearMessages();
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
    addConversation({ id: conv.id, title: conv.title, model: conv.model, updated_at: conv.updated_at });
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

/** The answer being sent started (or continues) conversation `id`: open it in the sidebar. */
export function adoptConversation(id, title) {
  if (!id || state.currentId === id) return;
  setCurrentConversation(id);
  setHash(id);
  addConversation({ id, title, updated_at: Math.floor(Date.now() / 1000) }, { first: true });
  setTitle(title);
  renderConversations();
}

// -- the sidebar as a drawer on narrow screens

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

export function wireConversations() {
  $("new-chat").addEventListener("click", () => startNewChat());
  $("load-more").addEventListener("click", () => loadConversations({ more: true }).catch(handleError));
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
}
