//! One handle on one Mailcall, for every front end: the [`Instance`] in this process, or the one
//! already running elsewhere (a daemon, another tray), asked over its control socket. Fetch,
//! send, pause, state, reload, the queue (list and act) and what happens as it runs ([`Updates`]) are
//! asked the same way of both: the differences live here, the front ends only render. Also the
//! connection check every front end offers ([`check_account`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::account::{Account, FetchMode};
use crate::client::{ClientSettings, IspError, ServerInfo};
use crate::config::{Config, ConfigError};
use crate::control::{Client, ControlError, EventStream, Status};
use crate::event::{Event, EventSink};
use crate::hint::{Problem, Setting};
use crate::history::{ManualTrigger, SessionRecord};
use crate::instance::{Instance, InstanceOptions, QueueError, StartError};
use crate::report::TranscriptLine;
use crate::service::{self, Accounts, Sending, ServiceStopped};
use crate::spool::actions::{ActionError, ActionResult, Listing, Selection};
use crate::spool::runner::SendReport;
use crate::spool::{Action, SPOOL_DIR};
use crate::{etrn, odmr};

/// How often the state of a Mailcall elsewhere is asked while it is followed: its events say
/// nothing about the pause switch, which scripts may flip too.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How many times [`Mailcall::start`] tries when the one running goes away as it is found.
const START_TRIES: usize = 3;

/// One Mailcall, wherever it runs.
pub enum Mailcall {
    /// It runs in this process.
    Local(Box<Instance>),
    /// It runs elsewhere (the daemon, another tray); this process is its front end.
    Remote {
        /// Asks it over its control socket.
        client: Client,
        /// Its state when this one connected: what it runs with (listener, accounts, config
        /// file), to compare with this front end's config.
        known: Status,
    },
}

impl std::fmt::Debug for Mailcall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailcall::Local(instance) => f.debug_tuple("Local").field(instance).finish(),
            Mailcall::Remote { client, .. } => f
                .debug_struct("Remote")
                .field("socket", &client.socket())
                .finish_non_exhaustive(),
        }
    }
}

