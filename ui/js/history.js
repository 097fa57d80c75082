// The History tab: recent fetch sessions (and dial-up steps, deliveries outside a fetch) with
// per-domain replies, messages, problems (with where to fix them) and transcripts.
import { call, asUiError } from "./api.js";
import { $, h } from "./dom.js";

const time = (iso) => new Date(iso).toLocaleString();
const kib = (n) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);

// One record: its headline as Mailcall words it (the CLI's `history` says the same), what
// asked for it, and whether it went well.
function session(r) {
  const what = r.kind === "fetch" ? r.trigger : `${r.kind} (${r.trigger})`;
  const summary = h("summary", {},
    h("strong", {}, time(r.finished_at)), ` · ${what} · `,
    h("span", { class: r.ok ? "ok" : "failed" }, r.ok ? "OK" : "failed"), ` · ${r.headline}`);
  const parts = [summary];
  if (r.domains.length) {
    parts.push(h("table", { class: "domains-table" },
      h("tr", {}, h("th", {}, "Domain"), h("th", {}, "Account"), h("th", {}, "Reply"), h("th", {}, "Messages")),
      ...r.domains.map((d) => h("tr", {}, h("td", {}, d.domain), h("td", {}, d.account),
        h("td", {}, `${d.code ?? "---"} ${d.text}`), h("td", {}, String(d.messages))))));
  }
  if (r.messages.length) {
    parts.push(h("table", { class: "messages-table" },
      h("tr", {}, h("th", {}, "From"), h("th", {}, "Subject"), h("th", {}, "Size")),
      ...r.messages.map((m) => h("tr", {}, h("td", {}, m.from || m.sender || "<>"),
        h("td", {}, m.subject || "(no subject)"), h("td", {}, kib(m.size))))));
  }
  for (const p of r.problems) parts.push(h("p", { class: "error" }, p));
  for (const [account, lines] of r.transcripts) {
    const text = lines.map((l) => `${({ sent: "C:", received: "S:", note: "* " })[l.dir]} ${l.line}`).join("\n");
    parts.push(h("details", {}, h("summary", {}, `Transcript (${account})`), h("pre", {}, text)));
  }
  return h("details", { class: "session", "data-session": r.id }, ...parts);
}

export async function loadHistory() {
  const list = $("#history-list");
  try {
    const records = await call("history", { limit: 50 });
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
