// The Accounts tab: list, add/edit form (mode ETRN or ODMR, passwords write-only, the outgoing
// server), Test connection, remove.
import { call, asUiError } from "./api.js";
import { COMMANDS, DEFAULT_PORTS, FIELDS, SMARTHOST_PORTS } from "./contract.js";
import { $, $$, h, readFields, showBanner, showErrors } from "./dom.js";

const MODES = { etrn: "ETRN", odmr: "ODMR" };
const MODE_HINTS = {
  etrn: "Mailcall asks the ISP (ETRN); the ISP then connects to Mailcall's listener to deliver, so it must be able to reach it (Settings tab: Listen on).",
  odmr: "Mailcall connects, logs in and asks (ATRN); the ISP delivers on that same connection. Works behind NAT and without port 25; needs the user name and password.",
};

let shownDefault = null; // the port the placeholder shows now

// The port an ISP usually offers for the mode and security chosen (Mailcall's own rule).
function defaultPort() {
  return DEFAULT_PORTS[$("#acct-mode").value]?.[$("#acct-security").value] ?? DEFAULT_PORTS.etrn.starttls;
}

// With security None no password may be sent (it would go in clear): user name and password
// are off, and sent empty.
function followSecurity() {
  const none = $("#acct-security").value === "none";
  for (const id of ["#acct-username", "#acct-password"]) {
    $(id).disabled = none;
    if (none) $(id).value = "";
  }
  $("#login-off").hidden = !none;
}

// The port placeholder follows mode and security; a port that was the old default follows too.
function followDefaults() {
  const port = $("#acct-port");
  const now = defaultPort();
  if (shownDefault !== null && port.value.trim() === String(shownDefault)) port.value = String(now);
  port.placeholder = String(now);
  shownDefault = now;
  $("#mode-hint").textContent = MODE_HINTS[$("#acct-mode").value] || "";
}

let shownSmarthostDefault = null; // the same for the outgoing server's port

// The outgoing port's placeholder follows its security, by Mailcall's rule, as the ISP's does.
function followSmarthostDefaults() {
  const port = $("#acct-smarthost-port");
  const now = SMARTHOST_PORTS[$("#acct-smarthost-security").value] ?? SMARTHOST_PORTS.starttls;
  if (shownSmarthostDefault !== null && port.value.trim() === String(shownSmarthostDefault)) port.value = String(now);
  port.placeholder = String(now);
  shownSmarthostDefault = now;
}

// The outgoing server's own user name and password show only when it has a login of its own.
function followSmarthostLogin() {
  const own = $("#acct-smarthost-login").value === "own";
  for (const el of $$("[data-own-login]")) el.hidden = !own;
}

const FORMS = [
  ["domain", "this domain"],
  ["subdomains", "@ with subdomains"],
  ["queue", "# queue name (Exim)"],
];

let editing = null; // the account being edited, or null for a new one

export function renderAccounts(accounts, unreadable) {
  const list = $("#account-list");
  list.replaceChildren();
  for (const a of accounts) {
    const domains = a.domains.map((d) => ({ domain: "", subdomains: "@", queue: "#" })[d.form] + d.name).join(", ");
    const actions = h("span", { class: "actions" },
      h("button", { type: "button", class: "small", "data-edit": a.name, onclick: () => openForm(a) }, "Edit"),
      h("button", { type: "button", class: "small danger", "data-remove": a.name, onclick: (e) => askRemove(e.currentTarget, a.name) }, "Remove"));
    list.append(h("li", { "data-account": a.name },
      h("div", { class: "what" },
        h("div", { class: "name", "data-mode": a.mode }, a.name),
        h("div", { class: "detail" }, `${MODES[a.mode] || a.mode} · ${a.host}:${a.port} · ${a.security}${a.username ? " · user " + a.username : ""} · ${domains}${a.connect_command ? " · dials: " + a.connect_command : ""}${a.smarthost_host ? ` · sends via ${a.smarthost_host}:${a.smarthost_port}` : ""}`)),
      actions));
  }
  for (const [name, why] of unreadable) {
    list.append(h("li", { "data-account": name }, h("div", { class: "what" }, h("div", { class: "name" }, name), h("div", { class: "error" }, why))));
  }
  $("#no-accounts").hidden = accounts.length + unreadable.length > 0;
  $("#add-account").textContent = accounts.length + unreadable.length > 0 ? "Add account" : "Add your first account";
}

