//! The Mailcall service: the SMTP listener (always on while an ETRN account needs it; never bound
//! when every account is ODMR), fetch sessions on request — one at a time, a request during a
//! session merged into it — and the one list of accounts, published on a watch for whoever
//! needs it (the triggers, the recipient policy of the listener and of ODMR's turned lines).
//!
//! The submission listener for outgoing mail ([`crate::outgoing::submission`]) is held here
//! too, bound while an account has an outgoing server.
//!
//! [`crate::instance`] is what front ends start; it builds a service and its triggers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::account::{Account, DomainSpec};
use crate::client::ClientSettings;
use crate::config::{Config, ConfigError, ConfigKey};
use crate::event::{Event, EventSink};
use crate::fetch::{self, FetchOptions, Receiving};
use crate::hint::{Problem, Setting};
use crate::history::{EndReason, RecordKind, SessionRecord, Trigger};
use crate::listener::{
    tls, BindError, Listener, ListenerEvent, ListenerSettings, Reception, RecipientPolicy,
};
use crate::maildir::Maildir;
use crate::outgoing::submission::{needs_submission, SubmitBindError, SubmitOptions, SubmitSlot};
use crate::spool::copies::{Router, RoutingError, RoutingOptions};
use crate::spool::runner::RunnerHandle;
use crate::spool::Spool;

/// How long the listener may take to finish in-flight deliveries at shutdown.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Everything the service needs to run.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Where the listener listens (when an ETRN account needs it).
    pub listen: SocketAddr,
    /// The Maildir to deliver into.
    pub maildir: PathBuf,
    /// The listener's behaviour.
    pub listener: ListenerSettings,
    /// How fetch sessions wait and ask (the trigger is set per request).
    pub fetch: FetchOptions,
    /// Where each recipient's mail goes: routes, unknown recipients, the spool.
    pub routing: RoutingOptions,
}

impl ServiceOptions {
    /// The options a config file describes, with the history in the data directory. With
    /// `starttls` on and no certificate configured, a self-signed one is made (once) in the
    /// data directory's `tls/`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut listener = ListenerSettings::new(config.hostname(), config.max_message_size);
        let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        listener.max_recipients = clamp(config.max_recipients);
        listener.max_line_length = clamp(config.max_line_length);
        listener.max_errors = u32::try_from(config.max_errors).unwrap_or(u32::MAX);
        listener.max_connections = clamp(config.max_connections);
        listener.max_connections_per_peer = clamp(config.max_connections_per_peer);
        listener.command_timeout = Duration::from_secs(config.command_timeout);
        listener.data_timeout = Duration::from_secs(config.data_timeout);
        listener.reserved_connections = clamp(config.reserved_connections);
        listener.first_command_timeout = Duration::from_secs(config.first_command_timeout);
        listener.max_data_time = Duration::from_secs(config.max_data_time);
        listener.max_session_time = Duration::from_secs(config.max_session_time);
        listener.max_junk_commands = u32::try_from(config.max_junk_commands).unwrap_or(u32::MAX);
        listener.allowed_peers = config.peer_networks()?;
        if config.starttls {
            let tls = match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => tls::server_config_from_pem(cert, key),
                _ => tls::self_signed(&config.data_path()?.join("tls"), &config.hostname())
                    .map(|(c, _)| c),
            };
            listener.tls = Some(tls.map_err(|e| ConfigError::Invalid {
                key: ConfigKey::TlsCert,
                problem: e.to_string(),
            })?);
        }
        let client = ClientSettings {
            reply_timeout: Duration::from_secs(config.reply_timeout),
            ..ClientSettings::default()
        };
        Ok(ServiceOptions {
            listen: config.listen,
            maildir: config.maildir_path()?,
            listener,
            fetch: FetchOptions {
                trigger: Trigger::Unknown,
                idle_timeout: config.idle_timeout(),
                max_wait: config.max_wait(),
                client,
                history: Some(config.history()?),
            },
            routing: RoutingOptions::from_config(config)?,
        })
    }
}

