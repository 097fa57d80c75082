//! The app's state: where config and accounts live; the Mailcall this tray runs — a tray-mode
//! [`Instance`] — or, when one already runs with the same control socket, the daemon it is a
//! front end to; and the tray status their events feed (notifications, the window). The status
//! is published on a watch that the tray icon follows: this module never calls into the tray.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailcall_core::account::FetchMode;
use mailcall_core::config::{Config, ConfigError};
use mailcall_core::event::{Event, EventSink};
use mailcall_core::hint::{Problem, Setting};
use mailcall_core::history::Trigger;
use mailcall_core::instance::{self, Instance, InstanceOptions, Mode, SavedState, StartError};
use mailcall_core::keystore::AccountStore;
use mailcall_core::service::{self, FetchRequest};
use mailcall_core::spool::actions::{ActionResult, Selection};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::daemon::{DaemonLink, News};
use crate::notify::Notifier;
use crate::prefs::{self, prefs_path, Prefs};
use crate::queue::{self, QueueAction, QueueView};
use crate::status::{Serving, StatusView, TrayStatus};

/// The event the window gets whenever the status changes (payload: [`StatusView`]).
pub const STATUS_EVENT: &str = crate::contract::WindowEvent::Status.name();
/// The event the window gets when a fetch session has been recorded in the history.
pub const HISTORY_EVENT: &str = crate::contract::WindowEvent::History.name();
/// The event the window gets when Mailcall's queue for LAN servers changed.
pub const QUEUE_EVENT: &str = crate::contract::WindowEvent::Queue.name();

/// How long a tray whose daemon went away keeps trying to start Mailcall itself (the daemon
/// may still be finishing deliveries on the listener's port).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);
/// How long it waits between those tries.
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);

/// Everything the commands, the tray and the event pumps share.
pub struct AppState {
    /// The config file (same as the CLI's: `MAILCALL_CONFIG` or the platform config dir).
    pub config_path: PathBuf,
    /// Where accounts are kept: the OS keyring (a memory store in unit tests).
    pub store: Arc<dyn AccountStore>,
    /// The notification sender.
    pub notifier: Notifier,
    /// The control socket; `None`: the default one (`$XDG_RUNTIME_DIR/mailcall/control.sock`).
    control_socket: Option<PathBuf>,
    prefs: Mutex<Prefs>,
    status: Mutex<TrayStatus>,
    view: watch::Sender<StatusView>,
    backend: tokio::sync::Mutex<Backend>,
    /// Set once Mailcall has started (here or as a front end): later starts (new settings, a
    /// daemon that went away) are not "Mailcall starts", so they do not fetch at start.
    started_once: AtomicBool,
    /// Numbers each front-end connection, so news of an old one cannot act on a new one.
    generation: AtomicU64,
}

/// What runs Mailcall for this tray.
enum Backend {
    /// Nothing (before the first start, or it failed).
    Stopped,
    /// An instance in this process.
    Here {
        instance: Box<Instance>,
        /// Stops the event pump and the pause mirror.
        tasks: CancellationToken,
    },
    /// The daemon that already ran; this tray is its front end.
    Daemon {
        link: DaemonLink,
        /// How it differs from this tray's config, if it does.
        differs: Option<String>,
        /// Stops following it.
        tasks: CancellationToken,
        generation: u64,
    },
}

impl Backend {
    fn serving(&self) -> Serving {
        match self {
            Backend::Stopped => Serving::NotRunning,
            Backend::Here { instance, .. } => Serving::Here {
                control: instance.control_path().map(|p| p.display().to_string()),
            },
            Backend::Daemon { link, differs, .. } => Serving::Daemon {
                socket: link.socket().display().to_string(),
                differs: differs.clone(),
            },
        }
    }

