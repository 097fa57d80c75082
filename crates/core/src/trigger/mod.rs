//! Fetching by itself: when a link comes up, on an interval while one is up, once at start, and
//! on request with the dial-up lifecycle (connect command before, disconnect command after).
//!
//! [`start`] runs next to a [`ServiceHandle`]; the returned [`TriggerHandle`] is what front ends
//! (daemon, tray, control socket) call: [`TriggerHandle::fetch_now`] for a manual fetch,
//! [`TriggerHandle::set_paused`] for "pause automatic fetching".

pub mod auto;
pub mod command;
pub mod filter;
pub mod netwatch;
pub mod settle;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account::Account;
use crate::config::{Config, ConfigError};
use crate::event::Event;
use crate::hint::Problem;
use crate::history::{EndReason, History, RecordKind, SessionRecord, Trigger};
use crate::report::TranscriptLine;
use crate::service::{FetchRequest, ServiceHandle, ServiceStopped};

pub use auto::{AutoFetch, AutoOptions};
pub use command::{run_command, CommandRun};
pub use filter::{InterfaceFilter, Link, Links};

/// The first pause before an automatic fetch that failed transiently is tried again; it doubles
/// each time up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(2);
/// The longest pause between two attempts of an automatic fetch.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How the triggers behave (the config's `interfaces`, `settle-delay`, `fetch-interval`,
/// `fetch-at-start`, and `max-wait` for how long a failing automatic fetch is retried).
#[derive(Debug, Clone)]
pub struct TriggerOptions {
    /// Which interfaces count as the link.
    pub interfaces: InterfaceFilter,
    /// How long a link must stay down before coming back is a new link-up.
    pub settle: Duration,
    /// Fetch this often while a link is up; `None`: never.
    pub interval: Option<Duration>,
    /// Fetch once at start when a link is already up.
    pub fetch_at_start: bool,
    /// Start paused (no automatic fetching until [`TriggerHandle::set_paused`]`(false)`).
    pub paused: bool,
    /// How long an automatic fetch that fails transiently is tried again (from its first try).
    pub retry_for: Duration,
    /// The first pause before trying again (it doubles up to [`MAX_RETRY_DELAY`]).
    pub first_retry_delay: Duration,
    /// Where connect/disconnect command output is recorded; `None` keeps no history.
    pub history: Option<History>,
}

impl TriggerOptions {
    /// The options a config file describes, with the history in the data directory.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(TriggerOptions {
            interfaces: InterfaceFilter::new(&config.interfaces),
            settle: Duration::from_secs(config.settle_delay),
            interval: (config.fetch_interval > 0)
                .then(|| Duration::from_secs(config.fetch_interval.saturating_mul(60))),
            fetch_at_start: config.fetch_at_start,
            paused: false,
            retry_for: config.max_wait(),
            first_retry_delay: FIRST_RETRY_DELAY,
            history: Some(config.history()?),
        })
    }

    /// The options of a one-shot fetch: only the manual path (a connect command when the link
    /// is down) applies; nothing fetches by itself.
    pub fn one_shot(mut self) -> Self {
        self.paused = true;
        self.fetch_at_start = false;
        self.interval = None;
        self
    }
}

impl Default for TriggerOptions {
    /// The defaults of [`Config::default`], with no history.
    fn default() -> Self {
        let c = Config::default();
        TriggerOptions {
            interfaces: InterfaceFilter::default(),
            settle: Duration::from_secs(c.settle_delay),
            interval: None,
            fetch_at_start: c.fetch_at_start,
            paused: false,
            retry_for: c.max_wait(),
            first_retry_delay: FIRST_RETRY_DELAY,
            history: None,
        }
    }
}

/// Links Mailcall brought up itself, and how many manual fetches are using them.
#[derive(Debug, Default)]
struct Ownership {
    in_flight: usize,
    /// A manual fetch dialed and has not finished: the link-up it causes is already served.
    dialing: bool,
    /// (account, disconnect command, timeout) for links our connect commands brought up.
    ours: Vec<(String, Option<String>, Duration)>,
}

