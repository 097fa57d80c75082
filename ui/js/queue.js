// The Queue tab: mail waiting in Mailcall's queue both ways — outgoing mail for the smarthost
// ("out") beside incoming mail for a LAN mail server ("in") — each message with its direction,
// sender, recipients, size, age, next try and last reply, then a row per recipient; with Retry
// now, Hold and Release, and Bounce and Delete behind a confirmation. Whoever hands the mail on
// does it (this tray, or the daemon).
import { call, asUiError } from "./api.js";
import { COMMANDS } from "./contract.js";
import { $, h } from "./dom.js";

const time = (iso) => new Date(iso).toLocaleTimeString();
const when = (iso) => new Date(iso).toLocaleString();

// How long ago, in words: 45s, 12m, 3h 5m, 2d 4h.
function age(iso) {
  const s = Math.max(0, Math.floor((Date.now() - new Date(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const size = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`);

// When the message is tried next, in words.
function nextTry(m) {
  if (m.held) return "held: Release to send it";
  if (!m.next_attempt) return m.recipients.some((r) => r.state === "refused") ? "refused, held" : "nothing left";
  if (new Date(m.next_attempt) > new Date()) return `next try ${time(m.next_attempt)}`;
  return m.direction === "out" ? "at the next send (link up)" : "due now";
}

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
  if (!q.messages.length) return "Nothing waits: all mail was sent and handed on.";
  const incoming = q.messages.length - q.outgoing;
  const where = !q.outgoing ? "for the LAN mail server" : !incoming ? "to be sent" : "to be sent or handed on";
  const parts = [];
  if (q.waiting) parts.push(`${q.waiting} waiting ${where}`);
  if (q.refused) parts.push(`${q.refused} refused by ${q.outgoing ? "the server" : "it"} (retry, bounce or delete)`);
  if (q.held) parts.push(`${q.held} message(s) held`);
  const ways = q.outgoing ? ` (${q.outgoing} outgoing, ${incoming} for the LAN mail server)` : "";
  return `${q.messages.length} message(s)${ways}: ${parts.join(", ") || "nothing left to do"}`;
}

function actions(m) {
  const cell = h("span", { class: "actions" });
  const ask = (verb, what, action) => {
    cell.replaceChildren(
      h("span", {}, `${verb} this message? ${what} `),
      h("button", { type: "button", class: "small danger", id: "queue-confirm", onclick: () => act(action, [m.id]) }, `Yes, ${verb.toLowerCase()}`),
      h("button", { type: "button", class: "small", onclick: () => loadQueue() }, "Keep"));
  };
  const hold = m.held
    ? h("button", { type: "button", class: "small", "data-release": m.id, onclick: () => act("release", [m.id]) }, "Release")
    : h("button", { type: "button", class: "small", "data-hold": m.id, onclick: () => act("hold", [m.id]) }, "Hold");
  const bounceWhat = m.direction === "out" && m.sender
    ? "A delivery report with it goes to its sender."
    : "A delivery report with it goes into your Maildir.";
  cell.append(
    h("button", { type: "button", class: "small primary", "data-retry": m.id, onclick: () => act("retry", [m.id]) }, "Retry now"),
    hold,
    h("button", { type: "button", class: "small", "data-bounce": m.id, onclick: () => ask("Bounce", bounceWhat, "bounce") }, "Bounce…"),
    h("button", { type: "button", class: "small danger", "data-delete": m.id, onclick: () => ask("Delete", "It is gone for good.", "delete") }, "Delete…"));
  return cell;
}

// One message: what it is and its actions, then a row per recipient.
function card(m) {
  const unsure = m.maybe_delivered ? " · may have gone out already: a retry can make a second copy" : "";
  return h("div", { class: "queued", "data-message": m.id, "data-direction": m.direction, "data-held": String(m.held) },
    h("div", { class: "head" },
      h("div", { class: "what" },
        h("span", { class: `direction direction-${m.direction}`, title: m.direction === "out" ? "outgoing, for the smarthost" : "incoming, for the LAN mail server" }, m.direction),
        " ",
        h("strong", {}, m.subject || "(no subject)"),
        ` · from <${m.sender}> · to ${m.recipients.map((r) => r.address).join(", ")}`,
        ` · ${size(m.size)} · ${age(m.received_at)} old (received ${when(m.received_at)})`,
        h("span", { class: "next", "data-next": m.id }, ` · ${nextTry(m)}`),
        h("span", { class: "unsure", "data-unsure": m.id }, unsure),
        m.last_reply ? h("div", { class: "reply", "data-last-reply": m.id }, `Last reply: ${m.last_reply}`) : ""),
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
