//! The hand-over loop: takes spooled messages to their servers (LMTP, SMTP), records what
//! each server said per recipient, and retries what is deferred with a growing delay.
//!
//! One loop owns the in-memory view of the spool (loaded at start, fed by every commit of this
//! process, rescanned every minute and on request) and decides what is due; workers, up to
//! [`RunnerOptions::per_target`] per server, each hold one connection and take due messages
//! for their server one after another, so a drain of a thousand messages reuses a few
//! connections. A worker writes each outcome to the spool (durably for delivered and refused)
//! before it reports it. A server that cannot be reached defers everything waiting for it; the
//! first worker that reaches it again makes those due at once, so the queue drains by itself
//! when the server is back. The loop holds the spool's lock for its whole life: a second
//! Mailcall's loop waits for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actions::{self, Action, ActionResult, Selection};
use super::{Entry, Spool, State, Status};
use crate::client::transfer::{self, Envelope};
use crate::client::{self, Address, ClientSettings, Hello, IspError, Server};
use crate::config::ConfigKey;
use crate::event::{Event, EventSink};
use crate::hint::{Problem, Setting};
use crate::history::{EndReason, History, RecordKind, SessionRecord, Trigger};
use crate::maildir::Maildir;
use crate::report::{HandOverOutcome, HandOverReport, RecipientOutcome, TranscriptLine};
use crate::routing::Destination;
use crate::routing::Target;

/// How often the spool directory is read again for messages another process left there.
const RESCAN: Duration = Duration::from_secs(60);
/// How often a loop waiting for another Mailcall's lock tries again.
const LOCK_RETRY: Duration = Duration::from_secs(2);
/// Transcript lines kept in a hand-over record that had problems.
const TRANSCRIPT_LINES: usize = 300;
/// How long a worker keeps its connection open for more mail once its server's queue is empty
/// (a drain from the ISP arrives a message at a time; Postfix caches connections likewise).
const LINGER: Duration = Duration::from_secs(2);
/// How often the queue's counts are published while hand-overs run.
const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// How the runner hands mail on.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The delay before the first retry; doubles with each failed attempt.
    pub retry_delay: Duration,
    /// The longest delay between retries.
    pub max_retry_delay: Duration,
    /// Connections at once to one server.
    pub per_target: usize,
    /// Connect and reply timeouts.
    pub client: ClientSettings,
    /// The name given in LHLO/EHLO, and in bounces.
    pub host: String,
    /// Where hand-over records go; `None` keeps none.
    pub history: Option<History>,
}

impl RunnerOptions {
    /// The options a config describes (four connections per server).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        Ok(RunnerOptions {
            retry_delay: Duration::from_secs(config.retry_delay),
            max_retry_delay: Duration::from_secs(config.max_retry_delay),
            per_target: 4,
            client: ClientSettings {
                connect_timeout: Duration::from_secs(30),
                reply_timeout: Duration::from_secs(config.reply_timeout.max(60)),
                ..ClientSettings::default()
            },
            host: config.hostname(),
            history: Some(config.history()?),
        })
    }

    /// The wait before attempt `attempts + 1`.
    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.retry_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry_delay)
    }
}

/// A user's action on the queue, for the loop (which holds the spool's lock) to do.
struct Command {
    action: Action,
    selection: Selection,
    reply: oneshot::Sender<Result<ActionResult, String>>,
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
    pub async fn act(&self, action: Action, selection: Selection) -> Result<ActionResult, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command {
                action,
                selection,
                reply,
            })
            .map_err(|_| "the queue runner has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the queue runner has stopped".to_string())?
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
        if let Some(limit) = drain {
            let _ = self.drain.send(true);
            if tokio::time::timeout(limit, &mut self.task).await.is_ok() {
                return;
            }
        }
        self.stop.cancel();
        let _ = (&mut self.task).await;
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
    let state = Loop {
        spool,
        postmaster,
        options: Arc::new(options),
        events,
        entries: BTreeMap::new(),
        dispatch: Arc::default(),
        pushed: Arc::default(),
        workers: TaskTracker::new(),
        last_counts: None,
        counted_at: None,
    };
    let task = tokio::spawn(state.run(rx, drain_rx, stop.clone()));
    Runner {
        handle,
        task,
        stop,
        drain,
    }
}

