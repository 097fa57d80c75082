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
//! | `STATUS` | `{"ok":true,"paused":bool,"fetching":bool,"links":[...]}` |
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
use crate::history::SessionRecord;
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
    #[error("another Mailcall (daemon or tray) is already running and owns {0}: stop it first, or ask it to fetch with `mailcall-cli fetch --via-running`")]
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
    pub async fn serve(self, triggers: TriggerHandle, shutdown: CancellationToken) {
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
            let triggers = triggers.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = answer(stream, triggers) => {}
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

async fn answer(stream: UnixStream, triggers: TriggerHandle) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    let reply = match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
    {
        Ok(Ok(_)) if line.ends_with('\n') => handle(line.trim_end(), &triggers).await,
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

/// Answers one request line.
async fn handle(line: &str, triggers: &TriggerHandle) -> serde_json::Value {
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
            let request = FetchRequest {
                trigger: "control".into(),
                accounts: (!names.is_empty()).then_some(names),
            };
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
        }),
        _ => {
            json!({"ok": false, "error": format!("unknown request {verb:?}: use FETCH [account ...], PAUSE, RESUME or STATUS")})
        }
    }
}

/// Sends one request line and returns the JSON reply (an `ok: false` reply is an error).
pub async fn request(path: &Path, line: &str) -> Result<serde_json::Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(path.to_path_buf()))
        }
        Err(e) => return Err(io(e)),
    };
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
