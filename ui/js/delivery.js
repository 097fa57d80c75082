// The Delivery tab: the routes (recipient → Maildir, LMTP or SMTP server), what recipients no
// route names get, and the retry delays for LAN servers. Mailcall checks every value by the
// same rules as `mailcall-cli route add` / `config set` and answers next to the field.
import { call, asUiError } from "./api.js";
import { $, h, showErrors } from "./dom.js";

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
  $("#del-unknown").value = d.settings.unknown_recipients;
  $("#del-retry").value = d.settings.retry_delay;
  $("#del-max-retry").value = d.settings.max_retry_delay;
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
    render(await call("load_delivery"));
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
  const route = {
    recipient: $("#route-recipient").value,
    destination: $("#route-destination").value,
    security: $("#route-security").value,
    ca_file: $("#route-ca-file").value,
  };
  $("#route-add").disabled = true;
  try {
    const saved = await call("add_route", { route });
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
    const saved = await call("remove_route", { recipient });
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
  const settings = {
    unknown_recipients: $("#del-unknown").value,
    retry_delay: $("#del-retry").value,
    max_retry_delay: $("#del-max-retry").value,
  };
  $("#delivery-save").disabled = true;
  try {
    const saved = await call("save_delivery", { settings });
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
