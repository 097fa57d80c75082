// The Settings tab: listener, Maildir, limits, fetching by itself (interfaces, settle delay,
// interval, at start), notifications, start at login, pause.
import { call, asUiError } from "./api.js";
import { $, showErrors } from "./dom.js";

export function renderSettings(s, configPath, controlNote) {
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

// Quick checks before asking Mailcall, which checks everything again.
function localErrors(s) {
  const f = {};
  const whole = (v) => /^\d{1,9}$/.test(v.trim());
  if (!whole(s.settle_delay) || Number(s.settle_delay) > 3600) f.settle_delay = "Enter seconds from 0 to 3600";
  if (!whole(s.fetch_interval) || Number(s.fetch_interval) > 10080) f.fetch_interval = "Enter minutes from 0 (never) to 10080 (a week)";
  if (/[\/]/.test(s.interfaces)) f.interfaces = "Interface names have no '/': use names or globs such as ppp*, wlan0";
  return f;
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
  const local = localErrors(settings);
  showErrors(form, local);
  if (Object.keys(local).length) {
    $("#settings-error").textContent = "Please correct the marked fields.";
    $("#settings-saved").hidden = true;
    return;
  }
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
