//! The runner's scheduler: one loop that knows every spooled message, decides what is due and
//! hands it to the workers of its server (starting them up to the limit), applies what they
//! report (a new state, a server reached or unreachable, a record for the history), wakes up
//! for the next due retry, publishes the queue's counts, and does users' actions on the queue —
//! all while holding the spool's lock, so no other Mailcall hands the same mail over.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::worker::{Report, Worker};
use super::{Command, RunnerOptions, SendReport};
use crate::config::ConfigKey;
use crate::event::{Event, EventSink};
use crate::hint::{AccountField, Problem, Setting};
use crate::maildir::Maildir;
use crate::report::HandOverOutcome;
use crate::routing::Target;
use crate::spool::actions::{self, Action, ActionError, Selection};
use crate::spool::{Entry, Spool, SpoolLock, Status};

/// How often the spool directory is read again for messages another process left there.
const RESCAN: Duration = Duration::from_secs(60);
/// How often a loop waiting for another Mailcall's lock tries again.
const LOCK_RETRY: Duration = Duration::from_secs(2);
/// How often the queue's counts are published while hand-overs run.
const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// A message for one server: the entry as it was when dispatched, and its recipients there.
pub(super) struct Unit {
    pub(super) entry: Entry,
    pub(super) recipients: Vec<usize>,
}

/// What is waiting for each server, and how many workers serve it.
#[derive(Default)]
pub(super) struct Dispatch {
    queues: HashMap<Target, VecDeque<Unit>>,
    workers: HashMap<Target, usize>,
}

impl Dispatch {
    /// The next unit for `target`; with `last`, `None` also signs the worker off, under the
    /// same lock, so a unit pushed a moment later gets a new worker.
    pub(super) fn take(&mut self, target: &Target, last: bool) -> Option<Unit> {
        let next = self.queues.get_mut(target).and_then(VecDeque::pop_front);
        if next.is_none() && last {
            self.leave(target);
        }
        next
    }

