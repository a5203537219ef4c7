// The Settings dialog: gateway URL, temperature, answer length and sources per answer. A new
// gateway URL signs in again there with the same key.

import { signIn, signOut } from "./auth.js";
import { $ } from "./dom.js";
import { describeError } from "./notice.js";
import { state, updateSettings } from "./state.js";
import * as store from "./store.js";

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
  const patch = {};
  if (Number.isFinite(temperature) && temperature >= 0 && temperature <= 2) patch.temperature = temperature;
  if (Number.isFinite(maxTokens) && maxTokens > 0) patch.maxTokens = maxTokens;
  if (Number.isFinite(topK) && topK > 0) patch.topK = topK;
  updateSettings(patch);
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

export function wireSettings() {
  $("settings-button").addEventListener("click", openSettings);
  $("settings-cancel").addEventListener("click", () => $("settings-dialog").close());
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveSettingsForm();
  });
}
