//! One Mailcall, assembled in one place for every front end: the config's accounts read from the
//! keyring, the control socket claimed (so a second instance hears about the first, not about
//! port 25), the service (the listener when an ETRN account needs it, fetch sessions) and the
//! triggers started, the pause switch remembered across restarts, the spool's runner told
//! whether a watched link is up (outgoing mail leaves by itself while one is), one shutdown.
//! What it can be
//! asked is in [`Controls`], shared by its owner here and the control socket. The CLI's `fetch`
//! and `daemon` run an [`Instance`]; front ends that may find one running already hold a
//! [`crate::mailcall::Mailcall`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::account::Account;
use crate::config::{Config, ConfigError, ConfigKey};
use crate::control::{self, ControlError, Status};
use crate::event::{Event, EventSink};
use crate::fsutil;
use crate::hint::{Problem, Setting};
use crate::history::{ManualTrigger, SessionRecord};
use crate::keystore::{AccountStore, KeystoreError};
use crate::service::{self, FetchRequest, Sending, ServiceHandle, ServiceOptions, ServiceStopped};
use crate::spool::actions::{ActionError, ActionResult, Selection};
use crate::spool::copies::Router;
use crate::spool::runner::{self, Runner, RunnerHandle, RunnerOptions, SendReport};
use crate::spool::Action;
use crate::trigger::{self, Links, TriggerHandle, TriggerOptions};

/// The state file's name in the data directory (the pause switch).
pub const STATE_FILE: &str = "state.toml";

/// What kind of Mailcall runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One fetch and out (`mailcall-cli fetch`, `mailcall --fetch` with nothing running):
    /// nothing fetches by itself, no control socket, the pause switch untouched.
    OneShot,
    /// `mailcall-cli daemon`: every trigger, the control socket, the remembered pause switch.
    Daemon,
    /// The tray app: as the daemon.
    Tray,
}

/// How to start an instance.
#[derive(Clone)]
pub struct InstanceOptions {
    /// What kind of Mailcall.
    pub mode: Mode,
    /// The config file (for reloading the accounts).
    pub config_path: PathBuf,
    /// The config, as loaded (a one-shot's command-line overrides applied).
    pub config: Config,
    /// Where accounts are kept.
    pub store: Arc<dyn AccountStore>,
    /// The control socket for `Daemon`/`Tray`; `None`: the default path.
    pub control_socket: Option<PathBuf>,
    /// Fetch at start when a link is up (as the config says); off for a tray restarting for new
    /// settings, which is not Mailcall starting.
    pub fetch_at_start: bool,
}

impl InstanceOptions {
    /// Options for `mode` over the config at `config_path` (read now) and the account store it
    /// names (`account-store`).
    pub fn load(mode: Mode, config_path: PathBuf) -> Result<Self, ConfigError> {
        let config = Config::load(&config_path)?;
        let store = crate::keystore::for_config(&config, &config_path);
        Ok(InstanceOptions {
            mode,
            fetch_at_start: config.fetch_at_start,
            config_path,
            config,
            store,
            control_socket: None,
        })
    }
}

