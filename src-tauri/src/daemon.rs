//! The tray as a front end to a Mailcall that already runs (`mailcall-cli daemon`, or another
//! tray) with the same config: what it asks over that one's control socket (fetch, pause,
//! status, reload), and its events and state, followed until it goes away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailcall_core::control::{self, ControlError, EventStream, Status};
use mailcall_core::event::Event;
use mailcall_core::history::{SessionRecord, Trigger};
use mailcall_core::spool::actions::{ActionResult, Selection};
use tokio_util::sync::CancellationToken;

/// How often the daemon's state (the pause switch, whether it is still there) is asked: its
/// events say nothing about the pause switch, which scripts may flip too.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How long a short request (status, pause, reload) may take before the daemon counts as hung.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// The running daemon this tray uses.
#[derive(Debug, Clone)]
pub struct DaemonLink {
    socket: PathBuf,
    listen: String,
    accounts: Vec<String>,
    /// The config file it runs with (`None`: an older daemon that does not say).
    config: Option<PathBuf>,
}

/// What following the daemon brings.
#[derive(Debug)]
pub enum News {
    /// One of its events (as if it happened here).
    Event(Event),
    /// Its state, asked now.
    Status(Status),
    /// It is gone (stopped, or no longer answers): why.
    Gone(String),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

async fn limited<T>(
    socket: &Path,
    request: impl std::future::Future<Output = Result<T, ControlError>>,
) -> Result<T, ControlError> {
    tokio::time::timeout(REQUEST_LIMIT, request)
        .await
        .unwrap_or_else(|_| {
            Err(ControlError::Io {
                path: socket.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", REQUEST_LIMIT.as_secs()),
                ),
            })
        })
}

