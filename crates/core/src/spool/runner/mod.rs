//! The hand-over of spooled mail to the LAN servers (LMTP, SMTP): what front ends start and
//! ask. Retries of what is deferred wait longer after each failed attempt ([`RunnerOptions`]).
//!
//! Two parts, each on its own task(s): the [`scheduler`] — one loop that owns the in-memory view
//! of the spool (loaded at start, fed by every commit of this process, rescanned every minute
//! and on request), decides what is due, defers what waits for a server that cannot be reached,
//! does users' actions on the queue, and holds the spool's lock for its whole life (a second
//! Mailcall's loop waits for it); and the [`worker`]s — up to [`RunnerOptions::per_target`] per
//! server, each holding one connection and taking due messages for its server one after
//! another, so a drain of a thousand messages reuses a few connections. A worker writes each
//! outcome to the spool (durably for delivered and refused) before it reports it; the first
//! worker that reaches a server again makes what waits for it due at once, so the queue drains
//! by itself when the server is back.

mod scheduler;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::actions::{Action, ActionError, ActionResult, Selection};
use super::Spool;
use crate::client::ClientSettings;
use crate::event::EventSink;
use crate::history::History;
use crate::maildir::Maildir;
use crate::report::HandOverReport;
use crate::service::Accounts;

pub use worker::{describe, server_of};

/// How the runner hands mail on.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The delay before the first retry; doubles with each failed attempt.
    pub retry_delay: Duration,
    /// The longest delay between retries.
    pub max_retry_delay: Duration,
    /// The delay before outgoing mail the smarthost deferred is tried again (while the link
    /// is up); doubles with each failed attempt.
    pub send_retry_delay: Duration,
    /// The longest delay between tries of outgoing mail.
    pub send_max_retry_delay: Duration,
    /// How old outgoing mail may grow: a recipient deferred at a try past this age is given
    /// up, and its sender gets a delivery report.
    pub max_queue_lifetime: Duration,
    /// After how long the sender of outgoing mail still deferred is told once; `None`: never.
    pub delay_warning: Option<Duration>,
    /// Connections at once to one server.
    pub per_target: usize,
    /// Connect and reply timeouts.
    pub client: ClientSettings,
    /// The name given in LHLO/EHLO, and in bounces.
    pub host: String,
    /// Where hand-over records go; `None` keeps none.
    pub history: Option<History>,
    /// The accounts, for their outgoing servers (outgoing mail waits while `None`).
    pub accounts: Option<watch::Receiver<Accounts>>,
    /// Where a local sender's delivery reports go (the routes of incoming mail); `None`: a
    /// refused outgoing recipient is held in the queue instead.
    pub router: Option<Arc<super::copies::Router>>,
}

impl RunnerOptions {
    /// The options a config describes (four connections per server).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        Ok(RunnerOptions {
            retry_delay: Duration::from_secs(config.retry_delay),
            max_retry_delay: Duration::from_secs(config.max_retry_delay),
            send_retry_delay: Duration::from_secs(config.send_retry_delay),
            send_max_retry_delay: Duration::from_secs(config.send_max_retry_delay),
            max_queue_lifetime: Duration::from_secs(config.max_queue_lifetime * 3600),
            delay_warning: (config.delay_warning > 0)
                .then(|| Duration::from_secs(config.delay_warning * 3600)),
            per_target: 4,
            client: ClientSettings {
                connect_timeout: Duration::from_secs(30),
                reply_timeout: Duration::from_secs(config.reply_timeout.max(60)),
                ..ClientSettings::default()
            },
            host: config.hostname(),
            history: Some(config.history()?),
            accounts: None,
            router: None,
        })
    }

    /// The wait before attempt `attempts + 1` to `target`: outgoing mail waits by the
    /// `send-` delays, mail for a LAN server by the others.
    fn backoff(&self, target: &crate::routing::Target, attempts: u32) -> Duration {
        let (first, longest) = if target.outgoing_account().is_some() {
            (self.send_retry_delay, self.send_max_retry_delay)
        } else {
            (self.retry_delay, self.max_retry_delay)
        };
        let doublings = attempts.saturating_sub(1).min(30);
        first.saturating_mul(1u32 << doublings).min(longest)
    }
}

