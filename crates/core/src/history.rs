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
    /// The ISP delivered and closed its connections, and no new one came within a short grace.
    #[serde(rename = "the ISP finished")]
    IspFinished,
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
            EndReason::IspFinished => "the ISP finished",
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
    /// Messages stored, in arrival order: the first [`crate::fetch::LISTED_MESSAGES`] of a
    /// fetch; [`SessionRecord::unlisted_messages`] counts the rest.
    pub messages: Vec<MessageInfo>,
    /// Messages stored beyond those listed in `messages` (a large drain): counted, not
    /// described, so the record's size does not grow with the drain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted_messages: u32,
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
    unlisted_messages: u32,
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
            unlisted_messages: r.unlisted_messages,
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
            unlisted_messages: 0,
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

    /// How many messages the session stored: those listed and those only counted.
    pub fn message_count(&self) -> usize {
        self.messages.len() + self.unlisted_messages as usize
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
                    self.message_count(),
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
                .chain((self.unlisted_messages > 0).then(|| {
                    format!(
                        "… and {} more, counted above but not listed one by one (a record lists the first {})",
                        self.unlisted_messages,
                        self.messages.len()
                    )
                }))
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

    /// Whether some domains were refused while others were fetched, and nothing else went
    /// wrong: a partial success, shown per domain.
    pub fn is_partial(&self) -> bool {
        self.errors.is_empty()
            && self.domains.iter().any(|d| d.outcome.is_accepted())
            && self.domains.iter().any(|d| !d.outcome.is_accepted())
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

/// When the history file is rotated: it becomes [`History::rotated_path`] (replacing the one
/// before), and a new file starts. The history thus takes at most about twice `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes the file may reach.
    pub max_size: u64,
    /// Days its oldest record may reach; 0: by size only.
    pub max_age_days: u64,
}

impl Default for Rotation {
    /// The config's defaults (`history-max-size`, `history-max-age`).
    fn default() -> Self {
        let config = crate::config::Config::default();
        Rotation {
            max_size: config.history_max_size,
            max_age_days: config.history_max_age,
        }
    }
}

/// How much of the file is read at a time from its end.
const CHUNK: u64 = 64 * 1024;

/// The history file.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    rotation: Rotation,
}

impl History {
    /// The history kept in `path`, rotated at the default size and age.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        History {
            path: path.into(),
            rotation: Rotation::default(),
        }
    }

    /// The same history, rotated at `rotation`.
    pub fn rotated_at(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file goes when it is rotated: `history.1.jsonl` beside it.
    pub fn rotated_path(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "history".into());
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}.1.{}", ext.to_string_lossy()),
            None => format!("{stem}.1"),
        };
        self.path.with_file_name(name)
    }

    fn error(&self, action: &'static str) -> impl Fn(std::io::Error) -> HistoryError + '_ {
        move |source| HistoryError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one record as a JSON line and fsyncs it; the file is created 0600. Under the
    /// file's lock (other threads and processes append too): a line torn by a crash is
    /// repaired first, and the file is rotated when it is due. Blocking: from async code, use
    /// [`History::append_async`].
    pub fn append(&self, record: &SessionRecord) -> Result<(), HistoryError> {
        let err = self.error("write");
        let mut line = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        let _lock = crate::fsutil::FileLock::take(&self.path).map_err(&err)?;
        let mut file = self.open_for_append().map_err(&err)?;
        repair_tail(&mut file).map_err(&err)?;
        if self.due(&file).map_err(&err)? {
            drop(file);
            std::fs::rename(&self.path, self.rotated_path()).map_err(&err)?;
            if let Some(dir) = self.path.parent() {
                crate::fsutil::sync_dir(dir).map_err(&err)?;
            }
            file = self.open_for_append().map_err(&err)?;
        }
        // One write per record, so a reader never sees half of one but at a crash.
        file.write_all(&line).map_err(&err)?;
        file.sync_data().map_err(err)
    }

    /// [`History::append`] on a blocking thread: the async loop never waits for the disk.
    pub async fn append_async(&self, record: SessionRecord) -> Result<(), HistoryError> {
        let history = self.clone();
        match tokio::task::spawn_blocking(move || history.append(&record)).await {
            Ok(result) => result,
            Err(e) => Err(self.error("write")(std::io::Error::other(e))),
        }
    }

    /// Appends `record` on the history's one writer thread, after every record handed to it
    /// before (in order), then calls `done` there with the record or the error. For code that
    /// may not wait at all (the listener's and the runner's loops); [`written`] waits for it.
    pub fn append_in_background(
        &self,
        record: SessionRecord,
        done: impl FnOnce(Result<SessionRecord, HistoryError>) + Send + 'static,
    ) {
        let history = self.clone();
        let job: Job = Box::new(move || {
            let result = history.append(&record).map(|()| record);
            done(result);
        });
        // No writer thread (it could not start): written here, late rather than never.
        if let Err(std::sync::mpsc::SendError(job)) = writer().send(job) {
            job();
        }
    }

    fn open_for_append(&self) -> std::io::Result<std::fs::File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&self.path)
    }

    /// Whether the file is due for rotation: too big, or its first record too old.
    fn due(&self, file: &std::fs::File) -> std::io::Result<bool> {
        let size = file.metadata()?.len();
        if size == 0 {
            return Ok(false);
        }
        if size >= self.rotation.max_size {
            return Ok(true);
        }
        if self.rotation.max_age_days == 0 {
            return Ok(false);
        }
        #[derive(Deserialize)]
        struct Started {
            started_at: DateTime<Utc>,
        }
        let mut first = Vec::new();
        std::io::BufReader::new(std::fs::File::open(&self.path)?).read_until(b'\n', &mut first)?;
        let Ok(Started { started_at }) = serde_json::from_slice::<Started>(&first) else {
            return Ok(false);
        };
        let days = i64::try_from(self.rotation.max_age_days).unwrap_or(i64::MAX);
        let limit = chrono::Duration::try_days(days).unwrap_or(chrono::Duration::MAX);
        Ok(Utc::now().signed_duration_since(started_at) > limit)
    }

    /// The newest `limit` records, oldest first, and how many lines could not be read. Read
    /// from the end (of the file, then of the rotated one), so that only what is shown is
    /// read, however long the history.
    pub fn recent(&self, limit: usize) -> Result<(Vec<SessionRecord>, usize), HistoryError> {
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut bad = 0;
        for path in [self.path.clone(), self.rotated_path()] {
            if records.len() >= limit {
                break;
            }
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(HistoryError::Io {
                        action: "read",
                        path,
                        source,
                    })
                }
            };
            lines_from_end(&mut file, |line| {
                if line.trim_ascii().is_empty() {
                    return true;
                }
                match serde_json::from_slice::<SessionRecord>(line) {
                    Ok(r) => records.push(r),
                    // A torn last line (power cut mid-append) must not hide the rest.
                    Err(_) => bad += 1,
                }
                records.len() < limit
            })
            .map_err(|source| HistoryError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
        }
        records.reverse();
        Ok((records, bad))
    }
}