/// The instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The keyring cannot be reached at all (a single bad entry only skips that account).
    #[error(transparent)]
    Keyring(#[from] KeystoreError),
    /// Another Mailcall (daemon or tray) owns the control socket.
    #[error("another Mailcall (the daemon or a tray) is already running and answers on {}: stop it first, or let it fetch", .0.display())]
    AlreadyRunning(PathBuf),
    /// The control socket cannot be set up.
    #[error(transparent)]
    Control(ControlError),
    /// Another Mailcall owns the control socket, but does not answer as one should.
    #[error("a Mailcall already runs and owns {}, but this one cannot use it: {source}. Stop it (or this one) and start Mailcall again", socket.display())]
    Unusable {
        /// The socket it owns.
        socket: PathBuf,
        /// What asking it gave.
        source: ControlError,
    },
    /// Another Mailcall keeps taking the control socket and going away again.
    #[error("another Mailcall keeps starting and stopping on the control socket {}; stop it, then start Mailcall again", .0.display())]
    Unsteady(PathBuf),
    /// The listener or the Maildir.
    #[error(transparent)]
    Service(#[from] service::SetupError),
}

impl StartError {
    /// The setting that fixes it, if one does.
    pub fn fix(&self) -> Option<Setting> {
        match self {
            StartError::Config(e) => e.key().map(Setting::config),
            StartError::Service(e) => e.fix(),
            _ => None,
        }
    }

    /// Whether another instance runs (a tray then becomes a front end to it).
    pub fn is_already_running(&self) -> bool {
        matches!(self, StartError::AlreadyRunning(_))
    }

    /// As a problem for people.
    pub fn problem(&self) -> Problem {
        Problem::new(self.to_string()).fixed_by(self.fix())
    }
}

/// How long a one-shot fetch, stopping, still hands new mail on to the LAN servers.
const HAND_OVER_AT_STOP: Duration = Duration::from_secs(30);

/// A running Mailcall.
pub struct Instance {
    mode: Mode,
    service: ServiceHandle,
    /// The spool's hand-over loop (issue 10).
    runner: Option<Runner>,
    triggers: TriggerHandle,
    controls: Controls,
    control: Option<(PathBuf, JoinHandle<()>)>,
    pause_keeper: Option<JoinHandle<()>>,
    /// Tells the runner whether a watched link is up (daemon and tray only).
    link_keeper: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
    skipped: Vec<Problem>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("mode", &self.mode)
            .field("listen", &self.service.listen_addr())
            .finish_non_exhaustive()
    }
}

/// Reads the accounts again and hands them to the service.
#[derive(Clone)]
struct Reloader {
    config_path: PathBuf,
    store: Arc<dyn AccountStore>,
    service: ServiceHandle,
    router: Arc<Router>,
}

impl Reloader {
    async fn reload(self) -> Result<Vec<Problem>, StartError> {
        let config = Config::load(&self.config_path)?;
        self.router
            .replace(config.route_table()?, config.unknown_recipients)
            .map_err(|(path, source)| {
                service::SetupError::Routing(crate::spool::copies::RoutingError::Maildir {
                    path,
                    source,
                })
            })?;
        let (accounts, skipped) = load_accounts(self.store.clone(), config.accounts).await?;
        tracing::info!(
            "reloaded {} account(s): {}",
            accounts.len(),
            accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.service.set_accounts(accounts);
        self.service
            .set_default_outgoing(config.default_outgoing_account.clone());
        let mut skipped = skipped;
        // An ETRN account added to a service that had ODMR accounts only: bind now. If that
        // fails, the ODMR accounts go on working and the ETRN ones are not asked (fetch says so).
        if let Err(e) = self.service.listen_if_needed().await {
            let problem = Problem::new(format!(
                "an ETRN account needs the listener, which cannot start: {e}. ODMR accounts still fetch; ETRN accounts are not asked until this is fixed and Mailcall restarted"
            ))
            .fixed_by(Some(Setting::config(crate::config::ConfigKey::Listen)));
            skipped.push(problem);
        }
        for p in &skipped {
            self.service.events().emit(Event::Error(p.clone()));
        }
        Ok(skipped)
    }
}

/// Reads the accounts again (`RELOAD`): the ones skipped, each with why.
pub type Reload = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<Problem>, StartError>> + Send>>
        + Send
        + Sync,
>;

/// The queue cannot be acted on.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// This Mailcall has no spool (it could not be set up at start).
    #[error(
        "Mailcall's queue cannot be used (see the error on starting): check the data directory"
    )]
    Unavailable,
    /// The action failed (an id that matches nothing, a message being handed over right now).
    #[error(transparent)]
    Failed(#[from] ActionError),
}

impl QueueError {
    /// As a problem for people, with the setting that fixes it when one does.
    pub fn problem(&self) -> Problem {
        match self {
            QueueError::Unavailable => {
                Problem::new(self.to_string()).fixed_by(Some(Setting::config(ConfigKey::DataDir)))
            }
            QueueError::Failed(e) => e.problem(),
        }
    }
}

