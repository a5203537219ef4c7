// The one module that talks HTTP to the ragway gateway.
//
// Every call returns parsed JSON or throws an ApiError that carries the HTTP status, the
// OpenAI-shaped error message and, for 429, the Retry-After seconds, so the UI can show a clear
// message instead of freezing. Chat streams are parsed from Server-Sent Events here too.

/** An error from the gateway (status > 0) or from the network (status 0). */
export class ApiError extends Error {
  constructor(status, message, { type = null, code = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Parses a Retry-After header (seconds or an HTTP date) into whole seconds, or null. */
export function parseRetryAfter(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const date = Date.parse(value);
  if (Number.isFinite(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  return null;
}

async function errorFromResponse(res) {
  let message = `${res.status} ${res.statusText || "error"}`;
  let type = null;
  let code = null;
  try {
    const body = await res.json();
    const err = body && body.error;
    if (err && typeof err.message === "string") {
      message = err.message;
      type = err.type ?? null;
      code = err.code ?? null;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    // Not JSON (a proxy's HTML page, say): keep the status line.
  }
  return new ApiError(res.status, message, {
    type,
    code,
    retryAfter: parseRetryAfter(res.headers.get("Retry-After")),
  });
}

function networkError(baseUrl, cause) {
  const err = new ApiError(0, `Cannot reach the gateway at ${baseUrl}.`);
  err.cause = cause;
  return err;
}

/** Normalises a gateway base URL: no trailing slash; empty means the page's own origin. */
export function normaliseBaseUrl(url) {
  const trimmed = (url || "").trim().replace(/\/+$/, "");
  return trimmed || window.location.origin;
}

/**
 * A client bound to one gateway and one API key.
 * @param {{baseUrl: string, key: string}} options
 */
export function createClient({ baseUrl, key }) {
  const base = normaliseBaseUrl(baseUrl);
  const authHeaders = () => ({ Authorization: `Bearer ${key}` });

  async function request(method, path, { body, signal } = {}) {
    const headers = authHeaders();
    const init = { method, headers, signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(base + path, init);
    } catch (cause) {
      if (cause && cause.name === "AbortError") throw cause;
      throw networkError(base, cause);
    }
    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return null;
    return res.json();
  }

  const enc = encodeURIComponent;

  return {
    baseUrl: base,

    me: () => request("GET", "/v1/me"),
    models: () => request("GET", "/v1/models"),
    usage: () => request("GET", "/v1/usage"),

    listConversations: ({ limit = 20, after = null } = {}) => {
      const q = new URLSearchParams({ limit: String(limit) });
      if (after) q.set("after", after);
      return request("GET", `/v1/conversations?${q}`);
    },
    getConversation: (id) => request("GET", `/v1/conversations/${enc(id)}`),
    renameConversation: (id, title) => request("PATCH", `/v1/conversations/${enc(id)}`, { body: { title } }),
    deleteConversation: (id) => request("DELETE", `/v1/conversations/${enc(id)}`),

    // OpenAI's Files and Vector Stores APIs (a vector store is a ragway collection).
    listVectorStores: ({ limit = 100, after = null } = {}) => {
      const q = new URLSearchParams({ limit: String(limit), order: "desc" });
      if (after) q.set("after", after);
      return request("GET", `/v1/vector_stores?${q}`);
    },
    createVectorStore: (name) => request("POST", "/v1/vector_stores", { body: { name } }),
    listVectorStoreFiles: (storeId, { limit = 100, after = null } = {}) => {
      const q = new URLSearchParams({ limit: String(limit), order: "desc" });
      if (after) q.set("after", after);
      return request("GET", `/v1/vector_stores/${enc(storeId)}/files?${q}`);
    },
    getVectorStoreFile: (storeId, fileId) =>
      request("GET", `/v1/vector_stores/${enc(storeId)}/files/${enc(fileId)}`),
    /** Attach an uploaded file to a store; it is ingested in the background (`in_progress`). */
    attachFile: (storeId, fileId) =>
      request("POST", `/v1/vector_stores/${enc(storeId)}/files`, { body: { file_id: fileId } }),
    detachFile: (storeId, fileId) =>
      request("DELETE", `/v1/vector_stores/${enc(storeId)}/files/${enc(fileId)}`),
    listFiles: ({ purpose = "assistants", limit = 10000 } = {}) =>
      request("GET", `/v1/files?${new URLSearchParams({ purpose, limit: String(limit) })}`),
    deleteFile: (fileId) => request("DELETE", `/v1/files/${enc(fileId)}`),

    /**
     * Uploads one file (`POST /v1/files`), reporting progress as a fraction in [0, 1].
     * XMLHttpRequest, because fetch has no upload progress events.
     */
    uploadFile(file, { purpose = "assistants", onProgress, signal } = {}) {
      return new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", `${base}/v1/files`);
        xhr.setRequestHeader("Authorization", `Bearer ${key}`);
        xhr.upload.onprogress = (e) => {
          if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
        };
        xhr.onload = () => {
          let body = null;
          try {
            body = JSON.parse(xhr.responseText);
          } catch {
            body = null;
          }
          if (xhr.status >= 200 && xhr.status < 300) {
            resolve(body);
            return;
          }
          const err = body && body.error;
          const fallback = {
            413: "The file is too large.",
            415: "This file type is not supported.",
          }[xhr.status];
          reject(
            new ApiError(xhr.status, (err && err.message) || fallback || `Upload failed (${xhr.status}).`, {
              type: err ? err.type : null,
              code: err ? err.code : null,
              retryAfter: parseRetryAfter(xhr.getResponseHeader("Retry-After")),
            }),
          );
        };
        xhr.onerror = () => reject(networkError(base, null));
        xhr.onabort = () => reject(new DOMException("Upload cancelled", "AbortError"));
        if (signal) signal.addEventListener("abort", () => xhr.abort(), { once: true });
        const form = new FormData();
        form.append("purpose", purpose);
        form.append("file", file, file.name);
        xhr.send(form);
      });
    },

    /**
     * Starts a streamed chat completion. Resolves once the response headers are in (so HTTP
     * errors throw here) to `{conversationId, events}`, where `events` is an async iterator of
     * the parsed SSE `data:` objects. Aborting `signal` cancels the request, which makes the
     * gateway stop generating.
     */
    async chatStream(body, { signal } = {}) {
      let res;
      try {
        res = await fetch(`${base}/v1/chat/completions`, {
          method: "POST",
          headers: { ...authHeaders(), "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
          signal,
        });
      } catch (cause) {
        if (cause && cause.name === "AbortError") throw cause;
        throw networkError(base, cause);
      }
      if (!res.ok) throw await errorFromResponse(res);
      return { conversationId: res.headers.get("X-Conversation-Id"), events: readSse(res.body) };
    },
  };
}

/** Yields the JSON payload of each `data:` event of an SSE body until `[DONE]`. */
export async function* readSse(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // Events end with a blank line; tolerate \r\n as the SSE spec allows.
      let sep;
      while ((sep = buffer.search(/\r?\n\r?\n/)) !== -1) {
        const raw = buffer.slice(0, sep);
        buffer = buffer.slice(sep).replace(/^\r?\n\r?\n/, "");
        const data = raw
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        try {
          yield JSON.parse(data);
        } catch {
          // A malformed event is skipped rather than ending the answer.
        }
      }
    }
  } finally {
    // Also reached when the consumer stops early: cancelling closes the connection.
    reader.cancel().catch(() => {});
  }
}