/// What the loop (which holds the spool's lock) is asked to do.
enum Command {
    /// A user's action on the queue.
    Act {
        action: Action,
        selection: Selection,
        reply: oneshot::Sender<Result<ActionResult, ActionError>>,
    },
    /// Send the outgoing mail now, and say what became of it.
    Send { reply: oneshot::Sender<SendReport> },
    /// Whether the link is up: outgoing mail leaves by itself only while it is.
    Online(bool),
    /// Read the spool directory again now: another process (`mailcall-cli sendmail`) queued a
    /// message, which only this process's own commits announce.
    Rescan,
}

/// What one round of sending the outgoing mail did (the control socket's `SEND` reply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    /// Each message tried, with each recipient's outcome.
    #[serde(default)]
    pub messages: Vec<HandOverReport>,
    /// Outgoing servers that could not be reached or used, and why.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl SendReport {
    /// How many recipients were sent, refused and deferred.
    pub fn counts(&self) -> (usize, usize, usize) {
        use crate::report::HandOverOutcome;
        let mut counts = (0, 0, 0);
        for r in self.messages.iter().flat_map(|m| &m.recipients) {
            match r.outcome {
                HandOverOutcome::Delivered => counts.0 += 1,
                HandOverOutcome::Failed => counts.1 += 1,
                HandOverOutcome::Deferred { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

/// Asks the running loop to act on the queue (for the control socket and the tray).
#[derive(Debug, Clone)]
pub struct RunnerHandle {
    tx: mpsc::UnboundedSender<Command>,
    spool: Spool,
}

impl RunnerHandle {
    /// The spool it hands on from.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Does `action` to the selected messages: retry makes them due now (refused recipients
    /// are queued again), bounce puts a DSN into the postmaster's Maildir, delete removes them.
    pub async fn act(
        &self,
        action: Action,
        selection: Selection,
    ) -> Result<ActionResult, ActionError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Act {
                action,
                selection,
                reply,
            })
            .map_err(|_| ActionError::RunnerStopped)?;
        answer.await.map_err(|_| ActionError::RunnerStopped)?
    }

    /// Sends every queued outgoing message now (whatever its retry time), and returns once
    /// each was tried; `None` when the runner has stopped.
    pub async fn send_outgoing(&self) -> Option<SendReport> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::Send { reply }).ok()?;
        answer.await.ok()
    }

    /// Tells the runner whether a watched link is up: outgoing mail then leaves by itself
    /// within seconds of being queued; while none is, it waits for a fetch.
    pub fn set_online(&self, online: bool) {
        let _ = self.tx.send(Command::Online(online));
    }

    /// Reads the spool directory again now, for messages another process queued (the runner
    /// otherwise finds them at its next rescan, within a minute); `false` when the runner has
    /// stopped.
    pub fn rescan(&self) -> bool {
        self.tx.send(Command::Rescan).is_ok()
    }
}

/// A running hand-over loop.
#[derive(Debug)]
pub struct Runner {
    handle: RunnerHandle,
    task: JoinHandle<()>,
    stop: CancellationToken,
    drain: watch::Sender<bool>,
}

impl Runner {
    /// What front ends use to act on the queue.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Stops: with `drain`, first hands over whatever is due (new mail; not the deferred),
    /// for at most that long; then workers finish the message they are on, and it returns.
    pub async fn finish(mut self, drain: Option<Duration>) {
        let drained = match drain {
            Some(limit) => {
                let _ = self.drain.send(true);
                tokio::time::timeout(limit, &mut self.task).await.is_ok()
            }
            None => false,
        };
        if !drained {
            self.stop.cancel();
            let _ = (&mut self.task).await;
        }
        // Its records are written by the history's writer thread: on disk before it is done.
        crate::history::written().await;
    }
}

/// Starts the loop over `spool`; bounces go into `postmaster`.
pub fn start(
    spool: Spool,
    postmaster: Maildir,
    options: RunnerOptions,
    events: EventSink,
) -> Runner {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let (drain, drain_rx) = watch::channel(false);
    let handle = RunnerHandle {
        tx,
        spool: spool.clone(),
    };
    let scheduler = scheduler::Scheduler::new(spool, postmaster, Arc::new(options), events);
    let task = tokio::spawn(scheduler.run(rx, drain_rx, stop.clone()));
    Runner {
        handle,
        task,
        stop,
        drain,
    }
}