/// Asking a Mailcall failed.
#[derive(Debug, thiserror::Error)]
pub enum MailcallError {
    /// The Mailcall here has stopped (it is quitting).
    #[error(transparent)]
    Stopped(#[from] ServiceStopped),
    /// Its queue cannot be acted on.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Its queue cannot be read.
    #[error(transparent)]
    Listing(ActionError),
    /// Reading its queue was cut short (the task reading it panicked or was cancelled).
    #[error("reading the queue failed: {0}")]
    ListingLost(tokio::task::JoinError),
    /// The accounts could not be read again here.
    #[error(transparent)]
    Reload(#[from] StartError),
    /// The config file it runs with cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Mailcall elsewhere could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] ControlError),
}

impl MailcallError {
    /// Whether the Mailcall here has stopped: the front end is quitting, nothing to show.
    pub fn is_stopped(&self) -> bool {
        matches!(self, MailcallError::Stopped(_))
    }

    /// As a problem for people, with the setting that fixes it when one does.
    pub fn problem(&self) -> Problem {
        match self {
            MailcallError::Reload(e) => e.problem(),
            MailcallError::Queue(e) => e.problem(),
            MailcallError::Listing(e) => e.problem(),
            MailcallError::Config(e) => {
                Problem::new(e.to_string()).fixed_by(e.key().map(Setting::config))
            }
            other => Problem::new(other.to_string()),
        }
    }
}

impl Mailcall {
    /// Starts a Mailcall here as `options` say — or, when one already runs and owns the
    /// control socket, becomes its front end. What it says from then on (its first events
    /// included: accounts skipped at start) comes as [`Updates`].
    pub async fn start(options: InstanceOptions) -> Result<(Self, Updates), StartError> {
        let mut socket = None;
        // The one running may stop just as it is found: then it starts here.
        for _ in 0..START_TRIES {
            let events = EventSink::default();
            // Subscribed before the start: skipped accounts and netlink trouble are seen.
            let rx = events.subscribe();
            match Instance::start(options.clone(), events).await {
                Ok(instance) => {
                    let paused = instance.controls().paused_changes();
                    let updates = Updates::here(rx, paused);
                    return Ok((Mailcall::Local(Box::new(instance)), updates));
                }
                Err(StartError::AlreadyRunning(path)) => match Self::follow(path.clone()).await {
                    Ok(started) => return Ok(started),
                    Err(e) if e.is_not_running() => socket = Some(path),
                    Err(source) => {
                        return Err(StartError::Unusable {
                            socket: path,
                            source,
                        })
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Err(StartError::Unsteady(socket.unwrap_or_default()))
    }

    /// The Mailcall answering on `socket`; [`ControlError::NotRunning`] when none does.
    pub async fn connect(socket: PathBuf) -> Result<Self, ControlError> {
        let client = Client::new(socket);
        let known = client.status().await?;
        Ok(Mailcall::Remote { client, known })
    }

    /// Becomes the front end of the Mailcall on `socket`: its events from now on, and its state.
    async fn follow(socket: PathBuf) -> Result<(Self, Updates), ControlError> {
        let client = Client::new(socket);
        // Events first, so nothing that happens between the two requests is missed.
        let events = client.subscribe().await?;
        let known = client.status().await?;
        tracing::info!(
            "a Mailcall already runs ({}): using it",
            client.socket().display()
        );
        let updates = Updates::elsewhere(events, client.clone());
        Ok((Mailcall::Remote { client, known }, updates))
    }

    /// Whether it runs in this process.
    pub fn is_local(&self) -> bool {
        matches!(self, Mailcall::Local(_))
    }

    /// Its control socket: the one it serves (`None` for a one-shot run), or the one it is
    /// asked over.
    pub fn control_path(&self) -> Option<&Path> {
        match self {
            Mailcall::Local(instance) => instance.control_path(),
            Mailcall::Remote { client, .. } => Some(client.socket()),
        }
    }

    /// The accounts it could not read at start, each with why (a Mailcall elsewhere reported
    /// its own when it started).
    pub fn skipped(&self) -> &[Problem] {
        match self {
            Mailcall::Local(instance) => instance.skipped(),
            Mailcall::Remote { .. } => &[],
        }
    }

    /// A manual fetch of `accounts` (every account when empty) for `trigger`, with the
    /// accounts' connect/disconnect commands around it; its record once it ended. The future
    /// holds nothing of `self`: a front end may start it and stop the handle meanwhile.
    pub fn fetch(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
    ) -> impl Future<Output = Result<SessionRecord, MailcallError>> + Send + 'static {
        self.fetch_with(trigger, accounts, Sending::First)
    }

    /// [`Mailcall::fetch`], sending the outgoing queue first or not as `sending` says.
    pub fn fetch_with(
        &self,
        trigger: ManualTrigger,
        accounts: Vec<String>,
        sending: Sending,
    ) -> impl Future<Output = Result<SessionRecord, MailcallError>> + Send + 'static {
        let asked = match self {
            Mailcall::Local(instance) => {
                Ok(instance.controls().fetch_with(trigger, accounts, sending))
            }
            Mailcall::Remote { client, .. } => Err((client.clone(), accounts)),
        };
        async move {
            match asked {
                Ok(fetch) => Ok(fetch.await?),
                Err((client, accounts)) => {
                    Ok(client.fetch_with(trigger, accounts, sending).await?)
                }
            }
        }
    }

    /// Sends its outgoing queue now, link or not (nothing is dialled); what became of each
    /// message, once each was tried.
    pub async fn send(&self) -> Result<SendReport, MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.controls().send().await?),
            Mailcall::Remote { client, .. } => Ok(client.send().await?),
        }
    }

    /// Tells it to read its spool again now: a message was queued by another process, and
    /// leaves within seconds while a watched link is up.
    pub async fn wake(&self) -> Result<(), MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.controls().wake()?),
            Mailcall::Remote { client, .. } => Ok(client.wake().await?),
        }
    }

    /// Pauses or resumes automatic fetching, remembered for the next start; the switch as it
    /// is then.
    pub async fn set_paused(&self, paused: bool) -> Result<bool, MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.controls().set_paused(paused)),
            Mailcall::Remote { client, .. } => Ok(client.set_paused(paused).await?),
        }
    }

    /// Its state now.
    pub async fn status(&self) -> Result<Status, MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.controls().status()),
            Mailcall::Remote { client, .. } => Ok(client.status().await?),
        }
    }

    /// Where its listener listens (as it says now; as it said on connecting when it cannot be
    /// asked); `None` when it has none (ODMR accounts only).
    pub async fn listen_addr(&self) -> Option<SocketAddr> {
        match self {
            Mailcall::Local(instance) => instance.service().listen_addr(),
            Mailcall::Remote { client, known } => match client.status().await {
                Ok(status) => status.listen,
                Err(_) => known.listen,
            },
        }
    }

    /// Reads the accounts and routes again; the accounts skipped, each with why.
    pub async fn reload(&self) -> Result<Vec<Problem>, MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.reload().await?),
            Mailcall::Remote { client, .. } => {
                let skipped = client.reload().await?;
                Ok(skipped.into_iter().map(Problem::new).collect())
            }
        }
    }

    /// Does `action` to the selected messages of its queue, where the mail is handed on; what
    /// it did.
    pub async fn queue(
        &self,
        action: Action,
        selection: Selection,
    ) -> Result<ActionResult, MailcallError> {
        match self {
            Mailcall::Local(instance) => Ok(instance.controls().queue(action, selection).await?),
            Mailcall::Remote { client, .. } => Ok(client.queue(action, selection).await?),
        }
    }

    /// Its queue, read from the spool's files: its own spool here; elsewhere the spool of the
    /// data directory of the config file it runs with (`ours` when it does not say).
    pub async fn queue_list(&self, ours: &Config) -> Result<Listing, MailcallError> {
        let spool = match self {
            Mailcall::Local(instance) => instance.controls().runner().map(|q| q.spool().clone()),
            Mailcall::Remote { .. } => None,
        };
        let dir = match &spool {
            Some(_) => None,
            None => {
                let config = match self.running_config() {
                    Some(path) if !self.is_local() => Config::load(path)?,
                    _ => ours.clone(),
                };
                Some(config.data_path()?.join(SPOOL_DIR))
            }
        };
        let read = tokio::task::spawn_blocking(move || match (spool, dir) {
            (Some(spool), _) => Listing::of(&spool),
            (None, Some(dir)) => Listing::read(&dir),
            (None, None) => Ok(Listing::default()),
        })
        .await
        .map_err(MailcallError::ListingLost)?;
        read.map_err(MailcallError::Listing)
    }

    /// Its accounts as they run here, how each fetches included; `None` for a Mailcall
    /// elsewhere, which names them only.
    pub fn accounts(&self) -> Option<Accounts> {
        match self {
            Mailcall::Local(instance) => Some(instance.service().accounts()),
            Mailcall::Remote { .. } => None,
        }
    }

    /// Whether it has a listener no account needs any more (every account is ODMR now; it was
    /// bound while there were none). A Mailcall elsewhere keeps its own.
    pub fn has_unneeded_listener(&self) -> bool {
        match self {
            Mailcall::Local(instance) => {
                let service = instance.service();
                service.listen_addr().is_some() && !service::needs_listener(&service.accounts())
            }
            Mailcall::Remote { .. } => false,
        }
    }

    /// The config file it runs with (`None`: an older Mailcall elsewhere that does not say).
    pub fn running_config(&self) -> Option<&Path> {
        match self {
            Mailcall::Local(instance) => instance.controls().config_path(),
            Mailcall::Remote { known, .. } => known.config.as_deref().map(Path::new),
        }
    }

    /// The config file it runs with, when that is another one than `ours` (its history and its
    /// queue are in that one's data directory).
    pub fn other_config(&self, ours: &Path) -> Option<&Path> {
        let theirs = self.running_config()?;
        (!crate::fsutil::same_path(theirs, ours)).then_some(theirs)
    }

    /// How it differs from `config`, read from `path` (its config file, its listener, its
    /// accounts), in words; `None` when it runs as `config` says (as one started here does).
    pub fn differs_from(&self, config: &Config, path: &Path) -> Option<String> {
        let Mailcall::Remote { known, .. } = self else {
            return None;
        };
        let mut differences = Vec::new();
        if let Some(theirs) = self.other_config(path) {
            differences.push(format!(
                "it runs with {}, this window's settings are {}",
                theirs.display(),
                path.display()
            ));
        }
        // Port 0 in the config is "any free port": whichever it got is as configured. One with
        // only ODMR accounts listens nowhere: nothing to compare.
        let same_listener = match known.listen {
            None => true,
            Some(theirs) if config.listen.port() == 0 => theirs.ip() == config.listen.ip(),
            Some(theirs) => theirs == config.listen,
        };
        if let (false, Some(theirs)) = (same_listener, known.listen) {
            differences.push(format!(
                "it listens on {theirs}, the config says {}",
                config.listen
            ));
        }
        let mut theirs = known.accounts.clone();
        let mut ours = config.accounts.clone();
        theirs.sort();
        ours.sort();
        if theirs != ours {
            differences.push(format!(
                "its accounts are {}, the config has {}",
                list(&theirs),
                list(&ours)
            ));
        }
        if known.config.is_none() && !differences.is_empty() {
            // An older one does not name its file: this is what shows it may use another.
            differences.push("it may run with another config file".to_string());
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }

    /// Lets it go: one here stops (deliveries in flight finish or get a 4xx, then the listener
    /// and the control socket close); one elsewhere keeps running.
    pub async fn stop(self) {
        match self {
            Mailcall::Local(instance) => instance.stop().await,
            Mailcall::Remote { .. } => {}
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What a Mailcall says as it runs, for a front end that follows it.
#[derive(Debug, Clone)]
pub enum Update {
    /// One of its events.
    Event(Event),
    /// Its pause switch, as it is now (whoever flipped it: a menu, a script, the CLI): sent at
    /// each change here, and each time the state of one elsewhere is asked — a front end's own
    /// view of the switch may have moved meanwhile, so it is told even when this did not.
    Paused(bool),
    /// It went away (stopped, or no longer answers): why. Nothing follows.
    Gone(String),
}

/// The updates of one Mailcall, in order; see [`Updates::next`].
#[derive(Debug)]
pub struct Updates {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Its event channel and its pause switch.
    Here {
        events: broadcast::Receiver<Event>,
        /// `None` once the switch's sender is gone (the instance stopped).
        paused: Option<watch::Receiver<bool>>,
    },
    /// Its `EVENTS` stream, and its `STATUS` every few seconds.
    Elsewhere {
        events: EventStream,
        client: Client,
        ticks: tokio::time::Interval,
    },
    /// Nothing more comes.
    Ended,
}

impl Updates {
    fn here(events: broadcast::Receiver<Event>, paused: watch::Receiver<bool>) -> Self {
        Updates {
            source: Source::Here {
                events,
                paused: Some(paused),
            },
        }
    }

    fn elsewhere(events: EventStream, client: Client) -> Self {
        let mut ticks = tokio::time::interval(STATUS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Updates {
            source: Source::Elsewhere {
                events,
                client,
                ticks,
            },
        }
    }

    /// The next update; `None` once nothing more comes (the Mailcall here stopped, or the one
    /// elsewhere went: [`Update::Gone`] said so first). What a slow follower missed of the
    /// events is skipped: a session's record sets any count right. Cancel-safe.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            let update = match &mut self.source {
                Source::Ended => return None,
                Source::Here { events, paused } => {
                    tokio::select! {
                        event = events.recv() => match event {
                            Ok(event) => Update::Event(event),
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => {
                                self.source = Source::Ended;
                                return None;
                            }
                        },
                        changed = changed(paused) => match changed {
                            Some(now) => Update::Paused(now),
                            None => {
                                *paused = None;
                                continue;
                            }
                        },
                    }
                }
                Source::Elsewhere {
                    events,
                    client,
                    ticks,
                } => {
                    tokio::select! {
                        next = events.next() => match next {
                            Ok(Some(event)) => Update::Event(event),
                            Ok(None) => Update::Gone("it stopped".into()),
                            Err(e) => Update::Gone(e.to_string()),
                        },
                        _ = ticks.tick() => match client.status().await {
                            Ok(status) => Update::Paused(status.paused),
                            Err(e) if e.is_not_running() => Update::Gone("it stopped".into()),
                            // A slow answer is not the end: the event stream tells when it is.
                            Err(e) => {
                                tracing::warn!("the running Mailcall did not answer STATUS: {e}");
                                continue;
                            }
                        },
                    }
                }
            };
            if let Update::Gone(_) = update {
                self.source = Source::Ended;
            }
            return Some(update);
        }
    }
}

/// The switch's next value; `None` when there is no switch (any more). Pending for ever when
/// there is none, so the events alone decide.
async fn changed(paused: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match paused {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// How long a connection check may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// As long as the config's `reply-timeout` per reply, 30 s to connect: a command line.
    Configured,
    /// At most 15 s to connect and 30 s per reply: someone watches a window.
    Window,
}

/// What a connection check found: TLS, AUTH and what the server advertises, what went wrong,
/// and the dialogue (AUTH redacted).
#[derive(Debug, Clone)]
pub struct Check {
    /// What the server offered.
    pub info: ServerInfo,
    /// Why the check failed, if it did.
    pub error: Option<IspError>,
    /// The SMTP dialogue.
    pub transcript: Vec<TranscriptLine>,
}

impl Check {
    /// The failure as a problem, with the setting of the account named `account` that fixes
    /// it.
    pub fn problem(&self, account: &str) -> Option<Problem> {
        self.error
            .as_ref()
            .map(|e| Problem::new(e.to_string()).fixed_by(e.fix(account)))
    }

    /// Whether the server's EHLO reply was seen: what it advertises is unknown otherwise.
    pub fn ehlo_seen(&self) -> bool {
        !self.info.greeting.is_empty() && !self.info.extensions.is_empty()
    }
}

/// Connects to `account`'s ISP as its mode does (an ODMR account logs in first), and reports
/// what the server offers; neither ETRN nor ATRN is sent.
pub async fn check_account(account: &Account, config: &Config, patience: Patience) -> Check {
    let settings = match patience {
        Patience::Configured => ClientSettings {
            reply_timeout: Duration::from_secs(config.reply_timeout),
            ..ClientSettings::default()
        },
        Patience::Window => ClientSettings {
            connect_timeout: Duration::from_secs(15),
            reply_timeout: Duration::from_secs(config.reply_timeout.min(30)),
            ..ClientSettings::default()
        },
    };
    let (info, error, transcript) = match account.mode {
        FetchMode::Etrn => etrn::check_account(account, &settings).await,
        FetchMode::Odmr => odmr::check_account(account, &settings).await,
    };
    Check {
        info,
        error,
        transcript,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::instance::Mode;
    use crate::keystore::MemoryStore;

    /// The next update that `pick` takes, within a bound (a failure, not a wait).
    async fn next_that<T>(updates: &mut Updates, pick: impl Fn(Update) -> Option<T>) -> T {
        let found = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(update) = updates.next().await {
                if let Some(t) = pick(update) {
                    return Some(t);
                }
            }
            None
        })
        .await;
        found.ok().flatten().expect("no such update")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_start_fronts_the_first_and_hears_when_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.path().join("data")),
            maildir: Some(dir.path().join("Maildir")),
            fetch_at_start: false,
            ..Config::default()
        };
        let options = InstanceOptions {
            mode: Mode::Tray,
            config_path: dir.path().join("config.toml"),
            config,
            store: std::sync::Arc::new(MemoryStore::default()),
            control_socket: Some(dir.path().join("run/control.sock")),
            fetch_at_start: false,
        };
        let (first, mut heard_here) = Mailcall::start(options.clone()).await.unwrap();
        let (second, mut heard_there) = Mailcall::start(options).await.unwrap();
        assert!(first.is_local() && !second.is_local());
        assert_eq!(second.control_path(), first.control_path());
        assert_eq!(second.listen_addr().await, first.listen_addr().await);

        // Asked through the front end, done by the one that runs; both tell it alike.
        assert!(second.set_paused(true).await.unwrap());
        let paused = next_that(&mut heard_here, |u| match u {
            Update::Paused(p) => Some(p),
            _ => None,
        })
        .await;
        assert!(paused);
        assert_eq!(
            first.status().await.unwrap(),
            second.status().await.unwrap()
        );
        // The one queue, acted on alike: a typo in an id deletes nothing, and says so.
        let none = || Selection::Ids(vec!["nonesuch".into()]);
        let here = first.queue(Action::Delete, none()).await.unwrap_err();
        let there = second.queue(Action::Delete, none()).await.unwrap_err();
        assert!(
            here.to_string().contains("no message \"nonesuch\""),
            "{here}"
        );
        assert!(
            there.to_string().ends_with(&here.to_string()),
            "{here} / {there}"
        );
        // Sending is asked alike: nothing queued, nothing tried, nothing wrong; a nudge to read
        // the spool again is taken.
        assert_eq!(second.send().await.unwrap(), first.send().await.unwrap());
        assert_eq!(second.send().await.unwrap(), SendReport::default());
        second.wake().await.unwrap();
        first.wake().await.unwrap();

        first.stop().await;
        next_that(&mut heard_there, |u| match u {
            Update::Gone(_) => Some(()),
            _ => None,
        })
        .await;
        assert!(heard_there.next().await.is_none(), "nothing after Gone");
    }

    fn remote(listen: &str, accounts: &[&str], config: Option<&str>) -> Mailcall {
        Mailcall::Remote {
            client: Client::new("/run/mailcall/control.sock".into()),
            known: Status {
                paused: false,
                fetching: false,
                links: None,
                listen: Some(listen.parse().unwrap()),
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                config: config.map(str::to_string),
            },
        }
    }

    #[test]
    fn a_mailcall_elsewhere_with_another_listener_or_accounts_is_told_apart() {
        let running = remote(
            "127.0.0.1:2525",
            &["isp", "work"],
            Some("/etc/mailcall/config.toml"),
        );
        let ours = Path::new("/etc/mailcall/config.toml");
        let mut config = Config::default();
        config
            .set(crate::config::ConfigKey::Listen, "127.0.0.1:2525")
            .unwrap();
        config.add_account("work");
        config.add_account("isp");
        assert_eq!(running.differs_from(&config, ours), None);
        assert_eq!(running.other_config(ours), None);
        config
            .set(crate::config::ConfigKey::Listen, "127.0.0.1:0")
            .unwrap();
        assert_eq!(
            running.differs_from(&config, ours),
            None,
            "port 0 is any port"
        );
        let elsewhere = Path::new("/home/me/.config/mailcall/config.toml");
        assert_eq!(
            running.other_config(elsewhere),
            Some(Path::new("/etc/mailcall/config.toml"))
        );
        let d = running.differs_from(&config, elsewhere).unwrap();
        assert_eq!(
            d,
            "it runs with /etc/mailcall/config.toml, this window's settings are /home/me/.config/mailcall/config.toml"
        );
        config
            .set(crate::config::ConfigKey::Listen, "0.0.0.0:25")
            .unwrap();
        config.remove_account("work");
        let d = running.differs_from(&config, ours).unwrap();
        assert!(
            d.contains("it listens on 127.0.0.1:2525, the config says 0.0.0.0:25"),
            "{d}"
        );
        assert!(
            d.contains("its accounts are isp, work, the config has isp"),
            "{d}"
        );
        assert!(!d.contains("may run with another"), "it said which: {d}");
        let older = remote("127.0.0.1:2525", &["isp", "work"], None);
        let d = older.differs_from(&config, ours).unwrap();
        assert!(d.ends_with("it may run with another config file"), "{d}");
    }
}
