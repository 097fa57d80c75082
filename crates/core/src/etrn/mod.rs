//! The ETRN client: connect to the ISP, EHLO, TLS, AUTH, one ETRN per domain, QUIT.
// STUB: the ETRN helper replaces this; the signatures below are the contract.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::event::EventSink;
use crate::report::{DomainReport, TranscriptLine};

/// Timeouts and retry policy of the client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Limit on TCP connect (and TLS handshake for implicit TLS).
    pub connect_timeout: Duration,
    /// Limit on waiting for each reply.
    pub reply_timeout: Duration,
    /// How many times a 4xx ETRN is retried (so at most `1 + retries` attempts).
    pub retries: u32,
    /// First retry delay; doubles each time.
    pub retry_delay: Duration,
    /// EHLO name when the account sets none.
    pub default_helo: String,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(60),
            retries: 3,
            retry_delay: Duration::from_secs(2),
            default_helo: "localhost".into(),
        }
    }
}

/// What we learned about the ISP's server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The greeting line.
    pub greeting: String,
    /// Whether the connection was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// Whether AUTH succeeded.
    pub authenticated: bool,
    /// Whether `ETRN` was in the EHLO reply.
    pub etrn_advertised: bool,
    /// The EHLO keywords (first word of each extension line).
    pub extensions: Vec<String>,
}

/// Why a session with the ISP failed as a whole.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum EtrnError {
    /// Could not connect.
    #[error("cannot connect to {host}:{port}: {reason}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
}

/// The result of one account's ETRN session.
#[derive(Debug, Clone)]
pub struct AccountResult {
    /// The account's name.
    pub account: String,
    /// One report per configured domain, in order.
    pub domains: Vec<DomainReport>,
    /// Set when the session failed before every domain was asked.
    pub error: Option<EtrnError>,
    /// What we learned of the server.
    pub server: ServerInfo,
    /// The conversation, AUTH redacted.
    pub transcript: Vec<TranscriptLine>,
}

/// Runs one account's ETRN session, publishing each ETRN reply on `events`.
pub async fn fetch_account(
    account: &Account,
    _settings: &ClientSettings,
    _events: &EventSink,
) -> AccountResult {
    AccountResult {
        account: account.name.clone(),
        domains: vec![],
        error: None,
        server: ServerInfo::default(),
        transcript: vec![],
    }
}

/// Connects, secures, authenticates and reports what the server offers, without sending ETRN.
pub async fn check_account(
    account: &Account,
    _settings: &ClientSettings,
) -> (ServerInfo, Option<EtrnError>, Vec<TranscriptLine>) {
    let _ = account;
    (ServerInfo::default(), None, vec![])
}
