//! The settings window in a process of its own. The tray never creates a webview: WebKit's
//! pages, once touched, stay in the process that touched them, so the window runs as
//! `mailcall --window` ([`crate::window_app`]), a child that ends when the window closes and
//! gives all its memory back.
//!
//! The two talk over a private channel beside the control socket (the control socket's own
//! transport: owner-only), one JSON object a line. The window's commands run here, in the tray,
//! exactly as they did when the window lived in this process ([`dispatch`]); the events the
//! tray emits for the window (status, history, queue, notices) go to every window connected.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailcall_core::control::transport::{Connection, ControlListener};
use mailcall_core::control::{self, ControlError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tauri::{AppHandle, Listener, Manager, Runtime};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::commands;
use crate::contract::WindowEvent;
use crate::state::AppState;

/// The argument that makes `mailcall` the window process.
pub const WINDOW_FLAG: &str = "--window";
/// The argument (with the tab's name after it) that opens the window at one of its tabs.
pub const TAB_FLAG: &str = "--tab";
/// The channel's name, beside the control socket.
pub const SOCKET_NAME: &str = "window.sock";

/// What the window sends the tray.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ToTray {
    /// Run one of the window's commands; the answer comes as a [`ToWindow::Reply`].
    Call {
        /// Names the call (its reply carries the same).
        id: u64,
        /// The command, one of [`crate::contract::COMMANDS`].
        command: String,
        /// Its arguments, as the page passed them to `invoke`.
        #[serde(default)]
        args: Value,
    },
}

/// What the tray sends the window.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ToWindow {
    /// A command's answer.
    Reply {
        /// The call's id.
        id: u64,
        /// What the page's `invoke` resolves with, or rejects with.
        result: Result<Value, Value>,
    },
    /// An event for the page.
    Event {
        /// Its name, one of [`WindowEvent`]'s.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// Come to the front.
    Raise {
        /// The tab to show, if one was asked for.
        tab: Option<String>,
    },
}

impl ToWindow {
    /// The message as one line (without its newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Values that came from serde_json always serialize; say so rather than panic.
            tracing::warn!("cannot write a message for the window: {e}");
            String::new()
        })
    }
}

/// Where the channel lives: beside the default control socket
/// (`$XDG_RUNTIME_DIR/mailcall/window.sock`, else in the data directory).
pub fn socket_path() -> Result<PathBuf, ControlError> {
    Ok(control::default_socket_path()?.with_file_name(SOCKET_NAME))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tray's side: the windows connected now, and the window process it started.
#[derive(Default)]
pub struct Windows {
    connected: Mutex<Vec<(u64, mpsc::UnboundedSender<String>)>>,
    next: AtomicU64,
    /// The PID of the window process this tray started, while it runs.
    child: Arc<Mutex<Option<u32>>>,
}

impl Windows {
    /// Sends `message` to every window connected; false when none is.
    fn send_all(&self, message: &ToWindow) -> bool {
        let line = message.line();
        let mut connected = lock(&self.connected);
        connected.retain(|(_, tx)| tx.send(line.clone()).is_ok());
        !connected.is_empty()
    }

    fn add(&self, tx: mpsc::UnboundedSender<String>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        lock(&self.connected).push((id, tx));
        id
    }

    fn remove(&self, id: u64) {
        lock(&self.connected).retain(|(i, _)| *i != id);
    }
}

/// Shows the settings window (at `tab`, if given): a window open already comes to the front;
/// otherwise the window process starts, unless the one started last is still coming up.
pub fn open<R: Runtime>(app: &AppHandle<R>, tab: Option<&str>) {
    let Some(windows) = app.try_state::<Windows>() else {
        return;
    };
    let raise = ToWindow::Raise {
        tab: tab.map(str::to_string),
    };
    if windows.send_all(&raise) {
        return;
    }
    let mut child = lock(&windows.child);
    if let Some(pid) = *child {
        tracing::info!(pid, "the window process is starting already");
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!("cannot open the settings window: where is this program? {e}");
            return;
        }
    };
    let mut command = Command::new(&exe);
    command.arg(WINDOW_FLAG).stdin(Stdio::null());
    if let Some(tab) = tab {
        command.args([TAB_FLAG, tab]);
    }
    match command.spawn() {
        Ok(mut process) => {
            let pid = process.id();
            tracing::info!(pid, "the window process started");
            *child = Some(pid);
            let slot = windows.child.clone();
            // Waits for it (no zombie is left), then lets the next "open" start another.
            std::thread::spawn(move || {
                let status = process.wait();
                tracing::info!(pid, ?status, "the window process ended");
                *lock(&slot) = None;
            });
        }
        Err(e) => tracing::warn!(
            "cannot open the settings window: starting {} {WINDOW_FLAG}: {e}",
            exe.display()
        ),
    }
}

