//! Mailcall's own queue for mail handed on to LAN servers (LMTP, SMTP): a directory, durable
//! before the `250` to the ISP (written, with the Maildir copies of the same message, by
//! [`copies`]), handed on by [`runner`], bounced with a DSN by [`dsn`]; what a
//! user can do to it is in [`actions`] (and [`offline`] when no Mailcall runs).
//!
//! Layout under the data directory's `spool/` (Postfix's lesson: queues are directories):
//! - `tmp/`, `new/`, `cur/`: the spool is written like a Maildir, by the same code
//!   ([`crate::maildir`]): a message is written in `tmp/`, fsynced, renamed into `new/`, and
//!   `new/` fsynced (group commit) before the ISP gets its `250`. `cur/` stays empty.
//! - `new/<name>`: one file per accepted message, immutable: the line `MAILCALL-SPOOL 1`, one
//!   line of JSON [`Envelope`] (sender, each recipient with its target), then the message as it
//!   will be sent (our `Received:` on top, CRLF line ends, not dot-stuffed).
//! - `state/<name>`: JSON [`State`], one record per recipient (queued, delivered, failed,
//!   bounced; attempts, next attempt, last reply), replaced atomically; missing means every
//!   recipient is queued and untried. Delivered and failed are written durably (fsync) before
//!   anything else happens; a deferral is written without fsync (losing it only means an
//!   earlier retry).
//! - `lock`: whoever hands mail on (the runner) holds an exclusive `flock` on it, so two
//!   Mailcalls never hand the same message over twice; `mailcall-cli queue` changes entries
//!   itself only while nobody holds it.
//!
//! A message leaves the spool when every recipient is delivered or bounced: its file first,
//! then its state (a state without its message is removed at the next start).

pub mod actions;
pub mod copies;
pub mod dsn;
pub mod offline;
pub mod runner;

pub use actions::Action;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::fsutil;
use crate::maildir::{Delivery, Maildir};
use crate::routing::Target;

/// The spool's directory name in the data directory.
pub const SPOOL_DIR: &str = "spool";
/// The first line of every spool file.
const MAGIC: &[u8] = b"MAILCALL-SPOOL 1\n";
/// The longest envelope line read back (100 000 recipients of 100 bytes each fit).
const MAX_ENVELOPE: u64 = 16 * 1024 * 1024;
/// How much of the message is read for From/Subject/Message-ID when listing.
const HEAD: usize = 64 * 1024;

/// Who a spooled message is from and for; written once, before the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// When the ISP's `250` was sent (just before, strictly).
    pub received_at: DateTime<Utc>,
    /// The envelope sender (`MAIL FROM`), empty for bounces.
    pub sender: String,
    /// Each recipient and where it goes, in RCPT order.
    pub recipients: Vec<QueuedRecipient>,
    /// The delivering peer's address.
    pub peer: String,
}

/// One recipient of a spooled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    /// The address as the RCPT gave it.
    pub address: String,
    /// Where it goes (as the routes said when the message came).
    pub target: Target,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not handed over yet; retried by itself.
    #[default]
    Queued,
    /// The server took it (2xx).
    Delivered,
    /// The server refused it for good (5xx): kept until retried, bounced or deleted.
    Failed,
    /// Given up: a DSN with the message went to the postmaster's Maildir.
    Bounced,
}

impl Status {
    /// Whether nothing more happens to this recipient.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Delivered | Status::Bounced)
    }
}

/// One recipient's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecipientState {
    /// Where it stands.
    pub status: Status,
    /// Hand-overs tried.
    #[serde(default)]
    pub attempts: u32,
    /// When the last one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<DateTime<Utc>>,
    /// When the next one is due (`None`: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// The server's last reply, or why no reply came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Deferred because the server could not be reached (so its coming back makes it due).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
    /// A hand-over sent the whole message but got no positive answer (a 421, or the
    /// connection gone after the final dot): the server may have stored it, so the retry may
    /// be a second copy. Never dropped on a guess: mail is handed over at least once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maybe_delivered: bool,
}

/// Every recipient's progress, in envelope order, and what holds for the whole message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct State {
    /// Per recipient.
    pub recipients: Vec<RecipientState>,
    /// Held by the user (`queue hold`): never tried until released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Its sender was told once that it is delayed (`delay-warning`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
}

impl State {
    /// `n` recipients, all queued and untried.
    pub fn fresh(n: usize) -> Self {
        State {
            recipients: vec![RecipientState::default(); n],
            ..State::default()
        }
    }

    /// Whether every recipient is delivered or bounced.
    pub fn is_done(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_done())
    }
}

/// One message in the spool, as read from disk.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its file name in `new/`.
    pub name: String,
    /// Its id (the name without the host part): what `queued as` said.
    pub id: String,
    /// Who it is from and for.
    pub envelope: Envelope,
    /// Where each recipient stands.
    pub state: State,
    /// Where the message starts in the file.
    pub data_offset: u64,
    /// The message's size in bytes.
    pub size: u64,
}

