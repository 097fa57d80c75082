//! The tray icon and its menu: Send and receive (send what waits, then fetch) · status line · (while mail waits for a LAN mail server
//! or was refused by one: a Queue item that opens the window's Queue tab) · Open mail folder ·
//! Settings… · Pause automatic fetching · Quit. A left click fetches and the menu is on the right button — on
//! Linux too, where the icon is a StatusNotifierItem (tray-icon's `ksni` backend: the host calls
//! `Activate` on a left click and shows the menu over dbusmenu). The icon, tooltip, status line
//! and check mark follow the status [`AppState`] publishes. On Linux a desktop may have no tray
//! host yet (the panel starts after Mailcall) or none at all: the app runs on without the icon,
//! and shows it when a host appears ([`crate::tray_host`]).

use mailcall_core::history::ManualTrigger;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};

use crate::state::AppState;
use crate::status::StatusView;

/// The tray icon's id.
pub const TRAY_ID: &str = "mailcall";

/// Menu item ids (also what the e2e test and `--fetch` forwarding trigger).
pub mod ids {
    /// Fetch now.
    pub const FETCH: &str = "fetch";
    /// The disabled status line.
    pub const STATUS: &str = "status";
    /// The queue's counts; opens the window's Queue tab (only while something is queued).
    pub const QUEUE: &str = "queue";
    /// Open the Maildir in the file manager.
    pub const OPEN_MAIL: &str = "open-mail";
    /// Open the settings window.
    pub const SETTINGS: &str = "settings";
    /// Pause automatic fetching.
    pub const PAUSE: &str = "pause";
    /// Quit.
    pub const QUIT: &str = "quit";
}

/// The menu items whose text or check mark changes.
pub struct TrayItems<R: Runtime> {
    menu: Menu<R>,
    status: MenuItem<R>,
    pause: CheckMenuItem<R>,
    queue: MenuItem<R>,
    /// Whether the queue item is in the menu now.
    queue_shown: std::sync::atomic::AtomicBool,
}

/// Where the queue item goes: after Fetch now and the status line.
const QUEUE_POSITION: usize = 2;

/// The queue item's text for the queue in words.
fn queue_item_text(words: &str) -> String {
    format!("Queue: {words}…")
}

/// Builds the tray menu and icon, and follows the published status. Returns whether the icon
/// shows now: on Linux with no tray host on the session bus it does not (the app runs on, and
/// the icon appears when a host starts); elsewhere a failure is an error.
pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<bool> {
    let state = app.state::<AppState>();
    let mut published = state.watch_status();
    let view = published.borrow_and_update().clone();
    let fetch = MenuItem::with_id(app, ids::FETCH, "Send and receive", true, None::<&str>)?;
    let status = MenuItem::with_id(app, ids::STATUS, &view.line, false, None::<&str>)?;
    let open = MenuItem::with_id(app, ids::OPEN_MAIL, "Open mail folder", true, None::<&str>)?;
    let settings = MenuItem::with_id(app, ids::SETTINGS, "Settings…", true, None::<&str>)?;
    let pause = CheckMenuItem::with_id(
        app,
        ids::PAUSE,
        "Pause automatic fetching",
        true,
        view.paused,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, ids::QUIT, "Quit", true, None::<&str>)?;
    let queue = MenuItem::with_id(app, ids::QUEUE, "Queue…", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &fetch,
            &status,
            &PredefinedMenuItem::separator(app)?,
            &open,
            &settings,
            &pause,
            &PredefinedMenuItem::separator(app)?,
            &quit,
        ],
    )?;
    app.manage(TrayItems {
        menu: menu.clone(),
        status,
        pause,
        queue,
        queue_shown: std::sync::atomic::AtomicBool::new(false),
    });
    if view.queue_line.is_some() {
        show_status(app, &view);
    }
    let follower = app.clone();
    tauri::async_runtime::spawn(async move {
        while published.changed().await.is_ok() {
            let view = published.borrow_and_update().clone();
            show_status(&follower, &view);
        }
    });
    match show_icon(app, &menu) {
        Ok(()) => Ok(true),
        #[cfg(target_os = "linux")]
        Err(e) => {
            tracing::warn!(
                "no system tray to show Mailcall's icon in ({e}); it appears when a tray (a StatusNotifierItem host) starts"
            );
            show_icon_when_a_host_starts(app.clone(), menu);
            Ok(false)
        }
        #[cfg(not(target_os = "linux"))]
        Err(e) => Err(e),
    }
}

/// Adds the icon to the tray, showing the status as it is now.
fn show_icon<R: Runtime>(app: &AppHandle<R>, menu: &Menu<R>) -> tauri::Result<()> {
    let view = app.state::<AppState>().watch_status().borrow().clone();
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(view.state_png())?)
        .tooltip(&view.tooltip)
        // The StatusNotifierItem's Title: trays that show titles (and screen readers) name it.
        .title("Mailcall")
        .menu(menu)
        .show_menu_on_left_click(false)
        .on_menu_event(on_menu)
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                fetch_now(tray.app_handle());
            }
        })
        .build(app)?;
    // The status may have changed while the icon was being built.
    let now = app.state::<AppState>().watch_status().borrow().clone();
    if now.tooltip != view.tooltip || now.state != view.state {
        show_status(app, &now);
    }
    Ok(())
}

