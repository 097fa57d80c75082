//! The fetch history: one JSON record per session, appended to `history.jsonl` in the data directory.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hint::Problem;
use crate::report::{
    DomainReport, HandOverOutcome, HandOverReport, MessageInfo, TranscriptLine, Unclaimed,
};

/// The history file's name inside the data directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// What asked for a fetch. Serialised as the words history files have always held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `mailcall-cli fetch`.
    Cli,
    /// The tray's "Fetch now" (menu or click).
    Tray,
    /// The settings window's "Fetch now".
    Window,
    /// The control socket (`fetch --via-running`, `mailcall --fetch`, an ip-up script).
    Control,
    /// A watched interface came up.
    Network,
    /// The fetch interval while a link is up.
    Interval,
    /// Mailcall started with a link already up.
    Start,
    /// The ISP delivered on its own, outside any fetch.
    Isp,
    /// Mailcall's spool handing mail on to a LAN server (new mail, or a retry).
    Queue,
    /// Not known (a record from a crash, or from a newer version).
    #[serde(other)]
    Unknown,
}

impl Trigger {
    /// Whether this trigger is automatic (link-up, interval, start): paused by "Pause", and
    /// retried by itself when the session fails transiently.
    pub fn is_automatic(self) -> bool {
        matches!(self, Trigger::Network | Trigger::Interval | Trigger::Start)
    }

    /// The word, as in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Tray => "tray",
            Trigger::Window => "window",
            Trigger::Control => "control",
            Trigger::Network => "network",
            Trigger::Interval => "interval",
            Trigger::Start => "start",
            Trigger::Isp => "isp",
            Trigger::Queue => "queue",
            Trigger::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A front end that fetches by hand: the only triggers a front end's fetch (and a `FETCH` on the
/// control socket) may carry. An automatic trigger asked for from outside would be a lie in the
/// history, and the failed fetch would be retried as if a link had come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManualTrigger {
    /// `mailcall-cli fetch`.
    Cli,
    /// The tray's "Fetch now" (menu or click).
    Tray,
    /// The settings window's "Fetch now".
    Window,
    /// A script over the control socket (`fetch --via-running`, `mailcall --fetch`, ip-up).
    Control,
}

impl ManualTrigger {
    /// Every one of them.
    pub const ALL: [ManualTrigger; 4] = [
        ManualTrigger::Cli,
        ManualTrigger::Tray,
        ManualTrigger::Window,
        ManualTrigger::Control,
    ];

    /// The one whose word (as in the history) is `word`.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| Trigger::from(*t).as_str() == word)
    }
}

impl From<ManualTrigger> for Trigger {
    fn from(t: ManualTrigger) -> Self {
        match t {
            ManualTrigger::Cli => Trigger::Cli,
            ManualTrigger::Tray => Trigger::Tray,
            ManualTrigger::Window => Trigger::Window,
            ManualTrigger::Control => Trigger::Control,
        }
    }
}

impl std::fmt::Display for ManualTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Trigger::from(*self).as_str())
    }
}