/// What can be asked of a running instance — by its owner in this process and by clients over
/// its control socket alike, so each is done one way. Cheap to clone.
#[derive(Clone)]
pub struct Controls {
    triggers: TriggerHandle,
    queue: Option<RunnerHandle>,
    reload: Reload,
    /// The config file it runs with (`STATUS` tells it, so a command given another `--config`
    /// can say that the running one is not using it).
    config: Option<PathBuf>,
}

impl Controls {
    /// The controls of the Mailcall that `triggers` drive: its queue (when it has a spool), its
    /// config file, and how it reads its accounts again.
    pub fn new(
        triggers: TriggerHandle,
        queue: Option<RunnerHandle>,
        config: Option<PathBuf>,
        reload: Reload,
    ) -> Self {
        Controls {
            triggers,
            queue,
            reload,
            config,
        }
    }

    /// A manual fetch of `accounts` (every account when empty) for `trigger`, with the accounts'
    /// connect/disconnect commands around it; the outgoing queue is sent first. The future
    /// holds nothing of `self`: a front end may start it and stop the instance meanwhile (the
    /// fetch then ends with the service).
    pub fn fetch(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
    ) -> impl Future<Output = Result<SessionRecord, ServiceStopped>> + Send + 'static {
        self.fetch_with(trigger, accounts, Sending::First)
    }

    /// [`Controls::fetch`], sending the outgoing queue first or not as `sending` says.
    pub fn fetch_with(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
        sending: Sending,
    ) -> impl Future<Output = Result<SessionRecord, ServiceStopped>> + Send + 'static {
        let triggers = self.triggers.clone();
        async move {
            let request = FetchRequest::named(trigger.into(), accounts).sending(sending);
            triggers.fetch_now(request).await
        }
    }

    /// Sends the outgoing queue now, whether a link is up or not (nothing is dialled), and says
    /// what became of each message once each was tried.
    pub async fn send(&self) -> Result<SendReport, QueueError> {
        let queue = self.queue.as_ref().ok_or(QueueError::Unavailable)?;
        queue
            .send_outgoing()
            .await
            .ok_or(QueueError::Failed(ActionError::RunnerStopped))
    }

    /// Reads the spool again now: another process queued a message (`mailcall-cli sendmail`),
    /// which then leaves within seconds while a watched link is up.
    pub fn wake(&self) -> Result<(), QueueError> {
        let queue = self.queue.as_ref().ok_or(QueueError::Unavailable)?;
        if queue.rescan() {
            Ok(())
        } else {
            Err(QueueError::Failed(ActionError::RunnerStopped))
        }
    }

    /// Pauses or resumes automatic fetching; the switch as it is then.
    pub fn set_paused(&self, paused: bool) -> bool {
        self.triggers.set_paused(paused);
        self.triggers.is_paused()
    }

    /// Its state now.
    pub fn status(&self) -> Status {
        let service = self.triggers.service();
        Status {
            paused: self.triggers.is_paused(),
            fetching: service.is_fetching(),
            links: self.triggers.links().map(|l| l.names()),
            listen: service.listen_addr(),
            accounts: service.accounts().iter().map(|a| a.name.clone()).collect(),
            config: self.config.as_ref().map(|p| p.display().to_string()),
        }
    }

    /// Reads the accounts and routes again; the accounts skipped, each with why.
    pub async fn reload(&self) -> Result<Vec<Problem>, StartError> {
        (self.reload)().await
    }

    /// Does `action` to the selected messages of the queue; what it did.
    pub async fn queue(
        &self,
        action: Action,
        selection: Selection,
    ) -> Result<ActionResult, QueueError> {
        let queue = self.queue.as_ref().ok_or(QueueError::Unavailable)?;
        queue
            .act(action, selection)
            .await
            .map_err(QueueError::Failed)
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// The spool's queue, when there is one (to list it).
    pub fn runner(&self) -> Option<&RunnerHandle> {
        self.queue.as_ref()
    }

    /// The events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.triggers.service().subscribe()
    }

    /// Every change of the pause switch, from wherever it came.
    pub fn paused_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.triggers.paused_changes()
    }
}