    /// Signs one worker of `target` off.
    pub(super) fn leave(&mut self, target: &Target) {
        if let Some(n) = self.workers.get_mut(target) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A "send now" that waits for each outgoing message it made due to be tried.
struct Flush {
    waiting: HashSet<String>,
    report: SendReport,
    reply: oneshot::Sender<SendReport>,
}

/// A message the scheduler knows, and whether a worker has it now.
struct Tracked {
    entry: Entry,
    in_flight: bool,
}

/// The loop's state: every message it knows, and the queues its workers take from.
pub(super) struct Scheduler {
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
    /// A watched link is up: outgoing mail leaves as soon as it is due.
    online: bool,
    /// "Send now" requests not answered yet; while any is, outgoing mail may leave.
    flushes: Vec<Flush>,
}

impl Scheduler {
    /// A scheduler over `spool`, bounces into `postmaster`; nothing runs until [`Self::run`].
    pub(super) fn new(
        spool: Spool,
        postmaster: Maildir,
        options: Arc<RunnerOptions>,
        events: EventSink,
    ) -> Self {
        Scheduler {
            spool,
            postmaster,
            options,
            events,
            entries: BTreeMap::new(),
            dispatch: Arc::default(),
            pushed: Arc::default(),
            workers: TaskTracker::new(),
            last_counts: None,
            counted_at: None,
            online: false,
            flushes: Vec::new(),
        }
    }

    /// Whether outgoing mail may leave now (the link is up, or a fetch or `send` asked).
    fn sending(&self) -> bool {
        self.online || !self.flushes.is_empty()
    }

    /// Runs until `stop`, or with `drain` once nothing is due and no worker is busy; takes the
    /// spool's lock first (waiting while another Mailcall holds it).
    pub(super) async fn run(
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
            self.settle_flushes();
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
                Some(report) = reports.recv() => self.apply(report).await,
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
            self.apply(report).await;
        }
        self.publish_counts();
    }

    /// The spool's lock; waits while another Mailcall holds it. `None`: stopped first.
    async fn lock(
        &self,
        stop: &CancellationToken,
        drain: &mut watch::Receiver<bool>,
    ) -> Option<SpoolLock> {
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

    /// The targets of `entry` with a queued recipient due now; outgoing mail only while
    /// `sending`.
    fn due_targets(entry: &Entry, now: DateTime<Utc>, sending: bool) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        if entry.state.held {
            return targets;
        }
        for (r, s) in entry
            .envelope
            .recipients
            .iter()
            .zip(&entry.state.recipients)
        {
            if !sending && r.target.outgoing_account().is_some() {
                continue;
            }
            let due = s.status == Status::Queued && s.next_attempt.is_none_or(|t| t <= now);
            if due && !targets.contains(&r.target) {
                targets.push(r.target.clone());
            }
        }
        targets
    }

    fn nothing_due(&self) -> bool {
        let now = Utc::now();
        let sending = self.sending();
        self.entries
            .values()
            .all(|t| t.in_flight || Self::due_targets(&t.entry, now, sending).is_empty())
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        let sending = self.sending();
        self.entries
            .values()
            .filter(|t| !t.in_flight && !t.entry.state.held)
            .flat_map(|t| {
                t.entry
                    .envelope
                    .recipients
                    .iter()
                    .zip(&t.entry.state.recipients)
                    .filter(move |(r, s)| {
                        s.status == Status::Queued
                            && (sending || r.target.outgoing_account().is_none())
                    })
                    .map(|(_, s)| s.next_attempt.unwrap_or_else(Utc::now))
            })
            .min()
    }

    /// Whether `entry` has outgoing recipients still queued and due now.
    fn outgoing_due(entry: &Entry, now: DateTime<Utc>) -> bool {
        Self::due_targets(entry, now, true)
            .iter()
            .any(|t| t.outgoing_account().is_some())
    }

    /// A watched link came up or went. Coming up, what was queued meanwhile by another process
    /// is read, and every outgoing message that waits for its next try goes at once: its
    /// retry clock counts only time online (a deferral's wait did not run while the link was
    /// down), and a new link is a new chance. Held messages stay.
    fn set_online(&mut self, online: bool) {
        let came_up = online && !self.online;
        self.online = online;
        if !came_up {
            return;
        }
        self.rescan();
        for t in self
            .entries
            .values_mut()
            .filter(|t| !t.in_flight && !t.entry.state.held)
        {
            for (r, s) in t
                .entry
                .envelope
                .recipients
                .iter()
                .zip(t.entry.state.recipients.iter_mut())
            {
                if r.target.outgoing_account().is_some() && s.status == Status::Queued {
                    s.next_attempt = None;
                }
            }
        }
    }

    /// Makes every queued outgoing message due now and waits for each to be tried. The spool
    /// is read first: `mailcall-cli sendmail` queues from another process.
    fn send_now(&mut self, reply: oneshot::Sender<SendReport>) {
        self.rescan();
        let mut waiting = HashSet::new();
        for t in self.entries.values_mut().filter(|t| !t.entry.state.held) {
            let mut outgoing = false;
            for (r, s) in t
                .entry
                .envelope
                .recipients
                .iter()
                .zip(t.entry.state.recipients.iter_mut())
            {
                if r.target.outgoing_account().is_some() && s.status == Status::Queued {
                    outgoing = true;
                    if !t.in_flight {
                        s.next_attempt = None;
                    }
                }
            }
            if outgoing {
                waiting.insert(t.entry.name.clone());
            }
        }
        self.flushes.push(Flush {
            waiting,
            report: SendReport::default(),
            reply,
        });
    }

    /// A user asked to retry (or released) outgoing messages: they are sent now, as by a
    /// "send now" for them alone, even while no link is up (the user asked; nothing else is).
    fn send_asked(&mut self, selection: &Selection) {
        let now = Utc::now();
        let due: Vec<Entry> = self
            .entries
            .values()
            .filter(|t| !t.in_flight && Self::outgoing_due(&t.entry, now))
            .map(|t| t.entry.clone())
            .collect();
        let waiting: HashSet<String> = selection
            .pick_present(due)
            .into_iter()
            .map(|e| e.name)
            .collect();
        if waiting.is_empty() {
            return;
        }
        // Nobody waits for its report: the hand-overs are told as events.
        let (reply, _) = oneshot::channel();
        self.flushes.push(Flush {
            waiting,
            report: SendReport::default(),
            reply,
        });
    }

    /// Answers each "send now" whose messages were all tried.
    fn settle_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let now = Utc::now();
        let entries = &self.entries;
        for flush in &mut self.flushes {
            flush.waiting.retain(|name| {
                entries
                    .get(name)
                    .is_some_and(|t| t.in_flight || Self::outgoing_due(&t.entry, now))
            });
        }
        let (done, open): (Vec<Flush>, Vec<Flush>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|f| f.waiting.is_empty());
        self.flushes = open;
        for flush in done {
            let _ = flush.reply.send(flush.report);
        }
    }

