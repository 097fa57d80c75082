//! What a user can do to the queue: list it, retry now, hold and release, bounce (a DSN to the
//! sender of outgoing mail, else into the postmaster's Maildir, see [`super::dsn`]), delete. Whoever acts holds the spool's lock — the runner of
//! a running Mailcall (asked by its front end or over the control socket), else
//! [`super::offline`] for `mailcall-cli queue` with nothing running.

use std::io;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{dsn, Entry, Headline, Spool, Status};
use crate::config::ConfigKey;
use crate::hint::{Problem, Setting};
use crate::maildir::Maildir;

/// Reading the queue, or a user's action on it, failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The spool's directory cannot be listed.
    #[error("cannot read Mailcall's queue {}: {source}", path.display())]
    Read {
        /// The spool.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The spool cannot be opened.
    #[error("cannot open Mailcall's queue {}: {source}", path.display())]
    Open {
        /// The spool.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// An id that matches no message.
    #[error("no message {0:?} in the queue")]
    NoSuchMessage(String),
    /// An id that matches several messages.
    #[error("{id:?} matches {count} messages: give more of the id")]
    Ambiguous {
        /// The id given.
        id: String,
        /// How many it matches.
        count: usize,
    },
    /// A message being handed over right now: its worker owns its state.
    #[error("{0} is being handed over right now; try again in a moment")]
    HandingOver(String),
    /// A message's file cannot be read (for its bounce).
    #[error("cannot read {id}: {source}")]
    ReadMessage {
        /// The message.
        id: String,
        /// What the file system said.
        source: io::Error,
    },
    /// A message's state cannot be written.
    #[error("cannot update {id}: {source}")]
    Update {
        /// The message.
        id: String,
        /// What the file system said.
        source: io::Error,
    },
    /// A message cannot be removed.
    #[error("cannot remove {id}: {source}")]
    Remove {
        /// The message.
        id: String,
        /// What the file system said.
        source: io::Error,
    },
    /// A bounce cannot be stored in the postmaster's Maildir (the message stays queued).
    #[error("cannot store the bounce of {id} in {}: {source}", maildir.display())]
    StoreBounce {
        /// The message.
        id: String,
        /// The postmaster's Maildir.
        maildir: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The runner that holds the spool's lock has stopped (Mailcall is quitting).
    #[error("the queue runner has stopped")]
    RunnerStopped,
}

impl ActionError {
    /// Whether the selection is what is wrong (an id that matches nothing, or several): the
    /// user names the messages again; nothing was changed.
    pub fn is_selection(&self) -> bool {
        matches!(
            self,
            ActionError::NoSuchMessage(_) | ActionError::Ambiguous { .. }
        )
    }

    /// Whether the same action may work in a moment (the message was being handed over).
    pub fn is_transient(&self) -> bool {
        matches!(self, ActionError::HandingOver(_))
    }

    /// The setting that fixes it, when one does: the data directory for a spool that cannot
    /// be read or written, the Maildir for a bounce that cannot be stored.
    pub fn fix(&self) -> Option<Setting> {
        match self {
            ActionError::Read { .. }
            | ActionError::Open { .. }
            | ActionError::ReadMessage { .. }
            | ActionError::Update { .. }
            | ActionError::Remove { .. } => Some(Setting::config(ConfigKey::DataDir)),
            ActionError::StoreBounce { .. } => Some(Setting::config(ConfigKey::Maildir)),
            ActionError::NoSuchMessage(_)
            | ActionError::Ambiguous { .. }
            | ActionError::HandingOver(_)
            | ActionError::RunnerStopped => None,
        }
    }

    /// As a problem for people, with the setting that fixes it.
    pub fn problem(&self) -> Problem {
        Problem::new(self.to_string()).fixed_by(self.fix())
    }
}

/// What a user can ask of queued messages: one enum for the CLI, the tray and the control
/// protocol, matched exhaustively wherever it is done — a misspelt action is refused where it is
/// read, it can never fall through to a delete. (Its words on the control socket are the
/// protocol's; the window sends the lowercase names.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Hand the messages on now (refused recipients are tried again too).
    Retry,
    /// Give them up: a delivery report with each message goes into the postmaster's Maildir.
    Bounce,
    /// Remove them; nothing is sent or kept.
    Delete,
    /// Keep them from being tried (kept across restarts) until released.
    Hold,
    /// Let held messages be tried again, at once.
    Release,
}

impl Action {
    /// Whether it gives mail up for good (bounce, delete): front ends ask first.
    pub fn is_destructive(self) -> bool {
        match self {
            Action::Retry | Action::Hold | Action::Release => false,
            Action::Bounce | Action::Delete => true,
        }
    }
}

/// One queued message as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The message: envelope, state per recipient, size.
    pub entry: Entry,
    /// Its From, Subject and Message-ID.
    pub headline: Headline,
}

