//! The settings window. The tray opens it as a process of its own ([`crate::window_link`]):
//! created when asked for (at a tab, for the tray's Queue item), and ended — process and all —
//! when the user closes it; the app lives on in the tray either way.

use tauri::{AppHandle, Runtime, WebviewUrl, WebviewWindowBuilder};

/// The window's label; the capability in `capabilities/settings.json` names it.
pub const LABEL: &str = "settings";

/// The event that asks an open window to show one of its tabs (payload: the tab's name).
pub const SHOW_TAB_EVENT: &str = crate::contract::WindowEvent::ShowTab.name();

/// Shows the settings window, starting its process if needed, and brings it to the front.
pub fn show<R: Runtime>(app: &AppHandle<R>) {
    crate::window_link::open(app, None);
}

/// Shows the settings window at its tab `tab` (`queue`, `history`, ...).
pub fn show_tab<R: Runtime>(app: &AppHandle<R>, tab: &str) {
    crate::window_link::open(app, Some(tab));
}

/// Creates the window in this process (the window process), at its tab `tab` if given.
pub fn build<R: Runtime>(app: &AppHandle<R>, tab: Option<&str>) {
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