/// The service's own resources could not be set up: the listener's socket, the Maildir, the
/// routes' Maildirs and the spool. (Starting a whole Mailcall can fail in more ways:
/// [`crate::instance::StartError`].)
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The listener could not bind (its message names the fixes).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The Maildir could not be created or opened.
    #[error("cannot use the Maildir {path}: {source}. Check the path and its permissions, or choose another Maildir")]
    Maildir {
        /// The Maildir.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A route's Maildir, or the spool, could not be created or opened.
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

impl SetupError {
    /// The setting that fixes it.
    pub fn fix(&self) -> Option<Setting> {
        Some(Setting::config(match self {
            SetupError::Bind(_) => ConfigKey::Listen,
            SetupError::Maildir { .. } => ConfigKey::Maildir,
            SetupError::Routing(e) => e.key(),
        }))
    }
}

/// Whether a fetch sends the outgoing queue first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Sending {
    /// Send what is queued, then ask (every fetch, unless told otherwise).
    #[default]
    First,
    /// Only receive (`mailcall-cli fetch --no-send`): the outgoing mail stays queued.
    Skip,
}

/// A request to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// What asked.
    pub trigger: Trigger,
    /// The accounts to ask; `None` asks every account the service knows.
    pub accounts: Option<Vec<String>>,
    /// Which attempt this is (1 for the first; automatic fetches retry transient failures).
    pub attempt: u32,
    /// Whether the outgoing queue is sent first.
    pub sending: Sending,
}

impl FetchRequest {
    /// A request for every account.
    pub fn all(trigger: Trigger) -> Self {
        FetchRequest {
            trigger,
            accounts: None,
            attempt: 1,
            sending: Sending::First,
        }
    }

    /// A request for the named accounts (every account when `names` is empty).
    pub fn named(trigger: Trigger, names: Vec<String>) -> Self {
        FetchRequest {
            trigger,
            accounts: (!names.is_empty()).then_some(names),
            attempt: 1,
            sending: Sending::First,
        }
    }

    /// The same request, sending as `sending` says.
    pub fn sending(self, sending: Sending) -> Self {
        FetchRequest { sending, ..self }
    }
}

/// The service stopped before it could answer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Mailcall service has stopped; start it again to fetch")]
pub struct ServiceStopped;

/// The accounts the service knows, shared read-only.
pub type Accounts = Arc<Vec<Account>>;

struct FetchCommand(FetchRequest, oneshot::Sender<SessionRecord>);

/// A handle on a running service; cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    tx: mpsc::UnboundedSender<FetchCommand>,
    events: EventSink,
    listener: Arc<ListenerSlot>,
    accounts: watch::Sender<Accounts>,
    policy: Arc<RecipientPolicy>,
    fetching: Arc<AtomicBool>,
    shutdown: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    outbox: Arc<OnceLock<RunnerHandle>>,
    submission: Arc<OnceLock<Arc<SubmitSlot>>>,
}

impl std::fmt::Debug for FetchCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetch({:?})", self.0)
    }
}

