//! What a fetch produced: per-domain ETRN/ATRN outcomes, each account's session result, stored
//! messages, and the redacted transcript.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::FetchMode;
use crate::client::transcript::Transcript;
use crate::client::{IspError, ServerInfo};
use crate::event::{Event, EventSink};
use crate::hint::Problem;
use crate::printable;

/// What the ISP's reply to one `ETRN` (RFC 1985) or `ATRN` (RFC 2645) means for that domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DomainOutcome {
    /// 250, 252 or 253: a queue run started; mail may be coming. `expected` is 253's count.
    Started {
        /// The number of messages a `253 <n>` reply announced.
        expected: Option<u32>,
    },
    /// 251: the ISP holds no mail for this domain.
    NoMail,
    /// 458 "Already processing" (Exim): a run for this domain is going on already; mail may come.
    AlreadyRunning,
    /// 458 or another 4xx, still so after the bounded retries: try again later.
    Deferred,
    /// 459: the ISP is not set up to hold mail for this domain.
    NotAllowed,
    /// 500/501/502: the ISP does not understand ETRN, or wants another argument form.
    Unsupported,
    /// 503: bad command sequence (EHLO/HELO first, or inside a transaction).
    BadSequence,
    /// 530: the ISP wants AUTH (or STARTTLS) before ETRN.
    AuthRequired,
    /// 554 or another 5xx: refused by the ISP's policy.
    Rejected,
    /// The ETRN could not be sent: the session failed before (connect, TLS, AUTH, ETRN not offered).
    NotSent,
}

impl DomainOutcome {
    /// Whether the ETRN was accepted (the domain counts as fetched, even with no mail).
    pub fn is_accepted(self) -> bool {
        matches!(
            self,
            DomainOutcome::Started { .. } | DomainOutcome::NoMail | DomainOutcome::AlreadyRunning
        )
    }

    /// Whether mail may be on its way after this reply, so the listener must wait for it.
    pub fn expects_delivery(self) -> bool {
        matches!(
            self,
            DomainOutcome::Started { .. } | DomainOutcome::AlreadyRunning
        )
    }

    /// Whether trying again later may succeed (4xx); permanent outcomes need the user or the ISP.
    pub fn is_transient(self) -> bool {
        matches!(self, DomainOutcome::Deferred | DomainOutcome::NotSent)
    }

    /// A one-line explanation for the user of what this outcome means in `mode`, with what to
    /// do about it.
    pub fn describe_for(self, mode: FetchMode, domain: &str) -> String {
        if mode == FetchMode::Etrn {
            return self.describe(domain);
        }
        match self {
            DomainOutcome::Started { .. } => "the ISP turned the line around to deliver".into(),
            DomainOutcome::NoMail => "no mail waiting".into(),
            DomainOutcome::NotAllowed => format!(
                "the ISP refused the ATRN request (450): the account may not fetch {domain}; check the domains and the user name, or ask the ISP"
            ),
            DomainOutcome::Deferred => {
                "the ISP cannot process ATRN now (4xx); try again later".into()
            }
            DomainOutcome::Unsupported => {
                "the ISP does not support ATRN here: use ETRN mode, or ask the ISP".into()
            }
            DomainOutcome::BadSequence => {
                "the ISP answered 503 (bad sequence) to ATRN; please report this".into()
            }
            DomainOutcome::AuthRequired => {
                "the ISP wants authentication before ATRN: check the account's user name and password".into()
            }
            other => other.describe(domain),
        }
    }