/// Linux: tries again each time a StatusNotifierWatcher appears or a host registers with one,
/// until the icon shows (or the session bus cannot be watched).
#[cfg(target_os = "linux")]
fn show_icon_when_a_host_starts<R: Runtime>(app: AppHandle<R>, menu: Menu<R>) {
    tauri::async_runtime::spawn(async move {
        let mut hosts = match crate::tray_host::HostWatch::new().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot watch the session bus for a system tray: {e}");
                return;
            }
        };
        // A host may have come between the first try and the watch: try once more first.
        loop {
            // Building blocks until the icon is registered (or refused) over D-Bus.
            let (a, m) = (app.clone(), menu.clone());
            let shown = tauri::async_runtime::spawn_blocking(move || show_icon(&a, &m)).await;
            match shown {
                Ok(Ok(())) => {
                    tracing::info!("a system tray started: Mailcall's icon shows");
                    return;
                }
                Ok(Err(e)) => tracing::debug!("the tray icon does not show yet: {e}"),
                Err(e) => {
                    tracing::warn!("building the tray icon failed: {e}");
                    return;
                }
            }
            if !hosts.changed().await {
                tracing::warn!("the session bus went away: Mailcall's tray icon will not show");
                return;
            }
        }
    });
}

impl StatusView {
    fn state_png(&self) -> &'static [u8] {
        self.state.png()
    }
}

fn on_menu<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    match event.id().as_ref() {
        ids::FETCH => fetch_now(app),
        ids::OPEN_MAIL => open_mail_folder(app),
        ids::SETTINGS => crate::window::show(app),
        ids::QUEUE => crate::window::show_tab(app, "queue"),
        ids::PAUSE => toggle_pause(app),
        ids::QUIT => quit(app),
        _ => {}
    }
}

/// Starts a fetch; a failure shows on the tray and as a notification.
pub fn fetch_now<R: Runtime>(app: &AppHandle<R>) {
    crate::state::fetch_in_background(app, ManualTrigger::Tray);
}

/// Opens the Maildir in the desktop's file manager. The new-mail dot goes only when the opener
/// succeeds; when it fails (no handler for folders, no `xdg-open`) the user sees why.
fn open_mail_folder<R: Runtime>(app: &AppHandle<R>) {
    let state = app.state::<AppState>();
    let dir = match state.config().and_then(|c| c.maildir_path()) {
        Ok(dir) => dir,
        Err(e) => {
            crate::state::show_notice(
                app,
                open_failed(format!("cannot find the mail folder: {e}")),
            );
            return;
        }
    };
    let app = app.clone();
    // The opener's exit status says whether a folder handler took it: waited for off the
    // main thread (which also reaps it).
    std::thread::spawn(move || {
        let outcome = std::process::Command::new(opener())
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        let why = match outcome {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "{} could not open {} ({}){}",
                opener(),
                dir.display(),
                out.status,
                // xdg-open tries a list of programs first: its own verdict is the last line.
                match String::from_utf8_lossy(&out.stderr).trim().lines().last() {
                    None | Some("") => String::new(),
                    Some(said) => format!(": {}", said.trim()),
                }
            )),
            Err(e) => Some(format!(
                "cannot run {} to open {}: {e}",
                opener(),
                dir.display()
            )),
        };
        match why {
            None => {
                app.state::<AppState>().status().mail_seen();
                crate::state::refresh(&app);
            }
            Some(why) => crate::state::show_notice(&app, open_failed(why)),
        }
    });
}

/// The notification for a mail folder that could not be opened, with what to do.
fn open_failed(why: String) -> crate::status::Notice {
    crate::status::Notice {
        summary: "Mailcall cannot open the mail folder".into(),
        body: format!(
            "{why}. Install a file manager or set one for folders (xdg-mime default), or open the folder in your mail program."
        ),
        is_error: true,
    }
}

fn opener() -> &'static str {
    if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    }
}

fn toggle_pause<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        // From the switch where Mailcall runs, not the check mark (which GTK has flipped
        // already): PAUSE/RESUME on the control socket change it too.
        let paused = !state.is_paused().await;
        if let Err(e) = state.set_paused(&app, paused).await {
            crate::state::show_problem(&app, &e);
        }
    });
}

/// Stops Mailcall cleanly (deliveries in flight finish or get a 4xx; a daemon this tray
/// fronted keeps running), then exits.
pub fn quit<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        app.state::<AppState>().stop_service().await;
        app.exit(0);
    });
}

/// Shows a status on the icon, tooltip, status line and check mark (no-op without a tray).
fn show_status<R: Runtime>(app: &AppHandle<R>, view: &StatusView) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        if let Ok(icon) = Image::from_bytes(view.state_png()) {
            let _ = tray.set_icon(Some(icon));
        }
        let _ = tray.set_tooltip(Some(&view.tooltip));
    }
    if let Some(items) = app.try_state::<TrayItems<R>>() {
        let _ = items.status.set_text(&view.line);
        let _ = items.pause.set_checked(view.paused);
        show_queue_item(&items, view.queue_line.as_deref());
    }
}

/// Puts the queue item into the menu while something is queued (with the counts), and takes it
/// out when the queue is empty.
fn show_queue_item<R: Runtime>(items: &TrayItems<R>, words: Option<&str>) {
    use std::sync::atomic::Ordering;
    let shown = items.queue_shown.load(Ordering::SeqCst);
    match words {
        Some(words) => {
            let _ = items.queue.set_text(queue_item_text(words));
            if !shown && items.menu.insert(&items.queue, QUEUE_POSITION).is_ok() {
                items.queue_shown.store(true, Ordering::SeqCst);
            }
        }
        None if shown && items.menu.remove(&items.queue).is_ok() => {
            items.queue_shown.store(false, Ordering::SeqCst);
        }
        None => {}
    }
}
