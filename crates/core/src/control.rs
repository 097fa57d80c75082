//! The local control socket: lets scripts (ip-up.d, cron, `mailcall-cli fetch --via-running`) ask
//! a running daemon or tray instance to fetch, instead of starting a second listener.
//!
//! On Unix a Unix socket, owner-only (directory 0700, socket 0600, and the peer's uid is
//! checked), in `$XDG_RUNTIME_DIR/mailcall/` (fallback: the data directory). On Windows a TCP
//! socket on 127.0.0.1 whose port and a random token are in that file (in the user's own profile);
//! a client sends the token first ([`transport`]). One request line, one JSON reply line, then
//! the connection closes:
//!
//! | request | reply |
//! |---|---|
//! | `FETCH [trigger=WORD] [account ...]` | `{"ok":true,"record":{...}}` once the session ended (its history record); `trigger=` names the front end that asked (`tray`, `window`, `cli`; default `control`) |
//! | `PAUSE` / `RESUME` | `{"ok":true,"paused":bool}` |
//! | `STATUS` | `{"ok":true,"paused":bool,"fetching":bool,"links":[...],"listen":"ADDR","accounts":[...],"config":"PATH"}` |
//! | `RELOAD` | `{"ok":true,"skipped":[...]}` once the accounts were read again |
//! | `EVENTS` | `{"ok":true}`, then one JSON [`Event`] per line for as long as the client listens |
//! | `QUEUE RETRY\|BOUNCE\|DELETE ALL\|id ...` | `{"ok":true,"result":{...}}` once done (the spool's [`ActionResult`]) |
//! | anything else | `{"ok":false,"error":"..."}` |

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;
use transport::Stream;

