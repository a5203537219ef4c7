// The files of one vector store, for the Knowledge panel (knowledge.js): uploading files into
// it (POST /v1/files, then attaching each to the store), each file's ingestion progress from its
// vector store file status, polled while `in_progress`, and deleting a file from the store and
// the file itself.
//
// A file's row is an `.upload-item` whose `data-state` is `uploading`, `in_progress`, `done` or
// `error`; names and errors go in with textContent only.

import { ApiError } from "./api.js";
import { $, button, el } from "./dom.js";
import { describeError, handleError, showNotice } from "./notice.js";
import { state } from "./state.js";

// The gateway hints 250 ms (`openai-poll-after-ms`); ingestion on a small machine takes seconds,
// so start near that and back off while files stay in progress.
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 3000;
const MAX_PAGES = 20;

const view = {
  store: null, // the vector store shown
  writable: false,
  token: 0, // a newer showStoreFiles() makes the older one's late results be dropped
  items: new Map(), // file id -> item, for the files of the shown store
  names: new Map(), // file id -> filename (vector store files do not carry a name)
  timer: null,
  polling: false,
};
let onFilesChanged = () => {};

/** The id of the store whose files are shown, or null. */
export function shownStoreId() {
  return view.store ? view.store.id : null;
}

/** Forget what is shown and stop polling (sign-out). */
export function clearStoreFiles() {
  view.token += 1;
  view.store = null;
  view.items = new Map();
  view.names = new Map();
  stopPolling();
  $("upload-list").replaceChildren();
  $("files-empty").hidden = true;
  $("store-readonly").hidden = true;
}

/** Show the files of `store` (null: none), with uploads and deletes when `writable`. */
export async function showStoreFiles(store, writable) {
  clearStoreFiles();
  const token = view.token;
  view.store = store;
  view.writable = writable;
  $("dropzone").hidden = !store || !writable;
  $("store-readonly").hidden = !store || writable;
  if (!store) {
    updateEmpty();
    return;
  }
  const [files, names] = await Promise.all([listStoreFiles(store.id), ownFileNames()]);
  if (token !== view.token) return;
  view.names = names;
  for (const f of files) {
    const item = newItem(names.get(f.id) || f.id);
    item.fileId = f.id;
    view.items.set(f.id, item);
    $("upload-list").append(item.li);
    applyStatus(item, f);
  }
  updateEmpty();
  schedulePoll(POLL_FIRST_MS);
}

async function listStoreFiles(storeId) {
  const files = [];
  let after = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const list = await state.client.listVectorStoreFiles(storeId, { after });
    files.push(...(list.data || []));
    if (!list.has_more || !list.last_id) break;
    after = list.last_id;
  }
  return files;
}

/** The names of the user's own files; another user's files (in a shared store) show their id. */
async function ownFileNames() {
  try {
    const list = await state.client.listFiles();
    return new Map((list.data || []).map((f) => [f.id, f.filename]));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw err;
    return new Map();
  }
}

function updateEmpty() {
  const empty = $("files-empty");
  empty.textContent = view.store ? "No files in this vector store yet." : "Create a vector store to add files.";
  empty.hidden = $("upload-list").children.length > 0;
}

