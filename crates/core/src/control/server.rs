//! The control server: each connection is admitted by the transport, its one request line read
//! by the protocol and done by the instance's [`Controls`] (mini-redis's `from_frame`/`apply`),
//! and its one reply written back — or, for `EVENTS`, every event as it happens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{ParseError, Reply, Request, MAX_REQUEST};
use super::transport::{self, Connection, Incoming};
use super::ControlError;
use crate::instance::Controls;

/// How long a client has to send its request line once connected.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: transport::ControlListener,
    path: PathBuf,
}

impl Server {
    /// Binds `path` owner-only. A stale socket (nobody answers) is replaced; a live one is
    /// [`ControlError::InUse`].
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        Ok(Server {
            listener: transport::ControlListener::bind(path)?,
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
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(incoming) => incoming,
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
                    _ = connection(incoming, controls, stop.clone()) => {}
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

/// One connection: admitted in its own task (a slow client holds up nobody), one request, one
/// reply; for `EVENTS`, the events until the client goes or the instance stops.
async fn connection(incoming: Incoming, controls: Controls, stop: CancellationToken) {
    // Not this user's (or without the token): no answer at all.
    let Some(mut conn) = incoming.admit().await else {
        return;
    };
    let request = read_request(&mut conn).await;
    // Subscribed before the reply says so: the client sees every event from then on.
    let events = matches!(request, Ok(Request::Events)).then(|| controls.subscribe());
    let reply = match request {
        Ok(request) => apply(request, &controls).await,
        Err(error) => Reply::Refused {
            error: error.to_string(),
        },
    };
    if conn.write_all(reply.to_line().as_bytes()).await.is_err() {
        return;
    }
    if let Some(mut rx) = events {
        while let Some(event) = crate::event::next_until(&mut rx, &stop).await {
            let Ok(mut text) = serde_json::to_string(&event) else {
                continue;
            };
            text.push('\n');
            if conn.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    }
    let _ = conn.shutdown().await;
}

/// Why a connection brought no request to do; answered as a refusal.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// The line is no request the protocol knows.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No newline within [`MAX_REQUEST`] bytes, or the client closed before one.
    #[error("send one request line ending in a newline, at most {MAX_REQUEST} bytes")]
    NoLine,
    /// Reading failed.
    #[error("cannot read the request: {0}")]
    Read(std::io::Error),
    /// Nothing came within [`REQUEST_LIMIT`].
    #[error("no request within {} s", REQUEST_LIMIT.as_secs())]
    TimedOut,
}

/// Reads and parses the request line; the error to answer with when there is none.
async fn read_request(conn: &mut Connection) -> Result<Request, RequestError> {
    let mut line = String::new();
    let read =
        tokio::time::timeout(REQUEST_LIMIT, conn.take(MAX_REQUEST).read_line(&mut line)).await;
    match read {
        Ok(Ok(_)) if line.ends_with('\n') => Ok(Request::parse(line.trim_end())?),
        Ok(Ok(_)) => Err(RequestError::NoLine),
        Ok(Err(e)) => Err(RequestError::Read(e)),
        Err(_) => Err(RequestError::TimedOut),
    }
}

/// Does what `request` asks of the instance, and says how it went.
async fn apply(request: Request, controls: &Controls) -> Reply {
    match request {
        Request::Fetch {
            trigger,
            accounts,
            sending,
        } => {
            tracing::info!("control socket: fetch requested");
            match controls.fetch_with(trigger, accounts, sending).await {
                Ok(record) => Reply::Fetched {
                    record: Box::new(record),
                },
                Err(e) => Reply::Refused {
                    error: e.to_string(),
                },
            }
        }
        Request::Pause => Reply::Paused {
            paused: controls.set_paused(true),
        },
        Request::Resume => Reply::Paused {
            paused: controls.set_paused(false),
        },
        Request::Status => Reply::Status(controls.status()),
        Request::Reload => match controls.reload().await {
            Ok(skipped) => Reply::Reloaded {
                skipped: skipped.iter().map(ToString::to_string).collect(),
            },
            Err(e) => Reply::Refused {
                error: e.to_string(),
            },
        },
        // The connection streams the events after this line.
        Request::Events => Reply::Subscribed {},
        Request::Queue { action, selection } => match controls.queue(action, selection).await {
            Ok(result) => Reply::Queued { result },
            Err(e) => Reply::Refused {
                error: e.to_string(),
            },
        },
        Request::Send => {
            tracing::info!("control socket: sending the outgoing mail");
            match controls.send().await {
                Ok(report) => Reply::Sent { report },
                Err(e) => Reply::Refused {
                    error: e.to_string(),
                },
            }
        }
        Request::Wake => match controls.wake() {
            Ok(()) => Reply::Woken {},
            Err(e) => Reply::Refused {
                error: e.to_string(),
            },
        },
    }
}
