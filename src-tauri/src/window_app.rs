//! `mailcall --window`: the settings window as a process of its own (see
//! [`crate::window_link`]). It holds no Mailcall state: each command the page calls goes to the
//! tray and comes back with the tray's answer, and the tray's events reach the page as before.
//! Closing the window ends the process (and WebKit's processes with it); so does the tray
//! quitting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mailcall_core::control::transport::{self, Stream};
use serde_json::Value;
use tauri::ipc::{Invoke, InvokeBody, InvokeError, InvokeResponseBody};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf};
use tokio::sync::{mpsc, oneshot};

use crate::contract;
use crate::window::{self, LABEL, SHOW_TAB_EVENT};
use crate::window_link::{socket_path, ToTray, ToWindow};

/// What an answer that never comes is rejected with.
const TRAY_GONE: &str = "Mailcall's tray app is not running any more: start Mailcall again";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The window's end of the channel: calls waiting for their answer.
struct Link {
    out: mpsc::UnboundedSender<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
    next: AtomicU64,
}

impl Link {
    /// Runs `command` in the tray; its answer.
    async fn call(&self, command: String, args: Value) -> Result<Value, Value> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let line = serde_json::to_string(&ToTray::Call { id, command, args })
            .map_err(|e| Value::String(format!("cannot send the command: {e}")))?;
        if self.out.send(line).is_err() {
            lock(&self.pending).remove(&id);
            return Err(TRAY_GONE.into());
        }
        rx.await.unwrap_or_else(|_| Err(TRAY_GONE.into()))
    }

    fn answer(&self, id: u64, result: Result<Value, Value>) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// The tray went away: every call waiting fails.
    fn close(&self) {
        lock(&self.pending).clear();
    }
}

/// Runs the window until it is closed (or the tray quits), opened at `tab` if given.
pub fn run(tab: Option<String>) -> anyhow::Result<()> {
    let path = socket_path()?;
    let stream = tauri::async_runtime::block_on(transport::connect(&path)).map_err(|e| {
        anyhow::anyhow!(
            "no Mailcall tray app runs here to open the settings window of (cannot reach {}: {e}); start `mailcall` instead",
            path.display()
        )
    })?;
    let (read, mut write) = tokio::io::split(stream);
    let (out, mut rx) = mpsc::unbounded_channel::<String>();
    tauri::async_runtime::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let link = Arc::new(Link {
        out,
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let calls = link.clone();
    let app = tauri::Builder::default()
        .invoke_handler(move |invoke: Invoke| {
            let command = invoke.message.command().to_string();
            if !contract::COMMANDS.contains(&command.as_str()) {
                return false;
            }
            let args = match invoke.message.payload() {
                InvokeBody::Json(v) => v.clone(),
                InvokeBody::Raw(_) => Value::Null,
            };
            let link = calls.clone();
            invoke.resolver.respond_async_serialized(async move {
                link.call(command, args)
                    .await
                    .map(|v| InvokeResponseBody::Json(v.to_string()))
                    .map_err(InvokeError)
            });
            true
        })
        .setup(move |app| {
            window::build(app.handle(), tab.as_deref());
            tauri::async_runtime::spawn(follow(app.handle().clone(), read, link));
            Ok(())
        })
        .build(tauri::generate_context!())?;
    // Closing the window ends the process: nothing keeps it.
    app.run(|_, _| {});
    Ok(())
}

/// Reads what the tray sends until it closes the channel, then ends the window.
async fn follow<R: Runtime>(app: AppHandle<R>, read: ReadHalf<Stream>, link: Arc<Link>) {
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ToWindow>(&line) {
            Ok(ToWindow::Reply { id, result }) => link.answer(id, result),
            Ok(ToWindow::Event { name, payload }) => {
                let _ = app.emit(&name, payload);
            }
            Ok(ToWindow::Raise { tab }) => {
                if let Some(w) = app.get_webview_window(LABEL) {
                    let _ = w.unminimize();
                    let _ = w.show();
                    let _ = w.set_focus();
                    if let Some(tab) = tab {
                        let _ = w.emit(SHOW_TAB_EVENT, tab);
                    }
                }
            }
            Err(e) => tracing::warn!("the tray sent a line the window cannot read: {e}"),
        }
    }
    link.close();
    tracing::info!("the tray app closed the window's channel: the window closes too");
    app.exit(0);
}
