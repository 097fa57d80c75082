//! The queue when no Mailcall runs (`mailcall-cli queue` with nothing to ask): an action done in
//! this process while it holds the spool's lock, and after a retry the mail handed on from here
//! at once, each hand-over reported as an event.

use std::time::Duration;

use super::actions::{self, ActionError, ActionResult, Selection};
use super::runner::{self, RunnerOptions};
use super::{Action, Spool};
use crate::config::{Config, ConfigError};
use crate::event::EventSink;
use crate::maildir::Maildir;

/// How long a retry with no Mailcall running hands mail on before it gives up.
pub const RETRY_LIMIT: Duration = Duration::from_secs(120);

/// An action on the queue with no Mailcall running could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Another Mailcall hands mail on from this spool right now.
    #[error("another Mailcall is handing mail on from the queue right now (a fetch in progress?); try again when it has finished")]
    Busy,
    /// The spool's lock cannot be taken.
    #[error("cannot take the queue's lock in {path}: {source}")]
    Lock {
        /// The spool.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The config gives no usable Maildir or data directory.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The postmaster's Maildir (for bounces and retries) cannot be used.
    #[error("cannot use the Maildir {}: {source}", path.display())]
    Maildir {
        /// The Maildir.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The action itself failed (an id that matches nothing, a file that cannot be written).
    #[error(transparent)]
    Failed(#[from] ActionError),
}

impl OfflineError {
    /// Whether a setting needs the user (the config, the Maildir) rather than the action having
    /// failed.
    pub fn is_setup(&self) -> bool {
        matches!(self, OfflineError::Config(_) | OfflineError::Maildir { .. })
    }
}

/// Does `action` to the selected messages of `spool` (the spool of `config`'s data directory),
/// holding its lock; after a retry that made something due, hands the mail on from here until
/// nothing is due or [`RETRY_LIMIT`] passed, each hand-over and error going to `events`.
pub async fn act(
    config: &Config,
    spool: &Spool,
    action: Action,
    selection: &Selection,
    events: EventSink,
) -> Result<ActionResult, OfflineError> {
    let lock = spool.try_lock().map_err(|source| OfflineError::Lock {
        path: spool.root().to_path_buf(),
        source,
    })?;
    let Some(lock) = lock else {
        return Err(OfflineError::Busy);
    };
    let result = match action {
        Action::Retry => actions::retry(spool, selection, &[]),
        // The Maildir is only made for what needs it: a delete changes nothing else.
        Action::Bounce => {
            let postmaster = postmaster(config)?;
            let reports = actions::Reports {
                postmaster: &postmaster,
                router: None,
                host: &config.hostname(),
            };
            actions::bounce(spool, selection, reports, actions::BOUNCED_BY_HAND, &[]).await
        }
        Action::Delete => actions::delete(spool, selection, &[]),
        Action::Hold => actions::hold(spool, selection, &[], true),
        Action::Release => actions::hold(spool, selection, &[], false),
    }?;
    drop(lock);
    if matches!(action, Action::Retry | Action::Release) && result.messages > 0 {
        let options = RunnerOptions::from_config(config)?;
        let runner = runner::start(spool.clone(), postmaster(config)?, options, events);
        runner.finish(Some(RETRY_LIMIT)).await;
    }
    Ok(result)
}

/// The Maildir bounces go into, made if missing.
fn postmaster(config: &Config) -> Result<Maildir, OfflineError> {
    let path = config.maildir_path()?;
    Maildir::create(&path).map_err(|source| OfflineError::Maildir { path, source })
}
