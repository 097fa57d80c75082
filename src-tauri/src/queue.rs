//! The Queue view: the mail waiting in Mailcall's spool, both ways — outgoing mail for the
//! smarthost (`out`) beside incoming mail for a LAN mail server (`in`, LMTP or SMTP) — as the
//! core lists it, and what an action (Retry now, Hold, Release, Bounce, Delete) did, in the
//! window's words.
//! What an action does is the core's ([`Action`]), done by whoever hands the mail on: the
//! instance here, or the daemon this tray fronts.

use chrono::{DateTime, Utc};
use mailcall_core::spool::actions::{ActionResult, Listing};
use mailcall_core::spool::{Action, Status};
use serde::Serialize;

/// What `action` did, in a sentence for the window.
pub fn done(action: Action, r: &ActionResult) -> String {
    let verb = match action {
        Action::Retry => "Handing on now",
        Action::Bounce => "Bounced",
        Action::Delete => "Deleted",
        Action::Hold => "Held",
        Action::Release => "Released",
    };
    let mut text = format!(
        "{verb}: {} message(s), {} recipient(s).",
        r.messages, r.recipients
    );
    // A report for a local sender is named by the sender (`<me@example.com>`), one for the
    // postmaster by its file.
    let (senders, files): (Vec<String>, Vec<String>) = r
        .reports
        .iter()
        .map(|p| p.display().to_string())
        .partition(|p| p.starts_with('<'));
    if !files.is_empty() {
        text.push_str(&format!(
            " The delivery report is in the Maildir: {}",
            files.join(", ")
        ));
    }
    if !senders.is_empty() {
        text.push_str(&format!(
            " The delivery report went to the sender: {}",
            senders.join(", ")
        ));
    }
    text
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
    /// Its id (what Retry, Hold, Release, Bounce and Delete name).
    pub id: String,
    /// `out`: outgoing mail for the smarthost; `in`: incoming mail for a LAN server.
    pub direction: &'static str,
    /// Held by the user: not tried until released.
    pub held: bool,
    /// When it is tried next (`None`: held, refused, or nothing left to try).
    pub next_attempt: Option<DateTime<Utc>>,
    /// The last reply any of its recipients got.
    pub last_reply: Option<String>,
    /// An earlier attempt may have been stored: a retry may make a second copy.
    pub maybe_delivered: bool,
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
    /// Outgoing messages (for the smarthost).
    pub outgoing: usize,
    /// Messages held by the user.
    pub held: usize,
    /// Files in the spool that cannot be read (they stay untouched).
    pub problems: Vec<String>,
    /// Who hands this mail on, when that is not this tray (a daemon).
    pub note: Option<String>,
}

impl QueueView {
    /// The view of `listing`.
    pub fn of(listing: &Listing) -> Self {
        let mut view = QueueView {
            problems: listing.problems.clone(),
            ..QueueView::default()
        };
        for listed in &listing.messages {
            let (e, headline) = (&listed.entry, &listed.headline);
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
            let outgoing = e.is_outgoing();
            view.outgoing += usize::from(outgoing);
            view.held += usize::from(e.state.held);
            view.messages.push(MessageView {
                id: e.id.clone(),
                direction: if outgoing { "out" } else { "in" },
                held: e.state.held,
                next_attempt: e.next_attempt(),
                last_reply: e.last_reply().map(str::to_owned),
                maybe_delivered: e.state.recipients.iter().any(|s| s.maybe_delivered),
                received_at: e.envelope.received_at,
                sender: e.envelope.sender.clone(),
                from: headline.from.clone(),
                subject: headline.subject.clone(),
                size: e.size,
                recipients,
            });
        }
        view
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_listing_is_an_empty_queue() {
        assert_eq!(QueueView::of(&Listing::default()), QueueView::default());
    }

    #[tokio::test]
    async fn outgoing_mail_shows_its_direction_hold_last_reply_and_a_possible_second_copy() {
        use mailcall_core::spool::Spool;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        mailcall_core::outgoing::queue::submit(
            &spool,
            "isp",
            "me@office.test",
            &["you@far.test".to_owned()],
            "",
            b"Subject: hi\r\n\r\nbody\r\n",
            "local user",
        )
        .await
        .unwrap();
        let (entries, _) = spool.entries().unwrap();
        let mut state = entries[0].state.clone();
        state.held = true;
        state.recipients[0].attempts = 1;
        state.recipients[0].reply = Some("421 4.4.2 timeout after DATA".into());
        state.recipients[0].last_attempt = Some(Utc::now());
        state.recipients[0].maybe_delivered = true;
        spool.save_state(&entries[0].name, &state, true).unwrap();
        let view = QueueView::of(&Listing::of(&spool).unwrap());
        let m = &view.messages[0];
        assert_eq!(
            (m.direction, m.held, m.maybe_delivered),
            ("out", true, true)
        );
        assert_eq!(m.next_attempt, None, "held: never tried");
        assert_eq!(
            m.last_reply.as_deref(),
            Some("421 4.4.2 timeout after DATA")
        );
        assert_eq!(m.sender, "me@office.test");
        assert_eq!((view.outgoing, view.held, view.waiting), (1, 1, 1));
    }

    #[test]
    fn action_results_read_as_sentences() {
        let r = ActionResult {
            messages: 1,
            recipients: 2,
            reports: vec!["/m/new/dsn".into()],
        };
        assert_eq!(
            done(Action::Bounce, &r),
            "Bounced: 1 message(s), 2 recipient(s). The delivery report is in the Maildir: /m/new/dsn"
        );
        assert_eq!(
            done(Action::Hold, &ActionResult::default()),
            "Held: 0 message(s), 0 recipient(s)."
        );
        assert_eq!(
            done(Action::Retry, &ActionResult::default()),
            "Handing on now: 0 message(s), 0 recipient(s)."
        );
    }
}
