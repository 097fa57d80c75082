// The History tab: recent fetch sessions (and dial-up steps, deliveries outside a fetch, and
// hand-overs to LAN servers) with per-domain replies in the mode's words (ETRN or ATRN), messages,
// what each recipient's server said, problems (with where to fix them) and transcripts.
import { call, asUiError } from "./api.js";
import { COMMANDS } from "./contract.js";
import { $, h } from "./dom.js";
import { when as time } from "./time.js";

const kib = (n) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);

// One record: its headline as Mailcall words it (the CLI's `history` says the same), what
// asked for it, and whether it went well.
const MODES = { etrn: "ETRN", odmr: "ODMR" };

function outcome(o) {
  if (o.kind === "delivered") return "delivered";
  if (o.kind === "deferred") return `deferred (attempt ${o.attempts}, next at ${time(o.next_attempt)})`;
  return "refused, held in the queue";
}

function session(r) {
  const summary = h("summary", {},
    h("strong", {}, time(r.finished_at)), ` · ${r.label} · `,
    h("span", { class: r.ok ? "ok" : r.result === "partly OK" ? "partial" : "failed" }, r.result), ` · ${r.headline}`);
  const parts = [summary];
  if (r.domains.length) {
    parts.push(h("table", { class: "domains-table" },
      h("tr", {}, h("th", {}, "Domain"), h("th", {}, "Account"), h("th", {}, "Mode"), h("th", {}, "Reply"), h("th", {}, "Messages")),
      // Each domain's own outcome: one refused does not make the others' mail a failure.
      ...r.domains.map((d, i) => h("tr", { class: r.accepted[i] ? "domain-ok" : "domain-failed", "data-domain": d.domain },
        h("td", {}, d.domain), h("td", {}, d.account),
        h("td", {}, MODES[d.mode] || d.mode || "ETRN"),
        h("td", {}, `${d.code ?? "---"} ${d.text}`, h("span", { class: "explain" }, r.explanations[i] || "")),
        h("td", {}, String(d.messages))))));
  }
  if (r.handovers?.length) {
    parts.push(h("table", { class: "handovers-table" },
      h("tr", {}, h("th", {}, "Message"), h("th", {}, "Handed to"), h("th", {}, "Recipient"), h("th", {}, "Outcome"), h("th", {}, "Server's reply")),
      ...r.handovers.flatMap((ho) => ho.recipients.map((rc, i) => h("tr", {},
        h("td", {}, i === 0 ? (ho.subject || (ho.message_id ? `<${ho.message_id}>` : ho.id)) : ""),
        h("td", {}, i === 0 ? ho.target : ""),
        h("td", {}, rc.address),
        h("td", { class: rc.outcome.kind === "delivered" ? "ok" : "failed" }, outcome(rc.outcome)),
        h("td", { class: "reply" }, rc.reply))))));
  }
  if (r.messages.length) {
    // Where each copy went: a Maildir, or Mailcall's queue for a LAN server (one per recipient group).
    const went = (m) => (m.copies?.length
      ? m.copies.map((c) => (c.queued ? `queued for ${c.destination}` : c.destination) + ` (${c.recipients.join(", ")})`).join("; ")
      : "Maildir");
    parts.push(h("table", { class: "messages-table" },
      h("tr", {}, h("th", {}, "From"), h("th", {}, "Subject"), h("th", {}, "Size"), h("th", {}, "Went to")),
      ...r.messages.map((m) => h("tr", {}, h("td", {}, m.from || m.sender || "<>"),
        h("td", {}, m.subject || "(no subject)"), h("td", {}, kib(m.size)), h("td", { class: "reply" }, went(m))))));
  }
  // A large drain lists its first messages; the rest are in the counts above.
  if (r.unlisted_messages) {
    parts.push(h("p", { class: "unlisted" }, `… and ${r.unlisted_messages} more, counted above but not listed one by one.`));
  }
  for (const p of r.problems) parts.push(h("p", { class: "error" }, p));
  for (const [account, lines] of r.transcripts) {
    const text = lines.map((l) => `${({ sent: "C:", received: "S:", note: "* " })[l.dir]} ${l.line}`).join("\n");
    parts.push(h("details", {}, h("summary", {}, `Transcript (${account})`), h("pre", {}, text)));
  }
  // A record with nothing more than its headline says so when opened, instead of showing nothing.
  if (parts.length === 1) parts.push(h("p", { class: "hint" }, "Nothing more to show: no domain was asked and no mail came in this one."));
  return h("details", { class: "session", "data-session": r.id, "data-kind": r.kind }, ...parts);
}

export async function loadHistory() {
  const list = $("#history-list");
  try {
    const records = await call(COMMANDS.HISTORY, { limit: 50 });
    list.replaceChildren(...records.map(session));
    $("#history-empty").hidden = records.length > 0;
    const first = list.querySelector("details.session");
    if (first) first.open = true;
  } catch (e) {
    list.replaceChildren(h("p", { class: "error" }, asUiError(e).message));
  }
}

export function initHistory() {
  $("#history-reload").addEventListener("click", loadHistory);
}