/// A message for one server: the entry as it was when dispatched, and its recipients there.
struct Unit {
    entry: Entry,
    recipients: Vec<usize>,
}

/// What is waiting for each server, and how many workers serve it.
#[derive(Default)]
struct Dispatch {
    queues: HashMap<Target, VecDeque<Unit>>,
    workers: HashMap<Target, usize>,
}

impl Dispatch {
    /// The next unit for `target`; with `last`, `None` also signs the worker off, under the
    /// same lock, so a unit pushed a moment later gets a new worker.
    fn take(&mut self, target: &Target, last: bool) -> Option<Unit> {
        let next = self.queues.get_mut(target).and_then(VecDeque::pop_front);
        if next.is_none() && last {
            self.leave(target);
        }
        next
    }

    fn leave(&mut self, target: &Target) {
        if let Some(n) = self.workers.get_mut(target) {
            *n = n.saturating_sub(1);
        }
    }
}

enum Report {
    /// A unit is through: its new state is on disk (or the entry is gone).
    Done {
        name: String,
        state: State,
        removed: bool,
        report: HandOverReport,
    },
    /// A worker reached its server.
    Reached(Target),
    /// A worker could not reach its server, or lost it.
    Unreachable(Target, String),
    /// A worker ended; its record goes to the history.
    Finished(Box<SessionRecord>),
}

struct Tracked {
    entry: Entry,
    in_flight: bool,
}

struct Loop {
    spool: Spool,
    postmaster: Maildir,
    options: Arc<RunnerOptions>,
    events: EventSink,
    entries: BTreeMap<String, Tracked>,
    dispatch: Arc<Mutex<Dispatch>>,
    /// Wakes lingering workers when units are pushed.
    pushed: Arc<tokio::sync::Notify>,
    workers: TaskTracker,
    last_counts: Option<(usize, usize)>,
    counted_at: Option<tokio::time::Instant>,
}