/// The queue as read from the spool's files (oldest first), for `mailcall-cli queue` and the
/// tray's Queue view.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The messages.
    pub messages: Vec<Listed>,
    /// Files in the spool that cannot be read (they stay untouched).
    pub problems: Vec<String>,
}

impl Listing {
    /// Reads `spool` (blocking file I/O).
    pub fn of(spool: &Spool) -> Result<Self, ActionError> {
        let (entries, problems) = spool.entries().map_err(|source| ActionError::Read {
            path: spool.root().to_path_buf(),
            source,
        })?;
        let messages = entries
            .into_iter()
            .map(|entry| Listed {
                headline: spool.headline(&entry),
                entry,
            })
            .collect();
        Ok(Listing { messages, problems })
    }

    /// Reads the spool at `dir` (blocking file I/O); a spool that does not exist yet is empty,
    /// and reading does not create it.
    pub fn read(dir: &Path) -> Result<Self, ActionError> {
        if !dir.join("new").is_dir() {
            return Ok(Listing::default());
        }
        let spool = Spool::open(dir).map_err(|source| ActionError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        Listing::of(&spool)
    }
}

/// Which messages an action is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every message in the queue.
    All,
    /// The messages with these ids (or unique beginnings of ids).
    Ids(Vec<String>),
}

impl Selection {
    /// The entries it picks, or what is wrong (an id that matches nothing or several).
    pub fn pick(&self, entries: Vec<Entry>) -> Result<Vec<Entry>, ActionError> {
        match self {
            Selection::All => Ok(entries),
            Selection::Ids(ids) => {
                let mut picked: Vec<Entry> = Vec::new();
                for id in ids {
                    let matches: Vec<&Entry> = entries
                        .iter()
                        .filter(|e| e.id == *id || e.name == *id || e.id.starts_with(id.as_str()))
                        .collect();
                    match matches.as_slice() {
                        [] => return Err(ActionError::NoSuchMessage(id.clone())),
                        [one] => {
                            if !picked.iter().any(|p| p.name == one.name) {
                                picked.push((*one).clone());
                            }
                        }
                        _ => {
                            return Err(ActionError::Ambiguous {
                                id: id.clone(),
                                count: matches.len(),
                            })
                        }
                    }
                }
                Ok(picked)
            }
        }
    }
}

impl Selection {
    /// The entries of `entries` it names (all for [`Selection::All`]); names that match
    /// nothing, or several, pick nothing here.
    pub fn pick_present(&self, entries: Vec<Entry>) -> Vec<Entry> {
        match self {
            Selection::All => entries,
            Selection::Ids(ids) => entries
                .into_iter()
                .filter(|e| {
                    ids.iter()
                        .any(|id| e.id == *id || e.name == *id || e.id.starts_with(id.as_str()))
                })
                .collect(),
        }
    }
}

/// Why a message bounced when the postmaster asked for it.
pub const BOUNCED_BY_HAND: &str =
    "The postmaster gave it up (mailcall-cli queue bounce, or the tray's Bounce).";

/// What an action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Messages it touched.
    pub messages: usize,
    /// Recipients it touched.
    pub recipients: usize,
    /// The DSN files written (bounce only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<std::path::PathBuf>,
}