impl DaemonLink {
    /// Connects to the Mailcall answering on `socket`: its events from now on, and its state.
    pub async fn connect(socket: PathBuf) -> Result<(Self, EventStream, Status), ControlError> {
        // Events first, so nothing that happens between the two requests is missed.
        let events = limited(&socket, control::subscribe(&socket)).await?;
        let status = limited(&socket, control::status(&socket)).await?;
        let link = DaemonLink {
            listen: status.listen.clone().unwrap_or_default(),
            accounts: status.accounts.clone(),
            config: status.config.as_ref().map(PathBuf::from),
            socket,
        };
        Ok((link, events, status))
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where its listener listens (as it said when the tray connected).
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// The config file it runs with, when it is another one than `ours` (its history and its
    /// queue are in that one's data directory).
    pub fn other_config(&self, ours: &Path) -> Option<&Path> {
        let theirs = self.config.as_deref()?;
        (!mailcall_core::fsutil::same_path(theirs, ours)).then_some(theirs)
    }

    /// How it differs from `config`, read from `path` (its config file, its listener, its
    /// accounts), in words; `None` when it runs as `config` says.
    pub fn differs_from(
        &self,
        config: &mailcall_core::config::Config,
        path: &Path,
    ) -> Option<String> {
        let mut differences = Vec::new();
        if let Some(theirs) = self.other_config(path) {
            differences.push(format!(
                "it runs with {}, this window's settings are {}",
                theirs.display(),
                path.display()
            ));
        }
        // Port 0 in the config is "any free port": whichever the daemon got is as configured.
        // A daemon with only ODMR accounts listens nowhere: nothing to compare.
        let same_listener = self.listen.is_empty()
            || match self.listen.parse::<std::net::SocketAddr>() {
                Ok(theirs) if config.listen.port() == 0 => theirs.ip() == config.listen.ip(),
                Ok(theirs) => theirs == config.listen,
                Err(_) => false,
            };
        if !same_listener {
            differences.push(format!(
                "it listens on {}, the config says {}",
                self.listen, config.listen
            ));
        }
        let mut theirs = self.accounts.clone();
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
        if self.config.is_none() && !differences.is_empty() {
            // An older daemon does not name its file: this is what shows it may use another.
            differences.push("it may run with another config file".to_string());
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }

    /// Asks it to fetch every account for `trigger` (the tray's or the window's Fetch now) and
    /// waits for the session's record; progress comes as its events meanwhile.
    pub async fn fetch(&self, trigger: Trigger) -> Result<SessionRecord, ControlError> {
        control::fetch_as(&self.socket, trigger, &[]).await
    }

    /// Pauses or resumes its automatic fetching; the switch as it is then.
    pub async fn set_paused(&self, paused: bool) -> Result<bool, ControlError> {
        limited(&self.socket, control::set_paused(&self.socket, paused)).await
    }

    /// Its state now.
    pub async fn status(&self) -> Result<Status, ControlError> {
        limited(&self.socket, control::status(&self.socket)).await
    }

    /// Asks it to read the accounts again (after an edit in the window); the ones it skipped.
    pub async fn reload(&self) -> Result<Vec<String>, ControlError> {
        limited(&self.socket, control::reload(&self.socket)).await
    }

    /// Asks it to act on its queue (`verb`: RETRY, BOUNCE or DELETE); what it did.
    pub async fn queue(
        &self,
        verb: &str,
        selection: &Selection,
    ) -> Result<ActionResult, ControlError> {
        limited(&self.socket, control::queue(&self.socket, verb, selection)).await
    }

    /// Follows the daemon until `stop` or until it is gone: each event, its state every few
    /// seconds, and finally [`News::Gone`] (sent once, then this returns).
    pub async fn follow(
        &self,
        mut events: EventStream,
        stop: CancellationToken,
        mut news: impl FnMut(News),
    ) {
        let mut ticks = tokio::time::interval(STATUS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = events.next() => match next {
                    Ok(Some(event)) => news(News::Event(event)),
                    Ok(None) => return news(News::Gone("it stopped".into())),
                    Err(e) => return news(News::Gone(e.to_string())),
                },
                _ = ticks.tick() => match self.status().await {
                    Ok(status) => news(News::Status(status)),
                    Err(e) if e.is_not_running() => return news(News::Gone("it stopped".into())),
                    // A slow answer is not the end: the event stream tells when it is.
                    Err(e) => tracing::warn!("the running Mailcall did not answer STATUS: {e}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailcall_core::config::Config;

    #[test]
    fn a_daemon_with_another_listener_or_accounts_is_told_apart() {
        let link = DaemonLink {
            socket: "/run/mailcall/control.sock".into(),
            listen: "127.0.0.1:2525".into(),
            accounts: vec!["isp".into(), "work".into()],
            config: Some("/etc/mailcall/config.toml".into()),
        };
        let ours = Path::new("/etc/mailcall/config.toml");
        let mut config = Config::default();
        config.set("listen", "127.0.0.1:2525").expect("valid");
        config.add_account("work");
        config.add_account("isp");
        assert_eq!(link.differs_from(&config, ours), None);
        assert_eq!(link.other_config(ours), None);
        config.set("listen", "127.0.0.1:0").expect("valid");
        assert_eq!(link.differs_from(&config, ours), None, "port 0 is any port");
        let elsewhere = Path::new("/home/me/.config/mailcall/config.toml");
        assert_eq!(
            link.other_config(elsewhere),
            Some(Path::new("/etc/mailcall/config.toml"))
        );
        let d = link.differs_from(&config, elsewhere).expect("differs");
        assert_eq!(
            d,
            "it runs with /etc/mailcall/config.toml, this window's settings are /home/me/.config/mailcall/config.toml"
        );
        config.set("listen", "0.0.0.0:25").expect("valid");
        config.remove_account("work");
        let d = link.differs_from(&config, ours).expect("differs");
        assert!(
            d.contains("it listens on 127.0.0.1:2525, the config says 0.0.0.0:25"),
            "{d}"
        );
        assert!(
            d.contains("its accounts are isp, work, the config has isp"),
            "{d}"
        );
        assert!(!d.contains("may run with another"), "it said which: {d}");
        let older = DaemonLink {
            config: None,
            ..link
        };
        let d = older.differs_from(&config, ours).expect("differs");
        assert!(d.ends_with("it may run with another config file"), "{d}");
    }
}
