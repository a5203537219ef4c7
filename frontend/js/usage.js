// Credits in the top bar and the Usage dialog.

import { ApiError } from "./api.js";
import { $, el } from "./dom.js";
import { handleError } from "./notice.js";
import { setMe, state } from "./state.js";

export function formatCredits(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: 4 });
}

export function updateCredits(value) {
  $("credits").textContent = formatCredits(value);
}

export async function refreshCredits() {
  if (!state.client) return;
  try {
    setMe(await state.client.me());
    updateCredits(state.me.credits);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) handleError(err);
  }
}

async function openUsage() {
  const dialog = $("usage-dialog");
  const tbody = $("usage-table").querySelector("tbody");
  tbody.replaceChildren();
  $("usage-empty").hidden = true;
  try {
    const usage = await state.client.usage();
    $("usage-credits").textContent = formatCredits(usage.credits);
    updateCredits(usage.credits);
    for (const row of usage.data || []) {
      const tr = el("tr");
      for (const value of [
        row.date,
        row.model,
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        formatCredits(row.cost),
      ]) {
        tr.append(el("td", null, String(value ?? "")));
      }
      tbody.append(tr);
    }
    $("usage-empty").hidden = (usage.data || []).length > 0;
    dialog.showModal();
  } catch (err) {
    handleError(err);
  }
}

export function wireUsage() {
  $("usage-button").addEventListener("click", openUsage);
}
