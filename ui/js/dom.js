// Tiny DOM helpers. Text always goes in as text (mail subjects and server replies are untrusted).
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// The values of the fields `names` of `form`, whose inputs carry them as name="…" (the tray's
// tests hold the page's names to the ones Rust reads): a checkbox's state, else the text.
export function readFields(form, names) {
  const values = {};
  for (const name of names) {
    const input = form.elements.namedItem(name);
    if (input) values[name] = input.type === "checkbox" ? input.checked : input.value;
  }
  return values;
}

// Puts `values` (as Rust sends a form) into the fields `names` of `form`.
export function fillFields(form, names, values) {
  for (const name of names) {
    const input = form.elements.namedItem(name);
    if (!input || !(name in values)) continue;
    if (input.type === "checkbox") input.checked = Boolean(values[name]);
    else input.value = values[name];
  }
}

// Shows per-field messages next to the fields of `form` and marks the inputs.
export function showErrors(form, fields = {}) {
  for (const small of $$(".error[data-for]", form)) small.textContent = fields[small.dataset.for] || "";
  for (const input of $$("input, select", form)) {
    const key = input.dataset.field || input.name;
    input.classList.toggle("invalid", Boolean(key && fields[key]));
    if (key && fields[key]) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

// A field's message goes as soon as the field is edited (Mailcall checks it again on save):
// a message stays only while its value is the one refused.
export function clearErrorsOnEdit(form) {
  const clear = (ev) => {
    const input = ev.target;
    const key = input.dataset?.field || input.name;
    if (!key) return;
    for (const small of $$(".error[data-for]", form)) if (small.dataset.for === key) small.textContent = "";
    input.classList.remove("invalid");
    input.removeAttribute("aria-invalid");
  };
  form.addEventListener("input", clear);
  form.addEventListener("change", clear);
}

// The message banner under the header: shown until dismissed (its close button), or until what
// it says is no longer so.
export function showBanner(text) {
  $("#banner-text").textContent = text;
  $("#banner").hidden = false;
}

export function hideBanner() {
  $("#banner").hidden = true;
  $("#banner-text").textContent = "";
}