/// Serves windows from now on: binds the channel, forwards the tray's window events to every
/// window connected, and runs their commands. Needs [`Windows`] and [`AppState`] managed.
pub fn serve<R: Runtime>(app: &AppHandle<R>) {
    for event in WindowEvent::ALL {
        // Showing a tab is a Raise, sent by `open`.
        if event == WindowEvent::ShowTab {
            continue;
        }
        let handle = app.clone();
        app.listen_any(event.name(), move |e| {
            if let Some(windows) = handle.try_state::<Windows>() {
                let payload = serde_json::from_str(e.payload()).unwrap_or(Value::Null);
                windows.send_all(&ToWindow::Event {
                    name: event.name().to_string(),
                    payload,
                });
            }
        });
    }
    // Bound before this returns: a window process started right after finds it.
    let bound = tauri::async_runtime::block_on(async {
        socket_path().and_then(|p| ControlListener::bind(&p))
    });
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("the settings window cannot open: its channel to the tray: {e}");
            return;
        }
    };
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(incoming) => {
                    let app = app.clone();
                    tauri::async_runtime::spawn(async move {
                        if let Some(conn) = incoming.admit().await {
                            connection(app, conn).await;
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: try again shortly.
                    tracing::warn!("the settings window's channel: accepting failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

/// One window's connection, until it closes: its calls run as tasks; their replies and the
/// tray's events go out in order through one writer.
async fn connection<R: Runtime>(app: AppHandle<R>, conn: Connection) {
    let Some(windows) = app.try_state::<Windows>() else {
        return;
    };
    let (read, mut write) = tokio::io::split(conn);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let id = windows.add(tx.clone());
    tauri::async_runtime::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ToTray>(&line) {
            Ok(ToTray::Call { id, command, args }) => {
                let app = app.clone();
                let tx = tx.clone();
                tauri::async_runtime::spawn(async move {
                    let result = dispatch(&app, &command, args).await;
                    let _ = tx.send(ToWindow::Reply { id, result }.line());
                });
            }
            Err(e) => {
                tracing::warn!("the settings window sent a line this tray cannot read ({e}); closing its channel");
                break;
            }
        }
    }
    windows.remove(id);
}

/// Runs the window's command `command` with the page's `args` in this process, as Tauri ran
/// it when the window lived here: the value the page's `invoke` resolves with, or what it
/// rejects with.
pub async fn dispatch<R: Runtime>(
    app: &AppHandle<R>,
    command: &str,
    args: Value,
) -> Result<Value, Value> {
    let Some(state) = app.try_state::<AppState>() else {
        return Err(Value::String("Mailcall's tray is shutting down".into()));
    };
    // An argument by the name the page gives it (these are single words, which Tauri's
    // camelCase renaming leaves as they are).
    macro_rules! arg {
        ($name:literal) => {
            match serde_json::from_value(args.get($name).cloned().unwrap_or(Value::Null)) {
                Ok(value) => value,
                Err(e) => {
                    return Err(Value::String(format!(
                        "invalid args `{}` for command `{command}`: {e}",
                        $name
                    )))
                }
            }
        };
    }
    let app = app.clone();
    match command {
        "load_settings" => reply(commands::load_settings(state).await),
        "save_settings" => reply(commands::save_settings(app, state, arg!("settings")).await),
        "save_account" => reply(commands::save_account(app, state, arg!("account")).await),
        "remove_account" => reply(commands::remove_account(app, state, arg!("name")).await),
        "test_connection" => reply(commands::test_connection(state, arg!("account")).await),
        "history" => reply(commands::history(state, arg!("limit")).await),
        "fetch_now" => reply(commands::fetch_now(app, state).await),
        "load_delivery" => reply(commands::load_delivery(state).await),
        "add_route" => reply(commands::add_route(state, arg!("route")).await),
        "remove_route" => reply(commands::remove_route(state, arg!("recipient")).await),
        "save_delivery" => reply(commands::save_delivery(app, state, arg!("settings")).await),
        "load_queue" => reply(commands::load_queue(state).await),
        "queue_action" => reply(
            commands::queue_action(app, state, arg!("action"), arg!("ids"), arg!("all")).await,
        ),
        other => Err(Value::String(format!("command {other} not found"))),
    }
}

fn reply<T: Serialize, E: Serialize>(result: Result<T, E>) -> Result<Value, Value> {
    let json = |v: Result<Value, serde_json::Error>| {
        v.unwrap_or_else(|e| Value::String(format!("cannot send the answer: {e}")))
    };
    match result {
        Ok(v) => Ok(json(serde_json::to_value(v))),
        Err(e) => Err(json(serde_json::to_value(e))),
    }
}