impl Instance {
    /// Starts a Mailcall: events (subscribe to `events` before, to see the first ones) go to
    /// `events`. Accounts the keyring cannot give are skipped, each reported as an error event
    /// and in [`Instance::skipped`]; a keyring that cannot be reached at all stops the start.
    pub async fn start(options: InstanceOptions, events: EventSink) -> Result<Self, StartError> {
        let InstanceOptions {
            mode,
            config_path,
            config,
            store,
            control_socket,
            fetch_at_start,
        } = options;
        let service_options = ServiceOptions::from_config(&config)?;
        let mut trigger_options = TriggerOptions::from_config(&config)?;
        trigger_options.fetch_at_start = fetch_at_start;
        // Claimed first: a second instance is told about the first, not about port 25.
        let control = match mode {
            Mode::OneShot => None,
            Mode::Daemon | Mode::Tray => {
                let path = match control_socket {
                    Some(p) => p,
                    None => control::default_socket_path().map_err(StartError::Control)?,
                };
                match control::Server::bind(&path) {
                    Ok(server) => Some(server),
                    Err(ControlError::InUse(path)) => return Err(StartError::AlreadyRunning(path)),
                    Err(e) => return Err(StartError::Control(e)),
                }
            }
        };
        let remembered = matches!(mode, Mode::Daemon | Mode::Tray);
        trigger_options = match mode {
            Mode::OneShot => trigger_options.one_shot(),
            _ => {
                trigger_options.paused = SavedState::load(&config)?.paused;
                trigger_options
            }
        };
        // The Maildir before the keyring: what the user must fix shows first. The port is bound
        // once the accounts are read: only ETRN accounts need the listener (the keyring entry
        // holds the mode), so a setup with ODMR accounts only never binds one.
        let submit_options = crate::outgoing::submission::SubmitOptions::from_config(
            &config,
            &service_options.listener,
        )?;
        let prepared = service::prepare(service_options).await?;
        let router = prepared.router();
        let mut runner_options = RunnerOptions::from_config(&config)?;
        let (accounts, skipped) = load_accounts(store.clone(), config.accounts.clone()).await?;
        for p in &skipped {
            events.emit(Event::Error(p.clone()));
        }
        let shutdown = CancellationToken::new();
        let service =
            service::start_prepared(prepared, accounts, events.clone(), shutdown.clone()).await?;
        let triggers = trigger::start(service.clone(), trigger_options, shutdown.clone());
        runner_options.accounts = Some(service.watch_accounts());
        runner_options.router = Some(router.clone());
        let runner = router.spool().map(|spool| {
            runner::start(
                spool.clone(),
                router.default_maildir().clone(),
                runner_options,
                events.clone(),
            )
        });
        let queue = runner.as_ref().map(Runner::handle);
        if let Some(queue) = &queue {
            service.set_outbox(queue.clone());
        }
        // Outgoing mail from local programs and the LAN (submit-listen), for a running Mailcall.
        if let (true, Some(mut submit), Some(spool)) = (remembered, submit_options, router.spool())
        {
            submit.login = crate::keystore::submit_login(&config).await;
            if let Err(e) = service.start_submission(submit, spool.clone()).await {
                events.emit(Event::Error(e.problem()));
            }
        }
        // Absolute: a client in another directory compares it with its own.
        let running_config = std::path::absolute(&config_path).unwrap_or(config_path.clone());
        let reloader = Reloader {
            config_path,
            store,
            service: service.clone(),
            router,
        };
        let reload: Reload = Arc::new(move || Box::pin(reloader.clone().reload()));
        // A one-shot run sends only when its fetch does (`fetch --no-send` must not send).
        let link_keeper = match (mode, &queue) {
            (Mode::Daemon | Mode::Tray, Some(queue)) => Some(tokio::spawn(send_while_online(
                triggers.link_changes(),
                queue.clone(),
                shutdown.clone(),
            ))),
            _ => None,
        };
        let controls = Controls::new(triggers.clone(), queue, Some(running_config), reload);
        let control = control.map(|server| {
            let path = server.path().to_path_buf();
            let serving = server.serve(controls.clone(), shutdown.clone());
            (path, tokio::spawn(serving))
        });
        let pause_keeper = remembered.then(|| {
            // Subscribed here, not in the task: a flip right after the start (before the task
            // first runs) would otherwise count as seen and never be written.
            let changes = triggers.paused_changes();
            tokio::spawn(keep_pause(
                triggers.clone(),
                changes,
                config.clone(),
                shutdown.clone(),
            ))
        });
        Ok(Instance {
            mode,
            service,
            runner,
            triggers,
            controls,
            control,
            pause_keeper,
            link_keeper,
            shutdown,
            skipped,
        })
    }