    /// Stops what runs: an instance finishes its deliveries (or 4xx them) and closes its
    /// listener and control socket; a daemon is only let go of.
    async fn stop(self) {
        match self {
            Backend::Stopped => {}
            Backend::Here { instance, tasks } => {
                instance.stop().await;
                tasks.cancel();
            }
            Backend::Daemon { tasks, .. } => tasks.cancel(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A config error as a problem, pointing at its key when it has one.
fn config_problem(e: &ConfigError) -> Problem {
    Problem::new(e.to_string()).fixed_by(e.key().map(Setting::config))
}

impl AppState {
    /// State over `config_path` and `store`; the preferences are read from beside the config.
    pub fn new(config_path: PathBuf, store: Arc<dyn AccountStore>) -> Self {
        let prefs = Prefs::load(&prefs_path(&config_path));
        let status = TrayStatus::default();
        let (view, _) = watch::channel(status.view());
        AppState {
            config_path,
            store,
            notifier: Notifier::start(prefs.notifications),
            control_socket: None,
            prefs: Mutex::new(prefs),
            status: Mutex::new(status),
            view,
            backend: tokio::sync::Mutex::new(Backend::Stopped),
            started_once: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Uses the control socket at `path` instead of the default one (tests).
    pub fn with_control_socket(mut self, path: PathBuf) -> Self {
        self.control_socket = Some(path);
        self
    }

    /// The config file as it is now (defaults when it does not exist).
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config_path)
    }

    /// The config whose data directory holds what the window shows (history, queue): the
    /// daemon's own when this tray fronts one that runs with another config file, else ours.
    pub async fn served_config(&self) -> Result<Config, ConfigError> {
        let theirs = match &*self.backend.lock().await {
            Backend::Daemon { link, .. } => link
                .other_config(&self.config_path)
                .map(std::path::Path::to_path_buf),
            _ => None,
        };
        match theirs {
            Some(path) => Config::load(&path),
            None => self.config(),
        }
    }

    /// The tray preferences.
    pub fn prefs(&self) -> Prefs {
        lock(&self.prefs).clone()
    }

    /// Saves and applies the tray preferences.
    pub fn set_prefs(&self, prefs: Prefs) -> Result<(), String> {
        prefs.save(&prefs_path(&self.config_path))?;
        self.notifier.set_enabled(prefs.notifications);
        *lock(&self.prefs) = prefs;
        Ok(())
    }

    /// The tray status (locked briefly; never held across an await).
    pub fn status(&self) -> MutexGuard<'_, TrayStatus> {
        lock(&self.status)
    }

    /// The status as published, now and at every change (what the tray icon follows).
    pub fn watch_status(&self) -> watch::Receiver<StatusView> {
        self.view.subscribe()
    }

    /// Publishes the status as it is now; returns it.
    fn publish(&self) -> StatusView {
        let view = self.status().view();
        self.view.send_replace(view.clone());
        view
    }

    /// Starts Mailcall per the config (stopping what ran first): a tray-mode instance, or — a
    /// daemon already answers on the control socket — a front end to that one. On failure the
    /// tray shows the problem and the window can fix the settings and try again.
    pub async fn start_service<R: Runtime>(&self, app: &AppHandle<R>) -> Result<(), Problem> {
        self.restart(app, None).await
    }

    /// [`AppState::start_service`]; with `only_after` set, only while the front end of that
    /// generation is still what runs (its daemon went away).
    async fn restart<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        only_after: Option<u64>,
    ) -> Result<(), Problem> {
        let mut backend = self.backend.lock().await;
        if let Some(g) = only_after {
            let current = matches!(&*backend, Backend::Daemon { generation, .. } if *generation == g)
                || matches!(&*backend, Backend::Stopped);
            if !current {
                return Ok(());
            }
        }
        std::mem::replace(&mut *backend, Backend::Stopped)
            .stop()
            .await;
        self.status().stopped();
        let outcome = self.start(app).await.map(|started| {
            let serving = started.serving();
            *backend = started;
            serving
        });
        drop(backend);
        if outcome.is_ok() {
            self.learn_account_modes().await;
        }
        let (notices, result) = match outcome {
            Ok(serving) => (self.status().service_started(serving), Ok(())),
            Err(problem) => (self.status().service_failed(&problem), Err(problem)),
        };
        self.notifier.send(notices);
        refresh(app);
        result
    }

    async fn start<R: Runtime>(&self, app: &AppHandle<R>) -> Result<Backend, Problem> {
        let config = self.config().map_err(|e| config_problem(&e))?;
        self.migrate_pause(&config);
        let options = InstanceOptions {
            mode: Mode::Tray,
            fetch_at_start: config.fetch_at_start && !self.started_once.load(Ordering::SeqCst),
            config_path: self.config_path.clone(),
            config,
            store: self.store.clone(),
            control_socket: self.control_socket.clone(),
        };
        // A daemon that stops just as the tray finds it: try again (here, then).
        for _ in 0..3 {
            let events = EventSink::default();
            // Subscribed before the start: skipped accounts and netlink trouble reach the tray.
            let rx = events.subscribe();
            match Instance::start(options.clone(), events).await {
                Ok(instance) => {
                    self.started_once.store(true, Ordering::SeqCst);
                    let tasks = CancellationToken::new();
                    // Subscribed before it is read: no flip falls in between.
                    let paused = instance.triggers().paused_changes();
                    self.status().set_paused(*paused.borrow());
                    tauri::async_runtime::spawn(pump_events(app.clone(), rx, tasks.clone()));
                    tauri::async_runtime::spawn(mirror_pause(app.clone(), paused, tasks.clone()));
                    return Ok(Backend::Here {
                        instance: Box::new(instance),
                        tasks,
                    });
                }
                Err(StartError::AlreadyRunning(socket)) => {
                    if let Some(front_end) = self.front_end(app, socket, &options.config).await? {
                        return Ok(front_end);
                    }
                }
                Err(e) => return Err(e.problem()),
            }
        }
        Err(Problem::new(
            "another Mailcall keeps starting and stopping on the control socket; stop it, then start Mailcall again",
        ))
    }

    /// Becomes the front end of the Mailcall that owns `socket`; `None` when it stopped just
    /// now (so Mailcall can start here).
    async fn front_end<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        socket: PathBuf,
        config: &Config,
    ) -> Result<Option<Backend>, Problem> {
        let (link, events, status) = match DaemonLink::connect(socket.clone()).await {
            Ok(connected) => connected,
            Err(e) if e.is_not_running() => return Ok(None),
            Err(e) => {
                return Err(Problem::new(format!(
                    "a Mailcall already runs and owns {}, but this tray cannot use it: {e}. Stop it (or this tray) and start Mailcall again",
                    socket.display()
                )))
            }
        };
        tracing::info!("a Mailcall already runs ({}): using it", socket.display());
        self.started_once.store(true, Ordering::SeqCst);
        let differs = link.differs_from(config, &self.config_path);
        if let Some(d) = &differs {
            tracing::warn!(
                "the running Mailcall differs from {}: {d}",
                self.config_path.display()
            );
        }
        {
            let mut s = self.status();
            s.set_paused(status.paused);
            s.set_fetching(status.fetching);
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let tasks = CancellationToken::new();
        let follower = link.clone();
        let app = app.clone();
        let stop = tasks.clone();
        tauri::async_runtime::spawn(async move {
            follower
                .follow(events, stop, |news| on_daemon_news(&app, news, generation))
                .await;
        });
        Ok(Some(Backend::Daemon {
            link,
            differs,
            tasks,
            generation,
        }))
    }

    /// An older tray kept the pause switch in `gui.toml`: it becomes the core's remembered
    /// switch (unless that is set already), and the old key goes.
    fn migrate_pause(&self, config: &Config) {
        let path = prefs_path(&self.config_path);
        let Some(paused) = prefs::legacy_paused(&path) else {
            return;
        };
        let known = SavedState::path(config).is_ok_and(|p| p.exists());
        if !known {
            if let Err(e) = (SavedState { paused }).save(config) {
                tracing::warn!(
                    "cannot keep the old pause switch from {}: {e}",
                    path.display()
                );
                return;
            }
        }
        if let Err(e) = Prefs::load(&path).save(&path) {
            tracing::warn!("{e}");
        }
    }

    /// Stops Mailcall here (deliveries in flight finish or get a 4xx, then the listener and the
    /// control socket close), or lets go of the daemon it fronted (which keeps running).
    pub async fn stop_service(&self) {
        let backend = std::mem::replace(&mut *self.backend.lock().await, Backend::Stopped);
        backend.stop().await;
        self.status().stopped();
        self.publish();
    }

    /// Where the listener listens (here or the daemon's, as it says now), when Mailcall runs
    /// and has one (an ODMR-only setup binds none).
    pub async fn listen_addr(&self) -> Option<String> {
        match &*self.backend.lock().await {
            Backend::Stopped => None,
            Backend::Here { instance, .. } => {
                instance.service().listen_addr().map(|a| a.to_string())
            }
            Backend::Daemon { link, .. } => match link.status().await {
                Ok(status) => status.listen,
                Err(_) => Some(link.listen().to_string()).filter(|l| !l.is_empty()),
            },
        }
    }

    /// Where the listener listens, in a sentence for the Settings tab: the address, or that
    /// none runs because every account is ODMR (or that one should and cannot).
    pub async fn listener_note(&self) -> String {
        if matches!(&*self.backend.lock().await, Backend::Stopped) {
            return "Not listening: Mailcall is not running".into();
        }
        let modes = self.status().account_modes();
        let etrn = modes.iter().any(|m| m.needs_listener());
        match (self.listen_addr().await, etrn) {
            (Some(addr), _) => format!("Listening on {addr}"),
            (None, false) => {
                "No listener (ODMR accounts only): the ISP delivers on Mailcall's own connection"
                    .into()
            }
            (None, true) => {
                "Not listening, so ETRN accounts cannot be fetched: see the error above".into()
            }
        }
    }

    /// Learns how each account fetches (from the instance here, or the keyring for a daemon's),
    /// for the tray to name the mode with the account.
    async fn learn_account_modes(&self) {
        let here: Option<Vec<(String, FetchMode)>> = match &*self.backend.lock().await {
            Backend::Here { instance, .. } => Some(
                instance
                    .service()
                    .accounts()
                    .iter()
                    .map(|a| (a.name.clone(), a.mode))
                    .collect(),
            ),
            _ => None,
        };
        let modes = match here {
            Some(m) => m,
            None => {
                let Ok(config) = self.config() else { return };
                match instance::load_accounts(self.store.clone(), config.accounts).await {
                    Ok((accounts, _)) => {
                        accounts.iter().map(|a| (a.name.clone(), a.mode)).collect()
                    }
                    Err(_) => return,
                }
            }
        };
        self.status().set_account_modes(modes);
    }

    /// The queue of mail for LAN servers: read from the spool (the instance's here; the daemon's
    /// data directory's when a daemon hands it on, as `mailcall-cli queue` reads it).
    pub async fn queue(&self) -> Result<QueueView, Problem> {
        let (spool, note) = match &*self.backend.lock().await {
            Backend::Here { instance, .. } => {
                (instance.queue().map(|q| q.spool().clone()), None)
            }
            Backend::Daemon { link, .. } => (
                None,
                Some(format!(
                    "The running Mailcall daemon ({}) hands this mail on; Retry, Bounce and Delete go to it.",
                    link.socket().display()
                )),
            ),
            Backend::Stopped => (None, None),
        };
        let dir = match &spool {
            Some(_) => None,
            None => {
                let config = self.served_config().await.map_err(|e| config_problem(&e))?;
                Some(queue::spool_dir(
                    &config.data_path().map_err(|e| config_problem(&e))?,
                ))
            }
        };
        let read = tokio::task::spawn_blocking(move || match (spool, dir) {
            (Some(spool), _) => queue::read_spool(&spool),
            (None, Some(dir)) => queue::read(&dir),
            (None, None) => Ok(QueueView::default()),
        })
        .await
        .map_err(|e| Problem::new(format!("reading the queue failed: {e}")))?;
        let mut view = read.map_err(Problem::new)?;
        view.note = note;
        Ok(view)
    }

    /// Retries, bounces or deletes queued messages where the mail is handed on: by the
    /// instance here (started first if it is not running), or by the daemon this tray fronts.
    pub async fn queue_action<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        action: QueueAction,
        selection: Selection,
    ) -> Result<ActionResult, Problem> {
        if matches!(&*self.backend.lock().await, Backend::Stopped) {
            self.start_service(app).await?;
        }
        let result = match &*self.backend.lock().await {
            Backend::Here { instance, .. } => {
                let Some(queue) = instance.queue() else {
                    return Err(Problem::new(
                        "Mailcall's queue cannot be used (see the error on starting): check the data directory",
                    ));
                };
                match action {
                    QueueAction::Retry => queue.retry(selection).await,
                    QueueAction::Bounce => queue.bounce(selection).await,
                    QueueAction::Delete => queue.delete(selection).await,
                }
                .map_err(Problem::new)
            }
            Backend::Daemon { link, .. } => {
                link.queue(action.verb(), &selection).await.map_err(|e| {
                    Problem::new(format!("the running Mailcall daemon did not do it: {e}"))
                })
            }
            Backend::Stopped => Err(Problem::new("Mailcall is not running; check the settings")),
        };
        let _ = app.emit(QUEUE_EVENT, ());
        result
    }

    /// Who runs Mailcall for this tray.
    pub async fn serving(&self) -> Serving {
        self.backend.lock().await.serving()
    }

    /// Reads the accounts and the routes again where Mailcall runs (after an edit in the
    /// window: RELOAD for a daemon); accounts that cannot be read come back as error events.
    pub async fn reload_accounts(&self) -> Result<(), Problem> {
        let result = self.reload().await;
        self.learn_account_modes().await;
        result
    }

    /// After an account edit: a listener here that no account needs any more (every account
    /// is ODMR now; it was bound while there were none) is closed by starting Mailcall again
    /// without it. A daemon this tray fronts keeps its own.
    pub async fn drop_unneeded_listener<R: Runtime>(
        &self,
        app: &AppHandle<R>,
    ) -> Result<(), Problem> {
        let unneeded = match &*self.backend.lock().await {
            Backend::Here { instance, .. } => {
                instance.service().listen_addr().is_some()
                    && !service::needs_listener(&instance.service().accounts())
            }
            _ => false,
        };
        if unneeded {
            tracing::info!(
                "no account needs the listener any more: starting Mailcall again without it"
            );
            self.start_service(app).await?;
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), Problem> {
        match &*self.backend.lock().await {
            Backend::Stopped => Ok(()),
            Backend::Here { instance, .. } => {
                instance.reload().await.map(drop).map_err(|e| e.problem())
            }
            Backend::Daemon { link, .. } => link.reload().await.map(drop).map_err(|e| {
                Problem::new(format!(
                    "saved, but the running Mailcall daemon did not take the change: {e}"
                ))
            }),
        }
    }

    /// Whether automatic fetching is paused: where Mailcall runs (the control socket's
    /// PAUSE/RESUME change it too), else the remembered switch for the next start.
    pub async fn is_paused(&self) -> bool {
        match &*self.backend.lock().await {
            Backend::Here { instance, .. } => instance.triggers().is_paused(),
            Backend::Daemon { link, .. } => match link.status().await {
                Ok(s) => s.paused,
                Err(_) => self.status().view().paused,
            },
            Backend::Stopped => self
                .config()
                .ok()
                .and_then(|c| SavedState::load(&c).ok())
                .is_some_and(|s| s.paused),
        }
    }

    /// Pauses or resumes automatic fetching, now and at the next start: the one remembered
    /// switch, wherever Mailcall runs.
    pub async fn set_paused<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        paused: bool,
    ) -> Result<(), Problem> {
        let now = match &*self.backend.lock().await {
            // The instance remembers it (state.toml) itself.
            Backend::Here { instance, .. } => {
                instance.set_paused(paused);
                paused
            }
            Backend::Daemon { link, .. } => link.set_paused(paused).await.map_err(|e| {
                Problem::new(format!(
                    "the running Mailcall daemon did not take Pause: {e}"
                ))
            })?,
            Backend::Stopped => {
                let config = self.config().map_err(|e| config_problem(&e))?;
                (SavedState { paused })
                    .save(&config)
                    .map_err(|e| config_problem(&e))?;
                paused
            }
        };
        self.status().set_paused(now);
        refresh(app);
        Ok(())
    }

    /// Starts a fetch of every account without waiting for it (tray, window, `--fetch`), here
    /// or by the daemon; the accounts' connect/disconnect commands run around it. Progress
    /// comes as events.
    pub async fn fetch_now<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        trigger: Trigger,
    ) -> Result<(), Problem> {
        let config = self.config().map_err(|e| config_problem(&e))?;
        if config.accounts.is_empty() {
            return Err(Problem::new(
                "there are no accounts to fetch for: add your ISP account under Settings → Accounts",
            ));
        }
        if matches!(&*self.backend.lock().await, Backend::Stopped) {
            // The start failed before (settings since fixed, keyring unlocked later).
            self.start_service(app).await?;
        }
        match &*self.backend.lock().await {
            Backend::Here { instance, .. } => {
                let triggers = instance.triggers().clone();
                tauri::async_runtime::spawn(async move {
                    // The record's errors come as events; a stopped service is a quit.
                    let _ = triggers.fetch_now(FetchRequest::all(trigger)).await;
                });
                Ok(())
            }
            Backend::Daemon { link, .. } => {
                let link = link.clone();
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    // Its progress and result come as its events; only a failed request is ours.
                    if let Err(e) = link.fetch(trigger).await {
                        let problem =
                            Problem::new(format!("the running Mailcall daemon did not fetch: {e}"));
                        show_problem(&app, &problem);
                    }
                });
                Ok(())
            }
            Backend::Stopped => Err(Problem::new("Mailcall is not running; check the settings")),
        }
    }
}