function askRemove(button, name) {
  button.parentElement.replaceChildren(
    h("span", {}, `Remove ${name}? `),
    h("button", { type: "button", class: "small danger", id: "remove-confirm", onclick: () => remove(name) }, "Yes, remove"),
    h("button", { type: "button", class: "small", onclick: () => window.dispatchEvent(new Event("mailcall:reload")) }, "Keep"));
}

async function remove(name) {
  try {
    await call(COMMANDS.REMOVE_ACCOUNT, { name });
    if (editing && editing.name === name) closeForm();
  } catch (e) {
    showBanner(asUiError(e).message);
  }
  window.dispatchEvent(new Event("mailcall:reload"));
}

function domainRow(d = { name: "", form: "domain" }) {
  const select = h("select", { class: "domain-form", "aria-label": "ETRN form" },
    ...FORMS.map(([v, label]) => h("option", { value: v, selected: v === d.form }, label)));
  const index = $$("#domain-rows li").length;
  const input = h("input", { class: "domain-name", value: d.name, placeholder: "example.com", "aria-label": "Domain", "data-field": rowField(index) });
  const row = h("li", {}, input, select,
    h("button", { type: "button", class: "small", onclick: () => { row.remove(); renumber(); } }, "Remove"));
  const err = h("small", { class: "error", "data-for": rowField(index) });
  row.append(err);
  return row;
}

// A domain row's messages come back as `domains.N`.
const rowField = (i) => `${FIELDS.ACCOUNT.DOMAINS}.${i}`;

function renumber() {
  $$("#domain-rows li").forEach((li, i) => {
    $(".domain-name", li).dataset.field = rowField(i);
    $(".error", li).dataset.for = rowField(i);
  });
}

export function openForm(account = null) {
  editing = account;
  const form = $("#account-form");
  form.reset();
  showErrors(form, {});
  $("#account-error").textContent = "";
  $("#test-result").hidden = true;
  $("#account-form-title").textContent = account ? `Edit ${account.name}` : "New account";
  $("#acct-name").value = account?.name ?? "";
  $("#acct-host").value = account?.host ?? "";
  $("#acct-mode").value = account?.mode ?? "etrn";
  $("#acct-security").value = account?.security ?? "starttls";
  shownDefault = null;
  followDefaults();
  $("#acct-port").value = account?.port ?? "";
  $("#acct-username").value = account?.username ?? "";
  $("#acct-password").value = "";
  $("#acct-password").placeholder = account?.has_password ? "(saved; type to replace)" : "";
  followSecurity();
  $("#acct-ca-file").value = account?.ca_file ?? "";
  $("#acct-helo").value = account?.helo ?? "";
  $("#acct-connect").value = account?.connect_command ?? "";
  $("#acct-disconnect").value = account?.disconnect_command ?? "";
  $("#acct-link-timeout").value = account?.link_timeout ?? "";
  $("#acct-smarthost-host").value = account?.smarthost_host ?? "";
  $("#acct-smarthost-security").value = account?.smarthost_security ?? "starttls";
  shownSmarthostDefault = null;
  followSmarthostDefaults();
  $("#acct-smarthost-port").value = account?.smarthost_port ?? "";
  $("#acct-smarthost-login").value = account?.smarthost_login ?? "account";
  $("#acct-smarthost-username").value = account?.smarthost_username ?? "";
  $("#acct-smarthost-password").value = "";
  $("#acct-smarthost-password").placeholder = account?.smarthost_has_password ? "(saved; type to replace)" : "";
  followSmarthostLogin();
  $("#acct-smarthost-ca-file").value = account?.smarthost_ca_file ?? "";
  $("#acct-smarthost-auth").value = account?.smarthost_auth ?? "password";
  const rows = $("#domain-rows");
  rows.replaceChildren();
  for (const d of account?.domains?.length ? account.domains : [undefined]) rows.append(domainRow(d));
  form.hidden = false;
  $("#acct-name").focus();
}

function closeForm() {
  editing = null;
  $("#account-form").hidden = true;
  $("#acct-password").value = "";
  $("#acct-smarthost-password").value = "";
}

// The form as Rust reads it: the inputs, the name the account had and its domain rows.
function formData() {
  return {
    ...readFields($("#account-form"), Object.values(FIELDS.ACCOUNT)),
    [FIELDS.ACCOUNT.ORIGINAL]: editing?.name ?? "",
    [FIELDS.ACCOUNT.DOMAINS]: $$("#domain-rows li").map((li) => ({
      [FIELDS.DOMAIN_ROW.NAME]: $(".domain-name", li).value,
      [FIELDS.DOMAIN_ROW.FORM]: $(".domain-form", li).value,
    })),
  };
}