    /// The service (the listener, when one runs, and fetch sessions).
    pub fn service(&self) -> &ServiceHandle {
        &self.service
    }

    /// What it can be asked (what its control socket answers with, too).
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    /// The triggers (pause, links, manual fetches with the dial-up lifecycle).
    pub fn triggers(&self) -> &TriggerHandle {
        &self.triggers
    }

    /// The events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.service.subscribe()
    }

    /// Where scripts reach this instance, when it serves the control socket.
    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|(p, _)| p.as_path())
    }

    /// The accounts that could not be read at start, each with why.
    pub fn skipped(&self) -> &[Problem] {
        &self.skipped
    }

    /// A manual fetch of `accounts` (every account when empty) for `trigger`, with the accounts'
    /// connect/disconnect commands around it.
    pub async fn fetch(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
    ) -> Result<SessionRecord, ServiceStopped> {
        self.controls.fetch(trigger, accounts).await
    }

    /// [`Instance::fetch`], sending the outgoing queue first or not as `sending` says.
    pub async fn fetch_with(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
        sending: Sending,
    ) -> Result<SessionRecord, ServiceStopped> {
        self.controls.fetch_with(trigger, accounts, sending).await
    }

    /// Reads the config's account list and the accounts from the keyring again (after `account
    /// set`/`remove`, SIGHUP, or an edit in the tray); returns the accounts skipped.
    pub async fn reload(&self) -> Result<Vec<Problem>, StartError> {
        self.controls.reload().await
    }

    /// Pauses or resumes automatic fetching; a daemon or tray remembers it across restarts.
    pub fn set_paused(&self, paused: bool) {
        self.controls.set_paused(paused);
    }

    /// Stops everything: the triggers (no new automatic fetch), the running session (its record
    /// still reaches the history and its waiters), deliveries in flight (finished or 4xx), the
    /// listener, and the control socket (whose file is removed).
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.service.stop().await;
        // No more mail comes in; a one-shot run hands on what just came before it goes.
        if let Some(runner) = self.runner {
            let drain = (self.mode == Mode::OneShot).then_some(HAND_OVER_AT_STOP);
            runner.finish(drain).await;
        }
        self.triggers.stopped().await;
        if let Some((_, task)) = self.control {
            let _ = task.await;
        }
        if let Some(task) = self.pause_keeper {
            let _ = task.await;
        }
        if let Some(task) = self.link_keeper {
            let _ = task.await;
        }
    }
}