    /// Hands every due unit to a worker of its server, starting workers up to the limit.
    fn dispatch_due(&mut self, reports: &mpsc::UnboundedSender<Report>, stop: &CancellationToken) {
        let now = Utc::now();
        let sending = self.sending();
        let mut start: Vec<Target> = Vec::new();
        let mut any = false;
        {
            let mut dispatch = self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
            for tracked in self.entries.values_mut() {
                if tracked.in_flight {
                    continue;
                }
                // One server at a time per message: its state file has one writer.
                let Some(target) = Self::due_targets(&tracked.entry, now, sending)
                    .into_iter()
                    .next()
                else {
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

    async fn apply(&mut self, report: Report) {
        match report {
            Report::Done {
                name,
                state,
                removed,
                report,
                deferred,
            } => {
                if removed {
                    self.entries.remove(&name);
                } else if let Some(t) = self.entries.get_mut(&name) {
                    t.entry.state = state;
                    t.in_flight = false;
                }
                let outgoing = report.is_outgoing();
                if outgoing {
                    for flush in self
                        .flushes
                        .iter_mut()
                        .filter(|f| f.waiting.contains(&name))
                    {
                        flush.report.messages.push(report.clone());
                    }
                }
                for r in &report.recipients {
                    if r.outcome == HandOverOutcome::Failed && outgoing {
                        self.events.emit(Event::Error(Problem::new(format!(
                            "the outgoing server refused {} for good ({}): the message {} from {} is held in Mailcall's queue; check the address, then retry it, or bounce or delete it",
                            r.address, r.reply, report.id, report.sender
                        ))));
                    } else if r.outcome == HandOverOutcome::Failed {
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
                if !removed && !deferred.is_empty() {
                    self.after_deferral(&name, &deferred).await;
                }
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
            Report::Unreachable(target, error) => {
                if target.outgoing_account().is_some() {
                    for flush in &mut self.flushes {
                        flush.report.errors.push(error.clone());
                    }
                }
                for (name, deferred) in self.unreachable(&target, &error) {
                    self.after_deferral(&name, &deferred).await;
                }
            }
            Report::Finished(record) => {
                if let Some(history) = &self.options.history {
                    // Written by the history's writer thread, in order; the event says when.
                    let events = self.events.clone();
                    history.append_in_background(*record, move |written| match written {
                        Ok(record) => events.emit(Event::Recorded(Box::new(record))),
                        Err(e) => events.emit(Event::Error(Problem::new(e.to_string()))),
                    });
                }
            }
        }
    }

    /// Defers everything waiting for `target`, once, with one problem for people; returns the
    /// recipients deferred, per message.
    fn unreachable(&mut self, target: &Target, error: &str) -> Vec<(String, Vec<usize>)> {
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
            return Vec::new();
        }
        let deferred: Vec<(String, Vec<usize>)> = units
            .iter()
            .map(|u| (u.entry.name.clone(), u.recipients.clone()))
            .collect();
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
                    let next = now + self.options.backoff(target, s.attempts);
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
        let problem = match target.outgoing_account() {
            Some(account) => Problem::new(format!(
                "cannot send through the outgoing server of account {account}: {error}; {waiting} message(s) wait in Mailcall's queue and go at the next fetch, or by themselves while the link is up{when}"
            ))
            .fixed_by(Some(Setting::account(account, AccountField::OutgoingHost))),
            None => Problem::new(format!(
                "cannot hand mail on to {target}: {error}; {waiting} message(s) wait in Mailcall's queue and are retried by themselves{when}. Check that the server runs, and the route's destination"
            ))
            .fixed_by(Some(Setting::config(ConfigKey::Routes))),
        };
        self.events.emit(Event::Error(problem));
        deferred
    }

    /// After an attempt deferred outgoing `recipients` of message `name`: past
    /// `max-queue-lifetime` they are given up, and the sender gets one delivery report; past
    /// `delay-warning`, the sender is told once that the message is delayed. The null sender
    /// never gets a report. Mail for a LAN server waits until it is handed on, bounced or
    /// deleted by hand.
    async fn after_deferral(&mut self, name: &str, recipients: &[usize]) {
        let Some(t) = self.entries.get(name).filter(|t| !t.in_flight) else {
            return;
        };
        let entry = t.entry.clone();
        let open: Vec<usize> = recipients
            .iter()
            .copied()
            .filter(|&i| {
                entry
                    .envelope
                    .recipients
                    .get(i)
                    .is_some_and(|r| r.target.outgoing_account().is_some())
                    && entry.state.recipients.get(i).map(|s| s.status) == Some(Status::Queued)
            })
            .collect();
        if open.is_empty() {
            return;
        }
        let now = Utc::now();
        let age = (now - entry.envelope.received_at)
            .to_std()
            .unwrap_or_default();
        let lifetime = self.options.max_queue_lifetime;
        let until = entry.envelope.received_at
            + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        if age >= lifetime {
            self.give_up(entry, &open, now).await;
        } else if self
            .options
            .delay_warning
            .is_some_and(|after| age >= after && !entry.state.warned)
        {
            self.warn_delayed(entry, &open, now, until).await;
        }
    }

    /// Writes `entry`'s new state (or removes it when every recipient is done) and keeps it.
    fn keep(&mut self, entry: Entry) {
        let saved = if entry.state.is_done() {
            self.entries.remove(&entry.name);
            self.spool.remove(&entry.name)
        } else {
            let saved = self.spool.save_state(&entry.name, &entry.state, true);
            if let Some(t) = self.entries.get_mut(&entry.name) {
                t.entry = entry.clone();
            }
            saved
        };
        if let Err(e) = saved {
            tracing::error!("spool: cannot record the outcome for {}: {e}", entry.id);
        }
    }

    /// Stores `notice` about `recipients` of `entry` for its sender; `Ok(false)`: the null
    /// sender, or no routes to store it with (nothing was stored).
    async fn tell_sender(
        &self,
        entry: &Entry,
        recipients: &[usize],
        reason: &str,
        notice: crate::spool::dsn::Notice,
        now: DateTime<Utc>,
    ) -> std::io::Result<bool> {
        let sender = &entry.envelope.sender;
        let Some(router) = self.options.router.as_ref().filter(|_| !sender.is_empty()) else {
            return Ok(false);
        };
        let message = self.spool.read_message(entry)?;
        let headline = self.spool.headline(entry);
        let report = crate::spool::dsn::build(
            &crate::spool::dsn::Bounce {
                host: &self.options.host,
                entry,
                headline: &headline,
                recipients,
                reason,
                at: now,
                notice,
            },
            &message,
        );
        crate::spool::dsn::deliver_to_sender(router, &self.options.host, sender, &report).await?;
        Ok(true)
    }

    /// `max-queue-lifetime` ran out for `recipients` of `entry`: they are given up, the sender
    /// told (a report that cannot be stored leaves them held, refused, in the queue: nothing is
    /// dropped unreported).
    async fn give_up(&mut self, mut entry: Entry, recipients: &[usize], now: DateTime<Utc>) {
        let hours = self.options.max_queue_lifetime.as_secs() / 3600;
        let reason = format!(
            "Mailcall gave up after trying for {hours} hour(s) (max-queue-lifetime): the outgoing server could not take it in that time."
        );
        let sender = entry.envelope.sender.clone();
        let told = self
            .tell_sender(
                &entry,
                recipients,
                &reason,
                crate::spool::dsn::Notice::Failed,
                now,
            )
            .await;
        let (status, note) = match &told {
            Ok(true) => (
                Status::Bounced,
                format!(" (given up after {hours} h; a delivery report went to {sender})"),
            ),
            Ok(false) if sender.is_empty() => (
                Status::Bounced,
                format!(" (given up after {hours} h; no report: the message has the null sender)"),
            ),
            Ok(false) => (
                Status::Failed,
                format!(" (given up after {hours} h: held; bounce or delete it)"),
            ),
            Err(e) => (
                Status::Failed,
                format!(" (given up after {hours} h, but the report to {sender} cannot be stored ({e}): held; bounce or delete it)"),
            ),
        };
        let mut addresses = Vec::new();
        for &i in recipients {
            addresses.push(entry.envelope.recipients[i].address.clone());
            let s = &mut entry.state.recipients[i];
            s.status = status;
            s.next_attempt = None;
            s.reply = Some(format!(
                "{}{note}",
                s.reply.as_deref().unwrap_or("not sent")
            ));
        }
        self.events.emit(Event::Error(
            Problem::new(format!(
                "outgoing mail {} from <{}> to {} was given up after {hours} hour(s) in Mailcall's queue{note}",
                entry.id,
                sender,
                addresses.join(", ")
            ))
            .fixed_by(Some(Setting::config(ConfigKey::MaxQueueLifetime))),
        ));
        self.keep(entry);
    }

    /// `delay-warning` passed for `entry`: its sender is told once that `recipients` are still
    /// being tried, until `until`.
    async fn warn_delayed(
        &mut self,
        mut entry: Entry,
        recipients: &[usize],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) {
        let reason = "The outgoing server has not taken it yet; Mailcall keeps trying.";
        match self
            .tell_sender(
                &entry,
                recipients,
                reason,
                crate::spool::dsn::Notice::Delayed { until },
                now,
            )
            .await
        {
            Ok(_) => {
                entry.state.warned = true;
                self.keep(entry);
            }
            // Tried again at the next deferral.
            Err(e) => tracing::warn!(
                "cannot store the delay warning for {} to {}: {e}",
                entry.id,
                entry.envelope.sender
            ),
        }
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
        let (action, selection, reply) = match command {
            Command::Act {
                action,
                selection,
                reply,
            } => (action, selection, reply),
            Command::Send { reply } => return self.send_now(reply),
            Command::Online(online) => return self.set_online(online),
            Command::Rescan => return self.rescan(),
        };
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
                let _ = reply.send(Err(ActionError::HandingOver(id.clone())));
                return;
            }
        }
        let reports = actions::Reports {
            postmaster: &self.postmaster,
            router: self.options.router.as_deref(),
            host: &self.options.host,
        };
        let result = actions::apply(action, &self.spool, &selection, reports, &busy).await;
        // The disk is the truth after an action: forget and reload what is not in flight.
        self.entries.retain(|_, t| t.in_flight);
        self.rescan();
        if matches!(action, Action::Retry | Action::Release) && result.is_ok() {
            self.send_asked(&selection);
        }
        let _ = reply.send(result);
    }
}