    /// A one-line explanation of an ETRN outcome for the user, with what to do about it.
    pub fn describe(self, domain: &str) -> String {
        match self {
            DomainOutcome::Started { expected: Some(n) } => {
                format!("queue run started, {n} message(s) expected")
            }
            DomainOutcome::Started { expected: None } => "queue run started".into(),
            DomainOutcome::NoMail => "no mail waiting".into(),
            DomainOutcome::AlreadyRunning => "a queue run for it is already going on".into(),
            DomainOutcome::Deferred => {
                "the ISP could not start a queue run now (4xx); try again later".into()
            }
            DomainOutcome::NotAllowed => format!(
                "the ISP does not hold mail for {domain} (459): check the domain, or ask the ISP to enable ETRN for it"
            ),
            DomainOutcome::Unsupported => format!(
                "the ISP rejected the ETRN command or its argument: try another form (#{domain} for Exim, @{domain} for subdomains), or ask the ISP whether it supports ETRN"
            ),
            DomainOutcome::BadSequence => {
                "the ISP answered 503 (bad sequence): it may want HELO instead of EHLO; please report this".into()
            }
            DomainOutcome::AuthRequired => {
                "the ISP wants authentication first: give the account a user name and password (and security STARTTLS or TLS)".into()
            }
            DomainOutcome::Rejected => {
                "refused by the ISP's policy: check the credentials or ask the ISP".into()
            }
            DomainOutcome::NotSent => "not asked: the session with the ISP failed before".into(),
        }
    }
}

/// One domain's ETRN or ATRN result within a fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainReport {
    /// The account the domain belongs to.
    pub account: String,
    /// How the account fetches (records written before modes existed read as ETRN).
    #[serde(default)]
    pub mode: FetchMode,
    /// The domain as asked: the ETRN argument (`example.com`, `@example.com`, `#example.com`),
    /// or the bare name in the ATRN list.
    pub domain: String,
    /// The ISP's last reply code, when there was one.
    pub code: Option<u16>,
    /// The ISP's last reply text (all lines joined with a space).
    pub text: String,
    /// What the reply means.
    pub outcome: DomainOutcome,
    /// How many times ETRN (or the ATRN naming it) was sent (retries included).
    pub attempts: u32,
    /// How many stored messages had a recipient in this domain.
    pub messages: u32,
}

impl DomainReport {
    /// The report of a domain of `account` not asked (yet).
    pub fn not_sent(account: &str, mode: FetchMode, domain: String) -> Self {
        DomainReport {
            account: account.to_string(),
            mode,
            domain,
            code: None,
            text: String::new(),
            outcome: DomainOutcome::NotSent,
            attempts: 0,
            messages: 0,
        }
    }

    /// A one-line explanation of this domain's result for the user.
    pub fn explain(&self) -> String {
        if self.outcome == DomainOutcome::NotSent && self.attempts > 0 {
            return match self.mode {
                // ETRN went out but no answer came back: the queue run may still have started.
                FetchMode::Etrn => "no answer to ETRN: the connection failed after it was sent; mail may still arrive, or fetch again".into(),
                FetchMode::Odmr => "no answer to ATRN: the connection failed after it was sent; fetch again".into(),
            };
        }
        self.outcome
            .describe_for(self.mode, self.domain.trim_start_matches(['@', '#']))
    }
}

/// The result of one account's ETRN session ([`crate::etrn`]) or ODMR sessions ([`crate::odmr`]).
#[derive(Debug, Clone)]
pub struct AccountResult {
    /// The account's name.
    pub account: String,
    /// One report per configured domain, in order.
    pub domains: Vec<DomainReport>,
    /// Set when the session failed before every domain was asked.
    pub error: Option<IspError>,
    /// What we learned of the server.
    pub server: ServerInfo,
    /// The conversation, AUTH redacted.
    pub transcript: Vec<TranscriptLine>,
}

impl AccountResult {
    /// The session's failure for people, with the setting that fixes it.
    pub fn problem(&self) -> Option<Problem> {
        self.error.as_ref().map(|e| {
            Problem::new(e.to_string())
                .for_account(&self.account)
                .fixed_by(e.fix(&self.account))
        })
    }

    /// The result with the session's transcript; a failure is noted at its end and published.
    pub fn finish(mut self, mut transcript: Vec<TranscriptLine>, events: &EventSink) -> Self {
        if let Some(problem) = self.problem() {
            let mut note = Transcript::default();
            note.note(&format!("session failed: {}", problem.message));
            transcript.extend(note.into_lines());
            events.emit(Event::Error(problem));
        }
        self.transcript = transcript;
        self
    }
}

