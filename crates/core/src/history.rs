//! The fetch history: one JSON record per session, appended to `history.jsonl` in the data directory.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::{DomainReport, MessageInfo, TranscriptLine};

/// The history file's name inside the data directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// One fetch session as kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// What started it (`cli`, `tray`, `network`, `interval`).
    pub trigger: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Per-domain results, in the order asked.
    pub domains: Vec<DomainReport>,
    /// Messages stored, in arrival order.
    pub messages: Vec<MessageInfo>,
    /// Errors, each saying what happened and what to do.
    pub errors: Vec<String>,
    /// Per-account transcripts, AUTH redacted.
    pub transcripts: Vec<(String, Vec<TranscriptLine>)>,
    /// Why receiving ended (`idle`, `expected messages arrived`, `max wait`, `nothing to wait for`).
    pub ended_because: String,
}

impl SessionRecord {
    /// A new session id: the start time (UTC, to the millisecond) and this process's id.
    pub fn new_id(at: DateTime<Utc>) -> String {
        format!("{}-{}", at.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id())
    }

    /// Whether every ETRN was accepted and nothing went wrong.
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty() && self.domains.iter().all(|d| d.outcome.is_accepted())
    }
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
        /// Why.
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
            trigger: "cli".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            domains: vec![],
            messages: vec![],
            errors: vec![],
            transcripts: vec![],
            ended_because: "idle".into(),
        }
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
