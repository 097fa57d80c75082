// The Settings tab: listener, Maildir, limits, fetching by itself (interfaces, settle delay,
// interval, at start), notifications, start at login, pause, and who runs Mailcall (this tray,
// or the daemon it uses).
import { call, asUiError } from "./api.js";
import { COMMANDS, FIELDS } from "./contract.js";
import { $, fillFields, readFields, showErrors } from "./dom.js";

const FIELD_NAMES = Object.values(FIELDS.SETTINGS);

// Fields typed into since the last save began: a reload (after that save, or after any other
// change) shows what Mailcall has, but never overwrites what the user is typing.
const edited = new Set();

export function renderSettings(s, configPath, controlNote, submitPasswordSaved) {
  const fresh = Object.fromEntries(Object.entries(s).filter(([name]) => !edited.has(name)));
  fillFields($("#settings-form"), FIELD_NAMES, fresh);
  $("#set-submit-password").value = "";
  $("#set-submit-password").placeholder = submitPasswordSaved ? "(saved; type to replace)" : "(none)";
  $("#set-maildir").placeholder = s.default_maildir;
  $("#config-path").textContent = configPath;
  $("#control-note").textContent = controlNote || "";
}

// The listener as Mailcall has it now (the same status the tray follows): where it listens,
// or why it cannot — then as an error at the field that fixes it.
export function showListener(l) {
  const line = $("#listener-now");
  line.textContent = l?.text || "";
  line.classList.toggle("error", Boolean(l?.problem));
  line.classList.toggle("hint", !l?.problem);
}

// The pause switch as Mailcall (or the daemon) has it: follows the tray menu and scripts.
export function showPaused(paused) {
  $("#set-paused").checked = paused;
}

async function save(ev) {
  ev.preventDefault();
  const form = $("#settings-form");
  const settings = readFields(form, FIELD_NAMES);
  // What is saved now is Mailcall's from here on; what is typed from now on is the user's.
  edited.clear();
  // Mailcall checks every field (the same rules as `mailcall-cli config set`).
  showErrors(form, {});
  $("#settings-error").textContent = "";
  $("#settings-saved").hidden = true;
  $("#settings-save").disabled = true;
  try {
    const note = await call(COMMANDS.SAVE_SETTINGS, { settings });
    $("#settings-saved").textContent = note ? `Saved. ${note}` : "Saved.";
    $("#settings-saved").hidden = false;
    // Everything the window shows, read again: what runs now, not what ran before the save.
    window.dispatchEvent(new Event("mailcall:reload"));
  } catch (e) {
    const err = asUiError(e);
    showErrors(form, err.fields);
    $("#settings-error").textContent = err.message;
  } finally {
    $("#settings-save").disabled = false;
  }
}

export function initSettings() {
  const form = $("#settings-form");
  form.addEventListener("submit", save);
  for (const kind of ["input", "change"]) {
    form.addEventListener(kind, (ev) => {
      if (ev.target?.name) edited.add(ev.target.name);
    });
  }
}
