// The Delivery tab: the routes (recipient → Maildir, LMTP or SMTP server), what recipients no
// route names get, and the retry delays for LAN servers. Mailcall checks every value by the
// same rules as `mailcall-cli route add` / `config set` and answers next to the field.
import { call, asUiError } from "./api.js";
import { COMMANDS, FIELDS } from "./contract.js";
import { $, fillFields, h, readFields, showErrors } from "./dom.js";

const SETTINGS_FIELDS = Object.values(FIELDS.DELIVERY);
const ROUTE_FIELDS = Object.values(FIELDS.ROUTE);

const SECURITY = { none: "none", starttls: "STARTTLS", tls: "TLS" };

function render(d) {
  const rows = $("#route-rows");
  rows.replaceChildren(...d.routes.map((r) => h("tr", { "data-route": r.recipient },
    h("td", {}, r.recipient),
    h("td", {}, r.destination, r.queued ? h("span", { class: "explain" }, "through Mailcall's queue") : null),
    h("td", {}, r.security ? SECURITY[r.security] || r.security : "—"),
    h("td", {}, r.ca_file || (r.kind === "smtp" ? "(system certificates)" : "—")),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "small danger", "data-remove-route": r.recipient, onclick: () => remove(r.recipient) }, "Remove")))));
  $("#routes-table").hidden = d.routes.length === 0;
  $("#routes-empty").hidden = d.routes.length > 0;
  $("#everything-else").textContent = d.everything_else;
  fillFields($("#delivery-form"), SETTINGS_FIELDS, d.settings);
}

function showError(e) {
  const err = asUiError(e);
  showErrors($("#route-form"), err.fields);
  $("#route-error").textContent = err.message;
}

function clearMessages() {
  showErrors($("#route-form"), {});
  $("#route-error").textContent = "";
  $("#route-saved").hidden = true;
}

export async function loadDelivery() {
  try {
    render(await call(COMMANDS.LOAD_DELIVERY));
  } catch (e) {
    showError(e);
  }
}

// Security and CA file belong to smtp: destinations only.
function followDestination() {
  const smtp = $("#route-destination").value.trim().toLowerCase().startsWith("smtp:");
  $("#route-security").disabled = !smtp;
  $("#route-ca-file").disabled = !smtp;
  if (!smtp) {
    $("#route-security").value = "";
    $("#route-ca-file").value = "";
  } else if (!$("#route-security").value) {
    $("#route-security").value = "none";
  }
}

async function add(ev) {
  ev.preventDefault();
  clearMessages();
  const route = readFields($("#route-form"), ROUTE_FIELDS);
  $("#route-add").disabled = true;
  try {
    const saved = await call(COMMANDS.ADD_ROUTE, { route });
    render(saved.delivery);
    $("#route-form").reset();
    followDestination();
    $("#route-saved").textContent = saved.note ? `Route saved. ${saved.note}` : "Route saved; Mailcall uses it now.";
    $("#route-saved").hidden = false;
  } catch (e) {
    showError(e);
  } finally {
    $("#route-add").disabled = false;
  }
}

async function remove(recipient) {
  clearMessages();
  try {
    const saved = await call(COMMANDS.REMOVE_ROUTE, { recipient });
    render(saved.delivery);
    $("#route-saved").textContent = `The route for ${recipient} is removed.`;
    $("#route-saved").hidden = false;
  } catch (e) {
    showError(e);
  }
}

async function save(ev) {
  ev.preventDefault();
  const form = $("#delivery-form");
  showErrors(form, {});
  $("#delivery-error").textContent = "";
  $("#delivery-saved").hidden = true;
  const settings = readFields(form, SETTINGS_FIELDS);
  $("#delivery-save").disabled = true;
  try {
    const saved = await call(COMMANDS.SAVE_DELIVERY, { settings });
    render(saved.delivery);
    $("#delivery-saved").textContent = saved.note ? `Saved. ${saved.note}` : "Saved.";
    $("#delivery-saved").hidden = false;
  } catch (e) {
    const err = asUiError(e);
    showErrors(form, err.fields);
    $("#delivery-error").textContent = err.message;
  } finally {
    $("#delivery-save").disabled = false;
  }
}

export function initDelivery() {
  $("#route-form").addEventListener("submit", add);
  $("#route-destination").addEventListener("input", followDestination);
  $("#delivery-form").addEventListener("submit", save);
}
