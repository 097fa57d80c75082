// Wires the window together: tabs (the address's #tab opens one, as the tray's Queue item
// does), status line, Fetch now, and reloads on Mailcall's events.
import { call, on, asUiError } from "./api.js";
import { COMMANDS, EVENTS } from "./contract.js";
import { $, $$, clearErrorsOnEdit, hideBanner, showBanner } from "./dom.js";
import { when } from "./time.js";
import { initAccounts, renderAccounts } from "./accounts.js";
import { initSettings, renderSettings, showListener, showPaused } from "./settings.js";
import { initHistory, loadHistory } from "./history.js";
import { initDelivery, loadDelivery } from "./delivery.js";
import { initQueue, loadQueue } from "./queue.js";

const TABS = ["accounts", "settings", "delivery", "queue", "history"];

let lastPaused = null;

function showStatus(s) {
  const line = $("#status-line");
  // The time in the user's locale, as History writes it.
  const text = s.last_at ? `Last fetch ${when(s.last_at)}${s.line_rest}` : s.line_rest;
  // Mail a LAN server refused makes the state an error: the line says why.
  line.textContent = s.refused && s.queue_line ? `${text} · ${s.queue_line}` : text;
  line.title = s.tooltip;
  line.classList.toggle("error", s.state === "error");
  // The line shortens an error; the whole of it wraps below (and stays in History).
  const detail = $("#status-detail");
  detail.textContent = s.state === "error" && s.error ? s.error : "";
  detail.hidden = !detail.textContent;
  // A fetch that runs makes an old "could not fetch" untrue.
  if (s.fetching) hideBanner();
  showListener(s.listener);
  // A first run: nothing runs until an account exists; the Accounts tab leads there.
  $("#first-run").hidden = !s.no_accounts;
  $("#fetch-now").disabled = s.fetching;
  // Who runs Mailcall changes when a daemon this tray used goes away.
  $("#control-note").textContent = s.note;
  // Only a change of the switch touches the box (not the user's unsaved click).
  if (lastPaused !== null && s.paused !== lastPaused) showPaused(s.paused);
  lastPaused = s.paused;
  // The Queue tab's badge: refused mail (needs you) in red, waiting mail in grey.
  const badge = $("#queue-badge");
  const n = s.refused || s.queued;
  badge.hidden = !n;
  badge.textContent = n ? String(n) : "";
  badge.classList.toggle("waiting", !s.refused);
  badge.title = s.queue_line || "";
}

function showTab(name) {
  if (!TABS.includes(name)) return;
  for (const b of $$("nav [role=tab]")) b.setAttribute("aria-selected", String(b.dataset.panel === name));
  for (const p of $$(".panel")) p.hidden = p.id !== `panel-${name}`;
  if (name === "history") loadHistory();
  if (name === "delivery") loadDelivery();
  if (name === "queue") loadQueue();
}

async function reload() {
  try {
    const data = await call(COMMANDS.LOAD_SETTINGS);
    renderAccounts(data.accounts, data.unreadable);
    renderSettings(data.settings, data.config_path, data.control, data.submit_password_saved);
    showStatus(data.status);
    hideBanner();
  } catch (e) {
    showBanner(asUiError(e).message);
  }
}

async function fetchNow() {
  try {
    await call(COMMANDS.FETCH_NOW);
    hideBanner();
  } catch (e) {
    showBanner(asUiError(e).message);
  }
}

initAccounts();
initSettings();
initHistory();
initDelivery();
initQueue();
for (const b of $$("nav [role=tab]")) b.addEventListener("click", () => showTab(b.dataset.panel));
$("#fetch-now").addEventListener("click", fetchNow);
$("#banner-close").addEventListener("click", hideBanner);
for (const form of $$("form")) clearErrorsOnEdit(form);
for (const a of $$("[data-goto]")) a.addEventListener("click", (e) => { e.preventDefault(); showTab(a.dataset.goto); });
window.addEventListener("mailcall:reload", reload);
on(EVENTS.STATUS, showStatus);
on(EVENTS.HISTORY, () => {
  if (!$("#panel-history").hidden) loadHistory();
});
on(EVENTS.QUEUE, () => {
  if (!$("#panel-queue").hidden) loadQueue();
});
on(EVENTS.SHOW_TAB, (tab) => showTab(tab));
on(EVENTS.NOTICE, (text) => showBanner(text));
// Marked once the first load is shown (the GUI test waits for it before it clicks).
reload().then(() => { document.body.dataset.ready = "true"; });
if (location.hash) showTab(location.hash.slice(1));
