//! The ETRN client: connect to the ISP, EHLO, TLS, AUTH, one ETRN per domain, QUIT.

mod client;
pub mod command;
pub mod ehlo;
mod error;
pub mod reply;
mod tap;
pub mod transcript;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::EtrnError;

use crate::account::Account;
use crate::event::{Event, EventSink};
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
    /// Connect 30 s, reply 60 s, 3 retries from 2 s; EHLO with this machine's host name.
    fn default() -> Self {
        let default_helo = hostname::get()
            .ok()
            .and_then(|name| name.into_string().ok())
            .filter(|name| {
                !name.is_empty() && name.is_ascii() && !name.contains(char::is_whitespace)
            })
            .unwrap_or_else(|| "localhost".to_owned());
        ClientSettings {
            connect_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(60),
            retries: 3,
            retry_delay: Duration::from_secs(2),
            default_helo,
        }
    }
}

/// What we learned about the ISP's server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The greeting line (empty with implicit TLS: lettre reads it inside the TLS layer).
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
///
/// Never fails as a whole: a session-level failure is in `error` (and published as
/// `Event::Error`), and every domain not asked is reported `NotSent`.
pub async fn fetch_account(
    account: &Account,
    settings: &ClientSettings,
    events: &EventSink,
) -> AccountResult {
    let mut session = client::Session::new(account, settings);
    let mut domains: Vec<DomainReport> = account
        .domains
        .iter()
        .map(|spec| client::not_sent(account, spec.etrn_argument()))
        .collect();
    let error = match session.open().await {
        Err(err) => Some(err),
        Ok(mut conn) => {
            let err = session.ask_all(&mut conn, &mut domains, events).await;
            if err.is_none() {
                session.quit(&mut conn).await;
            }
            err
        }
    };
    if let Some(err) = &error {
        session
            .transcript()
            .lock()
            .note(&format!("session failed: {err}"));
        events.emit(Event::Error {
            account: Some(account.name.clone()),
            message: err.to_string(),
        });
    }
    AccountResult {
        account: account.name.clone(),
        domains,
        error,
        server: session.info.clone(),
        transcript: session.transcript().snapshot(),
    }
}

/// Connects, secures, authenticates and reports what the server offers, without sending ETRN.
///
/// A server that does not advertise ETRN is reported as `EtrnError::EtrnNotAdvertised`.
pub async fn check_account(
    account: &Account,
    settings: &ClientSettings,
) -> (ServerInfo, Option<EtrnError>, Vec<TranscriptLine>) {
    let mut session = client::Session::new(account, settings);
    let error = match session.open().await {
        Err(err) => Some(err),
        Ok(mut conn) => {
            session.quit(&mut conn).await;
            None
        }
    };
    (session.info.clone(), error, session.transcript().snapshot())
}