/// Why a record's work ended. Serialised as the phrases history files have always held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndReason {
    /// No connection or message for the idle timeout.
    #[serde(rename = "idle")]
    Idle,
    /// Every message the `253 n` replies announced arrived.
    #[serde(rename = "expected messages arrived")]
    ExpectedArrived,
    /// The whole session reached `max-wait`.
    #[serde(rename = "max wait")]
    MaxWait,
    /// No reply started a queue run: no mail was coming.
    #[serde(rename = "nothing to wait for")]
    NothingToWaitFor,
    /// Every ODMR turn ended (the ISP said QUIT, or went quiet), and no ETRN delivery was due.
    #[serde(rename = "odmr deliveries ended")]
    DeliveriesEnded,
    /// Mailcall was stopped (or the session cancelled).
    #[serde(rename = "cancelled")]
    Cancelled,
    /// The SMTP listener stopped under the session.
    #[serde(rename = "listener stopped")]
    ListenerStopped,
    /// A delivery the ISP made on its own.
    #[serde(rename = "delivered outside a fetch")]
    OutsideFetch,
    /// The session's task failed (a bug).
    #[serde(rename = "crashed")]
    Crashed,
    /// A connect command failed.
    #[serde(rename = "connect command failed")]
    ConnectFailed,
    /// The connect command brought the link up.
    #[serde(rename = "link up")]
    LinkUp,
    /// The connect command ran but no watched link came up.
    #[serde(rename = "link did not come up")]
    LinkDidNotComeUp,
    /// The disconnect commands ran.
    #[serde(rename = "disconnected")]
    Disconnected,
    /// A disconnect command failed.
    #[serde(rename = "disconnect command failed")]
    DisconnectFailed,
    /// A hand-over session ended: nothing was left for its server.
    #[serde(rename = "nothing left to hand over")]
    HandedOver,
    /// A hand-over session ended: the server could not be reached or went away.
    #[serde(rename = "server unreachable")]
    ServerUnreachable,
    /// Not known (a record from a newer version).
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl EndReason {
    /// The phrase, as in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::ExpectedArrived => "expected messages arrived",
            EndReason::MaxWait => "max wait",
            EndReason::NothingToWaitFor => "nothing to wait for",
            EndReason::DeliveriesEnded => "odmr deliveries ended",
            EndReason::Cancelled => "cancelled",
            EndReason::ListenerStopped => "listener stopped",
            EndReason::OutsideFetch => "delivered outside a fetch",
            EndReason::Crashed => "crashed",
            EndReason::ConnectFailed => "connect command failed",
            EndReason::LinkUp => "link up",
            EndReason::LinkDidNotComeUp => "link did not come up",
            EndReason::Disconnected => "disconnected",
            EndReason::DisconnectFailed => "disconnect command failed",
            EndReason::HandedOver => "nothing left to hand over",
            EndReason::ServerUnreachable => "server unreachable",
            EndReason::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a history record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A fetch session: ETRN or ATRN to the accounts, then receiving.
    Fetch,
    /// The connect commands run before a manual fetch (dial-up).
    Connect,
    /// The disconnect commands run after it.
    Disconnect,
    /// Mail the ISP delivered on its own, outside a fetch.
    Delivery,
    /// Mailcall's spool handing mail on to one LAN server (LMTP, SMTP).
    #[serde(rename = "handover")]
    HandOver,
}

/// One fetch session (or dial-up step, or delivery outside a fetch) as kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredRecord")]
pub struct SessionRecord {
    /// Record id.
    pub id: String,
    /// What the record is about.
    pub kind: RecordKind,
    /// What started it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Per-domain results, in the order asked.
    pub domains: Vec<DomainReport>,
    /// Messages stored, in arrival order.
    pub messages: Vec<MessageInfo>,
    /// What went wrong, each saying what happened and what to do.
    pub errors: Vec<Problem>,
    /// Per-account transcripts (or command output), AUTH redacted.
    pub transcripts: Vec<(String, Vec<TranscriptLine>)>,
    /// Why it ended.
    pub ended_because: EndReason,
    /// Which attempt this was: automatic fetches try again after a transient failure.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
    /// The accounts whose session failed in a way that trying again may fix (the ISP could not
    /// be reached, said 421, or deferred an ETRN); empty when there is nothing to retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retryable: Vec<String>,
    /// A hand-over session's messages, each with what the server said per recipient.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<HandOverReport>,
    /// How many times the listener turned away the ISP this fetch asked (a 4xx at connect or in
    /// a session; the mail it tried to deliver then stayed at the ISP), over the whole session.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turned_away: u32,
    /// How many times the ETRN was sent again because the listener had turned the ISP away.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub asked_again: u32,
    /// Mail the ISP asked offered for domains no account takes, put off with a 4xx (it is
    /// still at the ISP), by domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unclaimed: Vec<Unclaimed>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn first_attempt() -> u32 {
    1
}

fn is_first_attempt(n: &u32) -> bool {
    *n == 1
}

/// A record as files hold it: before `kind` existed, a connect/disconnect step said so in its
/// `trigger`, and a delivery outside a fetch was trigger `isp`.
#[derive(Deserialize)]
struct StoredRecord {
    id: String,
    #[serde(default)]
    kind: Option<RecordKind>,
    trigger: serde_json::Value,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    #[serde(default)]
    domains: Vec<DomainReport>,
    #[serde(default)]
    messages: Vec<MessageInfo>,
    #[serde(default)]
    errors: Vec<Problem>,
    #[serde(default)]
    transcripts: Vec<(String, Vec<TranscriptLine>)>,
    ended_because: EndReason,
    #[serde(default = "first_attempt")]
    attempt: u32,
    #[serde(default)]
    retryable: Vec<String>,
    #[serde(default)]
    handovers: Vec<HandOverReport>,
    #[serde(default)]
    turned_away: u32,
    #[serde(default)]
    asked_again: u32,
    #[serde(default)]
    unclaimed: Vec<Unclaimed>,
}

