//! The settings window: created when asked for (at a tab, for the tray's Queue item), closed
//! (not just hidden) when the user closes it — the app lives on in the tray either way.

use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

/// The window's label; the capability in `capabilities/settings.json` names it.
pub const LABEL: &str = "settings";

/// The event that asks an open window to show one of its tabs (payload: the tab's name).
pub const SHOW_TAB_EVENT: &str = crate::contract::WindowEvent::ShowTab.name();

/// Shows the settings window, creating it if needed, and brings it to the front.
pub fn show<R: Runtime>(app: &AppHandle<R>) {
    open(app, None);
}

/// Shows the settings window at its tab `tab` (`queue`, `history`, ...).
pub fn show_tab<R: Runtime>(app: &AppHandle<R>, tab: &str) {
    open(app, Some(tab));
}

fn open<R: Runtime>(app: &AppHandle<R>, tab: Option<&str>) {
    if let Some(w) = app.get_webview_window(LABEL) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        if let Some(tab) = tab {
            let _ = w.emit(SHOW_TAB_EVENT, tab);
        }
        return;
    }
    // A new page reads the tab from its address.
    let page = match tab {
        Some(tab) => format!("index.html#{tab}"),
        None => "index.html".into(),
    };
    let built = WebviewWindowBuilder::new(app, LABEL, WebviewUrl::App(page.into()))
        .title("Mailcall")
        .inner_size(820.0, 680.0)
        .min_inner_size(560.0, 420.0)
        .build();
    if let Err(e) = built {
        tracing::warn!("cannot open the settings window: {e}");
    }
}
