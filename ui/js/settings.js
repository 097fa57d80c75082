// The Settings tab: listener, Maildir, limits, fetching by itself (interfaces, settle delay,
// interval, at start), notifications, start at login, pause, and who runs Mailcall (this tray,
// or the daemon it uses).
import { call, asUiError } from "./api.js";
import { $, showErrors } from "./dom.js";

export function renderSettings(s, configPath, controlNote, listener) {
  $("#listener-now").textContent = listener || "";
  $("#set-listen").value = s.listen;
  $("#set-maildir").value = s.maildir;
  $("#set-maildir").placeholder = s.default_maildir;
  $("#set-idle").value = s.idle_timeout;
  $("#set-max-size").value = s.max_size_mib;
  $("#set-notifications").checked = s.notifications;
  $("#set-login").checked = s.start_at_login;
  $("#set-paused").checked = s.paused;
  $("#set-interfaces").value = s.interfaces;
  $("#set-settle").value = s.settle_delay;
  $("#set-interval").value = s.fetch_interval;
  $("#set-fetch-at-start").checked = s.fetch_at_start;
  $("#config-path").textContent = configPath;
  $("#control-note").textContent = controlNote || "";
}

// The pause switch as Mailcall (or the daemon) has it: follows the tray menu and scripts.
export function showPaused(paused) {
  $("#set-paused").checked = paused;
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
    interfaces: $("#set-interfaces").value,
    settle_delay: $("#set-settle").value,
    fetch_interval: $("#set-interval").value,
    fetch_at_start: $("#set-fetch-at-start").checked,
  };
  // Mailcall checks every field (the same rules as `mailcall-cli config set`).
  showErrors(form, {});
  $("#settings-error").textContent = "";
  $("#settings-saved").hidden = true;
  $("#settings-save").disabled = true;
  try {
    const note = await call("save_settings", { settings });
    $("#settings-saved").textContent = note ? `Saved. ${note}` : "Saved.";
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
