//! The app's state: where config and accounts live; the Mailcall this tray uses — the core's
//! handle on a tray-mode instance started here or, when one already runs with the same control
//! socket, on that daemon — and the tray status its updates feed (notifications, the window).
//! The status is published on a watch that the tray icon follows: this module never calls into
//! the tray.

use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailcall_core::account::FetchMode;
use mailcall_core::config::{Config, ConfigError};
use mailcall_core::event::Event;
use mailcall_core::hint::{Problem, Setting};
use mailcall_core::history::ManualTrigger;
use mailcall_core::instance::{self, InstanceOptions, Mode, SavedState};
use mailcall_core::keystore::AccountStore;
use mailcall_core::mailcall::{Mailcall, Update, Updates};
use mailcall_core::spool::actions::{ActionResult, Listing, Selection};
use mailcall_core::spool::{Action, SPOOL_DIR};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::notify::Notifier;
use crate::prefs::{self, prefs_path, Prefs};
use crate::queue::QueueView;
use crate::status::{ListenerLine, Serving, StatusView, TrayStatus};

/// The event the window gets whenever the status changes (payload: [`StatusView`]).
pub const STATUS_EVENT: &str = crate::contract::WindowEvent::Status.name();
/// The event the window gets when a fetch session has been recorded in the history.
pub const HISTORY_EVENT: &str = crate::contract::WindowEvent::History.name();
/// The event the window gets when Mailcall's queue for LAN servers changed.
pub const QUEUE_EVENT: &str = crate::contract::WindowEvent::Queue.name();
/// The event that puts a message in the window's banner (payload: the text).
pub const NOTICE_EVENT: &str = crate::contract::WindowEvent::Notice.name();

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
    /// The Mailcall this tray uses; `None` before the first start, or when it failed.
    running: tokio::sync::Mutex<Option<Running>>,
    /// Set once Mailcall has started (here or as a front end): later starts (new settings, a
    /// daemon that went away) are not "Mailcall starts", so they do not fetch at start.
    started_once: AtomicBool,
    /// Numbers each start, so news of an old one cannot act on a new one.
    generation: AtomicU64,
}

/// Saved settings did not take effect.
#[derive(Debug)]
pub enum NotApplied {
    /// Mailcall cannot start here with them.
    CannotRun(Problem),
    /// The running Mailcall did not read them again.
    NotRead(Problem),
}

/// The Mailcall this tray uses (here, or the daemon it fronts), and what follows it.
struct Running {
    mailcall: Mailcall,
    /// How it differs from this tray's config, if it does (a daemon may run with another file).
    differs: Option<String>,
    /// Stops following its updates.
    follower: CancellationToken,
    generation: u64,
}

impl Running {
    /// Its control socket, in words.
    fn control(&self) -> Option<String> {
        self.mailcall
            .control_path()
            .map(|p| p.display().to_string())
    }

    /// The control socket of the daemon this tray fronts; `None` when Mailcall runs here.
    fn daemon_socket(&self) -> Option<String> {
        self.control().filter(|_| !self.mailcall.is_local())
    }

    /// Who serves, in the window's words.
    fn serving(&self) -> Serving {
        match self.daemon_socket() {
            Some(socket) => Serving::Daemon {
                socket,
                differs: self.differs.clone(),
            },
            None => Serving::Here {
                control: self.control(),
            },
        }
    }

