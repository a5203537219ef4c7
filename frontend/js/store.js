// Where the page keeps what it remembers: the API key, the gateway URL and chat settings.
//
// The key lives in sessionStorage (this tab only) unless the user ticks "Remember me", then in
// localStorage. Settings and the last chosen model/vector stores are not secret: localStorage.

const KEY = "ragway.key";
const API = "ragway.api";
const SETTINGS = "ragway.settings";
const DRAFT = "ragway.draft";

export const DEFAULT_SETTINGS = Object.freeze({
  temperature: 0.7,
  maxTokens: 512,
  topK: 4,
  model: "",
  vectorStores: [], // ids of the vector stores answers draw from
  ragOpen: false,
});

function safeGet(storage, name) {
  try {
    return storage.getItem(name);
  } catch {
    return null;
  }
}

function safeSet(storage, name, value) {
  try {
    if (value === null || value === undefined || value === "") storage.removeItem(name);
    else storage.setItem(name, value);
  } catch {
    // Storage can be full or disabled (private mode); the page still works for this visit.
  }
}

export function loadKey() {
  return safeGet(sessionStorage, KEY) || safeGet(localStorage, KEY) || "";
}

export function saveKey(key, remember) {
  safeSet(sessionStorage, KEY, key);
  safeSet(localStorage, KEY, remember ? key : null);
}

export function clearKey() {
  safeSet(sessionStorage, KEY, null);
  safeSet(localStorage, KEY, null);
}

/** The gateway URL: `?api=` in the page address wins (and is remembered), then the saved one. */
export function loadApiBase() {
  const fromQuery = new URLSearchParams(window.location.search).get("api");
  if (fromQuery) {
    safeSet(localStorage, API, fromQuery);
    return fromQuery;
  }
  return safeGet(localStorage, API) || "";
}

export function saveApiBase(url) {
  safeSet(localStorage, API, (url || "").trim());
}

export function loadSettings() {
  try {
    const raw = JSON.parse(safeGet(localStorage, SETTINGS) || "{}");
    return { ...DEFAULT_SETTINGS, ...(raw && typeof raw === "object" ? raw : {}) };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

export function saveSettings(settings) {
  safeSet(localStorage, SETTINGS, JSON.stringify(settings));
}

/** The unsent message of this tab, so a reload does not lose what was being typed. */
export function loadDraft() {
  return safeGet(sessionStorage, DRAFT) || "";
}

export function saveDraft(text) {
  safeSet(sessionStorage, DRAFT, text);
}
