// What the page holds while it runs: the session, the conversations, the open chat's messages,
// the answer being streamed and the vector stores. This module owns it: other modules read
// `state` and change it only through the setters below (assigning to `state` throws, and the
// lists it hands out are frozen), so every change is a named call that can be searched for.
// What must outlive a reload goes through store.js; updateSettings() saves the settings there.

import * as store from "./store.js";

const current = {
  key: "",
  client: null, // the api.js client of the signed-in key
  me: null,
  settings: Object.freeze(store.loadSettings()),
  conversations: Object.freeze([]), // newest first
  hasMore: false,
  currentId: null,
  currentTitle: "",
  messages: Object.freeze([]), // {role, content, status, citations, usage, finishReason, error, node}
  busy: null, // the AbortController of the answer being streamed
  vectorStores: Object.freeze([]), // the Knowledge panel's, as /v1/vector_stores lists them
  openToken: 0, // guards against a slow conversation load overwriting a newer one
};

/** Read-only view of the page state. */
export const state = new Proxy(current, {
  set(_, name) {
    throw new TypeError(`state.${String(name)} changes through a setter in state.js`);
  },
  deleteProperty(_, name) {
    throw new TypeError(`state.${String(name)} changes through a setter in state.js`);
  },
});

// -- session

export function setSession({ key, client, me }) {
  current.key = key;
  current.client = client;
  current.me = me;
}

export function setMe(me) {
  current.me = me;
}

/** Forget the client (a failed sign-in); the key and settings stay. */
export function dropClient() {
  current.client = null;
}

/** Everything of the signed-in user goes; settings stay (they belong to the browser). */
export function clearSession() {
  current.key = "";
  current.client = null;
  current.me = null;
  current.conversations = Object.freeze([]);
  current.currentId = null;
  current.messages = Object.freeze([]);
  current.vectorStores = Object.freeze([]);
}

// -- settings

/** Merge `patch` into the settings and save them in this browser. */
export function updateSettings(patch) {
  current.settings = Object.freeze({ ...current.settings, ...patch });
  store.saveSettings(current.settings);
}

// -- conversations (the history sidebar)

function setConversationList(list) {
  current.conversations = Object.freeze(
    [...list].sort((a, b) => (b.updated_at || 0) - (a.updated_at || 0)),
  );
}

/** A first page of history replaces the list; a further page (`more`) adds what is new. */
export function setConversations(page, { more = false, hasMore = false } = {}) {
  if (more) {
    const seen = new Set(current.conversations.map((c) => c.id));
    setConversationList([...current.conversations, ...page.filter((c) => !seen.has(c.id))]);
  } else {
    setConversationList(page);
  }
  current.hasMore = Boolean(hasMore);
}

/** Add a conversation the list does not show yet (`first`: at the top, as the newest). */
export function addConversation(conv, { first = false } = {}) {
  if (current.conversations.some((c) => c.id === conv.id)) return;
  setConversationList(first ? [conv, ...current.conversations] : [...current.conversations, conv]);
}

export function renameConversation(id, title) {
  setConversationList(current.conversations.map((c) => (c.id === id ? { ...c, title } : c)));
}

export function removeConversation(id) {
  setConversationList(current.conversations.filter((c) => c.id !== id));
}

export function setCurrentConversation(id) {
  current.currentId = id;
}

export function setCurrentTitle(title) {
  current.currentTitle = title || "";
}

/** A new token for a conversation load; a load whose token is no longer current is dropped. */
export function nextOpenToken() {
  current.openToken += 1;
  return current.openToken;
}

// -- messages of the open conversation

export function clearMessageList() {
  current.messages = Object.freeze([]);
}

export function pushMessage(message) {
  current.messages = Object.freeze([...current.messages, message]);
}

/** Change fields of one message record (e.g. the answer while it streams). */
export function updateMessage(message, patch) {
  Object.assign(message, patch);
}

// -- the answer being streamed

export function setBusy(controller) {
  current.busy = controller;
}

/** Stop the answer being streamed, if any. */
export function abortAnswer() {
  if (current.busy) current.busy.abort();
}

// -- vector stores (the Knowledge panel)

export function setVectorStores(list) {
  current.vectorStores = Object.freeze([...list]);
}