/// Tells the runner whether a watched link is up, at the start and at each change: while one
/// is, outgoing mail leaves within seconds of being queued; while none is, it waits for a fetch
/// (nothing is dialled just to send). Interfaces that cannot be watched count as no link: a
/// connection attempt could dial a demand-dial link. Pausing automatic fetching does not stop
/// this: mail the user wrote still leaves while the link is up.
async fn send_while_online(
    mut links: tokio::sync::watch::Receiver<Option<Links>>,
    outbox: RunnerHandle,
    shutdown: CancellationToken,
) {
    let mut told = None;
    loop {
        let online = links
            .borrow_and_update()
            .as_ref()
            .is_some_and(|l| !l.is_empty());
        if told != Some(online) {
            tracing::info!(
                "{}",
                if online {
                    "a watched link is up: outgoing mail leaves as it is queued"
                } else {
                    "no watched link is up: outgoing mail waits for a fetch"
                }
            );
            outbox.set_online(online);
            told = Some(online);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = links.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

/// Writes the pause switch to the state file whenever it changes, whoever flipped it.
async fn keep_pause(
    triggers: TriggerHandle,
    mut changes: tokio::sync::watch::Receiver<bool>,
    config: Config,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            // A flip just before a stop is still written.
            biased;
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let paused = *changes.borrow_and_update();
                let config = config.clone();
                let saved = tokio::task::spawn_blocking(move || SavedState { paused }.save(&config)).await;
                match saved {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => triggers.service().events().emit(Event::Error(Problem::new(format!(
                        "the pause switch is set, but cannot be remembered for the next start: {e}"
                    )))),
                    Err(e) => tracing::error!("saving the pause switch failed: {e}"),
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Reads `names` from `store` off the async threads (the keyring blocks on D-Bus). An account
/// that cannot be read is skipped with a problem saying why; a keyring that cannot be reached
/// at all is an error.
pub async fn load_accounts(
    store: Arc<dyn AccountStore>,
    names: Vec<String>,
) -> Result<(Vec<Account>, Vec<Problem>), KeystoreError> {
    let loaded = tokio::task::spawn_blocking(move || {
        let mut accounts = Vec::new();
        let mut skipped = Vec::new();
        for n in names {
            match store.load(&n) {
                Ok(a) => accounts.push(a),
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => skipped
                    .push(Problem::new(format!("this account is skipped: {e}")).for_account(&n)),
            }
        }
        Ok((accounts, skipped))
    })
    .await;
    loaded.map_err(|e| KeystoreError::Unavailable(format!("the keyring task failed: {e}")))?
}

/// What Mailcall remembers between runs that is not a preference: the pause switch. Kept in
/// `state.toml` in the data directory, written atomically by whoever runs (or `mailcall-cli
/// pause` when nothing runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SavedState {
    /// Automatic fetching is paused.
    pub paused: bool,
}

impl SavedState {
    /// Where it is kept for `config`.
    pub fn path(config: &Config) -> Result<PathBuf, ConfigError> {
        Ok(config.data_path()?.join(STATE_FILE))
    }

    /// The saved state; the defaults when there is none (or it cannot be read: a lost pause
    /// switch must not keep Mailcall from starting, so that is only logged).
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let path = Self::path(config)?;
        Ok(match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                SavedState::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                SavedState::default()
            }
        })
    }

    /// Writes it (atomically, 0600).
    pub fn save(&self, config: &Config) -> Result<(), ConfigError> {
        let path = Self::path(config)?;
        let text = toml::to_string(self).map_err(|e| ConfigError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|source| ConfigError::Write { path, source })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keystore::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_flipped_right_after_the_start_or_before_the_stop_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.path().join("data")),
            maildir: Some(dir.path().join("Maildir")),
            fetch_at_start: false,
            ..Config::default()
        };
        let options = InstanceOptions {
            mode: Mode::Daemon,
            config_path: dir.path().join("config.toml"),
            config: config.clone(),
            store: Arc::new(MemoryStore::default()),
            control_socket: Some(dir.path().join("run/control.sock")),
            fetch_at_start: false,
        };
        for paused in [true, false, true] {
            let instance = Instance::start(options.clone(), EventSink::default())
                .await
                .unwrap();
            assert_eq!(instance.triggers().is_paused(), !paused, "as remembered");
            // No await in between: the keeper task may not have run yet.
            instance.set_paused(paused);
            instance.stop().await;
            assert_eq!(SavedState::load(&config).unwrap().paused, paused);
        }
    }
}