impl Loop {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut drain: watch::Receiver<bool>,
        stop: CancellationToken,
    ) {
        let Some(_lock) = self.lock(&stop, &mut drain).await else {
            return;
        };
        match self.spool.clean() {
            Ok(0) => {}
            Ok(n) => tracing::info!("spool: removed {n} file(s) a stopped Mailcall left"),
            Err(e) => tracing::warn!("spool: cannot clean {}: {e}", self.spool.root().display()),
        }
        self.rescan();
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let mut next_rescan = tokio::time::Instant::now() + RESCAN;
        loop {
            for name in self.spool.take_fresh() {
                self.load(&name);
            }
            self.dispatch_due(&reports_tx, &stop);
            self.publish_counts();
            if *drain.borrow() && self.nothing_due() && self.busy() == 0 {
                break;
            }
            let wake = self.next_due().map(|at| {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::Instant::now() + wait
            });
            let until = wake.map_or(next_rescan, |w| w.min(next_rescan));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.spool.changed() => {}
                _ = drain.changed() => {}
                _ = tokio::time::sleep_until(until) => {
                    if tokio::time::Instant::now() >= next_rescan {
                        self.rescan();
                        next_rescan = tokio::time::Instant::now() + RESCAN;
                    }
                }
                Some(report) = reports.recv() => self.apply(report),
                Some(command) = commands.recv() => self.command(command).await,
            }
        }
        // Workers finish the message they are on (lingering ones go at once); what they
        // report still counts.
        stop.cancel();
        self.workers.close();
        let waited = tokio::time::timeout(Duration::from_secs(60), self.workers.wait()).await;
        if waited.is_err() {
            tracing::warn!("spool: a hand-over did not finish within 60 s of stopping");
        }
        while let Ok(report) = reports.try_recv() {
            self.apply(report);
        }
        self.publish_counts();
    }

    /// The spool's lock; waits while another Mailcall holds it. `None`: stopped first.
    async fn lock(
        &self,
        stop: &CancellationToken,
        drain: &mut watch::Receiver<bool>,
    ) -> Option<super::SpoolLock> {
        let mut told = false;
        loop {
            match self.spool.try_lock() {
                Ok(Some(lock)) => return Some(lock),
                Ok(None) if !told => {
                    told = true;
                    tracing::info!(
                        "another Mailcall hands mail on from {}: waiting for it",
                        self.spool.root().display()
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    self.events.emit(Event::Error(Problem::new(format!(
                        "cannot lock Mailcall's spool {}: {e}; mail waiting there is not handed on until this is fixed (check the data directory's permissions)",
                        self.spool.root().display()
                    ))));
                    return None;
                }
            }
            if *drain.borrow() {
                return None;
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = drain.changed() => {}
                _ = tokio::time::sleep(LOCK_RETRY) => {}
            }
        }
    }

    fn load(&mut self, name: &str) {
        if self.entries.contains_key(name) {
            return;
        }
        match self.spool.entry(name) {
            Ok(Some(entry)) => {
                self.entries.insert(
                    name.to_owned(),
                    Tracked {
                        entry,
                        in_flight: false,
                    },
                );
            }
            Ok(None) => {}
            Err(e) => self.events.emit(Event::Error(Problem::new(format!(
                "a message in Mailcall's spool cannot be read ({e}); it stays there untouched"
            )))),
        }
    }

    fn rescan(&mut self) {
        let names = match self.spool.names() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("spool: cannot list {}: {e}", self.spool.root().display());
                return;
            }
        };
        let present: std::collections::HashSet<&String> = names.iter().collect();
        self.entries
            .retain(|name, t| t.in_flight || present.contains(name));
        for name in &names {
            self.load(name);
        }
    }

    fn busy(&self) -> usize {
        self.entries.values().filter(|t| t.in_flight).count()
    }

    /// The targets of `entry` with a queued recipient due now.
    fn due_targets(entry: &Entry, now: DateTime<Utc>) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for (r, s) in entry
            .envelope
            .recipients
            .iter()
            .zip(&entry.state.recipients)
        {
            let due = s.status == Status::Queued && s.next_attempt.is_none_or(|t| t <= now);
            if due && !targets.contains(&r.target) {
                targets.push(r.target.clone());
            }
        }
        targets
    }

    fn nothing_due(&self) -> bool {
        let now = Utc::now();
        self.entries
            .values()
            .all(|t| t.in_flight || Self::due_targets(&t.entry, now).is_empty())
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter(|t| !t.in_flight)
            .flat_map(|t| {
                t.entry
                    .state
                    .recipients
                    .iter()
                    .filter(|s| s.status == Status::Queued)
                    .map(|s| s.next_attempt.unwrap_or_else(Utc::now))
            })
            .min()
    }

    /// Hands every due unit to a worker of its server, starting workers up to the limit.
    fn dispatch_due(&mut self, reports: &mpsc::UnboundedSender<Report>, stop: &CancellationToken) {
        let now = Utc::now();
        let mut start: Vec<Target> = Vec::new();
        let mut any = false;
        {
            let mut dispatch = self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
            for tracked in self.entries.values_mut() {
                if tracked.in_flight {
                    continue;
                }
                // One server at a time per message: its state file has one writer.
                let Some(target) = Self::due_targets(&tracked.entry, now).into_iter().next() else {
                    continue;
                };
                let recipients = tracked.entry.recipients_for(&target, Status::Queued);
                tracked.in_flight = true;
                any = true;
                dispatch
                    .queues
                    .entry(target.clone())
                    .or_default()
                    .push_back(Unit {
                        entry: tracked.entry.clone(),
                        recipients,
                    });
            }
            let targets: Vec<Target> = dispatch
                .queues
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(t, _)| t.clone())
                .collect();
            for target in targets {
                let waiting = dispatch.queues.get(&target).map_or(0, VecDeque::len);
                let running = dispatch.workers.entry(target.clone()).or_insert(0);
                let wanted = waiting.min(self.options.per_target.max(1));
                while *running < wanted {
                    *running += 1;
                    start.push(target.clone());
                }
            }
        }
        if any {
            self.pushed.notify_waiters();
        }
        for target in start {
            let worker = Worker {
                target,
                dispatch: self.dispatch.clone(),
                pushed: self.pushed.clone(),
                spool: self.spool.clone(),
                options: self.options.clone(),
                reports: reports.clone(),
                stop: stop.clone(),
            };
            self.workers.spawn(worker.run());
        }
    }

    fn apply(&mut self, report: Report) {
        match report {
            Report::Done {
                name,
                state,
                removed,
                report,
            } => {
                if removed {
                    self.entries.remove(&name);
                } else if let Some(t) = self.entries.get_mut(&name) {
                    t.entry.state = state;
                    t.in_flight = false;
                }
                for r in &report.recipients {
                    if r.outcome == HandOverOutcome::Failed {
                        self.events.emit(Event::Error(
                            Problem::new(format!(
                                "{} refused {} for good ({}): the message {} is held in Mailcall's queue; fix the route or the server (is {} a user there?), then retry it, or bounce or delete it",
                                report.target, r.address, r.reply, report.id, r.address
                            ))
                            .fixed_by(Some(Setting::config(ConfigKey::Routes))),
                        ));
                    }
                }
                self.events.emit(Event::HandOver(Box::new(report)));
            }
            Report::Reached(target) => {
                // Back: what waits for it because it could not be reached goes now.
                for t in self.entries.values_mut().filter(|t| !t.in_flight) {
                    let mut changed = false;
                    for (r, s) in t
                        .entry
                        .envelope
                        .recipients
                        .iter()
                        .zip(t.entry.state.recipients.iter_mut())
                    {
                        if r.target == target
                            && s.status == Status::Queued
                            && s.next_attempt.is_some()
                            && s.unreachable
                        {
                            s.next_attempt = None;
                            changed = true;
                        }
                    }
                    if changed {
                        let _ = self.spool.save_state(&t.entry.name, &t.entry.state, false);
                    }
                }
            }
            Report::Unreachable(target, error) => self.unreachable(&target, &error),
            Report::Finished(record) => {
                if let Some(history) = &self.options.history {
                    match history.append(&record) {
                        Ok(()) => self.events.emit(Event::Recorded(record)),
                        Err(e) => self.events.emit(Event::Error(Problem::new(e.to_string()))),
                    }
                }
            }
        }
    }

    /// Defers everything waiting for `target`, once, with one problem for people.
    fn unreachable(&mut self, target: &Target, error: &str) {
        let units: Vec<Unit> = {
            let mut dispatch = self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
            dispatch
                .queues
                .get_mut(target)
                .map(|q| q.drain(..).collect())
                .unwrap_or_default()
        };
        if units.is_empty() {
            // Another worker for the same server said so already.
            return;
        }
        let now = Utc::now();
        let mut soonest: Option<DateTime<Utc>> = None;
        for unit in &units {
            let Some(t) = self.entries.get_mut(&unit.entry.name) else {
                continue;
            };
            for &i in &unit.recipients {
                if let Some(s) = t.entry.state.recipients.get_mut(i) {
                    s.attempts += 1;
                    s.last_attempt = Some(now);
                    let next = now + self.options.backoff(s.attempts);
                    s.next_attempt = Some(next);
                    s.reply = Some(error.to_owned());
                    s.unreachable = true;
                    soonest = Some(soonest.map_or(next, |x| x.min(next)));
                }
            }
            t.in_flight = false;
            if let Err(e) = self.spool.save_state(&t.entry.name, &t.entry.state, false) {
                tracing::warn!("spool: cannot note a deferral of {}: {e}", t.entry.id);
            }
        }
        let waiting = self
            .entries
            .values()
            .filter(|t| {
                t.entry
                    .envelope
                    .recipients
                    .iter()
                    .zip(&t.entry.state.recipients)
                    .any(|(r, s)| &r.target == target && s.status == Status::Queued)
            })
            .count();
        let when = soonest
            .map(|t| {
                format!(
                    " from {}",
                    t.with_timezone(&chrono::Local).format("%H:%M:%S")
                )
            })
            .unwrap_or_default();
        self.events.emit(Event::Error(
            Problem::new(format!(
                "cannot hand mail on to {target}: {error}; {waiting} message(s) wait in Mailcall's queue and are retried by themselves{when}. Check that the server runs, and the route's destination"
            ))
            .fixed_by(Some(Setting::config(ConfigKey::Routes))),
        ));
    }

    fn publish_counts(&mut self) {
        // While mail streams through, once a second is enough for a badge.
        let now = tokio::time::Instant::now();
        if self.busy() > 0 && self.counted_at.is_some_and(|t| now - t < COUNTS_EVERY) {
            return;
        }
        self.counted_at = Some(now);
        let mut queued = 0;
        let mut failed = 0;
        for t in self.entries.values() {
            for s in &t.entry.state.recipients {
                match s.status {
                    Status::Queued => queued += 1,
                    Status::Failed => failed += 1,
                    _ => {}
                }
            }
        }
        if self.last_counts != Some((queued, failed)) {
            // The first look at an empty spool is nothing to tell.
            if self.last_counts.is_some() || queued + failed > 0 {
                self.events.emit(Event::QueueChanged { queued, failed });
            }
            self.last_counts = Some((queued, failed));
        }
    }

    async fn command(&mut self, command: Command) {
        let Command {
            action,
            selection,
            reply,
        } = command;
        // A message being handed over right now is left alone: its worker owns its state.
        let busy: Vec<String> = self
            .entries
            .values()
            .filter(|t| t.in_flight)
            .map(|t| t.entry.id.clone())
            .collect();
        if let Selection::Ids(ids) = &selection {
            if let Some(id) = ids
                .iter()
                .find(|id| busy.iter().any(|b| b.starts_with(id.as_str())))
            {
                let _ = reply.send(Err(format!(
                    "{id} is being handed over right now; try again in a moment"
                )));
                return;
            }
        }
        let result = actions::apply(
            action,
            &self.spool,
            &selection,
            &self.postmaster,
            &self.options.host,
            &busy,
        )
        .await;
        // The disk is the truth after an action: forget and reload what is not in flight.
        self.entries.retain(|_, t| t.in_flight);
        self.rescan();
        let _ = reply.send(result);
    }
}