impl ServiceHandle {
    /// Fetches and waits for the session's record. A request while a session runs joins it
    /// (or, naming accounts the running session does not ask, gets one follow-up session).
    pub async fn fetch(&self, request: FetchRequest) -> Result<SessionRecord, ServiceStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(FetchCommand(request, tx))
            .map_err(|_| ServiceStopped)?;
        rx.await.map_err(|_| ServiceStopped)
    }

    /// Replaces the accounts: what fetches ask, and the domains the listener accepts.
    pub fn set_accounts(&self, accounts: Vec<Account>) {
        self.policy.replace(domains_of(&accounts));
        if let Some(slot) = self.submission.get() {
            slot.replace_accounts(accounts.clone());
        }
        self.accounts.send_replace(Arc::new(accounts));
    }

    /// Replaces `default-outgoing-account` for later submissions.
    pub fn set_default_outgoing(&self, name: Option<String>) {
        if let Some(slot) = self.submission.get() {
            slot.replace_default_account(name);
        }
    }

    /// The accounts now.
    pub fn accounts(&self) -> Accounts {
        self.accounts.borrow().clone()
    }

    /// Every change of the accounts, from now on.
    pub fn watch_accounts(&self) -> watch::Receiver<Accounts> {
        self.accounts.subscribe()
    }

    /// The service's events (sessions, replies, messages, errors), from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The sink the service publishes on (the triggers publish there too).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Where the listener listens; `None` while none runs (every account is ODMR).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listener.addr()
    }

    /// Binds the listener if the accounts now need it (an ETRN account was added to a service
    /// that had ODMR accounts only) and it is not up yet; returns where it listens, if it does.
    /// A listener that is up stays up when its last ETRN account goes.
    pub async fn listen_if_needed(&self) -> Result<Option<SocketAddr>, BindError> {
        // The submission listener too, once an account has an outgoing server (its failure is
        // reported as an event: incoming mail does not depend on it).
        if let Some(slot) = self.submission.get() {
            if needs_submission(&self.accounts()) {
                if let Err(e) = slot.ensure().await {
                    self.events.emit(Event::Error(e.problem()));
                }
            }
        }
        if !needs_listener(&self.accounts()) {
            return Ok(self.listener.addr());
        }
        self.listener.ensure().await
    }

    /// Gives the service the spool's runner: every fetch sends the outgoing mail through it
    /// first, in the same online window (set once, when the runner starts).
    pub fn set_outbox(&self, runner: RunnerHandle) {
        let _ = self.outbox.set(runner);
    }

    /// Sets up the submission listener (outgoing mail into `spool`, the runner's), once; binds
    /// it now if an account has an outgoing server, later (`listen_if_needed`) if one gets one.
    /// Returns where it listens, if it does.
    pub async fn start_submission(
        &self,
        options: SubmitOptions,
        spool: Spool,
    ) -> Result<Option<SocketAddr>, SubmitBindError> {
        let accounts = self.accounts().to_vec();
        let needed = needs_submission(&accounts);
        let slot = SubmitSlot::new(options, spool, accounts, self.shutdown.child_token()).map_err(
            |e| {
                SubmitBindError::Other(BindError::Other {
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    source: e,
                })
            },
        )?;
        let slot = self.submission.get_or_init(|| Arc::new(slot)).clone();
        if needed {
            return slot.ensure().await;
        }
        Ok(slot.addr())
    }

    /// Where the submission listener listens; `None` while none runs.
    pub fn submit_addr(&self) -> Option<SocketAddr> {
        self.submission.get().and_then(|s| s.addr())
    }

    /// Whether a fetch session is running.
    pub fn is_fetching(&self) -> bool {
        self.fetching.load(Ordering::SeqCst)
    }

    /// Stops the service: a running session ends (its record still goes to the history and its
    /// waiters), deliveries in flight finish or get a 4xx, then the listener closes.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // Submissions in flight finish (new commands get 421), then the port closes.
        if let Some(slot) = self.submission.get() {
            if !slot.drained(DRAIN_LIMIT).await {
                self.events.emit(Event::Error(Problem::new(
                    "the submission listener did not finish in time; a message without a 250 was not queued",
                )));
            }
        }
    }
}

/// What a service needs from the system before anything else: the Maildir, created, and the
/// router (the routes' Maildirs and the spool). Done first so a bad Maildir or route shows before
/// the keyring is asked or anything is sent. The listener's socket
/// is bound by [`start_prepared`], once the accounts say whether one is needed: ODMR accounts
/// need none, so a setup with only those never binds a port.
#[derive(Debug)]
pub struct Prepared {
    options: ServiceOptions,
    maildir: Maildir,
    router: Arc<Router>,
}

impl Prepared {
    /// Where sessions deliver (the instance starts the spool's runner from it).
    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }
}

/// Creates the Maildir.
pub async fn prepare(options: ServiceOptions) -> Result<Prepared, SetupError> {
    let maildir = Maildir::create(&options.maildir).map_err(|source| SetupError::Maildir {
        path: options.maildir.clone(),
        source,
    })?;
    let router = Arc::new(options.routing.router(maildir.clone())?);
    Ok(Prepared {
        options,
        maildir,
        router,
    })
}

/// Starts the service: creates the Maildir, binds the listener when an account needs it (so a
/// bind error shows before any ETRN), and runs until `shutdown` is cancelled or
/// [`ServiceHandle::stop`] is called.
pub async fn start(
    options: ServiceOptions,
    accounts: Vec<Account>,
    events: EventSink,
    shutdown: CancellationToken,
) -> Result<ServiceHandle, SetupError> {
    start_prepared(prepare(options).await?, accounts, events, shutdown).await
}

