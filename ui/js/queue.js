// The Queue tab: mail waiting in Mailcall's queue for a LAN mail server, or refused by one,
// per recipient (destination, state, attempts, last reply), with Retry now, and Bounce and
// Delete behind a confirmation. Whoever hands the mail on does it (this tray, or the daemon).
import { call, asUiError } from "./api.js";
import { COMMANDS } from "./contract.js";
import { $, h } from "./dom.js";

const time = (iso) => new Date(iso).toLocaleTimeString();
const when = (iso) => new Date(iso).toLocaleString();

function state(r) {
  if (r.state === "waiting") {
    const next = r.next_attempt && new Date(r.next_attempt) > new Date() ? `next try ${time(r.next_attempt)}` : "due now";
    const unsure = r.maybe_delivered ? " (an earlier try may have been stored: a retry can make a second copy)" : "";
    return `waiting, ${next}${unsure}`;
  }
  if (r.state === "refused") return "refused, held";
  return r.state;
}

function summary(q) {
  if (!q.messages.length) return "Nothing waits: all mail was handed on.";
  const parts = [];
  if (q.waiting) parts.push(`${q.waiting} waiting for the LAN mail server`);
  if (q.refused) parts.push(`${q.refused} refused by it (retry, bounce or delete)`);
  return `${q.messages.length} message(s): ${parts.join(", ") || "nothing left to do"}`;
}

function actions(m) {
  const cell = h("span", { class: "actions" });
  const ask = (verb, what, action) => {
    cell.replaceChildren(
      h("span", {}, `${verb} this message? ${what} `),
      h("button", { type: "button", class: "small danger", id: "queue-confirm", onclick: () => act(action, [m.id]) }, `Yes, ${verb.toLowerCase()}`),
      h("button", { type: "button", class: "small", onclick: () => loadQueue() }, "Keep"));
  };
  cell.append(
    h("button", { type: "button", class: "small primary", "data-retry": m.id, onclick: () => act("retry", [m.id]) }, "Retry now"),
    h("button", { type: "button", class: "small", "data-bounce": m.id, onclick: () => ask("Bounce", "A delivery report with it goes into your Maildir.", "bounce") }, "Bounce…"),
    h("button", { type: "button", class: "small danger", "data-delete": m.id, onclick: () => ask("Delete", "It is gone for good.", "delete") }, "Delete…"));
  return cell;
}

// One message: what it is and its actions, then a row per recipient.
function card(m) {
  return h("div", { class: "queued", "data-message": m.id },
    h("div", { class: "head" },
      h("div", { class: "what" },
        h("strong", {}, m.subject || "(no subject)"),
        ` · from ${m.from || m.sender || "<>"} · received ${when(m.received_at)}`),
      actions(m)),
    h("table", {},
      h("tr", {}, h("th", {}, "Recipient"), h("th", {}, "Destination"), h("th", {}, "State"), h("th", {}, "Attempts"), h("th", {}, "Last reply")),
      ...m.recipients.map((r) => h("tr", { "data-message": m.id, "data-recipient": r.address },
        h("td", {}, r.address),
        h("td", {}, r.destination),
        h("td", { class: `state-${r.state}` }, state(r)),
        h("td", {}, String(r.attempts)),
        h("td", { class: "reply" }, r.reply || "")))));
}

export async function loadQueue() {
  try {
    const q = await call(COMMANDS.LOAD_QUEUE);
    $("#queue-summary").textContent = summary(q);
    $("#queue-note").textContent = q.note || "";
    $("#queue-note").hidden = !q.note;
    $("#queue-list").replaceChildren(...q.messages.map(card));
    $("#queue-retry-all").disabled = q.messages.length === 0;
    $("#queue-problems").textContent = q.problems.join("\n");
  } catch (e) {
    $("#queue-error").textContent = asUiError(e).message;
  }
}

async function act(action, ids, all = false) {
  $("#queue-result").textContent = "";
  $("#queue-error").textContent = "";
  try {
    $("#queue-result").textContent = await call(COMMANDS.QUEUE_ACTION, { action, ids, all });
  } catch (e) {
    $("#queue-error").textContent = asUiError(e).message;
  }
  await loadQueue();
}

export function initQueue() {
  $("#queue-reload").addEventListener("click", () => loadQueue());
  $("#queue-retry-all").addEventListener("click", () => act("retry", [], true));
}
