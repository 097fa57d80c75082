//! The local control socket: lets scripts (ip-up.d, cron, `mailcall-cli fetch --via-running`) ask
//! a running daemon or tray instance to fetch, instead of starting a second listener.
//!
//! A Unix socket, owner-only (directory 0700, socket 0600, and the peer's uid is checked), in
//! `$XDG_RUNTIME_DIR/mailcall/` (fallback: the data directory). One request line, one JSON
//! reply line, then the connection closes:
//!
//! | request | reply |
//! |---|---|
//! | `FETCH [account ...]` | `{"ok":true,"record":{...}}` once the session ended (its history record) |
//! | `PAUSE` / `RESUME` | `{"ok":true,"paused":bool}` |
//! | `STATUS` | `{"ok":true,"paused":bool,"fetching":bool,"links":[...],"listen":"ADDR","accounts":[...]}` |
//! | `RELOAD` | `{"ok":true,"skipped":[...]}` once the accounts were read again |
//! | `EVENTS` | `{"ok":true}`, then one JSON [`Event`] per line for as long as the client listens |
//! | anything else | `{"ok":false,"error":"..."}` |

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, ConfigError};
use crate::event::Event;
use crate::history::SessionRecord;
use crate::history::Trigger;
use crate::service::FetchRequest;
use crate::trigger::TriggerHandle;

/// The socket's file name.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;
/// Longest reply line a client reads (a record with long transcripts).
const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// Talking over the control socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no running Mailcall listens on {0}")]
    NotRunning(PathBuf),
    /// Another instance already owns the socket.
    #[error("another Mailcall (daemon or tray) is already running and owns {0}: stop it first, or ask it to fetch through this socket")]
    InUse(PathBuf),
    /// Socket I/O failed.
    #[error("the control socket {path} failed: {source}. Check that the directory is yours and writable")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The running instance answered with an error.
    #[error("the running Mailcall refused: {0}")]
    Refused(String),
    /// The reply could not be understood.
    #[error(
        "the running Mailcall gave a reply that cannot be read ({0}); are both the same version?"
    )]
    Protocol(String),
    /// No place for the socket.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ControlError {
    /// Whether nothing runs (so a caller may fall back to doing the work itself).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ControlError::NotRunning(_))
    }
}

/// Where the socket lives: `$XDG_RUNTIME_DIR/mailcall/control.sock`, else the data directory.
pub fn default_socket_path() -> Result<PathBuf, ControlError> {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("mailcall").join(SOCKET_NAME)),
        None => Ok(config::data_dir()?.join(SOCKET_NAME)),
    }
}

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    uid: u32,
}

impl ControlServer {
    /// Binds `path` owner-only. A stale socket (nobody answers) is replaced; a live one is
    /// [`ControlError::InUse`].
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let uid = std::fs::metadata(path).map_err(io)?.uid();
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            uid,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers requests until `shutdown`; then removes the socket file.
    pub async fn serve(self, controls: Controls, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("control socket: accept failed: {e}");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // The socket is 0600 already; the uid check also holds where permissions on socket
            // files are not enforced.
            match stream.peer_cred() {
                Ok(c) if c.uid() == self.uid || c.uid() == 0 => {}
                _ => continue,
            }
            let controls = controls.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = answer(stream, controls, stop.clone()) => {}
                    // A FETCH ends with the service anyway; this bounds anything else.
                    _ = async { stop.cancelled().await; tokio::time::sleep(Duration::from_secs(10)).await } => {}
                }
            });
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(15), tasks.wait()).await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the control socket can reach in the running instance.
#[derive(Clone)]
pub struct Controls {
    /// Fetch, pause, status.
    pub triggers: TriggerHandle,
    /// Reads the accounts again; the skipped ones, each with why.
    pub reload: Reload,
}

/// Reads the accounts again (`RELOAD`).
pub type Reload = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<String>, String>> + Send>,
        > + Send
        + Sync,
>;

