// Signing in and out with an API key: the sign-in form, loading what the signed-in view shows,
// and forgetting all of it on sign-out (a 401 anywhere signs out too, see main.js).

import { ApiError, createClient } from "./api.js";
import { loadModels, restoreDraft } from "./chat.js";
import { clearKnowledge, loadKnowledge } from "./knowledge.js";
import {
  clearConversationList,
  conversationIdFromHash,
  loadConversations,
  openConversation,
  startNewChat,
} from "./conversations.js";
import { $ } from "./dom.js";
import { clearMessages } from "./messages.js";
import { describeError, handleError, hideNotice } from "./notice.js";
import { abortAnswer, clearSession, dropClient, setSession, state } from "./state.js";
import * as store from "./store.js";
import { updateCredits } from "./usage.js";

function showSignIn(errorText = "") {
  $("app-view").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = errorText;
  $("signin-api").value = store.loadApiBase();
  $("signin-key").focus();
}

/** Check `key` against the gateway and show the signed-in view; `remember` saves the key. */
export async function signIn(key, { remember } = {}) {
  const client = createClient({ baseUrl: store.loadApiBase(), key });
  const me = await client.me();
  setSession({ key, client, me });
  if (remember !== undefined) store.saveKey(key, remember);
  $("signin-key").value = "";
  $("signin-error").textContent = "";
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  updateCredits(me.credits);
  restoreDraft();
  const results = await Promise.allSettled([loadModels(), loadConversations(), loadKnowledge()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) handleError(failed.reason);
  if (!state.client) return; // a 401 above signed us out again
  const id = conversationIdFromHash();
  if (id) await openConversation(id, { fromHash: true });
  else startNewChat({ focus: false });
  $("prompt").focus();
  $("app-view").dataset.loaded = "true"; // what was left open is restored: panels may be toggled now
}

export function signOut(errorText = "") {
  delete $("app-view").dataset.loaded;
  abortAnswer();
  store.clearKey();
  clearSession();
  hideNotice();
  clearMessages();
  clearConversationList();
  clearKnowledge();
  if (window.location.hash) history.replaceState(null, "", window.location.pathname + window.location.search);
  document.title = "ragway chat";
  showSignIn(errorText);
}

export function wireAuth() {
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
      dropClient();
      $("signin-error").textContent = describeError(err);
      $("signin-key").focus();
    } finally {
      $("signin-submit").disabled = false;
    }
  });
  $("signout-button").addEventListener("click", () => signOut());
}

/** Sign in with the remembered key, or show the sign-in form. */
export async function resumeSession() {
  const key = store.loadKey();
  if (!key) {
    showSignIn();
    return;
  }
  try {
    await signIn(key);
  } catch (err) {
    dropClient();
    if (err instanceof ApiError && err.status === 401) store.clearKey();
    showSignIn(describeError(err));
  }
}
