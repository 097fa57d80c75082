//! The app's state: where config and accounts live, the running core service with its
//! triggers (link-up, interval, start) and control socket, and the tray status fed by the
//! service's events (which also drive notifications and the window).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mailcall_core::account::Account;
use mailcall_core::config::{Config, ConfigError};
use mailcall_core::control::{ControlError, ControlServer};
use mailcall_core::event::{Event, EventSink};
use mailcall_core::keystore::{AccountStore, KeystoreError};
use mailcall_core::service::{self, FetchRequest, ServiceHandle, ServiceOptions};
use mailcall_core::trigger::{self, TriggerHandle, TriggerOptions};
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio_util::sync::CancellationToken;

use crate::notify::Notifier;
use crate::prefs::{prefs_path, Prefs};
use crate::status::TrayStatus;

/// The event the window gets whenever the status changes (payload: [`crate::status::StatusView`]).
pub const STATUS_EVENT: &str = "mailcall://status";
/// The event the window gets when a fetch session has been recorded in the history.
pub const HISTORY_EVENT: &str = "mailcall://history";

/// Everything the commands, the tray and the event pump share.
pub struct AppState {
    /// The config file (same as the CLI's: `MAILCALL_CONFIG` or the platform config dir).
    pub config_path: PathBuf,
    /// Where accounts are kept: the OS keyring (a memory store in unit tests).
    pub store: Arc<dyn AccountStore>,
    /// The notification sender.
    pub notifier: Notifier,
    /// The control socket to serve (`mailcall-cli fetch --via-running`, `mailcall --fetch`);
    /// `None` serves none.
    control_socket: Option<PathBuf>,
    prefs: Mutex<Prefs>,
    status: Mutex<TrayStatus>,
    service: tokio::sync::Mutex<Option<Running>>,
    /// Set once a service has run: a restart for new settings is not "Mailcall starts", so it
    /// does not fetch at start again.
    started_once: AtomicBool,
    /// What became of the control socket, for the window.
    control_note: Mutex<String>,
}

struct Running {
    handle: ServiceHandle,
    triggers: TriggerHandle,
    /// Stops the triggers, the control socket and the event pump.
    stop: CancellationToken,
    control: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    /// State over `config_path` and `store`; the preferences are read from beside the config.
    pub fn new(config_path: PathBuf, store: Arc<dyn AccountStore>) -> Self {
        let prefs = Prefs::load(&prefs_path(&config_path));
        AppState {
            config_path,
            store,
            notifier: Notifier::start(prefs.notifications),
            control_socket: None,
            prefs: Mutex::new(prefs),
            status: Mutex::new(TrayStatus::default()),
            service: tokio::sync::Mutex::new(None),
            started_once: AtomicBool::new(false),
            control_note: Mutex::new("Mailcall is not running yet".into()),
        }
    }

    /// Serves the control socket at `path` whenever the service runs.
    pub fn with_control_socket(mut self, path: PathBuf) -> Self {
        self.control_socket = Some(path);
        self
    }

    /// What became of the control socket (served where, or why not), for the window.
    pub fn control_note(&self) -> String {
        lock(&self.control_note).clone()
    }