impl From<StoredRecord> for SessionRecord {
    fn from(r: StoredRecord) -> Self {
        let word = r.trigger.as_str().unwrap_or_default();
        let kind = r.kind.unwrap_or(match word {
            "connect" => RecordKind::Connect,
            "disconnect" => RecordKind::Disconnect,
            "isp" => RecordKind::Delivery,
            _ => RecordKind::Fetch,
        });
        let trigger = serde_json::from_value(r.trigger).unwrap_or(Trigger::Unknown);
        SessionRecord {
            id: r.id,
            kind,
            trigger,
            started_at: r.started_at,
            finished_at: r.finished_at,
            domains: r.domains,
            messages: r.messages,
            errors: r.errors,
            transcripts: r.transcripts,
            ended_because: r.ended_because,
            attempt: r.attempt,
            retryable: r.retryable,
            handovers: r.handovers,
            turned_away: r.turned_away,
            asked_again: r.asked_again,
            unclaimed: r.unclaimed,
        }
    }
}

impl SessionRecord {
    /// A new session id: the start time (UTC, to the millisecond) and this process's id.
    pub fn new_id(at: DateTime<Utc>) -> String {
        format!("{}-{}", at.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id())
    }

    /// An empty record of `kind` started by `trigger` at `started_at`, ending now.
    pub fn new(
        kind: RecordKind,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        ended_because: EndReason,
    ) -> Self {
        let now = Utc::now();
        SessionRecord {
            id: SessionRecord::new_id(started_at),
            kind,
            trigger,
            started_at,
            finished_at: now,
            domains: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
            transcripts: Vec::new(),
            ended_because,
            attempt: 1,
            retryable: Vec::new(),
            handovers: Vec::new(),
            turned_away: 0,
            asked_again: 0,
            unclaimed: Vec::new(),
        }
    }

    /// The record for people: a headline, then a line per message and per domain, and the
    /// problems (each front end adds the fix in its own words). What `mailcall-cli fetch` and
    /// `mailcall --fetch` print, and the history shows.
    pub fn summary(&self) -> Summary {
        let secs = (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0;
        let headline = match self.kind {
            RecordKind::Fetch | RecordKind::Delivery => {
                let attempt = if self.attempt > 1 {
                    format!(" (attempt {})", self.attempt)
                } else {
                    String::new()
                };
                let turned = match (self.turned_away, self.asked_again) {
                    (0, _) => String::new(),
                    (n, 0) => format!("; the listener turned the ISP away {n} time(s)"),
                    (n, _) => {
                        format!("; the listener turned the ISP away {n} time(s), asked it again")
                    }
                };
                let unclaimed = match self.unclaimed.iter().map(|u| u.recipients).sum::<u32>() {
                    0 => String::new(),
                    n => format!(
                        "; {n} recipient(s) in domains no account takes left at the ISP ({})",
                        self.unclaimed
                            .iter()
                            .map(|u| crate::printable::line(&u.domain).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!(
                    "{} message(s) in {secs:.1} s{attempt}; ended: {}{turned}{unclaimed}",
                    self.messages.len(),
                    self.ended_because
                )
            }
            RecordKind::Connect | RecordKind::Disconnect => {
                format!("{:?} in {secs:.1} s: {}", self.kind, self.ended_because).to_lowercase()
            }
            RecordKind::HandOver => {
                let count = |o: fn(&HandOverOutcome) -> bool| {
                    self.handovers
                        .iter()
                        .flat_map(|h| &h.recipients)
                        .filter(|r| o(&r.outcome))
                        .count()
                };
                let target = self.handovers.first().map(|h| h.target.as_str());
                format!(
                    "handed {} recipient(s) to {} in {secs:.1} s, {} deferred, {} refused; ended: {}",
                    count(|o| matches!(o, HandOverOutcome::Delivered)),
                    target.unwrap_or("a LAN server"),
                    count(|o| matches!(o, HandOverOutcome::Deferred { .. })),
                    count(|o| matches!(o, HandOverOutcome::Failed)),
                    self.ended_because
                )
            }
        };
        Summary {
            headline,
            messages: self
                .messages
                .iter()
                .map(ToString::to_string)
                .chain(self.handovers.iter().map(ToString::to_string))
                .collect(),
            domains: self
                .domains
                .iter()
                .map(|d| {
                    let code = d
                        .code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "---".into());
                    format!(
                        "{} ({}): {code} {}, {} message(s)",
                        d.domain,
                        d.account,
                        d.explain(),
                        d.messages
                    )
                })
                .collect(),
            problems: self.errors.clone(),
        }
    }

    /// Whether every ETRN and ATRN was accepted and nothing went wrong.
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty() && self.domains.iter().all(|d| d.outcome.is_accepted())
    }
}

/// A record put in words: see [`SessionRecord::summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `3 message(s) in 4.2 s; ended: idle`.
    pub headline: String,
    /// One line per stored message: from, subject, size, file.
    pub messages: Vec<String>,
    /// One line per domain: the ISP's reply and what it means, and how many messages came.
    pub domains: Vec<String>,
    /// What went wrong.
    pub problems: Vec<Problem>,
}

/// Reading or writing the history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// I/O on the history file.
    #[error("cannot {action} the history file {path}: {source}. Check that the data directory is writable")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// The history file.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

impl History {
    /// The history kept in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        History { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a JSON line and fsyncs it; the file is created 0600.
    pub fn append(&self, record: &SessionRecord) -> Result<(), HistoryError> {
        let err = |source| HistoryError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut line = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&self.path).map_err(err)?;
        // One write per record so concurrent appenders never interleave inside a line.
        file.write_all(&line).map_err(err)?;
        file.sync_data().map_err(err)
    }

