// The window's only way to Mailcall: its own commands and events (granted in
// src-tauri/capabilities/settings.json; nothing else is reachable).
const tauri = window.__TAURI__;

export const call = (cmd, args = {}) => tauri.core.invoke(cmd, args);
export const on = (event, handler) => tauri.event.listen(event, (e) => handler(e.payload));

// Command errors arrive as {message, fields}; anything else becomes a message.
export function asUiError(e) {
  if (e && typeof e === "object" && "message" in e) return { message: e.message, fields: e.fields || {} };
  return { message: String(e), fields: {} };
}