/// Whether `accounts` need the listener: an ETRN account does (the ISP connects to it), and so
/// does a service with no account yet (an ISP may deliver on its own, as before accounts had
/// modes); ODMR accounts alone do not.
pub fn needs_listener(accounts: &[Account]) -> bool {
    accounts.is_empty() || accounts.iter().any(|a| a.mode.needs_listener())
}

/// Starts a prepared service with `accounts`; binds the listener first when they need it.
pub async fn start_prepared(
    prepared: Prepared,
    accounts: Vec<Account>,
    events: EventSink,
    shutdown: CancellationToken,
) -> Result<ServiceHandle, SetupError> {
    let Prepared {
        options,
        maildir,
        router,
    } = prepared;
    // Leftovers of a crash or power cut: never acknowledged, so the ISP still has them.
    match maildir.clean_stale_tmp() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "removed {n} stale file(s) from {}/tmp",
            options.maildir.display()
        ),
        Err(e) => tracing::warn!("cannot clean {}/tmp: {e}", options.maildir.display()),
    }
    let policy = Arc::new(RecipientPolicy::new(domains_of(&accounts)));
    let (ltx, lrx) = mpsc::unbounded_channel();
    let stop_listener = CancellationToken::new();
    let reception = Arc::new(
        Reception::new(
            Arc::new(options.listener.clone()),
            policy.clone(),
            Arc::new(maildir),
            ltx,
            stop_listener.clone(),
        )
        .with_router(router),
    );
    let listener = Arc::new(ListenerSlot {
        listen: options.listen,
        reception,
        addr: Mutex::new(None),
        task: Mutex::new(None),
        binding: tokio::sync::Mutex::new(()),
    });
    if needs_listener(&accounts) {
        listener.ensure().await?;
    } else {
        tracing::info!("no listener: every account uses ODMR, which needs no inbound port");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let fetching = Arc::new(AtomicBool::new(false));
    let (accounts_tx, accounts_rx) = watch::channel(Arc::new(accounts));
    let outbox = Arc::new(OnceLock::new());
    let coordinator = Coordinator {
        options,
        accounts: accounts_rx,
        events: events.clone(),
        listener: listener.clone(),
        fetching: fetching.clone(),
        outbox: outbox.clone(),
    };
    let task = tokio::spawn(coordinator.run(rx, lrx, stop_listener, shutdown.clone()));
    Ok(ServiceHandle {
        tx,
        events,
        listener,
        accounts: accounts_tx,
        policy,
        fetching,
        shutdown,
        task: Arc::new(Mutex::new(Some(task))),
        outbox,
        submission: Arc::new(OnceLock::new()),
    })
}

/// The listener, bound on demand: where it should listen, what its sessions share (ODMR's turned
/// lines use that too), and, once bound, its address and the task serving it.
struct ListenerSlot {
    listen: SocketAddr,
    reception: Arc<Reception>,
    addr: Mutex<Option<SocketAddr>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Held while binding, so two reloads at once bind once.
    binding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ListenerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSlot")
            .field("listen", &self.listen)
            .field("bound", &self.addr())
            .finish_non_exhaustive()
    }
}

impl ListenerSlot {
    fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds and serves the listener unless it is up (or the service is stopping).
    async fn ensure(&self) -> Result<Option<SocketAddr>, BindError> {
        let _binding = self.binding.lock().await;
        if let Some(addr) = self.addr() {
            return Ok(Some(addr));
        }
        if self.reception.shutdown.is_cancelled() {
            return Ok(None);
        }
        let listener = Listener::bind(self.listen).await?;
        let addr = listener.local_addr();
        tracing::info!(%addr, "listening for the ISP's deliveries (ETRN)");
        let task = tokio::spawn(listener.serve(self.reception.clone()));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        Ok(Some(addr))
    }