#[derive(Debug)]
struct Inner {
    service: ServiceHandle,
    history: Option<History>,
    paused: watch::Sender<bool>,
    links: watch::Receiver<Option<Links>>,
    ownership: Mutex<Ownership>,
    /// One connect at a time: a second manual fetch waits and then finds the link up.
    connecting: tokio::sync::Mutex<()>,
    /// The automatic fetch that is waiting to try again, if any.
    retrying: Mutex<Option<JoinHandle<()>>>,
    retry_for: Duration,
    first_retry_delay: Duration,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// A handle on the running triggers; cheap to clone.
#[derive(Debug, Clone)]
pub struct TriggerHandle {
    inner: Arc<Inner>,
}

/// Starts the triggers for `service`: watches the interfaces (netlink) and runs the schedule
/// until `shutdown` is cancelled; failures go to the service's events. Must be called inside a
/// Tokio runtime. If the interfaces cannot be watched, an error event says so and only manual
/// fetches work.
pub fn start(
    service: ServiceHandle,
    options: TriggerOptions,
    shutdown: CancellationToken,
) -> TriggerHandle {
    let (tx, rx) = watch::channel(None);
    let handle = start_with_links(service, options.clone(), rx, shutdown.clone());
    match netwatch::spawn(options.interfaces, tx, shutdown) {
        Ok(task) => {
            handle.inner.tasks.spawn(async move {
                let _ = task.await;
            });
        }
        Err(e) => handle.inner.service.events().emit(Event::Error(Problem::new(format!(
            "cannot watch the network interfaces ({e}): fetching on link-up and on the interval is off. Fetch by hand, or from an ip-up script"
        )))),
    }
    handle
}

/// [`start`] with the link state supplied by the caller (tests, or another link source).
pub fn start_with_links(
    service: ServiceHandle,
    options: TriggerOptions,
    links: watch::Receiver<Option<Links>>,
    shutdown: CancellationToken,
) -> TriggerHandle {
    let (paused, paused_rx) = watch::channel(options.paused);
    let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel::<AutoFetch>();
    let inner = Arc::new(Inner {
        service,
        history: options.history.clone(),
        paused,
        links: links.clone(),
        ownership: Mutex::new(Ownership::default()),
        connecting: tokio::sync::Mutex::new(()),
        retrying: Mutex::new(None),
        retry_for: options.retry_for,
        first_retry_delay: options.first_retry_delay,
        tasks: TaskTracker::new(),
        shutdown: shutdown.clone(),
    });
    let auto_options = AutoOptions {
        settle: options.settle,
        interval: options.interval,
        fetch_at_start: options.fetch_at_start,
    };
    inner.tasks.spawn(auto::run(
        links,
        paused_rx,
        auto_options,
        fetch_tx,
        shutdown.clone(),
    ));
    let weak = Arc::downgrade(&inner);
    inner.tasks.spawn(async move {
        while let Some(f) = fetch_rx.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            let dialing = lock(&inner.ownership).dialing;
            if dialing && f.trigger == Trigger::Network {
                tracing::info!("link up after our connect command: the manual fetch asks");
                continue;
            }
            match &f.interface {
                Some(i) => tracing::info!(interface = %i, "link up: asking for the mail"),
                None => tracing::info!(trigger = %f.trigger, "asking for the mail"),
            }
            // A new automatic fetch asks everyone now: a retry still waiting is not needed.
            let task = inner.tasks.spawn(automatic(inner.clone(), f.trigger));
            let old = lock(&inner.retrying).replace(task);
            if let Some(old) = old {
                old.abort();
            }
        }
    });
    inner.tasks.close();
    TriggerHandle { inner }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One automatic fetch (link-up, interval, start), tried again with backoff while it fails in
/// a way that may pass (the ISP unreachable right after a dial-in, a 421, a deferred ETRN) and
/// `retry_for` has not passed; each attempt is its own record in the history.
async fn automatic(inner: Arc<Inner>, trigger: Trigger) {
    let started = tokio::time::Instant::now();
    let mut request = FetchRequest::all(trigger);
    let mut delay = inner.first_retry_delay;
    let mut paused = inner.paused.subscribe();
    let give_up = |attempts: u32, why: String| {
        inner.service.events().emit(Event::Error(Problem::new(format!(
            "gave up trying again after {attempts} attempt(s): {why}. The mail stays at the ISP until the next fetch"
        ))));
    };
    loop {
        let Ok(record) = inner.service.fetch(request.clone()).await else {
            return;
        };
        if record.retryable.is_empty() {
            return;
        }
        if *paused.borrow_and_update() {
            give_up(request.attempt, "automatic fetching is paused".into());
            return;
        }
        if started.elapsed() + delay > inner.retry_for {
            give_up(
                request.attempt,
                format!("{} s have passed (max-wait)", inner.retry_for.as_secs()),
            );
            return;
        }
        tracing::info!(
            accounts = ?record.retryable,
            "the fetch failed in a way that may pass: trying again in {:.0} s (attempt {})",
            delay.as_secs_f64(),
            request.attempt + 1
        );
        // Pausing while we wait stops the retry too: "pause" means no automatic fetch at all.
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = paused.wait_for(|p| *p) => {
                give_up(request.attempt, "automatic fetching was paused".into());
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        request = FetchRequest {
            trigger,
            accounts: Some(record.retryable),
            attempt: request.attempt + 1,
            sending: request.sending,
        };
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

impl TriggerHandle {
    /// Pauses or resumes automatic fetching (link-up, interval, start). Manual fetches and the
    /// listener are not affected.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
        tracing::info!(
            "automatic fetching {}",
            if paused { "paused" } else { "resumed" }
        );
    }

    /// Every change of the pause switch, from wherever it came (tray, control socket).
    pub fn paused_changes(&self) -> watch::Receiver<bool> {
        self.inner.paused.subscribe()
    }

    /// Whether automatic fetching is paused.
    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// The watched interfaces that are up now; `None` when the interfaces cannot be watched.
    pub fn links(&self) -> Option<Links> {
        self.inner.links.borrow().clone()
    }

    /// The watched interfaces that are up, as they change (`None`: they cannot be watched).
    pub fn link_changes(&self) -> watch::Receiver<Option<Links>> {
        self.inner.links.clone()
    }

    /// The service the triggers drive.
    pub fn service(&self) -> &ServiceHandle {
        &self.inner.service
    }

    /// Waits until the trigger tasks have ended (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }

    /// A manual fetch (CLI, tray, control socket). When no watched interface is up and an asked
    /// account has a connect command, runs it and waits for the link first; when that brought
    /// the link up, runs the disconnect command after the session. Both go to the history.
    pub async fn fetch_now(&self, request: FetchRequest) -> Result<SessionRecord, ServiceStopped> {
        let inner = &self.inner;
        let wanted: Vec<Account> = inner
            .service
            .accounts()
            .iter()
            .filter(|a| match &request.accounts {
                Some(names) => names.contains(&a.name),
                None => true,
            })
            .cloned()
            .collect();
        let guard = {
            let _one = inner.connecting.lock().await;
            // Right after start the watcher's first snapshot may be a few ms away.
            let mut links = inner.links.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), links.wait_for(|l| l.is_some())).await;
            // Unknown link state (no watcher): assume online rather than dial blindly.
            let online = inner.links.borrow().as_ref().is_none_or(|l| !l.is_empty());
            let dialers: Vec<&Account> = wanted
                .iter()
                .filter(|a| a.link.connect_command.is_some())
                .collect();
            let mut dialed = false;
            if !online && !dialers.is_empty() {
                self.ownership().dialing = true;
                dialed = true;
                if let Err(record) = self.connect(&dialers, request.trigger).await {
                    self.ownership().dialing = false;
                    return Ok(record);
                }
            }
            InFlight::new(inner.clone(), dialed)
        };
        let trigger = request.trigger;
        let record = inner.service.fetch(request).await;
        let hang_up = guard.release();
        if !hang_up.is_empty() {
            self.disconnect(hang_up, trigger).await;
        }
        record
    }

    fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        lock(&self.inner.ownership)
    }