function newItem(name) {
  const li = el("li", "upload-item");
  const progress = el("progress");
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Progress of ${name}`);
  const del = button("Delete", "link upload-delete", `Delete ${name}`);
  del.hidden = true;
  const status = el("span", "upload-status");
  status.setAttribute("role", "status");
  li.append(el("span", "upload-name", name), progress, del, status);
  const item = { li, progress, status, del, name, fileId: null };
  // A file the gateway never stored (refused upload) has nothing to delete: its row is dismissed.
  del.addEventListener("click", () => (item.fileId ? confirmDelete(item) : removeItem(item)));
  return item;
}

function formatBytes(n) {
  if (!(n > 0)) return "";
  if (n < 1024) return ` · ${n} B`;
  if (n < 1024 * 1024) return ` · ${(n / 1024).toFixed(1)} KB`;
  return ` · ${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Show a vector store file's status: indexing, ready, or why it failed. */
function applyStatus(item, vsFile) {
  const status = vsFile.status;
  item.li.dataset.state = status === "completed" ? "done" : status === "in_progress" ? "in_progress" : "error";
  item.del.hidden = !view.writable || !item.fileId;
  if (status === "in_progress") {
    item.progress.hidden = false;
    item.progress.removeAttribute("value"); // indeterminate: the gateway reports no fraction
    item.status.textContent = "Indexing…";
  } else if (status === "completed") {
    item.progress.hidden = true;
    item.status.textContent = `Ready${formatBytes(vsFile.usage_bytes)}`;
  } else {
    item.progress.hidden = true;
    const why = vsFile.last_error && vsFile.last_error.message;
    item.status.textContent = status === "cancelled" ? "Cancelled" : `Failed: ${why || "the file could not be indexed"}`;
  }
}

function failItem(item, err) {
  item.li.dataset.state = "error";
  item.progress.hidden = true;
  if (!item.fileId) {
    item.del.textContent = "Dismiss";
    item.del.setAttribute("aria-label", `Dismiss ${item.name}`);
  }
  item.del.hidden = false;
  item.status.textContent = `Failed: ${err instanceof ApiError ? err.message : describeError(err)}`;
}

async function uploadFiles(files) {
  if (!files.length) return;
  const store = view.store;
  if (!store || !view.writable) {
    showNotice("Create or choose one of your vector stores to upload to first.");
    return;
  }
  const token = view.token;
  const jobs = files.map((file) => {
    const item = newItem(file.name);
    item.li.dataset.state = "uploading";
    item.status.textContent = "Waiting…";
    $("upload-list").prepend(item.li);
    return { file, item };
  });
  updateEmpty();
  // One file at a time: each gets its own progress and its own error; files already attached
  // are indexed (and polled) while the next one uploads.
  for (const { file, item } of jobs) {
    item.status.textContent = "Uploading…";
    try {
      const uploaded = await state.client.uploadFile(file, {
        onProgress: (f) => {
          item.progress.value = f;
        },
      });
      item.fileId = uploaded.id;
      view.names.set(uploaded.id, file.name);
      item.status.textContent = "Adding to the vector store…";
      const attached = await state.client.attachFile(store.id, uploaded.id);
      if (token === view.token) view.items.set(uploaded.id, item);
      applyStatus(item, attached);
      schedulePoll(POLL_FIRST_MS);
    } catch (err) {
      failItem(item, err);
      if (err instanceof ApiError && err.status === 401) {
        handleError(err);
        return;
      }
    }
  }
  onFilesChanged();
}

// -- polling the status of files being indexed

function stopPolling() {
  if (view.timer !== null) clearTimeout(view.timer);
  view.timer = null;
}

function pending() {
  return [...view.items.values()].filter((i) => i.li.dataset.state === "in_progress");
}

function schedulePoll(delay) {
  if (view.timer !== null || view.polling || !pending().length) return;
  view.timer = setTimeout(() => {
    view.timer = null;
    poll(view.token, delay);
  }, delay);
}

async function poll(token, delay) {
  view.polling = true;
  let finished = false;
  try {
    for (const item of pending()) {
      let f;
      try {
        f = await state.client.getVectorStoreFile(view.store.id, item.fileId);
      } catch (err) {
        if (token !== view.token) return;
        if (err instanceof ApiError && err.status === 401) {
          handleError(err);
          return;
        }
        if (err instanceof ApiError && err.status === 404) {
          // Removed meanwhile (another tab, the API): drop its row.
          removeItem(item);
          finished = true;
        }
        continue; // anything else is taken as passing: the next poll asks again
      }
      if (token !== view.token) return;
      applyStatus(item, f);
      if (f.status !== "in_progress") finished = true;
    }
  } finally {
    view.polling = false;
  }
  if (token !== view.token) return;
  if (finished) onFilesChanged();
  schedulePoll(Math.min(Math.round(delay * 1.5), POLL_MAX_MS));
}

// -- deleting

function removeItem(item) {
  item.li.remove();
  if (item.fileId) view.items.delete(item.fileId);
  updateEmpty();
}

function confirmDelete(item) {
  const store = view.store;
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = "Delete file?";
  $("confirm-text").textContent = `“${item.name}” will be removed from “${store.name || store.id}” and deleted.`;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    () => {
      if (dialog.returnValue === "ok") deleteFile(store, item);
    },
    { once: true },
  );
  dialog.showModal();
}

/** Detach the file from the store (its chunks go), then delete the file itself. */
async function deleteFile(store, item) {
  const gone = (err) => err instanceof ApiError && err.status === 404;
  item.del.disabled = true;
  item.status.textContent = "Deleting…";
  try {
    await state.client.detachFile(store.id, item.fileId).catch((err) => {
      if (!gone(err)) throw err;
    });
    // 404: not the user's file (an admin tidying a shared store) or already deleted.
    await state.client.deleteFile(item.fileId).catch((err) => {
      if (!gone(err)) throw err;
    });
  } catch (err) {
    item.del.disabled = false;
    failItem(item, err);
    handleError(err);
    return;
  }
  removeItem(item);
  $("upload-collection").focus(); // the focused Delete button is gone
  onFilesChanged();
}

export function wireStoreFiles({ onFilesChanged: changed }) {
  onFilesChanged = changed;
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