    /// The serving task, for the shutdown to wait on.
    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn domains_of(accounts: &[Account]) -> Vec<DomainSpec> {
    accounts.iter().flat_map(|a| a.domains.clone()).collect()
}

struct Coordinator {
    options: ServiceOptions,
    accounts: watch::Receiver<Accounts>,
    events: EventSink,
    listener: Arc<ListenerSlot>,
    fetching: Arc<AtomicBool>,
    /// The spool's runner, once it runs: outgoing mail is sent first in every fetch.
    outbox: Arc<OnceLock<RunnerHandle>>,
}

struct Running {
    names: Vec<String>,
    /// It sent the outgoing queue first.
    sending: Sending,
    waiters: Vec<oneshot::Sender<SessionRecord>>,
    deliveries: mpsc::UnboundedSender<ListenerEvent>,
    cancel: CancellationToken,
}

/// A request naming accounts the running session does not ask: one follow-up session for all.
struct Pending {
    request: FetchRequest,
    waiters: Vec<oneshot::Sender<SessionRecord>>,
}

impl Coordinator {
    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<FetchCommand>,
        mut deliveries: mpsc::UnboundedReceiver<ListenerEvent>,
        stop_listener: CancellationToken,
        shutdown: CancellationToken,
    ) {
        let mut running: Option<Running> = None;
        // Kept apart from `running` so select! can await it while other branches touch `running`.
        let mut task: Option<JoinHandle<SessionRecord>> = None;
        let mut pending: Option<Pending> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(FetchCommand(request, reply)) => {
                        let wanted = self.names_for(&request);
                        // A request that sends does not join a session that did not.
                        let covered = |r: &Running| {
                            wanted.iter().all(|n| r.names.contains(n))
                                && (request.sending == Sending::Skip || r.sending == Sending::First)
                        };
                        match &mut running {
                            Some(r) if covered(r) => r.waiters.push(reply),
                            Some(_) => {
                                let p = pending.get_or_insert_with(|| Pending {
                                    request: FetchRequest { accounts: Some(Vec::new()), ..request.clone() },
                                    waiters: Vec::new(),
                                });
                                if let Some(list) = &mut p.request.accounts {
                                    for n in wanted {
                                        if !list.contains(&n) {
                                            list.push(n);
                                        }
                                    }
                                }
                                if request.sending == Sending::First {
                                    p.request.sending = Sending::First;
                                }
                                p.waiters.push(reply);
                            }
                            None => {
                                let (r, t) = self.begin(request, vec![reply], &shutdown);
                                running = Some(r);
                                task = Some(t);
                            }
                        }
                    }
                    // Every handle is gone: nobody can ask for anything any more.
                    None => break,
                },
                ev = deliveries.recv() => match ev {
                    Some(ev) => match &running {
                        Some(r) => {
                            let _ = r.deliveries.send(ev);
                        }
                        None => self.unsolicited(ev),
                    },
                    None => {
                        self.events.emit(Event::Error(Problem::new("the SMTP listener stopped unexpectedly; restart Mailcall")));
                        break;
                    }
                },
                record = async { task.as_mut().expect("guarded by the if").await }, if task.is_some() => {
                    task = None;
                    let Some(r) = running.take() else { continue };
                    self.fetching.store(false, Ordering::SeqCst);
                    let record = record.unwrap_or_else(|e| self.crashed(e));
                    for w in r.waiters {
                        let _ = w.send(record.clone());
                    }
                    if let Some(p) = pending.take() {
                        let (r, t) = self.begin(p.request, p.waiters, &shutdown);
                        running = Some(r);
                        task = Some(t);
                    }
                }
            }
        }

        if let (Some(r), Some(t)) = (running.take(), task.take()) {
            r.cancel.cancel();
            let record = t.await.unwrap_or_else(|e| self.crashed(e));
            for w in r.waiters {
                let _ = w.send(record.clone());
            }
        }
        self.fetching.store(false, Ordering::SeqCst);
        // Deliveries in flight finish (the listener answers new commands with 421 meanwhile).
        stop_listener.cancel();
        if let Some(server) = self.listener.take_task() {
            if tokio::time::timeout(DRAIN_LIMIT, server).await.is_err() {
                self.events.emit(Event::Error(Problem::new(
                    "the listener did not finish its deliveries in time; any message without a 250 stays at the ISP",
                )));
            }
        }
        while let Ok(ev) = deliveries.try_recv() {
            self.unsolicited(ev);
        }
    }

    fn names_for(&self, request: &FetchRequest) -> Vec<String> {
        match &request.accounts {
            Some(names) => names.clone(),
            None => self
                .accounts
                .borrow()
                .iter()
                .map(|a| a.name.clone())
                .collect(),
        }
    }

    fn begin(
        &self,
        request: FetchRequest,
        waiters: Vec<oneshot::Sender<SessionRecord>>,
        shutdown: &CancellationToken,
    ) -> (Running, JoinHandle<SessionRecord>) {
        let names = self.names_for(&request);
        let known = self.accounts.borrow().clone();
        let mut accounts = Vec::new();
        let mut unknown = Vec::new();
        for n in &names {
            match known.iter().find(|a| &a.name == n) {
                Some(a) => accounts.push(a.clone()),
                None => unknown.push(
                    Problem::new(format!(
                        "there is no account {n:?} (or its keyring entry could not be read)"
                    ))
                    .for_account(n),
                ),
            }
        }
        for p in &unknown {
            self.events.emit(Event::Error(p.clone()));
        }
        let mut options = self.options.fetch.clone();
        options.trigger = request.trigger;
        let attempt = request.attempt;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = shutdown.child_token();
        let events = self.events.clone();
        let listen = self.listener.addr();
        let reception = self.listener.reception.clone();
        let session_cancel = cancel.clone();
        self.fetching.store(true, Ordering::SeqCst);
        // Send first, then ask: the outgoing mail leaves in the same online window, before the
        // ETRN/ATRN (as the dial-up gateways did). Only when an account of this fetch sends.
        let sending = request.sending;
        let outbox = self
            .outbox
            .get()
            .filter(|_| sending == Sending::First)
            .filter(|_| accounts.iter().any(|a| a.outgoing.is_some()))
            .cloned();
        let task = tokio::spawn(async move {
            let sent = match outbox {
                Some(outbox) => outbox.send_outgoing().await,
                None => None,
            };
            let receiving = Receiving {
                listen,
                reception,
                deliveries: &mut rx,
            };
            let mut record = fetch::run(
                accounts,
                receiving,
                &options,
                attempt,
                &events,
                session_cancel,
            )
            .await;
            record.errors.extend(unknown);
            if let Some(sent) = sent {
                for why in sent.errors {
                    record.errors.insert(0, Problem::new(why));
                }
                record.handovers = sent.messages;
            }
            record
        });
        (
            Running {
                names,
                sending,
                waiters,
                deliveries: tx,
                cancel,
            },
            task,
        )
    }

    /// Mail the ISP delivered on its own (its retries while we are online): stored, announced
    /// and recorded like any other.
    fn unsolicited(&self, ev: ListenerEvent) {
        match ev {
            ListenerEvent::Connected { peer } => self.events.emit(Event::Connected { peer }),
            // Outside a fetch no ISP was asked: the peer retries when it will, as with any MTA.
            ListenerEvent::Closed { .. }
            | ListenerEvent::Refused { .. }
            | ListenerEvent::Unclaimed { .. } => {}
            ListenerEvent::Stored(info) => {
                self.events.emit(Event::MessageStored(info.clone()));
                let mut record = SessionRecord::new(
                    RecordKind::Delivery,
                    Trigger::Isp,
                    info.stored_at,
                    EndReason::OutsideFetch,
                );
                record.messages.push(*info);
                if let Some(history) = &self.options.fetch.history {
                    if let Err(e) = history.append(&record) {
                        self.events.emit(Event::Error(Problem::new(e.to_string())));
                    }
                }
            }
        }
    }

    fn crashed(&self, e: tokio::task::JoinError) -> SessionRecord {
        let mut record = SessionRecord::new(
            RecordKind::Fetch,
            Trigger::Unknown,
            Utc::now(),
            EndReason::Crashed,
        );
        record.errors.push(Problem::new(format!(
            "the fetch session ended unexpectedly ({e}); mail not acknowledged stays at the ISP; please report this bug"
        )));
        record
    }
}