/// Where a bounce's delivery report goes: the postmaster's Maildir, and, for outgoing mail,
/// its sender (a local user) through the routes of incoming mail when they are known.
#[derive(Debug, Clone, Copy)]
pub struct Reports<'a> {
    /// The postmaster's Maildir (mail for LAN servers, and the null sender's outgoing mail).
    pub postmaster: &'a Maildir,
    /// The routes, for outgoing mail's sender; `None`: its report goes to the postmaster too.
    pub router: Option<&'a super::copies::Router>,
    /// Our host name, as reports say it.
    pub host: &'a str,
}

/// Does `action` to the selected messages, leaving those with an id in `skip` (being handed over
/// right now) alone; bounces' reports go where `reports` says.
pub async fn apply(
    action: Action,
    spool: &Spool,
    selection: &Selection,
    reports: Reports<'_>,
    skip: &[String],
) -> Result<ActionResult, ActionError> {
    match action {
        Action::Retry => retry(spool, selection, skip),
        Action::Bounce => bounce(spool, selection, reports, BOUNCED_BY_HAND, skip).await,
        Action::Delete => delete(spool, selection, skip),
        Action::Hold => hold(spool, selection, skip, true),
        Action::Release => hold(spool, selection, skip, false),
    }
}

/// Holds the selected messages (`held`), or releases them, durably; a released message is
/// due at once. Messages already so are not counted.
pub fn hold(
    spool: &Spool,
    selection: &Selection,
    skip: &[String],
    held: bool,
) -> Result<ActionResult, ActionError> {
    let mut result = ActionResult::default();
    for mut entry in picked(spool, selection, skip)? {
        if entry.state.held == held || entry.state.is_done() {
            continue;
        }
        entry.state.held = held;
        let mut open = 0;
        for r in &mut entry.state.recipients {
            if r.status == Status::Queued {
                open += 1;
                if !held {
                    r.next_attempt = None;
                }
            }
        }
        spool
            .save_state(&entry.name, &entry.state, true)
            .map_err(|source| ActionError::Update {
                id: entry.id.clone(),
                source,
            })?;
        result.messages += 1;
        result.recipients += open;
    }
    Ok(result)
}

/// Makes every queued or refused recipient of the selected messages due now (refused ones are
/// queued again).
/// Messages with an id in `skip` (being handed over right now) are left alone.
pub fn retry(
    spool: &Spool,
    selection: &Selection,
    skip: &[String],
) -> Result<ActionResult, ActionError> {
    let mut result = ActionResult::default();
    for mut entry in picked(spool, selection, skip)? {
        let mut touched = 0;
        for r in &mut entry.state.recipients {
            if matches!(r.status, Status::Queued | Status::Failed) {
                r.status = Status::Queued;
                r.next_attempt = None;
                touched += 1;
            }
        }
        if touched > 0 {
            spool
                .save_state(&entry.name, &entry.state, true)
                .map_err(|source| ActionError::Update {
                    id: entry.id.clone(),
                    source,
                })?;
            result.messages += 1;
            result.recipients += touched;
        }
    }
    Ok(result)
}