impl Entry {
    /// Whether it is outgoing mail (for the smarthost) rather than mail for a LAN server.
    pub fn is_outgoing(&self) -> bool {
        self.envelope
            .recipients
            .iter()
            .any(|r| r.target.outgoing_account().is_some())
    }

    /// When its next try is due: the soonest of its queued recipients (`None`: none waits, or
    /// it is held).
    pub fn next_attempt(&self) -> Option<DateTime<Utc>> {
        if self.state.held {
            return None;
        }
        self.state
            .recipients
            .iter()
            .filter(|s| s.status == Status::Queued)
            .map(|s| s.next_attempt.unwrap_or(self.envelope.received_at))
            .min()
    }

    /// The last reply any recipient got (the most recent attempt's), if it was tried.
    pub fn last_reply(&self) -> Option<&str> {
        self.state
            .recipients
            .iter()
            .filter(|s| s.reply.is_some())
            .max_by_key(|s| s.last_attempt)
            .and_then(|s| s.reply.as_deref())
    }

    /// The recipient indices going to `target` that are in `status`.
    pub fn recipients_for(&self, target: &Target, status: Status) -> Vec<usize> {
        self.envelope
            .recipients
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                &r.target == target
                    && self.state.recipients.get(*i).map(|s| s.status) == Some(status)
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// From/Subject/Message-ID of a spooled message, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headline {
    /// `From:`.
    pub from: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:` without brackets.
    pub message_id: Option<String>,
}

/// The spool directory; cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    store: Maildir,
    /// Names committed by this process since the runner last looked.
    fresh: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

/// Held by whoever hands mail on from the spool; dropping it lets others in.
#[derive(Debug)]
pub struct SpoolLock {
    _file: std::fs::File,
}

impl Spool {
    /// Opens the spool at `root`, creating it (mode 0700) if missing.
    pub fn open(root: &Path) -> io::Result<Self> {
        let store = Maildir::create(root)?;
        fsutil::create_private_dir(&root.join("state"))?;
        Ok(Spool {
            root: root.to_path_buf(),
            store,
            fresh: Arc::default(),
            notify: Arc::default(),
        })
    }

    /// The spool's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts writing a message for `envelope`: the header lines are written first.
    pub async fn begin(&self, envelope: &Envelope) -> io::Result<SpoolWriter> {
        let mut delivery = self.store.begin().await?;
        let mut head = MAGIC.to_vec();
        serde_json::to_writer(&mut head, envelope).map_err(io::Error::other)?;
        head.push(b'\n');
        delivery.write(&head).await?;
        Ok(SpoolWriter {
            header: head.len() as u64,
            delivery,
            spool: self.clone(),
        })
    }

    /// Removes what writers that died (crash, `kill -9`) left in `tmp/`, and states without
    /// their message; returns how many files went.
    pub fn clean(&self) -> io::Result<usize> {
        let mut removed = self.store.clean_stale_tmp()?;
        let new = self.root.join("new");
        for entry in std::fs::read_dir(self.root.join("state"))?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                // A state being replaced when its writer died.
                if std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
                continue;
            }
            if !new.join(&*name).exists() && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Takes the hand-over lock if nobody holds it (`None` when someone does).
    pub fn try_lock(&self) -> io::Result<Option<SpoolLock>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        // flock(2) on Unix, LockFileEx on Windows; released when the file is closed.
        match file.try_lock() {
            Ok(()) => Ok(Some(SpoolLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// The names of every message in the spool, sorted (oldest first: names start with the
    /// time).
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("new"))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort_by_key(|n| sort_key(n));
        Ok(names)
    }

    /// Reads one message's envelope and state; `Ok(None)` when it is gone.
    pub fn entry(&self, name: &str) -> io::Result<Option<Entry>> {
        let path = self.root.join("new").join(name);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let mut reader = io::BufReader::new(file).take(MAX_ENVELOPE + MAGIC.len() as u64);
        let mut magic = vec![0u8; MAGIC.len()];
        if let Err(e) = reader.read_exact(&mut magic) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is too short to be a Mailcall spool file ({size} bytes); it is no message of Mailcall's: move it out of the queue's new/ directory",
                        path.display()
                    ),
                )
            } else {
                e
            });
        }
        if magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a Mailcall spool file", path.display()),
            ));
        }
        let mut line = Vec::new();
        io::BufRead::read_until(&mut reader, b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the envelope line is cut off", path.display()),
            ));
        }
        let envelope: Envelope = serde_json::from_slice(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the envelope cannot be read: {e}", path.display()),
            )
        })?;
        let data_offset = (MAGIC.len() + line.len()) as u64;
        let state = self.state(name, envelope.recipients.len());
        Ok(Some(Entry {
            name: name.to_owned(),
            id: id_of(name).to_owned(),
            envelope,
            state,
            data_offset,
            size: size.saturating_sub(data_offset),
        }))
    }

    /// The recipients' state; a missing or unreadable state file means all queued (at worst
    /// a copy is handed over twice; nothing is ever dropped).
    fn state(&self, name: &str, n: usize) -> State {
        let path = self.root.join("state").join(name);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(mut s) => {
                    s.recipients.resize(n, RecipientState::default());
                    s
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: unreadable ({e}); treating every recipient as queued",
                        path.display()
                    );
                    State::fresh(n)
                }
            },
            Err(_) => State::fresh(n),
        }
    }

    /// Every message in the spool, and the problems of files that cannot be read.
    pub fn entries(&self) -> io::Result<(Vec<Entry>, Vec<String>)> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for name in self.names()? {
            match self.entry(&name) {
                Ok(Some(e)) => entries.push(e),
                Ok(None) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        Ok((entries, problems))
    }

    /// The message's bytes (after the envelope), for handing over.
    pub async fn data(&self, entry: &Entry) -> io::Result<tokio::io::Take<tokio::fs::File>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.root.join("new").join(&entry.name)).await?;
        file.seek(io::SeekFrom::Start(entry.data_offset)).await?;
        Ok(file.take(entry.size))
    }

    /// The whole message as bytes (for a DSN).
    pub fn read_message(&self, entry: &Entry) -> io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(self.root.join("new").join(&entry.name))?;
        file.seek(SeekFrom::Start(entry.data_offset))?;
        let mut data = Vec::new();
        file.take(entry.size).read_to_end(&mut data)?;
        Ok(data)
    }

    /// From/Subject/Message-ID, read from the message's first bytes.
    pub fn headline(&self, entry: &Entry) -> Headline {
        use std::io::{Seek, SeekFrom};
        let read = || -> io::Result<Vec<u8>> {
            let mut file = std::fs::File::open(self.root.join("new").join(&entry.name))?;
            file.seek(SeekFrom::Start(entry.data_offset))?;
            let mut head = Vec::new();
            file.take(HEAD as u64).read_to_end(&mut head)?;
            Ok(head)
        };
        let Ok(head) = read() else {
            return Headline::default();
        };
        crate::listener::message_headline(&head)
    }

    /// Writes a message's state: durably (fsync) for outcomes that must not be repeated, or
    /// only atomically for deferrals.
    pub fn save_state(&self, name: &str, state: &State, durable: bool) -> io::Result<()> {
        let path = self.root.join("state").join(name);
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        if durable {
            return fsutil::write_atomic(&path, &bytes, 0o600);
        }
        let tmp = self
            .root
            .join("state")
            .join(format!(".{name}.tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Removes a message and its state (every recipient delivered, bounced, or deleted).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.root.join("new").join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(self.root.join("state").join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The names committed in this process since the last call (for the runner).
    pub fn take_fresh(&self) -> Vec<String> {
        std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Resolves when a message was committed (or [`Spool::wake`] was called) since the last
    /// wait.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Wakes the runner (a retry was asked for).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn announce(&self, name: String) {
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
        self.notify.notify_one();
    }
}

/// `<secs>.M<µs>P<pid>Q<n>.<host>` sorts by time: (secs, µs, name).
fn sort_key(name: &str) -> (u64, u64, String) {
    let mut parts = name.splitn(2, '.');
    let secs = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|rest| rest.strip_prefix('M'))
        .and_then(|rest| rest.split('P').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    (secs, micros, name.to_owned())
}

/// A spool file's id: its name without the host part (what `queued as` said).
pub fn id_of(name: &str) -> &str {
    match name.match_indices('.').nth(1) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

/// One message being written into the spool; dropped without `commit`, it is gone.
#[derive(Debug)]
pub struct SpoolWriter {
    delivery: Delivery,
    header: u64,
    spool: Spool,
}

impl SpoolWriter {
    /// The message's id (what `queued as` says).
    pub fn id(&self) -> &str {
        self.delivery.id()
    }

    /// Appends message bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.delivery.write(bytes).await
    }

    /// The message's bytes so far (without the envelope).
    pub fn size(&self) -> u64 {
        self.delivery.size() - self.header
    }

    /// Makes it durable (fsync, rename into `new/`, fsync of `new/`) and tells the runner;
    /// returns the file. On error nothing is left.
    pub async fn commit(self) -> io::Result<PathBuf> {
        let spool = self.spool.clone();
        let path = self.delivery.commit().await?;
        if let Some(name) = path.file_name() {
            spool.announce(name.to_string_lossy().into_owned());
        }
        Ok(path)
    }

    /// Gives it up.
    pub async fn abort(self) {
        self.delivery.abort().await;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod handover_tests;

#[cfg(test)]
mod outgoing_tests;
