// The Settings tab: listener, Maildir, limits, notifications, start at login, pause.
import { call, asUiError } from "./api.js";
import { $, showErrors } from "./dom.js";

export function renderSettings(s, configPath) {
  $("#set-listen").value = s.listen;
  $("#set-maildir").value = s.maildir;
  $("#set-maildir").placeholder = s.default_maildir;
  $("#set-idle").value = s.idle_timeout;
  $("#set-max-size").value = s.max_size_mib;
  $("#set-notifications").checked = s.notifications;
  $("#set-login").checked = s.start_at_login;
  $("#set-paused").checked = s.paused;
  $("#config-path").textContent = configPath;
}

async function save(ev) {
  ev.preventDefault();
  const form = $("#settings-form");
  const settings = {
    listen: $("#set-listen").value,
    maildir: $("#set-maildir").value,
    idle_timeout: $("#set-idle").value,
    max_size_mib: $("#set-max-size").value,
    notifications: $("#set-notifications").checked,
    start_at_login: $("#set-login").checked,
    paused: $("#set-paused").checked,
  };
  showErrors(form, {});
  $("#settings-error").textContent = "";
  $("#settings-saved").hidden = true;
  $("#settings-save").disabled = true;
  try {
    await call("save_settings", { settings });
    $("#settings-saved").hidden = false;
  } catch (e) {
    const err = asUiError(e);
    showErrors(form, err.fields);
    $("#settings-error").textContent = err.message;
  } finally {
    $("#settings-save").disabled = false;
  }
}

export function initSettings() {
  $("#settings-form").addEventListener("submit", save);
}
