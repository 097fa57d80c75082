// The History tab: recent fetch sessions with per-domain replies, messages and transcripts.
import { call, asUiError } from "./api.js";
import { $, h } from "./dom.js";

const time = (iso) => new Date(iso).toLocaleString();
const kib = (n) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);

function session(r) {
  const failed = r.errors.length > 0 || r.domains.some((d) => !["started", "no_mail", "already_running"].includes(d.outcome.kind));
  const n = r.messages.length;
  const summary = h("summary", {},
    h("strong", {}, time(r.finished_at)), ` · ${r.trigger || "?"} · ${n} message${n === 1 ? "" : "s"} · `,
    h("span", { class: failed ? "failed" : "ok" }, failed ? "failed" : "OK"), ` · ended: ${r.ended_because}`);
  const parts = [summary];
  if (r.domains.length) {
    parts.push(h("table", { class: "domains-table" },
      h("tr", {}, h("th", {}, "Domain"), h("th", {}, "Account"), h("th", {}, "Reply"), h("th", {}, "Messages")),
      ...r.domains.map((d) => h("tr", {}, h("td", {}, d.domain), h("td", {}, d.account),
        h("td", {}, `${d.code ?? "---"} ${d.text}`), h("td", {}, String(d.messages))))));
  }
  if (n) {
    parts.push(h("table", { class: "messages-table" },
      h("tr", {}, h("th", {}, "From"), h("th", {}, "Subject"), h("th", {}, "Size")),
      ...r.messages.map((m) => h("tr", {}, h("td", {}, m.from || m.sender || "<>"),
        h("td", {}, m.subject || "(no subject)"), h("td", {}, kib(m.size))))));
  }
  for (const e of r.errors) parts.push(h("p", { class: "error" }, e));
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
