// The Knowledge panel over OpenAI's Vector Stores API: the user's vector stores and shared ones,
// which of them answers draw from, creating one, and (through store-files.js) the files of the
// store chosen under "Files of": uploads, ingestion progress, deletion.
//
// The rest of the page uses only the four `*Knowledge*` exports below, so another source of
// knowledge (another panel module exporting the same four) replaces this one by changing the
// imports in auth.js, chat.js and main.js.

import { $, el } from "./dom.js";
import { handleError } from "./notice.js";
import { setVectorStores, state, updateSettings } from "./state.js";
import { clearStoreFiles, showStoreFiles, shownStoreId, wireStoreFiles } from "./store-files.js";

// The gateway's `rag.collections` takes at most this many names (RagOptions in gateway/chat_completion/protocol.py).
const MAX_RAG_STORES = 16;
// Stores are listed 100 at a time; a user with more than this many sees the newest ones.
const MAX_PAGES = 20;

/** Open the panel as it was left and load the vector stores (on sign-in). */
export async function loadKnowledge() {
  $("rag-panel").open = Boolean(state.settings.ragOpen);
  await loadStores();
}

/** What a chat request adds so the answer draws on the chosen vector stores ({} for none). */
export function knowledgeRequestFields() {
  const collections = selectedStores().map(ragName).slice(0, MAX_RAG_STORES);
  return collections.length ? { rag: { collections, top_k: Number(state.settings.topK) || 4 } } : {};
}

/** Forget what the panel shows (on sign-out; the state itself is cleared with the session). */
export function clearKnowledge() {
  clearStoreFiles();
  $("collection-list").replaceChildren();
  $("upload-collection").replaceChildren();
  $("rag-summary").textContent = "";
}

/**
 * The name chat's `rag.collections` knows a store by. The gateway resolves those names as
 * `/v1/collections` route keys: a store made through `/v1/vector_stores` has its id as that key,
 * while a collection made before vector stores (`col_…`) keeps its own name, which the vector
 * store object shows as `name` unless the store was renamed since.
 */
function ragName(store) {
  return store.id.startsWith("vs_") ? store.id : store.name;
}

/** Whether the user may add and delete files: their own stores, and shared ones for admins. */
function writable(store) {
  return Boolean(store) && (!store.shared || (state.me && state.me.role === "admin"));
}

function storeLabel(store) {
  return store.name || `Untitled (${store.id})`;
}

async function loadStores() {
  const stores = [];
  let after = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const list = await state.client.listVectorStores({ after });
    stores.push(...(list.data || []));
    if (!list.has_more || !list.last_id) break;
    after = list.last_id;
  }
  setVectorStores(stores);
  renderStores();
}

function selectedStores() {
  const chosen = new Set(state.settings.vectorStores || []);
  return state.vectorStores.filter((s) => chosen.has(s.id));
}

function choose(storeId, on) {
  const set = new Set(state.settings.vectorStores || []);
  if (on) set.add(storeId);
  else set.delete(storeId);
  updateSettings({ vectorStores: [...set] });
  updateRagSummary();
}

function storeDetails(store) {
  const counts = store.file_counts || {};
  const parts = [];
  if (store.shared) parts.push("shared");
  if (typeof counts.total === "number") parts.push(`${counts.total} file${counts.total === 1 ? "" : "s"}`);
  if (counts.in_progress) parts.push(`${counts.in_progress} indexing`);
  if (counts.failed) parts.push(`${counts.failed} failed`);
  if (store.status === "expired") parts.push("expired");
  return parts.length ? ` · ${parts.join(" · ")}` : "";
}

function renderStores() {
  const chosen = new Set(state.settings.vectorStores || []);
  $("collection-list").replaceChildren(
    ...state.vectorStores.map((s) => {
      const id = `vs-${s.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const wrap = el("div", "check");
      const input = el("input");
      input.type = "checkbox";
      input.id = id;
      input.value = s.id;
      input.checked = chosen.has(s.id);
      input.addEventListener("change", () => choose(s.id, input.checked));
      const label = el("label");
      label.htmlFor = id;
      label.append(document.createTextNode(storeLabel(s)), el("span", "muted small", storeDetails(s)));
      wrap.append(input, label);
      return wrap;
    }),
  );
  $("collections-empty").hidden = state.vectorStores.length > 0;

  const target = $("upload-collection");
  const previous = target.value || shownStoreId();
  target.replaceChildren(
    ...state.vectorStores.map((s) => {
      const opt = el("option", null, `${storeLabel(s)}${s.shared ? " (shared)" : ""}`);
      opt.value = s.id;
      return opt;
    }),
  );
  if (state.vectorStores.some((s) => s.id === previous)) target.value = previous;
  else {
    // The first store the user can add files to, else the first one.
    const first = state.vectorStores.find(writable) || state.vectorStores[0];
    target.value = first ? first.id : "";
  }
  updateRagSummary();
  if (target.value !== shownStoreId() || !target.value) showFilesOfChosenStore();
}

function showFilesOfChosenStore() {
  const store = state.vectorStores.find((s) => s.id === $("upload-collection").value) || null;
  showStoreFiles(store, writable(store)).catch(handleError);
}

function updateRagSummary() {
  const n = selectedStores().length;
  $("rag-summary").textContent = n ? `(${n} selected)` : "(off)";
}

async function createStore(name) {
  let created;
  try {
    created = await state.client.createVectorStore(name);
  } catch (err) {
    handleError(err);
    return;
  }
  choose(created.id, true);
  setVectorStores([created, ...state.vectorStores.filter((s) => s.id !== created.id)]);
  renderStores();
  $("upload-collection").value = created.id;
  showFilesOfChosenStore();
}

export function wireKnowledge() {
  $("rag-panel").addEventListener("toggle", () => {
    updateSettings({ ragOpen: $("rag-panel").open });
  });
  $("new-collection-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-collection-name").value.trim();
    if (!name) return;
    $("new-collection-name").value = "";
    createStore(name);
  });
  $("upload-collection").addEventListener("change", showFilesOfChosenStore);
  // File counts change as files finish indexing or are deleted: refresh the store list.
  wireStoreFiles({ onFilesChanged: () => loadStores().catch(handleError) });
}
