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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account::Account;
use crate::config::{self, Config, ConfigError};
use crate::event::{Event, EventSink};
use crate::history::{History, SessionRecord, HISTORY_FILE};
use crate::report::TranscriptLine;
use crate::service::{FetchRequest, ServiceHandle, ServiceStopped};

pub use auto::{AutoFetch, AutoOptions};
pub use command::{run_command, split_command, CommandRun};
pub use filter::{InterfaceFilter, Link, Links};

/// How the triggers behave (the config's `interfaces`, `settle-delay`, `fetch-interval`,
/// `fetch-at-start`).
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
    /// Where connect/disconnect command output is recorded; `None` keeps no history.
    pub history: Option<History>,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        TriggerOptions {
            interfaces: InterfaceFilter::default(),
            settle: Duration::from_secs(config::DEFAULT_SETTLE_DELAY),
            interval: None,
            fetch_at_start: true,
            paused: false,
            history: None,
        }
    }
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
            history: Some(History::new(config::data_dir()?.join(HISTORY_FILE))),
        })
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
    events: EventSink,
    history: Option<History>,
    accounts: Mutex<Vec<Account>>,
    paused: watch::Sender<bool>,
    links: watch::Receiver<Option<Links>>,
    ownership: Mutex<Ownership>,
    /// One connect at a time: a second manual fetch waits and then finds the link up.
    connecting: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// A handle on the running triggers; cheap to clone.
#[derive(Debug, Clone)]
pub struct TriggerHandle {
    inner: Arc<Inner>,
}

/// Starts the triggers for `service` (whose accounts become `accounts`): watches the interfaces (netlink) and runs the schedule
/// until `shutdown` is cancelled. `events` is the sink the service was started with (the
/// triggers report connect/disconnect failures there). Must be called inside a Tokio runtime.
/// If the interfaces cannot be watched, an error event says so and only manual fetches work.
pub fn start(
    service: ServiceHandle,
    accounts: Vec<Account>,
    options: TriggerOptions,
    events: EventSink,
    shutdown: CancellationToken,
) -> TriggerHandle {
    let (tx, rx) = watch::channel(None);
    let handle = start_with_links(
        service,
        accounts,
        options.clone(),
        events,
        rx,
        shutdown.clone(),
    );
    match netwatch::spawn(options.interfaces, tx, shutdown) {
        Ok(task) => {
            handle.inner.tasks.spawn(async move {
                let _ = task.await;
            });
        }
        Err(e) => handle.inner.events.emit(Event::Error {
            account: None,
            message: format!(
                "cannot watch the network interfaces ({e}): fetching on link-up and on the interval is off. Fetch by hand, or from an ip-up script with `mailcall-cli fetch --via-running`"
            ),
        }),
    }
    handle
}