/// Applies one event (of the instance here, or of the daemon) to the tray status,
/// notifications and the window.
fn apply_event<R: Runtime>(app: &AppHandle<R>, event: &Event) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let notices = state.status().apply(event);
    state.notifier.send(notices);
    refresh(app);
    if matches!(
        event,
        Event::SessionFinished(_) | Event::MessageStored(_) | Event::Recorded(_)
    ) {
        let _ = app.emit(HISTORY_EVENT, ());
    }
    if matches!(event, Event::HandOver(_) | Event::QueueChanged { .. }) {
        let _ = app.emit(QUEUE_EVENT, ());
    }
}

/// Feeds the instance's events to the tray status, notifications and the window.
async fn pump_events<R: Runtime>(
    app: AppHandle<R>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    while let Some(event) = mailcall_core::event::next_until(&mut rx, &stop).await {
        apply_event(&app, &event);
    }
}

/// What the daemon this tray fronts says: its events and state as if they were local; when
/// it is gone, Mailcall starts here.
fn on_daemon_news<R: Runtime>(app: &AppHandle<R>, news: News, generation: u64) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    match news {
        News::Event(event) => apply_event(app, &event),
        News::Status(status) => {
            let changed = state.status().set_paused(status.paused);
            if changed {
                refresh(app);
            }
        }
        News::Gone(why) => {
            tracing::warn!("the running Mailcall went away ({why}): starting Mailcall here");
            let notices = state.status().daemon_lost();
            state.notifier.send(notices);
            refresh(app);
            tauri::async_runtime::spawn(take_over(app.clone(), generation));
        }
    }
}

