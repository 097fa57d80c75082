//! Mailcall's tray app: a thin shell over mailcall-core — a tray-mode instance (or a front end
//! to the daemon when one runs), the tray icon and menu, notifications, and the
//! settings/history window, which reaches the core only through [`commands`] (its names for
//! them, and for events and form fields, are [`contract`]'s). The window runs in a process of
//! its own ([`window_app`], `mailcall --window`) whose commands run in the tray
//! ([`window_link`]), so closing it gives its memory back.
#![forbid(unsafe_code)]

pub mod commands;
pub mod contract;
pub mod forms;
pub mod hints;
pub mod notify;
pub mod prefs;
pub mod queue;
pub mod remote;
pub mod state;
pub mod status;
pub mod tray;
#[cfg(target_os = "linux")]
pub mod tray_host;
pub mod window;
pub mod window_app;
pub mod window_link;

use std::sync::Arc;

use mailcall_core::keystore::OsKeyring;
use tauri::{Builder, Manager, RunEvent, Runtime};

use crate::state::AppState;

/// How the app was launched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// Start in the tray only (`--tray`, as the login autostart entry does); otherwise the
    /// settings window opens too.
    pub tray_only: bool,
}

/// The app's commands and state on any runtime (the real one, or the mock one in tests).
pub fn builder<R: Runtime>(builder: Builder<R>, state: AppState) -> Builder<R> {
    builder.manage(state).invoke_handler(contract::handler())
}

/// Why the tray app cannot start here, when there is no graphical session (over SSH, on a
/// server): one line naming what is missing and what to run instead. `None` where a desktop
/// may be (Linux with `DISPLAY` or `WAYLAND_DISPLAY`; other systems always have one).
pub fn no_display() -> Option<String> {
    let has = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    (cfg!(target_os = "linux") && !has("DISPLAY") && !has("WAYLAND_DISPLAY")).then(|| {
        "no graphical session (neither DISPLAY nor WAYLAND_DISPLAY is set), so there is no tray or window to show. On a machine without a desktop run `mailcall-cli daemon`, or the user unit: `systemctl --user enable --now mailcall`".to_string()
    })
}

/// Runs the tray app until Quit.
pub fn run(launch: Launch) -> anyhow::Result<()> {
    let config_path = mailcall_core::config::config_path(None)?;
    // The account store the config names (the OS keyring, or the account file).
    let store = mailcall_core::config::Config::load(&config_path)
        .map(|c| mailcall_core::keystore::for_config(&c, &config_path))
        .unwrap_or_else(|_| Arc::new(OsKeyring));
    let state = AppState::new(config_path, store);
    let app = builder(tauri::Builder::default(), state)
        .manage(window_link::Windows::default())
        // A second `mailcall` hands its arguments to this one and exits.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            if argv.iter().any(|a| a == remote::FETCH_FLAG) {
                remote::fetch_requested(app);
            } else {
                window::show(app);
            }
        }))
        .setup(move |app| {
            // The window runs in a process of its own, which reaches this tray over this.
            window_link::serve(app.handle());
            // With no tray to show the icon in (Linux: no StatusNotifierItem host yet), the
            // window opens even with --tray: it is the only way in until a tray starts.
            let icon_shows = tray::build(app.handle())?;
            if !launch.tray_only || !icon_shows {
                window::show(app.handle());
            }
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                // A failure shows on the tray; the window can fix the settings and retry. A
                // daemon already running makes this tray its front end. With no account yet,
                // nothing runs until the first one is saved.
                let _ = handle.state::<AppState>().start_at_launch(&handle).await;
                if std::env::args().any(|a| a == remote::FETCH_FLAG) {
                    remote::fetch_requested(&handle);
                }
            });
            Ok(())
        })
        .build(tauri::generate_context!())?;
    app.run(|_app, event| {
        // Closing the window leaves Mailcall in the tray; only Quit (app.exit) ends it.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests;