    /// The newest `limit` records, oldest first, and how many lines could not be read.
    pub fn recent(&self, limit: usize) -> Result<(Vec<SessionRecord>, usize), HistoryError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0)),
            Err(source) => {
                return Err(HistoryError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut records = std::collections::VecDeque::with_capacity(limit.min(1024));
        let mut bad = 0;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|source| HistoryError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<SessionRecord>(&line) {
                Ok(r) => {
                    if records.len() == limit {
                        records.pop_front();
                    }
                    if limit > 0 {
                        records.push_back(r);
                    }
                }
                // A torn last line (power cut mid-append) must not hide the rest of the history.
                Err(_) => bad += 1,
            }
        }
        Ok((records.into(), bad))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            ..SessionRecord::new(RecordKind::Fetch, Trigger::Cli, Utc::now(), EndReason::Idle)
        }
    }

    #[test]
    fn records_written_before_kinds_and_problems_still_read() {
        let line = |trigger: &str, ended: &str| {
            format!(
                r#"{{"id":"x","trigger":"{trigger}","started_at":"2026-11-01T10:00:00Z","finished_at":"2026-11-01T10:00:01Z","domains":[],"messages":[],"errors":["isp: cannot connect"],"transcripts":[],"ended_because":"{ended}"}}"#
            )
        };
        let cases = [
            (
                "network",
                "idle",
                RecordKind::Fetch,
                Trigger::Network,
                EndReason::Idle,
            ),
            (
                "connect",
                "link up",
                RecordKind::Connect,
                Trigger::Unknown,
                EndReason::LinkUp,
            ),
            (
                "disconnect",
                "disconnected",
                RecordKind::Disconnect,
                Trigger::Unknown,
                EndReason::Disconnected,
            ),
            (
                "isp",
                "delivered outside a fetch",
                RecordKind::Delivery,
                Trigger::Isp,
                EndReason::OutsideFetch,
            ),
            (
                "",
                "crashed",
                RecordKind::Fetch,
                Trigger::Unknown,
                EndReason::Crashed,
            ),
            (
                "carrier-pigeon",
                "tired",
                RecordKind::Fetch,
                Trigger::Unknown,
                EndReason::Unknown,
            ),
        ];
        for (trigger, ended, kind, want_trigger, want_end) in cases {
            let r: SessionRecord = serde_json::from_str(&line(trigger, ended)).unwrap();
            assert_eq!(
                (r.kind, r.trigger, r.ended_because),
                (kind, want_trigger, want_end),
                "{trigger}"
            );
            assert_eq!(r.errors[0].message, "isp: cannot connect");
        }
        // What is written now reads back the same, and keeps the old words.
        let r = record("y");
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains(r#""trigger":"cli""#) && text.contains(r#""ended_because":"idle""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<SessionRecord>(&text).unwrap(), r);
    }

    #[test]
    fn appends_and_reads_the_newest_skipping_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path().join("d/history.jsonl"));
        for i in 0..5 {
            h.append(&record(&format!("s{i}"))).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(h.path())
            .unwrap()
            .write_all(b"{\"id\":\"torn")
            .unwrap();
        let (recs, bad) = h.recent(3).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["s2", "s3", "s4"]
        );
        assert_eq!(bad, 1);
        let (none, _) = History::new(dir.path().join("missing")).recent(3).unwrap();
        assert!(none.is_empty());
    }
}
