//! The settings window: created when asked for, closed (not just hidden) when the user closes
//! it — the app lives on in the tray either way.

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

/// The window's label; the capability in `capabilities/settings.json` names it.
pub const LABEL: &str = "settings";

/// Shows the settings window, creating it if needed, and brings it to the front.
pub fn show<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window(LABEL) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    let built = WebviewWindowBuilder::new(app, LABEL, WebviewUrl::App("index.html".into()))
        .title("Mailcall")
        .inner_size(820.0, 680.0)
        .min_inner_size(560.0, 420.0)
        .build();
    if let Err(e) = built {
        tracing::warn!("cannot open the settings window: {e}");
    }
}