/// [`start`] with the link state supplied by the caller (tests, or another link source).
/// `accounts` replace the service's accounts too.
pub fn start_with_links(
    service: ServiceHandle,
    accounts: Vec<Account>,
    options: TriggerOptions,
    events: EventSink,
    links: watch::Receiver<Option<Links>>,
    shutdown: CancellationToken,
) -> TriggerHandle {
    // One list of accounts for both: what the triggers dial for is what the service asks.
    let _ = service.set_accounts(accounts.clone());
    let (paused, paused_rx) = watch::channel(options.paused);
    let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel::<AutoFetch>();
    let inner = Arc::new(Inner {
        events,
        service,
        history: options.history.clone(),
        accounts: Mutex::new(accounts),
        paused,
        links: links.clone(),
        ownership: Mutex::new(Ownership::default()),
        connecting: tokio::sync::Mutex::new(()),
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
    let service = inner.service.clone();
    let weak = Arc::downgrade(&inner);
    inner.tasks.spawn(async move {
        while let Some(f) = fetch_rx.recv().await {
            let dialing = weak.upgrade().is_some_and(|i| {
                i.ownership
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .dialing
            });
            if dialing && f.trigger == "network" {
                tracing::info!("link up after our connect command: the manual fetch asks");
                continue;
            }
            match &f.interface {
                Some(i) => tracing::info!(interface = %i, "link up: asking for the mail"),
                None => tracing::info!(trigger = f.trigger, "asking for the mail"),
            }
            if service.request_fetch(FetchRequest::all(f.trigger)).is_err() {
                return;
            }
        }
    });
    inner.tasks.close();
    TriggerHandle { inner }
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

    /// The service the triggers drive.
    pub fn service(&self) -> &ServiceHandle {
        &self.inner.service
    }

    /// Replaces the accounts, here (for connect commands) and in the service.
    pub fn set_accounts(&self, accounts: Vec<Account>) -> Result<(), ServiceStopped> {
        *self
            .inner
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = accounts.clone();
        self.inner.service.set_accounts(accounts)
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
        let wanted: Vec<Account> = {
            let accounts = inner.accounts.lock().unwrap_or_else(|p| p.into_inner());
            accounts
                .iter()
                .filter(|a| match &request.accounts {
                    Some(names) => names.contains(&a.name),
                    None => true,
                })
                .cloned()
                .collect()
        };
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
                if let Err(record) = self.connect(&dialers).await {
                    self.ownership().dialing = false;
                    return Ok(record);
                }
            }
            InFlight::new(inner.clone(), dialed)
        };
        let record = inner.service.fetch(request).await;
        let hang_up = guard.release();
        if !hang_up.is_empty() {
            self.disconnect(hang_up).await;
        }
        record
    }

    fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        self.inner
            .ownership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the connect commands, then waits for a watched interface to come up.
    async fn connect(&self, dialers: &[&Account]) -> Result<(), SessionRecord> {
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
                errors.push(format!("{}: {e}", a.name));
            }
        }
        let mut ended = "connect command failed";
        if errors.is_empty() {
            let mut links = self.inner.links.clone();
            let up = tokio::select! {
                r = tokio::time::timeout(timeout, links.wait_for(|l| l.as_ref().is_some_and(|l| !l.is_empty()))) => matches!(r, Ok(Ok(_))),
                _ = self.inner.shutdown.cancelled() => false,
            };
            if up {
                ended = "link up";
                let mut own = self
                    .inner
                    .ownership
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for a in dialers {
                    own.ours.push((
                        a.name.clone(),
                        a.link.disconnect_command.clone(),
                        a.link.link_timeout(),
                    ));
                }
            } else {
                ended = "link did not come up";
                errors.push(format!(
                    "no watched interface came up within {} s after `{}`: check the connect command and the `interfaces` setting, or raise --link-timeout; nothing was asked from the ISP",
                    timeout.as_secs(),
                    done.join("`, `")
                ));
            }
        }
        let record = self.record("connect", started, transcripts, errors, ended);
        if record.errors.is_empty() {
            Ok(())
        } else {
            Err(record)
        }
    }

    /// Runs the disconnect commands of the links our connect commands brought up.
    async fn disconnect(&self, ours: Vec<(String, Option<String>, Duration)>) {
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
                errors.push(format!("{account}: {e}"));
            }
        }
        if !done.is_empty() {
            let ended = if errors.is_empty() {
                "disconnected"
            } else {
                "disconnect command failed"
            };
            self.record("disconnect", started, transcripts, errors, ended);
        }
    }

    /// Records a connect/disconnect step in the history and reports its errors.
    fn record(
        &self,
        trigger: &str,
        started: chrono::DateTime<Utc>,
        transcripts: Vec<(String, Vec<TranscriptLine>)>,
        errors: Vec<String>,
        ended: &str,
    ) -> SessionRecord {
        let now = Utc::now();
        let record = SessionRecord {
            id: format!(
                "{}-{}-{trigger}",
                now.format("%Y%m%dT%H%M%S%.3fZ"),
                std::process::id()
            ),
            trigger: trigger.into(),
            started_at: started,
            finished_at: now,
            domains: Vec::new(),
            messages: Vec::new(),
            errors,
            transcripts,
            ended_because: ended.into(),
        };
        for e in &record.errors {
            tracing::error!("{e}");
            self.inner.events.emit(Event::Error {
                account: None,
                message: e.clone(),
            });
        }
        if let Some(h) = &self.inner.history {
            if let Err(e) = h.append(&record) {
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
        inner
            .ownership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .in_flight += 1;
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
        let mut own = self
            .inner
            .ownership
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
            let mut own = self
                .inner
                .ownership
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            own.in_flight -= 1;
            if self.dialed {
                own.dialing = false;
            }
        }
    }
}