/// Mail the ISP a fetch asked offered for one domain no account takes: put off with a 4xx, so
/// the ISP still holds it (an ETRN argument such as `#queue`, or an ISP grouping customers,
/// released more than the account's domains).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unclaimed {
    /// The domain, lower-cased.
    pub domain: String,
    /// How many recipients in it were put off (each attempt counts).
    pub recipients: u32,
    /// The accounts whose ISP offered it.
    pub accounts: Vec<String>,
}

impl Unclaimed {
    /// The problem for people: what stayed at the ISP and the two ways to fix it.
    pub fn problem(list: &[Unclaimed]) -> Option<Problem> {
        let first = list.first()?;
        let domains: Vec<String> = list
            .iter()
            .map(|u| {
                format!(
                    "{} ({} recipient(s))",
                    printable::line(&u.domain),
                    u.recipients
                )
            })
            .collect();
        let message = format!(
            "the ISP offered mail for domains no account takes: {}. Mailcall answered 450, so the \
             ISP keeps that mail for now (it bounces it once its queue lifetime runs out, often \
             after 5 days). Add the domain to the account's domains if it is yours, or change \
             the ETRN argument (a plain domain instead of #name) so the ISP releases only your \
             domains",
            domains.join(", ")
        );
        let problem = Problem::new(message);
        Some(match first.accounts.first() {
            Some(account) => {
                problem
                    .for_account(account)
                    .fixed_by(Some(crate::hint::Setting::account(
                        account,
                        crate::hint::AccountField::Domains,
                    )))
            }
            None => problem,
        })
    }
}

/// A message the listener stored durably in the Maildir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The envelope sender (`MAIL FROM`), empty for bounces.
    pub sender: String,
    /// The accepted envelope recipients.
    pub recipients: Vec<String>,
    /// The `From:` header, decoded, when present.
    pub from: Option<String>,
    /// The `Subject:` header, decoded, when present.
    pub subject: Option<String>,
    /// The `Message-ID:` header without angle brackets, when present.
    pub message_id: Option<String>,
    /// The size of the stored file in bytes (our added headers included).
    pub size: u64,
    /// The file in the Maildir's `new/` (the first Maildir copy; the spool file when the
    /// message only waits there).
    pub path: PathBuf,
    /// Every copy when there is more than the one file in `path`: a file per Maildir
    /// destination, and the spool entry that waits to be handed to servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<QueuedCopy>,
    /// The delivering peer's address.
    pub peer: String,
    /// When the `250` was sent.
    pub stored_at: DateTime<Utc>,
}

/// One copy of a stored message (see [`MessageInfo::copies`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCopy {
    /// The recipients it stands for.
    pub recipients: Vec<String>,
    /// Where it went or goes (`maildir:PATH`, `lmtp:HOST:PORT`, ...).
    pub destination: String,
    /// The file.
    pub path: PathBuf,
    /// Whether it waits in Mailcall's spool to be handed to a server.
    pub queued: bool,
}

impl MessageInfo {
    /// Who it is from, for people: the `From:` header, else the envelope sender (`<>` for bounces).
    pub fn from_display(&self) -> &str {
        match &self.from {
            Some(f) => f,
            None if self.sender.is_empty() => "<>",
            None => &self.sender,
        }
    }
}

impl std::fmt::Display for MessageInfo {
    /// `From - Subject (size) -> where`; what the sender wrote is shown on one line, its
    /// controls replaced ([`printable::line`]), so it can neither drive a terminal nor start a
    /// line of its own.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} - {} ({} bytes) -> ",
            printable::line(self.from_display()),
            printable::line(self.subject.as_deref().unwrap_or("(no subject)")),
            self.size,
        )?;
        if self.copies.is_empty() {
            return write!(f, "{}", self.path.display());
        }
        for (i, c) in self.copies.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            if c.queued {
                write!(
                    f,
                    "{sep}queued for {} ({})",
                    c.destination,
                    c.recipients.join(", ")
                )?;
            } else {
                write!(f, "{sep}{} ({})", c.path.display(), c.recipients.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Which way a transcript line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We sent it (`C:`).
    Sent,
    /// The server sent it (`S:`).
    Received,
    /// A note of ours: connect, TLS, a timeout (`*`).
    Note,
}

/// One line of an SMTP conversation; AUTH payloads are never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Which way it went.
    pub dir: Direction,
    /// The line, without CRLF (`AUTH PLAIN <redacted>` for credentials).
    pub line: String,
}