/// One connection to one server, taking that server's due messages one after another.
struct Worker {
    target: Target,
    dispatch: Arc<Mutex<Dispatch>>,
    pushed: Arc<tokio::sync::Notify>,
    spool: Spool,
    options: Arc<RunnerOptions>,
    reports: mpsc::UnboundedSender<Report>,
    stop: CancellationToken,
}

/// The client side of a target: where, LMTP or SMTP, and how secured.
pub fn server_of(target: &Target, helo: &str) -> Server {
    let (address, hello) = match &target.destination {
        Destination::Lmtp(address) => (address.clone(), Hello::Lhlo),
        Destination::Smtp { host, port } => (
            Address::Tcp {
                host: host.clone(),
                port: *port,
            },
            Hello::Ehlo,
        ),
        // Maildir targets never reach the spool; an address that refuses is the safe answer.
        Destination::Maildir(p) => (Address::Unix(p.clone()), Hello::Lhlo),
    };
    Server {
        address,
        hello,
        security: target.security,
        ca_file: target.ca_file.clone(),
        helo: helo.to_owned(),
    }
}

/// A connection failure in words for a LAN server (the client's own words are the ISP's).
pub fn describe(e: &IspError) -> String {
    match e {
        IspError::Connect { host, port, reason } if *port == 0 => {
            format!("cannot connect to {host}: {reason}")
        }
        IspError::Connect { host, port, reason } => {
            format!("cannot connect to {host}:{port}: {reason}")
        }
        IspError::Timeout { host, step, secs } => {
            format!("no answer from {host} within {secs:.0} s, waiting for {step}")
        }
        IspError::ConnectionLost { host, step, reason } => {
            format!("the connection to {host} was lost during {step} ({reason})")
        }
        IspError::ServiceClosing { host, text } => {
            format!("{host} is closing the connection (421 {text})")
        }
        IspError::Protocol { host, step, reason } => {
            format!("unexpected answer from {host} during {step}: {reason}")
        }
        IspError::Certificate { host, reason } => format!(
            "the TLS certificate of {host} could not be verified ({reason}); give the route the CA file of the server's certificate issuer"
        ),
        IspError::StarttlsNotOffered { host } => {
            format!("{host} does not offer STARTTLS, and Mailcall never falls back to plain text; set the route's security to none, or enable TLS on the server")
        }
        other => other.to_string(),
    }
}