/// Starts Mailcall here after the daemon of `generation` went away; retries for a while, as
/// the daemon may still hold the listener's port while it finishes deliveries.
async fn take_over<R: Runtime>(app: AppHandle<R>, generation: u64) {
    let deadline = tokio::time::Instant::now() + TAKEOVER_LIMIT;
    loop {
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        match state.restart(&app, Some(generation)).await {
            Ok(()) => return,
            Err(p) if tokio::time::Instant::now() < deadline => {
                tracing::info!("Mailcall cannot start here yet ({p}); trying again");
            }
            // The tray shows the last problem; the window's Save or Fetch now tries again.
            Err(_) => return,
        }
        tokio::time::sleep(TAKEOVER_EVERY).await;
    }
}

/// Shows a problem that is not an event (a failed request, a start that failed) on the tray,
/// in the window and as a notification.
pub fn show_problem<R: Runtime>(app: &AppHandle<R>, problem: &Problem) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let notices = state.status().service_failed(problem);
    state.notifier.send(notices);
    refresh(app);
}

/// Starts a fetch for `trigger` (the tray menu, a forwarded `--fetch`) without waiting for it;
/// a failure to start it shows like any problem.
pub fn fetch_in_background<R: Runtime>(app: &AppHandle<R>, trigger: Trigger) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        if let Err(e) = state.fetch_now(&app, trigger).await {
            show_problem(&app, &e);
        }
    });
}

/// Publishes the current status to the tray (its watch) and the window.
pub fn refresh<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let view = state.publish();
    let _ = app.emit(STATUS_EVENT, view);
}

/// Keeps the status's pause switch (the tray's check mark) in step with the instance's, whoever
/// flips it (the menu, the window, `PAUSE`/`RESUME` on the control socket).
async fn mirror_pause<R: Runtime>(
    app: AppHandle<R>,
    mut paused: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = paused.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *paused.borrow_and_update();
                let Some(state) = app.try_state::<AppState>() else {
                    return;
                };
                if state.status().set_paused(now) {
                    refresh(&app);
                }
            }
        }
    }
}