/// Work for the history's writer thread.
type Job = Box<dyn FnOnce() + Send>;

/// The history's one writer thread, started on first use; it writes in the order it is asked.
fn writer() -> &'static std::sync::mpsc::Sender<Job> {
    static WRITER: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        // If the thread cannot start, `rx` is dropped and every send fails: jobs run in place.
        let _ = std::thread::Builder::new()
            .name("mailcall-history".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        tx
    })
}

/// Waits until every record handed to [`History::append_in_background`] before is on disk.
pub async fn written() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    History::flush_marker(Box::new(move || {
        let _ = tx.send(());
    }));
    let _ = rx.await;
}

impl History {
    fn flush_marker(job: Job) {
        if let Err(std::sync::mpsc::SendError(job)) = writer().send(job) {
            job();
        }
    }
}

/// Calls `each` with every line of `file` (without its line end), the last first, until it
/// returns false; reads [`CHUNK`] bytes at a time from the end.
fn lines_from_end(
    file: &mut std::fs::File,
    mut each: impl FnMut(&[u8]) -> bool,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut pos = file.metadata()?.len();
    // The start of a line whose beginning is in a chunk not read yet.
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut data = vec![0; usize::try_from(pos - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut data)?;
        data.extend_from_slice(&carry);
        let mut end = data.len();
        while let Some(nl) = data[..end].iter().rposition(|&b| b == b'\n') {
            if !each(&data[nl + 1..end]) {
                return Ok(());
            }
            end = nl;
        }
        data.truncate(end);
        carry = data;
        pos = start;
    }
    if !carry.is_empty() {
        each(&carry);
    }
    Ok(())
}