fn last_lines(lines: Vec<TranscriptLine>) -> Vec<TranscriptLine> {
    let skip = lines.len().saturating_sub(TRANSCRIPT_LINES);
    lines.into_iter().skip(skip).collect()
}

impl Worker {
    /// The next unit for this worker's server, waiting up to [`LINGER`] for one; `None`
    /// (signed off) when none came or the runner stops.
    async fn next_unit(&self) -> Option<Unit> {
        let lock = || self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = tokio::time::Instant::now() + LINGER;
        loop {
            let notified = self.pushed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push between the look and the wait is not missed.
            notified.as_mut().enable();
            if let Some(unit) = lock().take(&self.target, false) {
                return Some(unit);
            }
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut notified => {}
            }
        }
        lock().take(&self.target, true)
    }

    async fn run(self) {
        let started = Utc::now();
        let server = server_of(&self.target, &self.options.host);
        let target_text = self.target.to_string();
        let mut record = SessionRecord::new(
            RecordKind::HandOver,
            Trigger::Queue,
            started,
            EndReason::HandedOver,
        );
        let (mut conn, info) = match client::open_server(&server, &self.options.client).await {
            Ok(opened) => opened,
            Err(e) => {
                self.dispatch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .leave(&self.target);
                let why = describe(&e.error);
                let _ = self
                    .reports
                    .send(Report::Unreachable(self.target.clone(), why.clone()));
                record.ended_because = EndReason::ServerUnreachable;
                record.errors.push(
                    Problem::new(format!("cannot hand mail on to {target_text}: {why}"))
                        .fixed_by(Some(Setting::config(ConfigKey::Routes))),
                );
                record.transcripts = vec![(target_text, e.transcript.into_lines())];
                record.finished_at = Utc::now();
                let _ = self.reports.send(Report::Finished(Box::new(record)));
                return;
            }
        };
        let _ = self.reports.send(Report::Reached(self.target.clone()));
        let mut broken = None;
        let mut troubled = false;
        loop {
            if self.stop.is_cancelled() {
                self.dispatch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .leave(&self.target);
                record.ended_because = EndReason::Cancelled;
                break;
            }
            let Some(unit) = self.next_unit().await else {
                break;
            };
            let (done, error) = self.hand_over(&mut conn, &info, server.hello, unit).await;
            if let Report::Done { report, .. } = &done {
                troubled |= report
                    .recipients
                    .iter()
                    .any(|r| r.outcome != HandOverOutcome::Delivered);
                record.handovers.push(report.clone());
            }
            let _ = self.reports.send(done);
            if let Some(e) = error {
                self.dispatch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .leave(&self.target);
                broken = Some(e);
                break;
            }
        }
        match &broken {
            Some(why) => {
                let _ = self
                    .reports
                    .send(Report::Unreachable(self.target.clone(), why.clone()));
                record.ended_because = EndReason::ServerUnreachable;
                record.errors.push(
                    Problem::new(format!("the hand-over to {target_text} broke off: {why}"))
                        .fixed_by(Some(Setting::config(ConfigKey::Routes))),
                );
            }
            None => conn.quit().await,
        }
        if broken.is_some() || troubled {
            let lines = conn
                .into_parts()
                .map(|(_, _, t)| t.into_lines())
                .unwrap_or_default();
            record.transcripts = vec![(target_text, last_lines(lines))];
        }
        record.finished_at = Utc::now();
        let _ = self.reports.send(Report::Finished(Box::new(record)));
    }

    /// Hands one message over (LMTP: a transaction per recipient, so the server writes
    /// `Delivered-To` into each copy; SMTP: one for all), writes the outcome to the spool, and
    /// says what happened; the error is set when the connection is unusable afterwards.
    async fn hand_over(
        &self,
        conn: &mut client::Connection,
        info: &client::ServerInfo,
        hello: Hello,
        unit: Unit,
    ) -> (Report, Option<String>) {
        let Unit {
            mut entry,
            recipients,
        } = unit;
        // Read now: the file is gone once every recipient is delivered.
        let headline = self.spool.headline(&entry);
        let addresses: Vec<String> = recipients
            .iter()
            .map(|&i| entry.envelope.recipients[i].address.clone())
            .collect();
        let batches: Vec<Vec<usize>> = match hello {
            Hello::Lhlo => recipients.iter().map(|&i| vec![i]).collect(),
            Hello::Ehlo => vec![recipients.clone()],
        };
        let mut replies: HashMap<usize, Result<client::reply::Reply, String>> = HashMap::new();
        let mut sent_whole: Vec<usize> = Vec::new();
        let mut broken = None;
        for batch in batches {
            if broken.is_some() {
                break;
            }
            let list: Vec<String> = batch
                .iter()
                .map(|&i| entry.envelope.recipients[i].address.clone())
                .collect();
            let mut data = match self.spool.data(&entry).await {
                Ok(d) => d,
                Err(e) => {
                    // The spool file is unreadable: nothing can be sent; keep it queued.
                    let why = format!("cannot read the message from the spool: {e}");
                    for &i in &batch {
                        replies.insert(i, Err(why.clone()));
                    }
                    continue;
                }
            };
            let envelope = Envelope {
                sender: &entry.envelope.sender,
                recipients: &list,
                size: entry.size,
            };
            let t = transfer::send(conn, hello, info, &envelope, &mut data).await;
            if t.data_sent {
                sent_whole.extend(&batch);
            }
            let why = t.error.as_ref().map(describe);
            for (&i, reply) in batch.iter().zip(t.replies) {
                match reply {
                    Some(r) => replies.insert(i, Ok(r)),
                    None => replies.insert(
                        i,
                        Err(why.clone().unwrap_or_else(|| "no reply".to_string())),
                    ),
                };
            }
            broken = why;
        }
        let now = Utc::now();
        let mut outcomes = Vec::new();
        let mut durable = false;
        for (&i, address) in recipients.iter().zip(&addresses) {
            let s = &mut entry.state.recipients[i];
            s.last_attempt = Some(now);
            s.attempts += 1;
            s.unreachable = false;
            let (outcome, text) = match replies.remove(&i) {
                Some(Ok(r)) if r.is_positive() => {
                    s.status = Status::Delivered;
                    s.next_attempt = None;
                    durable = true;
                    (HandOverOutcome::Delivered, r.to_string())
                }
                Some(Ok(r)) if r.code >= 500 => {
                    s.status = Status::Failed;
                    s.next_attempt = None;
                    durable = true;
                    (HandOverOutcome::Failed, r.to_string())
                }
                other => {
                    // A 4xx other than 421 says "not stored"; a 421 or silence does not.
                    let unsure = !matches!(&other, Some(Ok(r)) if r.code != 421);
                    let mut text = match other {
                        Some(Ok(r)) => r.to_string(),
                        Some(Err(why)) => {
                            s.unreachable = true;
                            why
                        }
                        None => "not sent".to_string(),
                    };
                    // After the whole message went out, a 421 or silence is no proof of
                    // loss: tried again it may be a second copy, never a lost one.
                    if unsure && sent_whole.contains(&i) {
                        s.maybe_delivered = true;
                        text.push_str(
                            " (after the whole message was sent: the server may have stored it)",
                        );
                    }
                    let next = now + self.options.backoff(s.attempts);
                    s.next_attempt = Some(next);
                    (
                        HandOverOutcome::Deferred {
                            attempts: s.attempts,
                            next_attempt: next,
                        },
                        text,
                    )
                }
            };
            s.reply = Some(text.clone());
            outcomes.push(RecipientOutcome {
                address: address.clone(),
                outcome,
                reply: text,
            });
        }
        let removed = entry.state.is_done();
        let saved = if removed {
            self.spool.remove(&entry.name)
        } else {
            self.spool.save_state(&entry.name, &entry.state, durable)
        };
        if let Err(e) = saved {
            tracing::error!("spool: cannot record the hand-over of {}: {e}", entry.id);
        }
        let report = HandOverReport {
            id: entry.id.clone(),
            target: self.target.to_string(),
            sender: entry.envelope.sender.clone(),
            message_id: headline.message_id,
            subject: headline.subject,
            recipients: outcomes,
            at: now,
        };
        (
            Report::Done {
                name: entry.name.clone(),
                state: entry.state,
                removed,
                report,
            },
            broken,
        )
    }
}