// Mailcall checks every field (the same rules as `mailcall-cli account set`) and answers with
// a message per field.
async function save(ev) {
  ev.preventDefault();
  const form = $("#account-form");
  const data = formData();
  showErrors(form, {});
  $("#account-error").textContent = "";
  $("#acct-save").disabled = true;
  try {
    await call(COMMANDS.SAVE_ACCOUNT, { account: data });
    closeForm();
    window.dispatchEvent(new Event("mailcall:reload"));
  } catch (e) {
    const err = asUiError(e);
    showErrors(form, err.fields);
    $("#account-error").textContent = err.message;
  } finally {
    $("#acct-save").disabled = false;
  }
}

async function test() {
  const form = $("#account-form");
  const out = $("#test-result");
  const data = formData();
  showErrors(form, {});
  $("#account-error").textContent = "";
  out.hidden = false;
  out.replaceChildren(h("p", {}, "Connecting…"));
  $("#acct-test").disabled = true;
  try {
    const r = await call(COMMANDS.TEST_CONNECTION, { account: data });
    // A failure that one field fixes is shown next to it too.
    if (r.error && r.field) showErrors(form, { [r.field]: r.error });
    const item = (ok, text) => h("li", { class: ok ? "yes" : "no" }, text);
    // The mode's command decides; the other one is shown for information.
    const advertised = (keyword, mode, yes) => {
      const text = !r.ehlo_seen ? `${keyword}: unknown (no EHLO reply)` : yes ? `${keyword} advertised` : `${keyword} not advertised`;
      if (r.mode === mode) return item(yes, text);
      return h("li", { class: "other" }, `${text} (${mode === "etrn" ? "ETRN mode needs it" : "ODMR mode needs it"})`);
    };
    // No login is neither a pass nor a failure: it gets no check mark.
    const auth = r.auth === "not configured"
      ? h("li", { class: "other", id: "test-auth" }, "AUTH: not configured (no user name)")
      : h("li", { class: r.auth === "yes" ? "yes" : "no", id: "test-auth" }, `AUTH: ${r.auth}`);
    const listenerBad = r.listener && !r.listener.ok;
    const verdict = r.error
      ? h("p", { class: "error" }, r.error)
      : listenerBad
        ? h("p", { class: "error" }, "The server answers, but mail cannot come in until the listener works (above).")
        : h("p", { class: "ok" }, "The server answers as this account needs. The domains are asked at the first fetch.");
    // h() leaves out what is null: nothing of a missing part shows (no "null").
    out.replaceChildren(h("div", {},
      h("ul", { id: "test-summary" },
        item(r.tls, r.tls ? "TLS: encrypted" : "TLS: not encrypted"),
        auth,
        advertised("ETRN", "etrn", r.etrn_advertised),
        advertised("ATRN", "odmr", r.atrn_advertised),
        r.listener ? h("li", { class: r.listener.ok ? "yes" : "no", id: "test-listener" }, r.listener.text) : null,
        ...r.unchecked.map((t) => h("li", { class: "other", "data-unchecked": "" }, t))),
      ...r.suggestions.map((t) => h("p", { class: "suggest" }, t)),
      verdict,
      r.greeting ? h("p", { class: "hint" }, `Server: ${r.greeting}`) : null,
      h("details", {}, h("summary", {}, "Transcript"), h("pre", {}, r.transcript.join("\n")))));
  } catch (e) {
    const err = asUiError(e);
    showErrors(form, err.fields);
    out.replaceChildren(h("p", { class: "error" }, err.message));
  } finally {
    $("#acct-test").disabled = false;
    // The result is below the form's buttons: bring it into view.
    out.scrollIntoView({ block: "nearest" });
  }
}

export function initAccounts() {
  $("#add-account").addEventListener("click", () => openForm(null));
  $("#add-domain").addEventListener("click", () => $("#domain-rows").append(domainRow()));
  $("#acct-cancel").addEventListener("click", closeForm);
  $("#account-form").addEventListener("submit", save);
  $("#acct-test").addEventListener("click", test);
  $("#acct-security").addEventListener("change", followDefaults);
  $("#acct-security").addEventListener("change", followSecurity);
  $("#acct-mode").addEventListener("change", followDefaults);
  $("#acct-smarthost-security").addEventListener("change", followSmarthostDefaults);
  $("#acct-smarthost-login").addEventListener("change", followSmarthostLogin);
}
