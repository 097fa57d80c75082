//! The fetch history: one JSON record per session, appended to `history.jsonl` in the data directory.
// STUB (lead fills in)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::{DomainReport, MessageInfo, TranscriptLine};

/// One fetch session as kept in the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// What started it.
    pub trigger: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Per-domain results.
    pub domains: Vec<DomainReport>,
    /// Messages stored.
    pub messages: Vec<MessageInfo>,
    /// Errors, each saying what to do.
    pub errors: Vec<String>,
    /// Per-account transcripts, AUTH redacted.
    pub transcripts: Vec<(String, Vec<TranscriptLine>)>,
    /// Why receiving ended (`idle`, `expected count reached`, `max wait`, `nothing to wait for`).
    pub ended_because: String,
}