use crate::config::{self, ConfigError};
use crate::event::Event;
use crate::history::SessionRecord;
use crate::history::Trigger;
use crate::service::FetchRequest;
use crate::spool::actions::{ActionResult, Selection};
use crate::spool::runner::RunnerHandle;
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
        /// What the socket reported.
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
    listener: transport::Listener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` owner-only. A stale socket (nobody answers) is replaced; a live one is
    /// [`ControlError::InUse`].
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        Ok(ControlServer {
            listener: transport::Listener::bind(path)?,
            path: path.to_path_buf(),
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
                    Ok(Some(s)) => s,
                    // Not this user's (or without the token): no answer at all.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!("control socket: accept failed: {e}");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
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

/// The platform's local channel: who may connect, and how a client finds the server.
#[cfg(unix)]
mod transport {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::ControlError;

    /// The stream a request comes over.
    pub type Stream = tokio::net::UnixStream;

    /// A Unix socket, owner-only.
    #[derive(Debug)]
    pub struct Listener {
        inner: tokio::net::UnixListener,
        uid: u32,
    }

    impl Listener {
        /// Binds `path`: directory 0700, socket 0600; a stale socket is replaced.
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
            let inner = tokio::net::UnixListener::bind(path).map_err(io)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            let uid = std::fs::metadata(path).map_err(io)?.uid();
            Ok(Listener { inner, uid })
        }

        /// The next connection; `None` when its peer is another user (the socket is 0600
        /// already; the check also holds where permissions on socket files are not enforced).
        pub async fn accept(&self) -> std::io::Result<Option<Stream>> {
            let (stream, _) = self.inner.accept().await?;
            Ok(match stream.peer_cred() {
                Ok(c) if c.uid() == self.uid || c.uid() == 0 => Some(stream),
                _ => None,
            })
        }
    }

    /// Connects to the server at `path`.
    pub async fn connect(path: &Path) -> std::io::Result<Stream> {
        tokio::net::UnixStream::connect(path).await
    }
}

/// Where there are no Unix sockets (Windows): the TCP transport with a token.
#[cfg(not(unix))]
use tcp_token as transport;

/// A local channel for platforms without Unix sockets: who may connect, and how a client finds
/// the server. Built everywhere for its tests; used where there are no Unix sockets.
#[cfg(any(not(unix), test))]
mod tcp_token {
    use std::path::Path;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::ControlError;

    /// The stream a request comes over.
    pub type Stream = tokio::net::TcpStream;

    /// A TCP socket on 127.0.0.1; its port and a random token are in the file at the socket's
    /// path, in the user's own profile: only who can read that file can talk to it.
    #[derive(Debug)]
    pub struct Listener {
        inner: tokio::net::TcpListener,
        token: String,
    }

    fn token() -> Result<String, ControlError> {
        let mut bytes = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
            |_| ControlError::Protocol("no random numbers for the control token".into()),
        )?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    impl Listener {
        /// Binds 127.0.0.1:0 and writes `PORT TOKEN` to `path`; a live server there is InUse.
        pub fn bind(path: &Path) -> Result<Self, ControlError> {
            let io = |source| ControlError::Io {
                path: path.to_path_buf(),
                source,
            };
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Some(port) = text
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Err(ControlError::InUse(path.to_path_buf()));
                    }
                }
            }
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
            std_listener.set_nonblocking(true).map_err(io)?;
            let port = std_listener.local_addr().map_err(io)?.port();
            let token = token()?;
            crate::fsutil::write_atomic(path, format!("{port} {token}\n").as_bytes(), 0o600)
                .map_err(io)?;
            tracing::debug!(port, "control channel on 127.0.0.1");
            let inner = tokio::net::TcpListener::from_std(std_listener).map_err(io)?;
            Ok(Listener { inner, token })
        }

        /// The next connection; `None` unless it sends the token first (within 5 s).
        pub async fn accept(&self) -> std::io::Result<Option<Stream>> {
            let (mut stream, _) = self.inner.accept().await?;
            let mut line = String::new();
            let read = {
                let mut reader = BufReader::new(&mut stream).take(128);
                tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await
            };
            Ok(match read {
                Ok(Ok(_)) if line.trim() == self.token => Some(stream),
                _ => None,
            })
        }
    }

    /// Connects to the server whose port and token are in `path`, and sends the token.
    pub async fn connect(path: &Path) -> std::io::Result<Stream> {
        connect_with(path, None).await
    }

    /// [`connect`], with another token than the file's (a test of the refusal).
    pub async fn connect_with(path: &Path, forged: Option<&str>) -> std::io::Result<Stream> {
        let text = tokio::fs::read_to_string(path).await?;
        let mut words = text.split_whitespace();
        let (Some(port), Some(token)) = (words.next(), words.next()) else {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let token = forged.unwrap_or(token);
        stream.write_all(format!("{token}\n").as_bytes()).await?;
        Ok(stream)
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn only_a_client_with_the_token_gets_through() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("control.sock");
            let listener = Listener::bind(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.split_whitespace().count(), 2, "{text}");
            // A second server sees the first answer (the probe sends no token: refused).
            assert!(matches!(Listener::bind(&path), Err(ControlError::InUse(_))));
            let server = tokio::spawn(async move {
                let mut admitted = Vec::new();
                for _ in 0..3 {
                    admitted.push(listener.accept().await.unwrap().is_some());
                }
                admitted
            });
            let mut good = connect(&path).await.unwrap();
            good.write_all(b"STATUS\n").await.unwrap();
            let _forged = connect_with(&path, Some("0000")).await.unwrap();
            assert_eq!(server.await.unwrap(), [false, true, false]);
        }
    }
}

/// What the control socket can reach in the running instance.
#[derive(Clone)]
pub struct Controls {
    /// The spool's queue (retry, bounce, delete), when there is one.
    pub queue: Option<RunnerHandle>,
    /// Fetch, pause, status.
    pub triggers: TriggerHandle,
    /// Reads the accounts again; the skipped ones, each with why.
    pub reload: Reload,
    /// The config file this instance runs with (`STATUS` tells it, so a command given another
    /// `--config` can say that the running one is not using it).
    pub config: Option<PathBuf>,
}

/// Reads the accounts again (`RELOAD`).
pub type Reload = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<String>, String>> + Send>,
        > + Send
        + Sync,
>;

async fn answer(stream: Stream, controls: Controls, stop: CancellationToken) {
    let (read, mut write) = tokio::io::split(stream);
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
async fn stream_events(mut write: WriteHalf<Stream>, controls: &Controls, stop: CancellationToken) {
    let mut rx = controls.triggers.service().subscribe();
    if write.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    while let Some(event) = crate::event::next_until(&mut rx, &stop).await {
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
            let mut trigger = Trigger::Control;
            let mut names: Vec<String> = Vec::new();
            for word in words {
                // `=` is never in an account name, so the option cannot be taken for one.
                match word.strip_prefix("trigger=") {
                    Some(t) => match manual_trigger(t) {
                        Some(t) => trigger = t,
                        None => {
                            return json!({"ok": false, "error": format!("trigger={t} is not a front end that fetches by hand: use tray, window, cli or control")})
                        }
                    },
                    None => names.push(word.to_string()),
                }
            }
            if names.len() > 64 {
                return json!({"ok": false, "error": "too many account names (at most 64)"});
            }
            for n in &names {
                if let Err(e) = crate::account::validate_name(n) {
                    return json!({"ok": false, "error": e});
                }
            }
            let request = FetchRequest::named(trigger, names);
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
            "config": controls.config.as_ref().map(|p| p.display().to_string()),
        }),
        "QUEUE" => {
            let Some(queue) = &controls.queue else {
                return json!({"ok": false, "error": "this Mailcall has no spool to act on"});
            };
            let action = words.next().unwrap_or("").to_ascii_uppercase();
            let ids: Vec<String> = words.map(str::to_string).collect();
            let selection = match ids.as_slice() {
                [all] if all.eq_ignore_ascii_case("ALL") => Selection::All,
                [] => {
                    return json!({"ok": false, "error": "name the messages: QUEUE RETRY|BOUNCE|DELETE ALL|ID ..."})
                }
                _ => Selection::Ids(ids),
            };
            let result = match action.as_str() {
                "RETRY" => queue.retry(selection).await,
                "BOUNCE" => queue.bounce(selection).await,
                "DELETE" => queue.delete(selection).await,
                _ => {
                    return json!({"ok": false, "error": format!("unknown queue action {action:?}: use RETRY, BOUNCE or DELETE")})
                }
            };
            match result {
                Ok(r) => json!({"ok": true, "result": r}),
                Err(e) => json!({"ok": false, "error": e}),
            }
        }
        "RELOAD" => match (controls.reload)().await {
            Ok(skipped) => json!({"ok": true, "skipped": skipped}),
            Err(e) => json!({"ok": false, "error": e}),
        },
        _ => {
            json!({"ok": false, "error": format!("unknown request {verb:?}: use FETCH [trigger=WORD] [account ...], PAUSE, RESUME, STATUS, RELOAD, QUEUE or EVENTS")})
        }
    }
}

/// The triggers a `FETCH` may name: the front ends that fetch by hand (an automatic trigger
/// over the socket would be a lie in the history, and would be retried as one).
fn manual_trigger(word: &str) -> Option<Trigger> {
    match word {
        "tray" => Some(Trigger::Tray),
        "window" => Some(Trigger::Window),
        "cli" => Some(Trigger::Cli),
        "control" => Some(Trigger::Control),
        _ => None,
    }
}

/// Sends one request line and returns the JSON reply (an `ok: false` reply is an error).
pub async fn request(path: &Path, line: &str) -> Result<serde_json::Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = connect(path).await?;
    let (read, mut write) = tokio::io::split(stream);
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
    /// The config file it runs with.
    #[serde(default)]
    pub config: Option<String>,
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
    lines: tokio::io::Lines<BufReader<ReadHalf<Stream>>>,
    /// Kept so the instance sees the client stay.
    _write: WriteHalf<Stream>,
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
    let (read, mut write) = tokio::io::split(stream);
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

async fn connect(path: &Path) -> Result<Stream, ControlError> {
    match transport::connect(path).await {
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
    fetch_as(path, Trigger::Control, names).await
}

/// [`fetch`] on behalf of a front end (a tray using a running daemon): the session and its
/// history record carry `trigger` (tray, window, cli or control) instead of `control`.
pub async fn fetch_as(
    path: &Path,
    trigger: Trigger,
    names: &[String],
) -> Result<SessionRecord, ControlError> {
    let mut line = String::from("FETCH");
    if trigger != Trigger::Control {
        line.push_str(" trigger=");
        line.push_str(trigger.as_str());
    }
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

/// Asks the running instance to act on its queue (`action`: RETRY, BOUNCE or DELETE).
pub async fn queue(
    path: &Path,
    action: &str,
    selection: &Selection,
) -> Result<ActionResult, ControlError> {
    let mut line = format!("QUEUE {action}");
    match selection {
        Selection::All => line.push_str(" ALL"),
        Selection::Ids(ids) => {
            for id in ids {
                line.push(' ');
                line.push_str(id);
            }
        }
    }
    let mut reply = request(path, &line).await?;
    let result = reply
        .get_mut("result")
        .map(serde_json::Value::take)
        .ok_or_else(|| ControlError::Protocol("no result in the reply".into()))?;
    serde_json::from_value(result).map_err(|e| ControlError::Protocol(e.to_string()))
}