/// Gives up the selected messages' recipients that are not delivered: a DSN with the message
/// is stored durably first — for outgoing mail with a sender, in the sender's mailbox through
/// the routes; else in the postmaster's Maildir — then they are bounced and the messages leave
/// the queue.
pub async fn bounce(
    spool: &Spool,
    selection: &Selection,
    reports: Reports<'_>,
    why: &str,
    skip: &[String],
) -> Result<ActionResult, ActionError> {
    let (postmaster, host) = (reports.postmaster, reports.host);
    let mut result = ActionResult::default();
    for mut entry in picked(spool, selection, skip)? {
        let open: Vec<usize> = (0..entry.envelope.recipients.len())
            .filter(|&i| {
                entry
                    .state
                    .recipients
                    .get(i)
                    .is_some_and(|r| !r.status.is_done())
            })
            .collect();
        if open.is_empty() {
            continue;
        }
        let message = spool
            .read_message(&entry)
            .map_err(|source| ActionError::ReadMessage {
                id: entry.id.clone(),
                source,
            })?;
        let headline = spool.headline(&entry);
        let sender = entry.envelope.sender.clone();
        let router = reports
            .router
            .filter(|_| entry.is_outgoing() && !sender.is_empty());
        let report = dsn::build(
            &dsn::Bounce {
                host,
                entry: &entry,
                headline: &headline,
                recipients: &open,
                reason: why,
                at: Utc::now(),
                notice: if router.is_some() {
                    dsn::Notice::Failed
                } else {
                    dsn::Notice::Postmaster
                },
            },
            &message,
        );
        let path = match router {
            Some(router) => dsn::deliver_to_sender(router, host, &sender, &report)
                .await
                .map(|()| PathBuf::from(format!("<{sender}>")))
                .map_err(|source| ActionError::StoreBounce {
                    id: entry.id.clone(),
                    maildir: PathBuf::from(format!("the mailbox of <{sender}>")),
                    source,
                })?,
            None => {
                store(postmaster, &report)
                    .await
                    .map_err(|source| ActionError::StoreBounce {
                        id: entry.id.clone(),
                        maildir: postmaster.root().to_path_buf(),
                        source,
                    })?
            }
        };
        for &i in &open {
            entry.state.recipients[i].status = Status::Bounced;
        }
        finish(spool, &entry)?;
        result.messages += 1;
        result.recipients += open.len();
        result.reports.push(path);
    }
    Ok(result)
}

/// Removes the selected messages from the queue, nothing sent or stored anywhere.
pub fn delete(
    spool: &Spool,
    selection: &Selection,
    skip: &[String],
) -> Result<ActionResult, ActionError> {
    let mut result = ActionResult::default();
    for entry in picked(spool, selection, skip)? {
        spool
            .remove(&entry.name)
            .map_err(|source| ActionError::Remove {
                id: entry.id.clone(),
                source,
            })?;
        result.messages += 1;
        result.recipients += entry
            .state
            .recipients
            .iter()
            .filter(|r| !r.status.is_done())
            .count();
    }
    Ok(result)
}

fn picked(
    spool: &Spool,
    selection: &Selection,
    skip: &[String],
) -> Result<Vec<Entry>, ActionError> {
    let (entries, _) = spool.entries().map_err(|source| ActionError::Read {
        path: spool.root().to_path_buf(),
        source,
    })?;
    let picked = selection.pick(entries)?;
    Ok(picked
        .into_iter()
        .filter(|e| !skip.contains(&e.id))
        .collect())
}

/// Removes a finished entry, or saves its state durably.
fn finish(spool: &Spool, entry: &Entry) -> Result<(), ActionError> {
    let done = if entry.state.is_done() {
        spool.remove(&entry.name)
    } else {
        spool.save_state(&entry.name, &entry.state, true)
    };
    done.map_err(|source| ActionError::Update {
        id: entry.id.clone(),
        source,
    })
}

/// Stores a report in the postmaster's Maildir, as mail from `<>` to the postmaster.
async fn store(postmaster: &Maildir, report: &[u8]) -> std::io::Result<std::path::PathBuf> {
    let mut d = postmaster.begin().await?;
    d.write(b"Return-Path: <>\r\nDelivered-To: postmaster\r\n")
        .await?;
    d.write(report).await?;
    d.commit().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_spool_lists_empty_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let listing = Listing::read(&spool).unwrap();
        assert!(listing.messages.is_empty() && listing.problems.is_empty());
        assert!(!spool.exists(), "reading must not create the spool");
    }

    #[test]
    fn actions_read_as_the_window_sends_them() {
        for (word, action) in [
            ("retry", Action::Retry),
            ("bounce", Action::Bounce),
            ("delete", Action::Delete),
            ("hold", Action::Hold),
            ("release", Action::Release),
        ] {
            let read: Action = serde_json::from_str(&format!("{word:?}")).unwrap();
            assert_eq!(read, action);
        }
        assert!(serde_json::from_str::<Action>("\"remove\"").is_err());
        assert!(!Action::Retry.is_destructive() && Action::Delete.is_destructive());
        assert!(!Action::Hold.is_destructive() && !Action::Release.is_destructive());
    }
}
