// Chatting: the model picker, the message box (Enter sends, the draft survives a reload), and
// sending a prompt with its answer streamed into the page, with Stop and Retry.

import { ApiError } from "./api.js";
import { knowledgeRequestFields } from "./knowledge.js";
import { $, el } from "./dom.js";
import { adoptConversation, loadConversations } from "./conversations.js";
import { addMessage, onRetry, renderMessage, scheduleRender, scrollToBottom } from "./messages.js";
import { describeError, handleError, hideNotice, showNotice } from "./notice.js";
import { abortAnswer, setBusy, state, updateMessage, updateSettings } from "./state.js";
import * as store from "./store.js";
import { refreshCredits } from "./usage.js";

export async function loadModels() {
  const select = $("model-select");
  const list = await state.client.models();
  // /v1/models also lists embedding models (mode "embedding"); chatting with one is a 404.
  const models = (list.data || []).filter((m) => (m.mode || "chat") === "chat").map((m) => m.id);
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

function autoGrow() {
  const ta = $("prompt");
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`;
}

/** Put this tab's unsent message back into the message box (on sign-in). */
export function restoreDraft() {
  $("prompt").value = store.loadDraft();
  autoGrow();
}

function showBusy(busy) {
  $("send-button").hidden = busy;
  $("stop-button").hidden = !busy;
  if (busy) $("stop-button").focus({ preventScroll: true });
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
  setBusy(controller);
  showBusy(true);
  const body = {
    model,
    messages: [{ role: "user", content }],
    max_tokens: Number(state.settings.maxTokens) || undefined,
    temperature: Number(state.settings.temperature),
    // As in OpenAI's API, exchanges are kept only when asked: the UI keeps its conversations.
    store: true,
  };
  if (state.currentId) body.conversation_id = state.currentId;
  Object.assign(body, knowledgeRequestFields());
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
        if (choice.delta && typeof choice.delta.content === "string") {
          updateMessage(answer, { content: answer.content + choice.delta.content });
        }
        if (choice.finish_reason) updateMessage(answer, { finishReason: choice.finish_reason });
      }
      if (Array.isArray(chunk.citations)) updateMessage(answer, { citations: chunk.citations });
      if (chunk.usage) updateMessage(answer, { usage: chunk.usage });
      scheduleRender(answer);
    }
    updateMessage(answer, { status: "ok" });
  } catch (err) {
    if (err && err.name === "AbortError") {
      updateMessage(answer, { status: "aborted" });
    } else {
      updateMessage(answer, { status: "failed", error: describeError(err) });
      handleError(err);
    }
  } finally {
    if (state.busy === controller) setBusy(null);
    showBusy(false);
    renderMessage(answer);
    scrollToBottom();
    if (state.client) {
      $("prompt").focus({ preventScroll: true });
      refreshCredits();
      loadConversations().catch(() => {});
    }
  }
}

export function wireChat() {
  onRetry(retryMessage);
  $("model-select").addEventListener("change", () => {
    updateSettings({ model: $("model-select").value });
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
  $("stop-button").addEventListener("click", abortAnswer);
}
