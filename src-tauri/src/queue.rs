//! The Queue view: the mail waiting in Mailcall's spool for a LAN mail server (LMTP, SMTP), read
//! from the spool's files as `mailcall-cli queue` reads them, and the actions on it (Retry now,
//! Bounce, Delete) as the window names them. What an action does is the core's
//! ([`mailcall_core::spool::actions`]), run by whoever hands the mail on: the instance here, or
//! the daemon this tray fronts (`QUEUE` on its control socket).

use std::path::Path;

use chrono::{DateTime, Utc};
use mailcall_core::spool::actions::ActionResult;
use mailcall_core::spool::{Spool, Status, SPOOL_DIR};
use serde::{Deserialize, Serialize};

/// What the user asked the queue to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueAction {
    /// Hand the messages on now (refused recipients are tried again too).
    Retry,
    /// Give them up: a delivery report with each message goes into the Maildir.
    Bounce,
    /// Remove them; nothing is sent or kept.
    Delete,
}

impl QueueAction {
    /// The verb of the control socket's `QUEUE` request.
    pub fn verb(self) -> &'static str {
        match self {
            QueueAction::Retry => "RETRY",
            QueueAction::Bounce => "BOUNCE",
            QueueAction::Delete => "DELETE",
        }
    }

    /// What it did, in a sentence for the window.
    pub fn done(self, r: &ActionResult) -> String {
        let verb = match self {
            QueueAction::Retry => "Handing on now",
            QueueAction::Bounce => "Bounced",
            QueueAction::Delete => "Deleted",
        };
        let mut text = format!(
            "{verb}: {} message(s), {} recipient(s).",
            r.messages, r.recipients
        );
        if !r.reports.is_empty() {
            let files: Vec<String> = r.reports.iter().map(|p| p.display().to_string()).collect();
            text.push_str(&format!(
                " The delivery report is in the Maildir: {}",
                files.join(", ")
            ));
        }
        text
    }
}

/// One recipient of a queued message, as the Queue view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientView {
    /// The address.
    pub address: String,
    /// Where it goes (`lmtp:127.0.0.1:24`, `smtp:mail.lan:25 (starttls)`).
    pub destination: String,
    /// `waiting`, `refused`, `delivered` or `bounced`.
    pub state: &'static str,
    /// Hand-overs tried.
    pub attempts: u32,
    /// When the next one is due (`None`: now, or never for refused mail).
    pub next_attempt: Option<DateTime<Utc>>,
    /// The server's last reply, or why there was none.
    pub reply: Option<String>,
    /// An earlier attempt may have been stored by the server (a retry may make a second copy).
    pub maybe_delivered: bool,
}

/// One message in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// Its id (what Retry, Bounce and Delete name).
    pub id: String,
    /// When the ISP got its 250.
    pub received_at: DateTime<Utc>,
    /// The envelope sender (empty for bounces).
    pub sender: String,
    /// `From:`.
    pub from: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Each recipient with where it stands.
    pub recipients: Vec<RecipientView>,
}

/// The whole queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// The messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Recipients waiting (retried by themselves).
    pub waiting: usize,
    /// Recipients a server refused (held until retried, bounced or deleted).
    pub refused: usize,
    /// Files in the spool that cannot be read (they stay untouched).
    pub problems: Vec<String>,
    /// Who hands this mail on, when that is not this tray (a daemon).
    pub note: Option<String>,
}

/// The spool of a config's data directory.
pub fn spool_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(SPOOL_DIR)
}

/// Reads the queue from the spool at `dir` (blocking file I/O); an absent spool is empty.
pub fn read(dir: &Path) -> Result<QueueView, String> {
    if !dir.join("new").is_dir() {
        return Ok(QueueView::default());
    }
    let spool = Spool::open(dir)
        .map_err(|e| format!("cannot open Mailcall's queue {}: {e}", dir.display()))?;
    read_spool(&spool)
}

/// Reads the queue from `spool`.
pub fn read_spool(spool: &Spool) -> Result<QueueView, String> {
    let (entries, problems) = spool.entries().map_err(|e| {
        format!(
            "cannot read Mailcall's queue {}: {e}",
            spool.root().display()
        )
    })?;
    let mut view = QueueView {
        problems,
        ..QueueView::default()
    };
    for e in &entries {
        let headline = spool.headline(e);
        let recipients = e
            .envelope
            .recipients
            .iter()
            .zip(&e.state.recipients)
            .map(|(r, s)| {
                let state = match s.status {
                    Status::Queued => {
                        view.waiting += 1;
                        "waiting"
                    }
                    Status::Failed => {
                        view.refused += 1;
                        "refused"
                    }
                    Status::Delivered => "delivered",
                    Status::Bounced => "bounced",
                };
                RecipientView {
                    address: r.address.clone(),
                    destination: r.target.to_string(),
                    state,
                    attempts: s.attempts,
                    next_attempt: s.next_attempt.filter(|_| s.status == Status::Queued),
                    reply: s.reply.clone(),
                    maybe_delivered: s.maybe_delivered,
                }
            })
            .collect();
        view.messages.push(MessageView {
            id: e.id.clone(),
            received_at: e.envelope.received_at,
            sender: e.envelope.sender.clone(),
            from: headline.from,
            subject: headline.subject,
            size: e.size,
            recipients,
        });
    }
    Ok(view)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_spool_is_an_empty_queue_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        assert_eq!(read(&spool).unwrap(), QueueView::default());
        assert!(!spool.exists(), "reading must not create the spool");
    }

    #[test]
    fn action_results_read_as_sentences() {
        let r = ActionResult {
            messages: 1,
            recipients: 2,
            reports: vec!["/m/new/dsn".into()],
        };
        assert_eq!(
            QueueAction::Bounce.done(&r),
            "Bounced: 1 message(s), 2 recipient(s). The delivery report is in the Maildir: /m/new/dsn"
        );
        assert_eq!(QueueAction::Retry.verb(), "RETRY");
    }
}