    /// Lets it go: one here finishes its deliveries (or 4xx them) and closes its listener and
    /// control socket; a daemon keeps running.
    async fn stop(self) {
        self.mailcall.stop().await;
        self.follower.cancel();
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
            running: tokio::sync::Mutex::new(None),
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
        let theirs = self.running.lock().await.as_ref().and_then(|r| {
            r.mailcall
                .other_config(&self.config_path)
                .map(Path::to_path_buf)
        });
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

    /// [`AppState::start_service`]; with `only_after` set, only while what runs is still the
    /// start of that generation (its daemon went away), or nothing.
    async fn restart<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        only_after: Option<u64>,
    ) -> Result<(), Problem> {
        let mut running = self.running.lock().await;
        if let Some(g) = only_after {
            if running.as_ref().is_some_and(|r| r.generation != g) {
                return Ok(());
            }
        }
        // A take-over carries on with the daemon's pause switch as this tray last heard it.
        let carried_pause = only_after.map(|_| self.status().view().paused);
        if let Some(old) = running.take() {
            old.stop().await;
        }
        self.status().stopped();
        let outcome = self.start(app, carried_pause).await.map(|started| {
            let serving = started.serving();
            *running = Some(started);
            serving
        });
        drop(running);
        if outcome.is_ok() {
            self.learn_account_modes().await;
        }
        let (notices, result) = match outcome {
            Ok(serving) => {
                let notices = self.status().service_started(serving);
                self.update_listener().await;
                (notices, Ok(()))
            }
            Err(problem) => {
                let mut status = self.status();
                status.set_listener(ListenerLine {
                    text: "Not listening: Mailcall could not start (see the error above)".into(),
                    problem: true,
                });
                // A listener that cannot bind says so itself, at Listen on.
                (status.service_failed(&problem), Err(problem))
            }
        };
        self.notifier.send(notices);
        refresh(app);
        result
    }

    /// Starts Mailcall when the app starts, unless there is no account yet: a first run binds
    /// no listener and records no fetch until the first account is saved (which starts it).
    pub async fn start_at_launch<R: Runtime>(&self, app: &AppHandle<R>) -> Result<(), Problem> {
        let none = self.config().is_ok_and(|c| c.accounts.is_empty());
        if none {
            // Adding the first account starts Mailcall, which is not "Mailcall starts": the
            // first fetch is the user's (the Accounts tab leads there).
            self.started_once.store(true, Ordering::SeqCst);
            {
                let mut status = self.status();
                status.set_no_accounts(true);
                status.set_listener(ListenerLine {
                    text: "Not listening yet: Mailcall listens once you add an ETRN account (Accounts tab)".into(),
                    problem: false,
                });
            }
            refresh(app);
            return Ok(());
        }
        self.start_service(app).await
    }

    /// An account was saved or removed: a first run that waited for one starts Mailcall now;
    /// the status says whether any account is left.
    pub async fn accounts_saved<R: Runtime>(&self, app: &AppHandle<R>) -> Result<(), Problem> {
        let none = self.config().is_ok_and(|c| c.accounts.is_empty());
        let waited = self.status().no_accounts();
        let idle = self.running.lock().await.is_none();
        if waited && !none && idle {
            self.status().set_no_accounts(false);
            return self.start_service(app).await;
        }
        if waited != none && !idle {
            self.status().set_no_accounts(none);
            refresh(app);
        }
        Ok(())
    }

    /// Learns where the listener listens now (or why it does not) for the window's line under
    /// *Listen on*; the window hears it with the status.
    pub async fn update_listener(&self) {
        let line = self.listener_line().await;
        self.status().set_listener(line);
    }