    /// The config file as it is now (defaults when it does not exist).
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config_path)
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

    /// Reads every configured account from the store, off the async threads (D-Bus blocks).
    pub async fn load_accounts(&self, names: Vec<String>) -> Result<Vec<Account>, KeystoreError> {
        let store = self.store.clone();
        tauri::async_runtime::spawn_blocking(move || names.iter().map(|n| store.load(n)).collect())
            .await
            .map_err(|e| KeystoreError::Unavailable(format!("the keyring task failed: {e}")))?
    }

    /// Starts the core service per the config (stopping a running one first). On failure the
    /// tray shows the error and the window can fix the settings and try again.
    pub async fn start_service<R: Runtime>(&self, app: &AppHandle<R>) -> Result<(), String> {
        // A restart keeps the pause as it is now (PAUSE on the control socket is not saved).
        let paused = self.is_paused().await;
        self.stop_service().await;
        let result = self.try_start(app, paused).await;
        let notices = match &result {
            Ok(()) => {
                self.status().service_started();
                Vec::new()
            }
            Err(e) => self.status().service_failed(e),
        };
        self.notifier.send(notices);
        refresh(app);
        result
    }

    async fn try_start<R: Runtime>(&self, app: &AppHandle<R>, paused: bool) -> Result<(), String> {
        let config = self.config().map_err(|e| e.to_string())?;
        let options = ServiceOptions::from_config(&config).map_err(|e| e.to_string())?;
        let mut trigger_options =
            TriggerOptions::from_config(&config).map_err(|e| e.to_string())?;
        trigger_options.paused = paused;
        if self.started_once.load(Ordering::SeqCst) {
            trigger_options.fetch_at_start = false;
        }
        let accounts = self
            .load_accounts(config.accounts.clone())
            .await
            .map_err(|e| e.to_string())?;
        let events = EventSink::default();
        let rx = events.subscribe();
        let handle = service::start(
            options,
            accounts.clone(),
            events.clone(),
            CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        // Subscribed before the triggers start: their first errors (netlink) reach the tray.
        tauri::async_runtime::spawn(pump_events(app.clone(), rx, stop.clone()));
        let triggers = trigger::start(
            handle.clone(),
            accounts,
            trigger_options,
            events.clone(),
            stop.clone(),
        );
        let control = self.serve_control(&triggers, &stop);
        tauri::async_runtime::spawn(mirror_pause(
            app.clone(),
            triggers.paused_changes(),
            stop.clone(),
        ));
        self.started_once.store(true, Ordering::SeqCst);
        *self.service.lock().await = Some(Running {
            handle,
            triggers,
            stop,
            control,
        });
        Ok(())
    }

    /// Serves the control socket; when another Mailcall owns it, says so and goes on without.
    fn serve_control(
        &self,
        triggers: &TriggerHandle,
        stop: &CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let path = self.control_socket.as_ref()?;
        match ControlServer::bind(path) {
            Ok(server) => {
                *lock(&self.control_note) = format!(
                    "Scripts reach this Mailcall through {} (`mailcall-cli fetch --via-running`, `mailcall --fetch`)",
                    path.display()
                );
                Some(tauri::async_runtime::spawn(
                    server.serve(triggers.clone(), stop.clone()),
                ))
            }
            Err(e) => {
                let note = control_unavailable(&e);
                tracing::warn!("{note}");
                *lock(&self.control_note) = note.clone();
                let notices = self.status().control_unavailable(&note);
                self.notifier.send(notices);
                None
            }
        }
    }

    /// Stops the service: deliveries in flight finish or get a 4xx, then the listener closes;
    /// the triggers and the control socket stop with it.
    pub async fn stop_service(&self) {
        let running = self.service.lock().await.take();
        if let Some(r) = running {
            // Triggers first (no new automatic fetch), then the service (a running session ends
            // and its waiters, such as a control-socket FETCH, get their answer).
            r.stop.cancel();
            r.handle.stop().await;
            r.triggers.stopped().await;
            if let Some(control) = r.control {
                // The old server removes its socket file on the way out: wait, so that it does
                // not remove the one a restart binds next.
                let _ = control.await;
            }
        }
    }

    /// Where the listener listens, when the service runs.
    pub async fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.service
            .lock()
            .await
            .as_ref()
            .map(|r| r.handle.listen_addr())
    }

    /// The running triggers.
    pub async fn triggers(&self) -> Option<TriggerHandle> {
        self.service
            .lock()
            .await
            .as_ref()
            .map(|r| r.triggers.clone())
    }

    /// Tells the running service and triggers about changed accounts.
    pub async fn reload_accounts(&self) -> Result<(), String> {
        let config = self.config().map_err(|e| e.to_string())?;
        let accounts = self
            .load_accounts(config.accounts)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(r) = self.service.lock().await.as_ref() {
            r.triggers
                .set_accounts(accounts)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether automatic fetching is paused: the running triggers know best (the control
    /// socket's PAUSE/RESUME change them too); otherwise the saved preference.
    pub async fn is_paused(&self) -> bool {
        match self.triggers().await {
            Some(t) => t.is_paused(),
            None => self.prefs().paused,
        }
    }

    /// Pauses or resumes automatic fetching, now and at the next start.
    pub async fn set_paused(&self, paused: bool) -> Result<(), String> {
        if let Some(t) = self.triggers().await {
            t.set_paused(paused);
        }
        let mut prefs = self.prefs();
        if prefs.paused != paused {
            prefs.paused = paused;
            self.set_prefs(prefs)?;
        }
        Ok(())
    }

    /// Starts a fetch of every account without waiting for it (tray, window, `--fetch`); the
    /// accounts' connect/disconnect commands run around it. Progress comes as events.
    pub async fn fetch_now<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        trigger: &str,
    ) -> Result<(), String> {
        let config = self.config().map_err(|e| e.to_string())?;
        if config.accounts.is_empty() {
            return Err(
                "there are no accounts to fetch for: open Settings… and add your ISP account"
                    .into(),
            );
        }
        if self.service.lock().await.is_none() {
            // The service failed to start before (settings since fixed, keyring unlocked later).
            self.start_service(app).await?;
        }
        let triggers = self
            .triggers()
            .await
            .ok_or("the Mailcall service is not running; check the settings")?;
        let request = FetchRequest::all(trigger);
        tauri::async_runtime::spawn(async move {
            // The record's errors were reported as events already; a stopped service is a quit.
            let _ = triggers.fetch_now(request).await;
        });
        Ok(())
    }
}

/// What the tray says when it cannot serve the control socket.
fn control_unavailable(e: &ControlError) -> String {
    match e {
        ControlError::InUse(path) => format!(
            "Another Mailcall (the daemon or a second tray) already answers scripts on {}: `mailcall --fetch` and `mailcall-cli fetch --via-running` go to it. Stop it if this tray should answer, then restart Mailcall",
            path.display()
        ),
        e => format!("Scripts cannot reach this Mailcall: {e}"),
    }
}

/// Feeds the service's events to the tray status, notifications and the window.
async fn pump_events<R: Runtime>(
    app: AppHandle<R>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            ev = rx.recv() => match ev {
                Ok(ev) => ev,
                // Missed progress only makes the count lag; the session record sets it right.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        let notices = state.status().apply(&event);
        state.notifier.send(notices);
        refresh(&app);
        if matches!(event, Event::SessionFinished(_) | Event::MessageStored(_)) {
            let _ = app.emit(HISTORY_EVENT, ());
        }
    }
}

/// Shows the current status on the tray and in the window.
pub fn refresh<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let view = state.status().view();
    crate::tray::show_status(app, &view);
    let _ = app.emit(STATUS_EVENT, view);
}

/// Keeps the tray's "Pause automatic fetching" check mark in step with the triggers, whoever
/// flips the switch (the menu, the window, `PAUSE`/`RESUME` on the control socket).
async fn mirror_pause<R: Runtime>(
    app: AppHandle<R>,
    mut paused: tokio::sync::watch::Receiver<bool>,
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
                crate::tray::show_paused(&app, now);
            }
        }
    }
}