/// Repairs a line torn by a crash at the end of `file`, so that the next record starts on a
/// line of its own: a whole record without its line end gets one; a part of one is cut off.
fn repair_tail(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut torn: Option<Vec<u8>> = None;
    lines_from_end(file, |line| {
        torn = Some(line.to_vec());
        false
    })?;
    let torn = torn.unwrap_or_default();
    if serde_json::from_slice::<SessionRecord>(&torn).is_ok() {
        file.write_all(b"\n")?;
    } else {
        let cut = len - torn.len() as u64;
        file.set_len(cut)?;
        tracing::warn!(
            "the history's last line was torn (a crash while it was written): its {} byte(s) were removed",
            torn.len()
        );
    }
    file.sync_data()
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

    /// Lines of `n` records `s0` … with the given start, as an old history holds them.
    fn lines(n: usize, at: DateTime<Utc>) -> Vec<u8> {
        let template = serde_json::to_string(&SessionRecord {
            started_at: at,
            ..record("ID")
        })
        .unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            out.extend_from_slice(template.replace("\"ID\"", &format!("\"s{i}\"")).as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn ids(records: &[SessionRecord]) -> Vec<&str> {
        records.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn the_newest_of_100_000_records_are_read_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        // A line no reader of the newest records should ever reach, then 100 000 records.
        let mut text = b"not a record: only a reader of the whole file sees this\n".to_vec();
        text.extend(lines(100_000, Utc::now()));
        std::fs::write(&path, &text).unwrap();
        let h = History::new(&path).rotated_at(Rotation {
            max_size: u64::MAX,
            max_age_days: 0,
        });
        h.append(&record("last")).unwrap();
        let (recs, bad) = h.recent(50).unwrap();
        assert_eq!(recs.len(), 50);
        assert_eq!(ids(&recs)[..2], ["s99951", "s99952"]);
        assert_eq!(ids(&recs)[48..], ["s99999", "last"]);
        assert_eq!(bad, 0, "the first line was never read");
        let (all, bad) = h.recent(200_000).unwrap();
        assert_eq!((all.len(), bad), (100_001, 1));
        assert_eq!(all[0].id, "s0");
    }

    #[test]
    fn the_history_rotates_by_size_and_reads_on_into_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, lines(100_000, Utc::now())).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let h = History::new(&path).rotated_at(Rotation {
            max_size: 1024 * 1024,
            max_age_days: 365,
        });
        assert!(size > 1024 * 1024);
        h.append(&record("new")).unwrap();
        assert_eq!(h.rotated_path(), dir.path().join("history.1.jsonl"));
        assert_eq!(std::fs::metadata(h.rotated_path()).unwrap().len(), size);
        assert!(std::fs::metadata(&path).unwrap().len() < 4096);
        let (recs, bad) = h.recent(3).unwrap();
        assert_eq!((ids(&recs), bad), (vec!["s99998", "s99999", "new"], 0));
        // Below the size, no rotation; the next one replaces the rotated file.
        h.append(&record("newer")).unwrap();
        assert_eq!(std::fs::metadata(h.rotated_path()).unwrap().len(), size);
    }

    #[test]
    fn the_history_rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let old = Utc::now() - chrono::Duration::days(400);
        for (days, rotated) in [(0, false), (365, true)] {
            std::fs::write(&path, lines(3, old)).unwrap();
            let _ = std::fs::remove_file(dir.path().join("history.1.jsonl"));
            let h = History::new(&path).rotated_at(Rotation {
                max_size: u64::MAX,
                max_age_days: days,
            });
            h.append(&record("new")).unwrap();
            assert_eq!(h.rotated_path().exists(), rotated, "max age {days}");
            let (recs, _) = h.recent(10).unwrap();
            assert_eq!(ids(&recs), ["s0", "s1", "s2", "new"]);
        }
    }

    #[test]
    fn a_torn_tail_is_repaired_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path().join("history.jsonl"));
        h.append(&record("a")).unwrap();
        h.append(&record("b")).unwrap();
        let torn = |bytes: &[u8]| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(h.path())
                .unwrap()
                .write_all(bytes)
                .unwrap()
        };
        torn(b"{\"id\":\"torn");
        h.append(&record("c")).unwrap();
        let (recs, bad) = h.recent(10).unwrap();
        assert_eq!((ids(&recs), bad), (vec!["a", "b", "c"], 0));
        // A whole record that lost only its line end is kept.
        let whole = serde_json::to_vec(&record("d")).unwrap();
        torn(&whole);
        h.append(&record("e")).unwrap();
        let (recs, bad) = h.recent(10).unwrap();
        assert_eq!((ids(&recs), bad), (vec!["a", "b", "c", "d", "e"], 0));
    }

    #[test]
    fn two_appenders_at_once_never_tear_each_others_records() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path().join("history.jsonl")).rotated_at(Rotation {
            max_size: 4096,
            max_age_days: 0,
        });
        std::thread::scope(|s| {
            for w in ["x", "y"] {
                let h = &h;
                s.spawn(move || {
                    for i in 0..30 {
                        h.append(&record(&format!("{w}{i}"))).unwrap();
                    }
                });
            }
        });
        let (recs, bad) = h.recent(1000).unwrap();
        assert_eq!(bad, 0);
        assert!(recs.iter().any(|r| r.id == "x29") && recs.iter().any(|r| r.id == "y29"));
    }

    #[tokio::test]
    async fn records_written_in_the_background_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path().join("history.jsonl"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..20 {
            let tx = tx.clone();
            h.append_in_background(record(&format!("b{i}")), move |r| {
                let _ = tx.send(r.map(|r| r.id));
            });
        }
        written().await;
        let (recs, _) = h.recent(100).unwrap();
        let want: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
        assert_eq!(ids(&recs), want);
        drop(tx);
        let mut told = Vec::new();
        while let Some(r) = rx.recv().await {
            told.push(r.unwrap());
        }
        assert_eq!(told, want);
    }
}