    /// Starts Mailcall here, or joins the one that runs. `carried_pause`: the pause switch of a
    /// daemon that just went away, which the Mailcall started here keeps.
    async fn start<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        carried_pause: Option<bool>,
    ) -> Result<Running, Problem> {
        let config = self.config().map_err(|e| config_problem(&e))?;
        self.migrate_pause(&config);
        let options = InstanceOptions {
            mode: Mode::Tray,
            fetch_at_start: config.fetch_at_start && !self.started_once.load(Ordering::SeqCst),
            config_path: self.config_path.clone(),
            config: config.clone(),
            store: self.store.clone(),
            control_socket: self.control_socket.clone(),
        };
        let (mailcall, updates) = Mailcall::start(options).await.map_err(|e| e.problem())?;
        self.started_once.store(true, Ordering::SeqCst);
        let differs = mailcall.differs_from(&config, &self.config_path);
        if let Some(d) = &differs {
            tracing::warn!(
                "the running Mailcall differs from {}: {d}",
                self.config_path.display()
            );
        }
        // The daemon saves its switch as it flips, but its control socket closes (which starts
        // this take-over, and this start reads the saved switch) before its stop awaits that
        // save: the switch it had is set here again, so the pause survives the take-over.
        if let Some(paused) = carried_pause {
            if mailcall.status().await.is_ok_and(|s| s.paused != paused) {
                if let Err(e) = mailcall.set_paused(paused).await {
                    tracing::warn!("cannot keep the stopped daemon's pause switch: {e}");
                }
            }
        }
        // After its updates were subscribed to: no flip of the switch falls in between.
        if let Ok(now) = mailcall.status().await {
            let mut s = self.status();
            s.set_paused(now.paused);
            s.set_fetching(now.fetching);
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let follower = CancellationToken::new();
        tauri::async_runtime::spawn(follow(app.clone(), updates, follower.clone(), generation));
        Ok(Running {
            mailcall,
            differs,
            follower,
            generation,
        })
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
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            running.stop().await;
        }
        self.status().stopped();
        self.update_listener().await;
        self.publish();
    }

    /// Where the listener listens (here or the daemon's, as it says now), when Mailcall runs
    /// and has one (an ODMR-only setup binds none).
    pub async fn listen_addr(&self) -> Option<String> {
        let running = self.running.lock().await;
        let addr = running.as_ref()?.mailcall.listen_addr().await;
        addr.map(|a| a.to_string())
    }

    /// Where the listener listens, in a sentence for the Settings tab: the address, or that
    /// none runs because every account is ODMR (or that one should and cannot).
    pub async fn listener_note(&self) -> String {
        self.listener_line().await.text
    }

    /// [`AppState::listener_note`], and whether it is a problem to fix at *Listen on*.
    async fn listener_line(&self) -> ListenerLine {
        let line = |text: &str, problem| ListenerLine {
            text: text.into(),
            problem,
        };
        if self.running.lock().await.is_none() {
            let status = self.status();
            if status.listener().problem || status.no_accounts() {
                // Why it could not start stays (a failed bind says what holds the port), as
                // does a first run's "not yet".
                return status.listener().clone();
            }
            drop(status);
            return line("Not listening: Mailcall is not running", false);
        }
        let modes = self.status().account_modes();
        let etrn = modes.iter().any(|m| m.needs_listener());
        match (self.listen_addr().await, etrn) {
            (Some(addr), _) => line(&format!("Listening on {addr}"), false),
            (None, false) => line(
                "No listener (ODMR accounts only): the ISP delivers on Mailcall's own connection",
                false,
            ),
            (None, true) => line(
                "Not listening, so ETRN accounts cannot be fetched: see the error above",
                true,
            ),
        }
    }

    /// Learns how each account fetches (as the Mailcall here runs them, or from the keyring
    /// for a daemon's), for the tray to name the mode with the account.
    async fn learn_account_modes(&self) {
        let running = self
            .running
            .lock()
            .await
            .as_ref()
            .and_then(|r| r.mailcall.accounts());
        let modes: Vec<(String, FetchMode)> = match running {
            Some(accounts) => accounts.iter().map(|a| (a.name.clone(), a.mode)).collect(),
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

    /// The queue of mail for LAN servers, read from the spool of whoever hands it on (the
    /// instance here, or the daemon's data directory, as `mailcall-cli queue` reads it).
    pub async fn queue(&self) -> Result<QueueView, Problem> {
        let ours = self.config().map_err(|e| config_problem(&e))?;
        let (listing, note) = match &*self.running.lock().await {
            Some(r) => {
                let note = r.daemon_socket().map(|socket| format!(
                    "The running Mailcall daemon ({socket}) hands this mail on; Retry, Bounce and Delete go to it."
                ));
                let listing = r
                    .mailcall
                    .queue_list(&ours)
                    .await
                    .map_err(|e| e.problem())?;
                (listing, note)
            }
            None => {
                let dir = ours
                    .data_path()
                    .map_err(|e| config_problem(&e))?
                    .join(SPOOL_DIR);
                let listing = tokio::task::spawn_blocking(move || Listing::read(&dir))
                    .await
                    .map_err(|e| Problem::new(format!("reading the queue failed: {e}")))?
                    .map_err(|e| e.problem())?;
                (listing, None)
            }
        };
        let mut view = QueueView::of(&listing);
        view.note = note;
        Ok(view)
    }

    /// Retries, bounces or deletes queued messages where the mail is handed on: by the
    /// instance here (started first if it is not running), or by the daemon this tray fronts.
    pub async fn queue_action<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        action: Action,
        selection: Selection,
    ) -> Result<ActionResult, Problem> {
        if self.running.lock().await.is_none() {
            self.start_service(app).await?;
        }
        let result = match &*self.running.lock().await {
            Some(r) => r
                .mailcall
                .queue(action, selection)
                .await
                .map_err(|e| e.problem()),
            None => Err(Problem::new("Mailcall is not running; check the settings")),
        };
        let _ = app.emit(QUEUE_EVENT, ());
        result
    }

    /// Settings that apply when Mailcall starts were saved (`changed`: the config file
    /// changed): Mailcall here starts again with them, and one that was not running starts,
    /// whatever changed (they may be what kept it from starting). A daemon this tray fronts
    /// keeps running and uses them once it restarts: the note returned says so.
    pub async fn settings_saved<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        changed: bool,
    ) -> Result<Option<String>, Problem> {
        if let Some(socket) = self.fronted_daemon().await {
            return Ok(changed.then(|| {
                format!("The running Mailcall daemon ({socket}) uses them once it restarts.")
            }));
        }
        if changed || self.running.lock().await.is_none() {
            self.start_service(app).await?;
        }
        Ok(None)
    }

    /// The Delivery tab changed the config file (`delays`: the retry delays with it). Routes
    /// and unknown recipients apply at once where Mailcall runs; new retry delays start
    /// Mailcall here again, and a daemon this tray fronts uses them once it restarts: the note
    /// returned says so.
    pub async fn delivery_saved<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        delays: bool,
    ) -> Result<Option<String>, NotApplied> {
        if let Some(socket) = self.fronted_daemon().await {
            self.reload_accounts().await.map_err(NotApplied::NotRead)?;
            return Ok(delays.then(|| {
                format!(
                    "The running Mailcall daemon ({socket}) uses the new retry delays once it restarts."
                )
            }));
        }
        if delays {
            self.start_service(app)
                .await
                .map_err(NotApplied::CannotRun)?;
        } else {
            self.reload_accounts().await.map_err(NotApplied::NotRead)?;
        }
        Ok(None)
    }

    /// The control socket of the daemon this tray fronts, when it fronts one.
    async fn fronted_daemon(&self) -> Option<String> {
        self.running.lock().await.as_ref()?.daemon_socket()
    }

    /// Who runs Mailcall for this tray.
    pub async fn serving(&self) -> Serving {
        self.running
            .lock()
            .await
            .as_ref()
            .map_or(Serving::NotRunning, Running::serving)
    }

    /// Reads the accounts and the routes again where Mailcall runs (after an edit in the
    /// window: RELOAD for a daemon); accounts that cannot be read come back as error events.
    pub async fn reload_accounts(&self) -> Result<(), Problem> {
        let result = match &*self.running.lock().await {
            Some(r) => r.mailcall.reload().await.map(drop).map_err(|e| e.problem()),
            None => Ok(()),
        };
        self.learn_account_modes().await;
        self.update_listener().await;
        result
    }

    /// After an account edit: a listener here that no account needs any more (every account
    /// is ODMR now; it was bound while there were none) is closed by starting Mailcall again
    /// without it. A daemon this tray fronts keeps its own.
    pub async fn drop_unneeded_listener<R: Runtime>(
        &self,
        app: &AppHandle<R>,
    ) -> Result<(), Problem> {
        let unneeded = self
            .running
            .lock()
            .await
            .as_ref()
            .is_some_and(|r| r.mailcall.has_unneeded_listener());
        if unneeded {
            tracing::info!(
                "no account needs the listener any more: starting Mailcall again without it"
            );
            self.start_service(app).await?;
        }
        Ok(())
    }

    /// Whether automatic fetching is paused: where Mailcall runs (the control socket's
    /// PAUSE/RESUME change it too), else the remembered switch for the next start.
    pub async fn is_paused(&self) -> bool {
        match &*self.running.lock().await {
            Some(r) => match r.mailcall.status().await {
                Ok(s) => s.paused,
                Err(_) => self.status().view().paused,
            },
            None => self
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
        let now = match &*self.running.lock().await {
            // Whoever runs remembers it (state.toml) itself.
            Some(r) => r
                .mailcall
                .set_paused(paused)
                .await
                .map_err(|e| e.problem())?,
            None => {
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
        trigger: ManualTrigger,
    ) -> Result<(), Problem> {
        let config = self.config().map_err(|e| config_problem(&e))?;
        if config.accounts.is_empty() {
            return Err(Problem::new(
                "there are no accounts to fetch for: add your ISP account under Settings → Accounts",
            ));
        }
        if self.running.lock().await.is_none() {
            // The start failed before (settings since fixed, keyring unlocked later).
            self.start_service(app).await?;
        }
        match &*self.running.lock().await {
            Some(r) => {
                let fetch = r.mailcall.fetch(trigger, Vec::new());
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    // Its progress and the record's errors come as events; a Mailcall here that
                    // stopped is a quit. Only a request that failed is news of its own.
                    if let Err(e) = fetch.await {
                        if !e.is_stopped() {
                            show_problem(&app, &e.problem());
                        }
                    }
                });
                Ok(())
            }
            None => Err(Problem::new("Mailcall is not running; check the settings")),
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

/// Follows what the Mailcall this tray uses says — its events and its pause switch, as if they
/// happened here — until `stop`; when it is a daemon that went away, Mailcall starts here.
async fn follow<R: Runtime>(
    app: AppHandle<R>,
    mut updates: Updates,
    stop: CancellationToken,
    generation: u64,
) {
    loop {
        let update = tokio::select! {
            _ = stop.cancelled() => return,
            update = updates.next() => update,
        };
        let (Some(update), Some(state)) = (update, app.try_state::<AppState>()) else {
            return;
        };
        match update {
            Update::Event(event) => apply_event(&app, &event),
            Update::Paused(paused) => {
                if state.status().set_paused(paused) {
                    refresh(&app);
                }
            }
            Update::Gone(why) => return daemon_gone(&app, &state, &why, generation),
        }
    }
}

/// The daemon of `generation` this tray fronted went away: the tray says so, and Mailcall
/// starts here. (Not async: it only spawns the take-over.)
fn daemon_gone<R: Runtime>(app: &AppHandle<R>, state: &AppState, why: &str, generation: u64) {
    tracing::warn!("the running Mailcall went away ({why}): starting Mailcall here");
    let notices = state.status().daemon_lost();
    state.notifier.send(notices);
    refresh(app);
    tauri::async_runtime::spawn(take_over(app.clone(), generation));
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

/// Sends one notification (whatever the switch, an error is an error) and puts it in the
/// window's banner, for what the tray did at the user's request and could not do.
pub fn show_notice<R: Runtime>(app: &AppHandle<R>, notice: crate::status::Notice) {
    let _ = app.emit(NOTICE_EVENT, format!("{}: {}", notice.summary, notice.body));
    if let Some(state) = app.try_state::<AppState>() {
        state.notifier.send(vec![notice]);
    }
}

/// Starts a fetch for `trigger` (the tray menu, a forwarded `--fetch`) without waiting for it;
/// a failure to start it shows like any problem.
pub fn fetch_in_background<R: Runtime>(app: &AppHandle<R>, trigger: ManualTrigger) {
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
