// Wires the window together: tabs, status line, Fetch now, and reloads on Mailcall's events.
import { call, on, asUiError } from "./api.js";
import { $, $$ } from "./dom.js";
import { initAccounts, renderAccounts } from "./accounts.js";
import { initSettings, renderSettings, showPaused } from "./settings.js";
import { initHistory, loadHistory } from "./history.js";

let lastPaused = null;

function showStatus(s) {
  const line = $("#status-line");
  line.textContent = s.line;
  line.title = s.tooltip;
  line.classList.toggle("error", s.state === "error");
  $("#fetch-now").disabled = s.fetching;
  // Who runs Mailcall changes when a daemon this tray used goes away.
  $("#control-note").textContent = s.note;
  // Only a change of the switch touches the box (not the user's unsaved click).
  if (lastPaused !== null && s.paused !== lastPaused) showPaused(s.paused);
  lastPaused = s.paused;
}

function showTab(name) {
  for (const b of $$("nav [role=tab]")) b.setAttribute("aria-selected", String(b.dataset.panel === name));
  for (const p of $$(".panel")) p.hidden = p.id !== `panel-${name}`;
  if (name === "history") loadHistory();
}

async function reload() {
  try {
    const data = await call("load_settings");
    renderAccounts(data.accounts, data.unreadable);
    renderSettings(data.settings, data.config_path, data.control);
    showStatus(data.status);
    $("#banner").hidden = true;
  } catch (e) {
    $("#banner").textContent = asUiError(e).message;
    $("#banner").hidden = false;
  }
}

async function fetchNow() {
  try {
    await call("fetch_now");
  } catch (e) {
    $("#banner").textContent = asUiError(e).message;
    $("#banner").hidden = false;
  }
}

initAccounts();
initSettings();
initHistory();
for (const b of $$("nav [role=tab]")) b.addEventListener("click", () => showTab(b.dataset.panel));
$("#fetch-now").addEventListener("click", fetchNow);
window.addEventListener("mailcall:reload", reload);
on("mailcall://status", showStatus);
on("mailcall://history", () => {
  if (!$("#panel-history").hidden) loadHistory();
});
reload();