    /// Runs the connect commands, then waits for a watched interface to come up.
    async fn connect(&self, dialers: &[&Account], trigger: Trigger) -> Result<(), SessionRecord> {
        let started = Utc::now();
        let mut transcripts = Vec::new();
        let mut errors = Vec::new();
        let mut done: Vec<String> = Vec::new();
        let timeout = dialers
            .iter()
            .map(|a| a.link.link_timeout())
            .max()
            .unwrap_or_default();
        for a in dialers {
            let Some(cmd) = &a.link.connect_command else {
                continue;
            };
            // Two accounts at the same ISP share the link: dial once.
            if done.contains(cmd) {
                continue;
            }
            done.push(cmd.clone());
            tracing::info!(account = %a.name, "no link up: running the connect command `{cmd}`");
            let run = run_command("connect", cmd, a.link.link_timeout()).await;
            transcripts.push((a.name.clone(), run.lines));
            if let Some(e) = run.error {
                errors.push(Problem::new(e).for_account(&a.name).fixed_by(Some(
                    crate::hint::Setting::account(
                        &a.name,
                        crate::hint::AccountField::ConnectCommand,
                    ),
                )));
            }
        }
        let mut ended = EndReason::ConnectFailed;
        if errors.is_empty() {
            let mut links = self.inner.links.clone();
            let up = tokio::select! {
                r = tokio::time::timeout(timeout, links.wait_for(|l| l.as_ref().is_some_and(|l| !l.is_empty()))) => matches!(r, Ok(Ok(_))),
                _ = self.inner.shutdown.cancelled() => false,
            };
            if up {
                ended = EndReason::LinkUp;
                let mut own = self.ownership();
                for a in dialers {
                    own.ours.push((
                        a.name.clone(),
                        a.link.disconnect_command.clone(),
                        a.link.link_timeout(),
                    ));
                }
            } else {
                ended = EndReason::LinkDidNotComeUp;
                let account = dialers.first().map(|a| a.name.clone()).unwrap_or_default();
                errors.push(
                    Problem::new(format!(
                        "no watched interface came up within {} s after `{}`: check the connect command and the `interfaces` setting, or allow more time (link timeout); nothing was asked from the ISP",
                        timeout.as_secs(),
                        done.join("`, `")
                    ))
                    .fixed_by(Some(crate::hint::Setting::account(
                        account,
                        crate::hint::AccountField::LinkTimeout,
                    ))),
                );
            }
        }
        let record = self
            .record(
                RecordKind::Connect,
                trigger,
                started,
                transcripts,
                errors,
                ended,
            )
            .await;
        if record.errors.is_empty() {
            Ok(())
        } else {
            Err(record)
        }
    }

