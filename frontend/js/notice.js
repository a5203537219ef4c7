// Errors and notices: one sentence a person can act on for any error, shown in the notice bar
// (a 429's wait counted down while it is on screen). A 401 means the key no longer works: the
// handler set with onUnauthorized() (signing out) takes it instead.

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { state } from "./state.js";

/** A sentence a person can act on, for any error the API layer throws. */
export function describeError(err) {
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
let unauthorized = null;

export function hideNotice() {
  clearInterval(noticeTimer);
  noticeTimer = null;
  $("notice").hidden = true;
  $("notice-text").textContent = "";
}

export function showNotice(text, { kind = "error", retryAfter = null } = {}) {
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

/** What to do when a signed-in request gets a 401, called with the error's text. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Shows an error; a 401 means the key no longer works, so it signs out. Returns the text. */
export function handleError(err) {
  if (err && err.name === "AbortError") return null;
  const text = describeError(err);
  if (err instanceof ApiError && err.status === 401 && state.client && unauthorized) {
    unauthorized(text);
    return text;
  }
  showNotice(text, { retryAfter: err instanceof ApiError && err.status === 429 ? err.retryAfter : null });
  return text;
}

export function wireNotice() {
  $("notice-close").addEventListener("click", hideNotice);
}
