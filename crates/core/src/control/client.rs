//! The control client: asks the Mailcall that runs elsewhere (a daemon, or another tray) over its
//! control socket — one connection per request, written and read by the protocol — and follows
//! its events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use super::protocol::{Reply, Request, Status, MAX_REPLY};
use super::transport::{self, Stream};
use super::ControlError;
use crate::event::Event;
use crate::history::{ManualTrigger, SessionRecord};
use crate::service::Sending;
use crate::spool::actions::{ActionResult, Selection};
use crate::spool::runner::SendReport;
use crate::spool::Action;

/// How long a short request (status, pause, reload, wake, subscribing to events) may take before
/// the running Mailcall counts as hung. A fetch, a send and a queue action take as long as their
/// work.
const SHORT_LIMIT: Duration = Duration::from_secs(15);

/// A client of the Mailcall answering on one control socket; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of whoever answers on `socket`; nothing is sent yet.
    pub fn new(socket: PathBuf) -> Self {
        Client { socket }
    }

    /// The control socket it asks.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn io(&self, source: std::io::Error) -> ControlError {
        ControlError::Io {
            path: self.socket.clone(),
            source,
        }
    }

    async fn connect(&self) -> Result<Stream, ControlError> {
        match transport::connect(&self.socket).await {
            Ok(s) => Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ControlError::NotRunning(self.socket.clone()))
            }
            Err(e) => Err(self.io(e)),
        }
    }

    /// Sends `line` and reads the reply line.
    async fn exchange(&self, line: &str) -> Result<String, ControlError> {
        let stream = self.connect().await?;
        let (read, mut write) = tokio::io::split(stream);
        write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        let mut reply = String::new();
        BufReader::new(read)
            .take(MAX_REPLY)
            .read_line(&mut reply)
            .await
            .map_err(|e| self.io(e))?;
        Ok(reply)
    }

    /// Sends `request` and reads its reply; a refusal is [`ControlError::Refused`].
    pub async fn ask(&self, request: &Request) -> Result<Reply, ControlError> {
        request.check().map_err(ControlError::Invalid)?;
        let line = self.exchange(&request.to_string()).await?;
        match Reply::read(request.verb(), &line) {
            Ok(Reply::Refused { error }) => Err(ControlError::Refused(error)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(ControlError::Protocol(e.to_string())),
        }
    }

    /// [`Client::ask`], given up as hung after [`SHORT_LIMIT`].
    async fn ask_briefly(&self, request: &Request) -> Result<Reply, ControlError> {
        tokio::time::timeout(SHORT_LIMIT, self.ask(request))
            .await
            .unwrap_or_else(|_| Err(self.hung()))
    }

    fn hung(&self) -> ControlError {
        self.io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", SHORT_LIMIT.as_secs()),
        ))
    }

    /// Sends one line as a script would write it (it is not checked) and gives the reply as
    /// JSON, a refusal included: for tests and tools that speak the wire.
    pub async fn send_line(&self, line: &str) -> Result<serde_json::Value, ControlError> {
        let reply = self.exchange(line).await?;
        serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    /// Asks it to fetch `accounts` (every account when empty) on behalf of `trigger`, its
    /// outgoing queue sent first, and waits for the session's record.
    pub async fn fetch(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
    ) -> Result<SessionRecord, ControlError> {
        self.fetch_with(trigger, accounts, Sending::First).await
    }

    /// [`Client::fetch`], sending the outgoing queue first or not as `sending` says.
    pub async fn fetch_with(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
        sending: Sending,
    ) -> Result<SessionRecord, ControlError> {
        let request = Request::Fetch {
            trigger,
            accounts,
            sending,
        };
        match self.ask(&request).await? {
            Reply::Fetched { record } => Ok(*record),
            other => Err(unexpected(&other)),
        }
    }

    /// Pauses or resumes its automatic fetching; the switch as it is then.
    pub async fn set_paused(&self, paused: bool) -> Result<bool, ControlError> {
        match self.ask_briefly(&Request::set_paused(paused)).await? {
            Reply::Paused { paused } => Ok(paused),
            other => Err(unexpected(&other)),
        }
    }

    /// Its state now.
    pub async fn status(&self) -> Result<Status, ControlError> {
        match self.ask_briefly(&Request::Status).await? {
            Reply::Status(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks it to read its accounts again; the ones it skipped, each with why.
    pub async fn reload(&self) -> Result<Vec<String>, ControlError> {
        match self.ask_briefly(&Request::Reload).await? {
            Reply::Reloaded { skipped } => Ok(skipped),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks it to do `action` to the selected messages of its queue; what it did.
    pub async fn queue(
        &self,
        action: Action,
        selection: Selection,
    ) -> Result<ActionResult, ControlError> {
        match self.ask(&Request::Queue { action, selection }).await? {
            Reply::Queued { result } => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks it to send its outgoing queue now; what became of each message, once each was
    /// tried.
    pub async fn send(&self) -> Result<SendReport, ControlError> {
        match self.ask(&Request::Send).await? {
            Reply::Sent { report } => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells it to read its spool again now (a message was just queued by this process).
    pub async fn wake(&self) -> Result<(), ControlError> {
        match self.ask_briefly(&Request::Wake).await? {
            Reply::Woken {} => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Subscribes to its events: every event from the moment this returns.
    pub async fn subscribe(&self) -> Result<EventStream, ControlError> {
        tokio::time::timeout(SHORT_LIMIT, self.subscribe_now())
            .await
            .unwrap_or_else(|_| Err(self.hung()))
    }

    async fn subscribe_now(&self) -> Result<EventStream, ControlError> {
        let stream = self.connect().await?;
        let (read, mut write) = tokio::io::split(stream);
        write
            .write_all(format!("{}\n", Request::Events).as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        let mut lines = BufReader::new(read).lines();
        let first = lines.next_line().await.map_err(|e| self.io(e))?;
        let first = first
            .ok_or_else(|| ControlError::Protocol(format!("no answer to {}", Request::Events)))?;
        match Reply::read(Request::Events.verb(), &first) {
            Ok(Reply::Subscribed {}) => Ok(EventStream {
                path: self.socket.clone(),
                lines,
                _write: write,
            }),
            Ok(Reply::Refused { error }) => Err(ControlError::Refused(error)),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(ControlError::Protocol(e.to_string())),
        }
    }
}

/// A reply of another kind than the request asks for (the protocol reads none such; kept
/// honest rather than assumed).
fn unexpected(reply: &Reply) -> ControlError {
    ControlError::Protocol(format!("an unexpected reply: {reply:?}"))
}

/// The running Mailcall's events, as `EVENTS` streams them.
#[derive(Debug)]
pub struct EventStream {
    path: PathBuf,
    lines: tokio::io::Lines<BufReader<ReadHalf<Stream>>>,
    /// Kept so the instance sees the client stay.
    _write: WriteHalf<Stream>,
}

impl EventStream {
    /// The next event; `None` once the instance stopped. Cancel-safe.
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