async fn answer(stream: UnixStream, controls: Controls, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    let request = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
    if matches!(request, Ok(Ok(_))) && line.trim().eq_ignore_ascii_case("EVENTS") {
        stream_events(write, &controls, stop).await;
        return;
    }
    let reply = match request {
        Ok(Ok(_)) if line.ends_with('\n') => handle(line.trim_end(), &controls).await,
        Ok(Ok(_)) => {
            json!({"ok": false, "error": "send one request line ending in a newline, at most 4096 bytes"})
        }
        Ok(Err(e)) => json!({"ok": false, "error": format!("cannot read the request: {e}")}),
        Err(_) => json!({"ok": false, "error": "no request within 10 s"}),
    };
    let mut text = reply.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// `EVENTS`: every event of the instance as a JSON line, until the client goes or we stop.
async fn stream_events(
    mut write: tokio::net::unix::OwnedWriteHalf,
    controls: &Controls,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = controls.triggers.service().subscribe();
    if write.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            ev = rx.recv() => match ev {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let Ok(mut text) = serde_json::to_string(&event) else {
            continue;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Answers one request line.
async fn handle(line: &str, controls: &Controls) -> serde_json::Value {
    let triggers = &controls.triggers;
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "FETCH" => {
            let names: Vec<String> = words.map(str::to_string).collect();
            if names.len() > 64 {
                return json!({"ok": false, "error": "too many account names (at most 64)"});
            }
            for n in &names {
                if let Err(e) = crate::account::validate_name(n) {
                    return json!({"ok": false, "error": e});
                }
            }
            let request = FetchRequest::named(Trigger::Control, names);
            tracing::info!("control socket: fetch requested");
            match triggers.fetch_now(request).await {
                Ok(record) => json!({"ok": true, "record": record}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        "PAUSE" | "RESUME" => {
            triggers.set_paused(verb == "PAUSE");
            json!({"ok": true, "paused": triggers.is_paused()})
        }
        "STATUS" => json!({
            "ok": true,
            "paused": triggers.is_paused(),
            "fetching": triggers.service().is_fetching(),
            "links": triggers.links().map(|l| l.names()),
            "listen": triggers.service().listen_addr().map(|a| a.to_string()),
            "accounts": triggers.service().accounts().iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        }),
        "RELOAD" => match (controls.reload)().await {
            Ok(skipped) => json!({"ok": true, "skipped": skipped}),
            Err(e) => json!({"ok": false, "error": e}),
        },
        _ => {
            json!({"ok": false, "error": format!("unknown request {verb:?}: use FETCH [account ...], PAUSE, RESUME, STATUS, RELOAD or EVENTS")})
        }
    }
}

/// Sends one request line and returns the JSON reply (an `ok: false` reply is an error).
pub async fn request(path: &Path, line: &str) -> Result<serde_json::Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = connect(path).await?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(io)?;
    let mut reply = String::new();
    BufReader::new(read)
        .take(MAX_REPLY)
        .read_line(&mut reply)
        .await
        .map_err(io)?;
    let value: serde_json::Value =
        serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(e.to_string()))?;
    if value.get("ok").and_then(|v| v.as_bool()) == Some(true) {
        Ok(value)
    } else {
        Err(ControlError::Refused(
            value
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("no reason given")
                .to_string(),
        ))
    }
}

/// The running instance's state, as `STATUS` gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Status {
    /// Automatic fetching is paused.
    pub paused: bool,
    /// A fetch session runs.
    pub fetching: bool,
    /// The watched interfaces that are up (`None`: they cannot be watched).
    pub links: Option<Vec<String>>,
    /// Where its listener listens; `None` when none runs (ODMR accounts only).
    #[serde(default)]
    pub listen: Option<String>,
    /// Its accounts.
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// Asks the running instance for its state.
pub async fn status(path: &Path) -> Result<Status, ControlError> {
    let reply = request(path, "STATUS").await?;
    serde_json::from_value(reply).map_err(|e| ControlError::Protocol(e.to_string()))
}

/// Pauses or resumes the running instance's automatic fetching; returns the switch as it is.
pub async fn set_paused(path: &Path, paused: bool) -> Result<bool, ControlError> {
    let reply = request(path, if paused { "PAUSE" } else { "RESUME" }).await?;
    reply
        .get("paused")
        .and_then(|v| v.as_bool())
        .ok_or_else(|| ControlError::Protocol("no pause state in the reply".into()))
}

/// Asks the running instance to read its accounts again; returns the ones it skipped.
pub async fn reload(path: &Path) -> Result<Vec<String>, ControlError> {
    let reply = request(path, "RELOAD").await?;
    Ok(reply
        .get("skipped")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// The running instance's events, as `EVENTS` streams them.
#[derive(Debug)]
pub struct EventStream {
    path: PathBuf,
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    /// Kept so the instance sees the client stay.
    _write: tokio::net::unix::OwnedWriteHalf,
}

impl EventStream {
    /// The next event; `None` once the instance stopped.
    pub async fn next(&mut self) -> Result<Option<Event>, ControlError> {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(|source| ControlError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            let Some(line) = line else { return Ok(None) };
            // An event of a newer version is skipped, not fatal.
            if let Ok(event) = serde_json::from_str::<Event>(&line) {
                return Ok(Some(event));
            }
        }
    }
}

/// Subscribes to the running instance's events; every event from the moment this returns.
pub async fn subscribe(path: &Path) -> Result<EventStream, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = connect(path).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"EVENTS\n").await.map_err(io)?;
    let mut lines = BufReader::new(read).lines();
    match lines.next_line().await.map_err(io)? {
        Some(first) if first.contains("\"ok\":true") => Ok(EventStream {
            path: path.to_path_buf(),
            lines,
            _write: write,
        }),
        other => Err(ControlError::Protocol(format!(
            "unexpected answer to EVENTS: {other:?}"
        ))),
    }
}

async fn connect(path: &Path) -> Result<UnixStream, ControlError> {
    match UnixStream::connect(path).await {
        Ok(s) => Ok(s),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Err(ControlError::NotRunning(path.to_path_buf()))
        }
        Err(e) => Err(ControlError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Asks the running instance to fetch `names` (all when empty) and waits for the session record.
pub async fn fetch(path: &Path, names: &[String]) -> Result<SessionRecord, ControlError> {
    let mut line = String::from("FETCH");
    for n in names {
        line.push(' ');
        line.push_str(n);
    }
    let mut reply = request(path, &line).await?;
    let record = reply
        .get_mut("record")
        .map(serde_json::Value::take)
        .ok_or_else(|| ControlError::Protocol("no record in the reply".into()))?;
    serde_json::from_value(record).map_err(|e| ControlError::Protocol(e.to_string()))
}