impl std::fmt::Display for TranscriptLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.dir {
            Direction::Sent => "C:",
            Direction::Received => "S:",
            Direction::Note => "* ",
        };
        write!(
            f,
            "{} {} {}",
            self.at.format("%H:%M:%S%.3f"),
            tag,
            self.line
        )
    }
}

/// What one hand-over of a spooled message to a LAN server did, per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOverReport {
    /// The spool id (what `queued as` said to the ISP).
    pub id: String,
    /// The server (`lmtp:127.0.0.1:24`, `smtp:mail.lan:25 (starttls)`).
    pub target: String,
    /// The envelope sender.
    pub sender: String,
    /// `Message-ID:` without brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `Subject:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Each recipient handed over (or tried), with what became of it.
    pub recipients: Vec<RecipientOutcome>,
    /// When it ended.
    pub at: DateTime<Utc>,
}

impl HandOverReport {
    /// Whether this was outgoing mail sent through a smarthost (not a LAN hand-over).
    pub fn is_outgoing(&self) -> bool {
        self.target
            .starts_with(crate::routing::route::SMARTHOST_PREFIX)
    }
}

/// One recipient of a hand-over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    /// The address.
    pub address: String,
    /// What became of it.
    pub outcome: HandOverOutcome,
    /// The server's reply, or why there was none.
    pub reply: String,
}

/// What became of one recipient of a hand-over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HandOverOutcome {
    /// The server took it (2xx): it has left Mailcall.
    Delivered,
    /// Not now (4xx, or no answer): it stays queued and is tried again by itself.
    Deferred {
        /// Attempts so far.
        attempts: u32,
        /// When it is tried again.
        next_attempt: DateTime<Utc>,
    },
    /// Refused for good (5xx): it stays in the queue, held, until it is retried, bounced or
    /// deleted.
    Failed,
}

impl std::fmt::Display for HandOverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (&self.message_id, &self.subject) {
            (Some(id), _) => format!("<{id}>"),
            (None, Some(s)) => format!("{s:?}"),
            (None, None) => self.id.clone(),
        };
        write!(f, "{what} -> {}:", self.target)?;
        for (i, r) in self.recipients.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            let word = match &r.outcome {
                HandOverOutcome::Delivered => "delivered".to_string(),
                HandOverOutcome::Deferred {
                    attempts,
                    next_attempt,
                } => format!(
                    "deferred (attempt {attempts}, next at {})",
                    next_attempt
                        .with_timezone(&chrono::Local)
                        .format("%H:%M:%S")
                ),
                HandOverOutcome::Failed => "refused, held in the queue".to_string(),
            };
            write!(f, "{sep}{} {word}: {}", r.address, r.reply)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_message_line_shows_what_the_sender_wrote_on_one_harmless_line() {
        let info = MessageInfo {
            sender: "a@x.test".into(),
            recipients: vec!["b@y.test".into()],
            from: Some("Bank\x1b[8m <a@x.test>".into()),
            subject: Some("Pay\r\nerror: \x1b]52;c;eA==\x07now \u{202e}fdp.exe".into()),
            message_id: None,
            size: 10,
            path: PathBuf::from("new/1"),
            copies: Vec::new(),
            peer: "127.0.0.1".into(),
            stored_at: Utc::now(),
        };
        assert_eq!(
            info.to_string(),
            "Bank\u{fffd}[8m <a@x.test> - Pay  error: \u{fffd}]52;c;eA==\u{fffd}now \
             \u{fffd}fdp.exe (10 bytes) -> new/1"
        );
    }
}