    /// Runs the disconnect commands of the links our connect commands brought up.
    async fn disconnect(&self, ours: Vec<(String, Option<String>, Duration)>, trigger: Trigger) {
        let started = Utc::now();
        let mut transcripts = Vec::new();
        let mut errors = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for (account, cmd, timeout) in ours {
            let Some(cmd) = cmd else { continue };
            if done.contains(&cmd) {
                continue;
            }
            done.push(cmd.clone());
            tracing::info!(%account, "fetch over: running the disconnect command `{cmd}`");
            let run = run_command("disconnect", &cmd, timeout).await;
            transcripts.push((account.clone(), run.lines));
            if let Some(e) = run.error {
                errors.push(Problem::new(e).for_account(&account).fixed_by(Some(
                    crate::hint::Setting::account(
                        &account,
                        crate::hint::AccountField::DisconnectCommand,
                    ),
                )));
            }
        }
        if !done.is_empty() {
            let ended = if errors.is_empty() {
                EndReason::Disconnected
            } else {
                EndReason::DisconnectFailed
            };
            self.record(
                RecordKind::Disconnect,
                trigger,
                started,
                transcripts,
                errors,
                ended,
            )
            .await;
        }
    }

    /// Records a connect/disconnect step in the history and reports its errors.
    async fn record(
        &self,
        kind: RecordKind,
        trigger: Trigger,
        started: chrono::DateTime<Utc>,
        transcripts: Vec<(String, Vec<TranscriptLine>)>,
        errors: Vec<Problem>,
        ended: EndReason,
    ) -> SessionRecord {
        let mut record = SessionRecord::new(kind, trigger, started, ended);
        record.id = format!("{}-{:?}", record.id, kind).to_lowercase();
        record.errors = errors;
        record.transcripts = transcripts;
        for e in &record.errors {
            tracing::error!("{e}");
            self.inner.service.events().emit(Event::Error(e.clone()));
        }
        if let Some(h) = &self.inner.history {
            // Written on a blocking thread: the async loop never waits for the disk.
            if let Err(e) = h.append_async(record.clone()).await {
                tracing::error!("{e}");
            }
        }
        record
    }
}

/// One manual fetch using the link; the last one out learns which links to hang up.
struct InFlight {
    inner: Arc<Inner>,
    released: bool,
    dialed: bool,
}

impl InFlight {
    fn new(inner: Arc<Inner>, dialed: bool) -> Self {
        lock(&inner.ownership).in_flight += 1;
        InFlight {
            inner,
            released: false,
            dialed,
        }
    }

    /// Ends this fetch; returns the links to hang up when it was the last one and no session
    /// (e.g. an automatic one) still runs on them.
    fn release(mut self) -> Vec<(String, Option<String>, Duration)> {
        self.released = true;
        let mut own = lock(&self.inner.ownership);
        own.in_flight -= 1;
        if self.dialed {
            own.dialing = false;
        }
        if own.in_flight == 0 && !self.inner.service.is_fetching() {
            std::mem::take(&mut own.ours)
        } else {
            Vec::new()
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.released {
            let mut own = lock(&self.inner.ownership);
            own.in_flight -= 1;
            if self.dialed {
                own.dialing = false;
            }
        }
    }
}
