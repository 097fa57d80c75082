//! The smarthost leg: queued outgoing mail handed to the ISP's submission server with lettre's
//! async SMTP connection, kept open from one message to the next (each queue worker holds one).
//!
//! - The TCP connection is made here, with `TCP_NODELAY`, and handed to lettre
//!   (`AsyncSmtpConnection::connect_with_transport`; STARTTLS and AUTH are lettre's). lettre
//!   writes the data and its final `CRLF.CRLF` in two writes, and its own sockets keep Nagle's
//!   algorithm on: every message then waited for the server's delayed ACK (about 40 ms on
//!   Linux), which made a flush of 200 messages 8× slower than Postfix's (benchmark row 8).
//!   For 465 (TLS from the first byte) the TLS stream is made here too (rustls, the same trust)
//!   and handed to lettre as its transport.
//!
//! - TLS is always verified: the system's roots plus the account's CA file (the same trust as
//!   the ETRN/ODMR client, [`crate::client::tls::trusted_roots`]); 587 with STARTTLS required,
//!   or 465 with TLS from the first byte. A password is never sent over plain text.
//! - AUTH PLAIN or LOGIN with the account's password, or XOAUTH2 with a token (from the
//!   account's `password-command`, as msmtp's `passwordeval` serves OAuth providers).
//! - The queued bytes leave exactly as queued (lettre's `message`; it only dot-stuffs them).
//!
//! The transaction is driven here command by command (lettre's `command` and `message`), not
//! with lettre's `send`, for two reasons. A kept connection the server closed while idle (its
//! own timeout, or a restart) fails at `MAIL`, `RCPT` or `DATA`, before any of the message went
//! out: that message is sent again at once on a new connection, and is never reported as one
//! that may have gone out. Only a loss after the data began is "maybe sent". And each command
//! and reply goes into a bounded transcript ([`Smarthost::transcript`]) for the history, with
//! the login shown as `AUTH <mechanism> <redacted>` and its reply: lettre keeps no transcript.
//!
//! lettre ends a transaction at the first refused `RCPT` and reports one error for the whole
//! message. When a message with several recipients meets a refusal (any 4xx or 5xx reply),
//! [`Smarthost::send`] sends it again, one recipient per transaction, so that one bad address
//! never holds back or bounces the others. A refusal is a reply, so nothing was accepted and
//! the second round cannot duplicate anything. A connection lost or a reply missed after the
//! data went out is different: the server may have taken the message, and the outcome says so
//! ([`Outcome::Deferred`] with `maybe_sent`), so the queue can tell the user of a possible
//! second copy.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Noop, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Address;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crate::account::outgoing::{OutgoingAuth, OutgoingLogin};
use crate::account::{Account, Secret, Security};
use crate::client::transcript::Transcript;
use crate::client::{ClientSettings, IspError};
use crate::report::TranscriptLine;

/// The replies that refuse a login rather than a recipient (RFC 4954).
const LOGIN_REFUSED: [u16; 4] = [530, 534, 535, 538];
/// A connection idle longer than this is checked with `NOOP` before the next message (the
/// server may have closed it meanwhile: a message sent into a closed connection would look
/// like one that may have gone out).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// The reply of a server closing the connection (RFC 5321 4.2.3, "service not available").
const CLOSING: u16 = 421;
/// How many transcript lines a smarthost keeps (the last ones): enough for the logins and the
/// last few dozen messages of a flush, while a flush of thousands stays small in the history.
pub const TRANSCRIPT_LINES: usize = 300;

/// Where outgoing mail goes and how to log in there.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server, as the account names it (checked against its certificate).
    pub host: String,
    /// Its port: 587 for STARTTLS, 465 for TLS.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// Who logs in, if anyone.
    pub login: Option<Login>,
    /// The account's own CA certificate file (PEM), trusted beside the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name Mailcall gives in `EHLO`.
    pub helo: String,
    /// How long to wait to connect and for each reply.
    pub timeout: Duration,
}

impl Settings {
    /// The outgoing server of `account` (`None`: it has none): its login resolved (the
    /// account's password command is run here, its output never logged), its CA file or the
    /// account's, the account's EHLO name or the machine's.
    pub async fn of(account: &Account, client: &ClientSettings) -> Result<Option<Self>, IspError> {
        let Some(out) = &account.outgoing else {
            return Ok(None);
        };
        let method = match out.auth {
            OutgoingAuth::Password => LoginMethod::Password,
            OutgoingAuth::Xoauth2 => LoginMethod::OAuth2,
        };
        let login = match account.outgoing_login() {
            Some(OutgoingLogin::Own { user, password }) => Some(Login {
                user,
                secret: password,
                method,
            }),
            Some(OutgoingLogin::Account) => {
                let secret = crate::client::account_password(account).await?;
                Some(Login {
                    user: account.username.clone().unwrap_or_default(),
                    secret,
                    method,
                })
            }
            Some(OutgoingLogin::None) | None => None,
        };
        Ok(Some(Settings {
            host: out.host.clone(),
            port: out.port,
            security: out.security,
            login,
            ca_file: out.ca_file.clone().or_else(|| account.ca_file.clone()),
            helo: account
                .helo
                .clone()
                .unwrap_or_else(|| client.default_helo.clone()),
            timeout: client.reply_timeout.max(client.connect_timeout),
        }))
    }
}

/// A login at the smarthost.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password, or the OAuth 2 access token for [`LoginMethod::OAuth2`].
    pub secret: Secret,
    /// How the secret is presented.
    pub method: LoginMethod,
}

/// How the secret is presented to the smarthost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginMethod {
    /// AUTH PLAIN, or LOGIN when the server offers only that.
    #[default]
    Password,
    /// AUTH XOAUTH2 with an access token.
    OAuth2,
}

/// The smarthost cannot be used as configured (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA file is unreadable or holds no usable certificate.
    #[error(transparent)]
    Trust(#[from] IspError),
    /// A login is set but the connection would not be encrypted.
    #[error(
        "refusing to send the password for the outgoing server {host} over an unencrypted \
         connection; set its security to STARTTLS (port 587) or TLS (port 465)"
    )]
    PlaintextLogin {
        /// The server.
        host: String,
    },
    /// lettre refused the TLS parameters.
    #[error("cannot set up TLS for the outgoing server {host}: {reason}")]
    Tls {
        /// The server.
        host: String,
        /// What lettre said.
        reason: String,
    },
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The smarthost took it (`250`).
    Sent {
        /// The server's reply.
        reply: String,
    },
    /// Not sent this time: try again later.
    Deferred {
        /// The server's reply, or why none came.
        reply: String,
        /// The data may have reached the server before the connection or the reply was lost:
        /// sending it again may give the recipient a second copy.
        maybe_sent: bool,
        /// The server was reached (it answered); `false`: it could not be reached or used, so
        /// the rest of what waits for it waits too.
        reached: bool,
    },
    /// Refused for good (5xx, or an address that cannot be sent): the sender gets a report.
    Refused {
        /// The server's reply, or what is wrong with the address.
        reply: String,
    },
}

impl Outcome {
    /// Whether the smarthost took it.
    pub fn is_sent(&self) -> bool {
        matches!(self, Outcome::Sent { .. })
    }

    /// The reply (or reason) behind the outcome.
    pub fn reply(&self) -> &str {
        match self {
            Outcome::Sent { reply }
            | Outcome::Deferred { reply, .. }
            | Outcome::Refused { reply } => reply,
        }
    }
}

/// How the connection to the smarthost is secured.
#[derive(Clone)]
enum Wire {
    /// No TLS (and then no login).
    Plain,
    /// STARTTLS, required.
    Starttls(TlsParameters),
    /// TLS from the first byte (465), made here (the same trust), then handed to lettre.
    Tls(Arc<rustls::ClientConfig>),
}

/// One smarthost, with the connection kept open between messages; cheap to clone (clones share
/// the connection).
#[derive(Clone)]
pub struct Smarthost {
    wire: Wire,
    credentials: Option<(Credentials, Vec<Mechanism>)>,
    hello: ClientId,
    timeout: Duration,
    host: String,
    port: u16,
    open: Arc<tokio::sync::Mutex<Option<(AsyncSmtpConnection, Instant)>>>,
    log: Arc<std::sync::Mutex<Transcript>>,
}

impl std::fmt::Debug for Smarthost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smarthost")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Why a transaction did not happen.
#[derive(Debug)]
enum TxError {
    /// lettre's error while connecting, securing or logging in (nothing of the message went
    /// out), or a refusing reply to a command or to the data.
    Smtp(lettre::transport::smtp::Error),
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// TLS from the first byte (465) failed: the certificate, or the handshake.
    Tls(String),
    /// The connection was lost, or stopped answering, before any of the message went out
    /// (at `MAIL`, `RCPT` or `DATA`): the server cannot have taken it.
    LostBefore(String),
    /// The connection was lost after the data began: the server may have taken it.
    LostAfter(lettre::transport::smtp::Error),
    /// The server stopped answering while the message was under way: it may have taken it.
    Stalled,
    /// The message needs an extension the server does not offer (8BITMIME, SMTPUTF8).
    Unsendable(String),
    /// The server answered the XOAUTH2 token with an error challenge: it does not accept it.
    TokenRefused,
}

impl Smarthost {
    /// Sets up the smarthost (no connection is made yet).
    pub fn new(settings: &Settings) -> Result<Self, SetupError> {
        let host = settings.host.clone();
        let wire = match settings.security {
            Security::None => {
                if settings.login.is_some() {
                    return Err(SetupError::PlaintextLogin { host });
                }
                Wire::Plain
            }
            Security::Starttls => Wire::Starttls(tls_parameters(settings)?),
            Security::Tls => Wire::Tls(
                crate::client::tls::client_config(settings.ca_file.as_deref())
                    .map_err(SetupError::from)?,
            ),
        };
        let credentials = settings.login.as_ref().map(|login| {
            (
                Credentials::new(login.user.clone(), login.secret.expose().to_owned()),
                match login.method {
                    LoginMethod::Password => vec![Mechanism::Plain, Mechanism::Login],
                    LoginMethod::OAuth2 => vec![Mechanism::Xoauth2],
                },
            )
        });
        Ok(Smarthost {
            wire,
            credentials,
            hello: ClientId::Domain(settings.helo.clone()),
            timeout: settings.timeout,
            host,
            port: settings.port,
            open: Arc::new(tokio::sync::Mutex::new(None)),
            log: Arc::default(),
        })
    }

    /// The transcript so far (its last [`TRANSCRIPT_LINES`] lines): what was said to the
    /// server and what it answered, the login redacted.
    pub fn transcript(&self) -> Vec<TranscriptLine> {
        self.log().lines().to_vec()
    }

    /// The transcript, for writing (a panic elsewhere must not lose it).
    fn log(&self) -> MutexGuard<'_, Transcript> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a reply (or the refusal lettre made of it) in the transcript.
    fn log_reply(&self, reply: Result<&Response, &lettre::transport::smtp::Error>) {
        match reply {
            Ok(response) => self
                .log()
                .reply(u16::from(response.code()), response.message()),
            Err(e) => match e.status() {
                Some(code) => {
                    let why = std::error::Error::source(e)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    self.log().received(format!("{code} {why}").trim_end());
                }
                None => self.log().note(&format!("no reply: {e}")),
            },
        }
    }

    /// A new connection: greeted, secured, logged in; each step in the transcript.
    async fn connect(&self) -> Result<AsyncSmtpConnection, TxError> {
        self.log()
            .note(&format!("connecting to {}", self.address()));
        let opened = self.open_connection().await;
        if let Err(e) = &opened {
            let why = match e {
                TxError::Connect(e) => e.to_string(),
                TxError::Tls(why) => why.clone(),
                TxError::Smtp(e) => e.to_string(),
                TxError::TokenRefused => "the access token was refused".to_owned(),
                _ => "failed".to_owned(),
            };
            self.log().note(&format!("connection failed: {why}"));
        }
        opened
    }

    /// [`Self::connect`] without the failure note.
    async fn open_connection(&self) -> Result<AsyncSmtpConnection, TxError> {
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            TxError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", self.timeout.as_secs()),
            ))
        })?
        .map_err(TxError::Connect)?;
        // lettre writes the data's end on its own: without this it waits for an ACK.
        tcp.set_nodelay(true).map_err(TxError::Connect)?;
        let transport: Box<dyn lettre::transport::smtp::client::AsyncTokioStream> = match &self.wire
        {
            Wire::Tls(config) => {
                let name = crate::client::tls::server_name(&self.host)
                    .map_err(|e| TxError::Tls(e.to_string()))?;
                let tls = tokio::time::timeout(
                    self.timeout,
                    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp),
                )
                .await
                .map_err(|_| {
                    TxError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no TLS handshake within {} s", self.timeout.as_secs()),
                    ))
                })?
                .map_err(|e| {
                    TxError::Tls(crate::client::tls::handshake_error(&self.host, &e).to_string())
                })?;
                Box::new(ImplicitTls(tls))
            }
            Wire::Plain | Wire::Starttls(_) => Box::new(tcp),
        };
        let mut conn = tokio::time::timeout(
            self.timeout,
            AsyncSmtpConnection::connect_with_transport(transport, &self.hello),
        )
        .await
        .map_err(|_| {
            TxError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no greeting within {} s", self.timeout.as_secs()),
            ))
        })?
        .map_err(TxError::Smtp)?;
        match &self.wire {
            Wire::Starttls(params) => {
                self.log_hello(&conn);
                self.log().sent("STARTTLS");
                conn.starttls(params.clone(), &self.hello)
                    .await
                    .map_err(TxError::Smtp)?;
                self.log().note("TLS started, the certificate verified");
            }
            Wire::Tls(_) => self.log().note("TLS, the certificate verified"),
            Wire::Plain => {}
        }
        self.log_hello(&conn);
        if let Some((credentials, mechanisms)) = &self.credentials {
            // lettre runs the exchange: the transcript has the mechanism and the outcome,
            // never the credentials.
            let chosen = conn.server_info().get_auth_mechanism(mechanisms);
            match chosen {
                Some(mechanism) => self.log().auth(&mechanism.to_string()),
                None => self.log().note(&format!(
                    "the server offers none of the login mechanisms {}",
                    mechanisms
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
            let replied = conn.auth(mechanisms, credentials).await;
            match &replied {
                // A server refuses an XOAUTH2 token with a `334` error challenge (the client
                // then sends an empty line and gets `535`); lettre stops at that challenge
                // ("does not expect a challenge"). Seen with Dovecot's oauth2 passdb behind
                // Postfix (e2e `outgoing_oauth2`).
                Err(e) if e.is_client() && chosen == Some(Mechanism::Xoauth2) => {
                    self.log().note(
                        "the server answered with an error challenge (334): the token is not accepted",
                    );
                    return Err(TxError::TokenRefused);
                }
                _ => self.log_reply(replied.as_ref()),
            }
            replied.map_err(TxError::Smtp)?;
        }
        Ok(conn)
    }

    /// Records the `EHLO` lettre sent and what the server said it offers.
    fn log_hello(&self, conn: &AsyncSmtpConnection) {
        let mut log = self.log();
        log.sent(&format!("EHLO {}", self.hello));
        log.note(&format!("server {}", conn.server_info()));
    }

    /// Ends a connection that is no longer wanted: `QUIT` if it still answers in time, then
    /// closed either way.
    async fn discard(&self, mut conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.log().sent("QUIT");
        }
        let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
        self.log().note("connection closed");
    }

    /// Says QUIT on the open connection, if any (the queue has nothing more for it now).
    pub async fn close(&self) {
        if let Some((mut conn, _)) = self.open.lock().await.take() {
            self.log().sent("QUIT");
            match tokio::time::timeout(self.timeout, conn.command(Quit)).await {
                Ok(replied) => self.log_reply(replied.as_ref()),
                Err(_) => self.log().note("no reply to QUIT"),
            }
            let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
        }
    }

    /// One SMTP transaction on the open connection (opened first if there is none, or if the
    /// one kept has broken or does not answer a `NOOP` after a while idle). A kept connection
    /// found closed before any of the message went out is replaced and the message sent again
    /// once on the new one: the server closing an idle connection is routine, not a failure.
    async fn send_raw(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, TxError> {
        let mut open = self.open.lock().await;
        let kept = match open.take() {
            Some((mut conn, used)) if !conn.has_broken() => {
                if used.elapsed() < CHECK_AFTER_IDLE {
                    Some(conn)
                } else {
                    self.log().sent("NOOP");
                    let answered = tokio::time::timeout(self.timeout, conn.command(Noop)).await;
                    if let Ok(replied) = &answered {
                        self.log_reply(replied.as_ref());
                    }
                    if matches!(answered, Ok(Ok(_))) {
                        Some(conn)
                    } else {
                        self.log()
                            .note("the kept connection did not answer NOOP: opening a new one");
                        self.discard(conn).await;
                        None
                    }
                }
            }
            _ => None,
        };
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let mut result = self.transact(&mut conn, envelope, message).await;
        if reused {
            if let Err(TxError::LostBefore(why)) = &result {
                self.log().note(&format!(
                    "the kept connection was closed before the message went out ({why}): sending it again on a new connection"
                ));
                self.discard(conn).await;
                conn = self.connect().await?;
                result = self.transact(&mut conn, envelope, message).await;
            }
        }
        // A refusal ends the connection, as lettre's own `send` does; so does anything else
        // that went wrong, the server's state then being unknown.
        match result {
            Ok(_) => *open = Some((conn, Instant::now())),
            Err(_) => self.discard(conn).await,
        }
        let mut log = self.log();
        log.keep_last(TRANSCRIPT_LINES);
        drop(log);
        result
    }

    /// One command of a transaction and its reply, in the transcript.
    async fn step<C: std::fmt::Display>(
        &self,
        conn: &mut AsyncSmtpConnection,
        command: C,
    ) -> Result<Response, TxError> {
        let text = command.to_string();
        let text = text.trim_end();
        self.log().sent(text);
        let verb = text.split([' ', ':']).next().unwrap_or(text).to_owned();
        match tokio::time::timeout(self.timeout, conn.command(command)).await {
            Err(_) => {
                let why = format!("no reply to {verb} within {} s", self.timeout.as_secs());
                self.log().note(&why);
                Err(TxError::LostBefore(why))
            }
            Ok(replied) => {
                self.log_reply(replied.as_ref());
                replied.map_err(|e| match e.status().map(u16::from) {
                    // 421: the server is closing the connection (its idle timeout, or a
                    // limit of messages per connection, as Exim's
                    // `smtp_accept_max_per_connection`), not refusing the message.
                    Some(CLOSING) => TxError::LostBefore(format!(
                        "the server is closing it: {}",
                        std::error::Error::source(&e)
                            .map(|s| format!("{CLOSING} {s}"))
                            .unwrap_or_else(|| CLOSING.to_string())
                    )),
                    Some(_) => TxError::Smtp(e),
                    None => TxError::LostBefore(format!("at {verb}: {e}")),
                })
            }
        }
    }

    /// `MAIL`, each `RCPT`, `DATA` and the message (as lettre's `send` does, stopping at the
    /// first refusal), each step's failure telling whether the message may have gone out.
    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, TxError> {
        let mut options = Vec::new();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(TxError::Unsendable(
                    "the envelope has a non-ASCII address and the server does not offer SMTPUTF8"
                        .into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(TxError::Unsendable(
                    "the message has 8-bit text and the server does not offer 8BITMIME".into(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step(conn, Mail::new(envelope.from().cloned(), options))
            .await?;
        for to in envelope.to() {
            self.step(conn, Rcpt::new(to.clone(), Vec::new())).await?;
        }
        self.step(conn, Data).await?;
        self.log()
            .note(&format!("the message, {} bytes", message.len()));
        match tokio::time::timeout(self.timeout.saturating_mul(4), conn.message(message)).await {
            Err(_) => {
                self.log().note("no reply to the end of the data");
                Err(TxError::Stalled)
            }
            Ok(replied) => {
                self.log_reply(replied.as_ref());
                replied.map_err(|e| {
                    if e.status().is_some() {
                        TxError::Smtp(e)
                    } else {
                        TxError::LostAfter(e)
                    }
                })
            }
        }
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Sends `message` (CRLF line ends, as queued) from `sender` (empty: the null sender) to
    /// each of `recipients`; one outcome per recipient, in order.
    pub async fn send(&self, sender: &str, recipients: &[String], message: &[u8]) -> Vec<Outcome> {
        let from = if sender.is_empty() {
            None
        } else {
            match Address::from_str(sender) {
                Ok(a) => Some(a),
                Err(e) => {
                    let reply = format!(
                        "553 5.1.7 the sender address <{sender}> cannot be sent through the \
                         smarthost: {e}"
                    );
                    return vec![Outcome::Refused { reply }; recipients.len()];
                }
            }
        };
        // lettre ends the data with CRLF "." CRLF itself, so the message's own last line end is
        // the first half of it: left in, the server would store one blank line more.
        let message = message.strip_suffix(b"\r\n").unwrap_or(message);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; recipients.len()];
        let mut sendable = Vec::new();
        for (i, rcpt) in recipients.iter().enumerate() {
            match Address::from_str(rcpt) {
                Ok(a) => sendable.push((i, a)),
                Err(e) => {
                    outcomes[i] = Some(Outcome::Refused {
                        reply: format!("553 5.1.3 the address <{rcpt}> cannot be sent: {e}"),
                    })
                }
            }
        }
        if !sendable.is_empty() {
            let all: Vec<Address> = sendable.iter().map(|(_, a)| a.clone()).collect();
            match self.transaction(from.clone(), all, message).await {
                Ok(outcome) => fill(&mut outcomes, &sendable, &outcome),
                // A reply refused it (possibly only one RCPT, which lettre does not tell):
                // nothing was taken, so each recipient gets a transaction of its own.
                Err(TxError::Smtp(e)) if sendable.len() > 1 && e.status().is_some() => {
                    for (i, rcpt) in &sendable {
                        let outcome = match self
                            .transaction(from.clone(), vec![rcpt.clone()], message)
                            .await
                        {
                            Ok(sent) => sent,
                            Err(e) => self.outcome_of_tx(&e),
                        };
                        outcomes[*i] = Some(outcome);
                    }
                }
                Err(e) => fill(&mut outcomes, &sendable, &self.outcome_of_tx(&e)),
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Deferred {
                    reply: "not tried".into(),
                    maybe_sent: false,
                    reached: true,
                })
            })
            .collect()
    }

    /// One SMTP transaction for `to` (never empty).
    async fn transaction(
        &self,
        from: Option<Address>,
        to: Vec<Address>,
        message: &[u8],
    ) -> Result<Outcome, TxError> {
        let envelope = match Envelope::new(from, to) {
            Ok(envelope) => envelope,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reply: format!("554 5.5.1 the envelope cannot be sent: {e}"),
                })
            }
        };
        let response = self.send_raw(&envelope, message).await?;
        Ok(Outcome::Sent {
            reply: reply_text(&response),
        })
    }

    /// What a transaction that did not happen means for its recipients.
    fn outcome_of_tx(&self, e: &TxError) -> Outcome {
        match e {
            TxError::Smtp(e) => self.outcome_of(e),
            TxError::LostBefore(why) => Outcome::Deferred {
                reply: format!(
                    "the connection to the outgoing server {} was lost before the message went out ({why}); it was not sent and waits in the queue",
                    self.address()
                ),
                maybe_sent: false,
                reached: true,
            },
            TxError::LostAfter(e) => Outcome::Deferred {
                reply: format!(
                    "the connection to the outgoing server {} was lost while the message was under way ({e}); it may have taken it",
                    self.address()
                ),
                maybe_sent: true,
                reached: true,
            },
            TxError::TokenRefused => Outcome::Deferred {
                reply: format!(
                    "the outgoing server {} refused the login (XOAUTH2: it does not accept the access token): check that the account's password command prints a current token; the mail waits in the queue",
                    self.address()
                ),
                maybe_sent: false,
                reached: true,
            },
            TxError::Unsendable(why) => Outcome::Refused {
                reply: format!(
                    "554 5.6.0 the outgoing server {} cannot take this message: {why}",
                    self.address()
                ),
            },
            TxError::Stalled => Outcome::Deferred {
                reply: format!(
                    "the outgoing server {} stopped answering in the middle of a message; it may have taken it",
                    self.address()
                ),
                maybe_sent: true,
                reached: true,
            },
            TxError::Connect(e) => Outcome::Deferred {
                reply: format!(
                    "cannot connect to the outgoing server {}: {e}; check its host and port and that you are online",
                    self.address()
                ),
                maybe_sent: false,
                reached: false,
            },
            TxError::Tls(why) => Outcome::Deferred {
                reply: tls_failed(&self.address(), why),
                maybe_sent: false,
                reached: false,
            },
        }
    }

    /// What a failed transaction means for its recipients.
    fn outcome_of(&self, e: &lettre::transport::smtp::Error) -> Outcome {
        let why = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        if let Some(code) = e.status() {
            let reply = format!("{code} {why}").trim_end().to_owned();
            // A refused login (RFC 4954: 530 required, 534 too weak, 535 wrong credentials,
            // 538 encryption required) is the account's problem, not the recipients': the mail
            // waits for the login to be fixed instead of bouncing, as Postfix does
            // (`smtp_sasl_auth_soft_bounce`).
            if LOGIN_REFUSED.contains(&u16::from(code)) {
                return Outcome::Deferred {
                    reply: format!(
                        "the outgoing server {} refused the login ({reply}): check the account's outgoing user and password; the mail waits in the queue",
                        self.address()
                    ),
                    maybe_sent: false,
                    reached: true,
                };
            }
            return if e.is_permanent() {
                Outcome::Refused { reply }
            } else {
                Outcome::Deferred {
                    reply,
                    maybe_sent: false,
                    reached: true,
                }
            };
        }
        // What is left happened while connecting, securing or logging in: nothing of the
        // message went out.
        let place = self.address();
        if e.is_client() {
            // lettre would not log in: the server offers none of the account's mechanisms.
            return Outcome::Deferred {
                reply: format!(
                    "cannot log in at the outgoing server {place}: {why}; check the account's outgoing login method (password or XOAUTH2); the mail waits in the queue"
                ),
                maybe_sent: false,
                reached: true,
            };
        }
        // lettre tells a failed connect ("Connection error") from a lost one only in its
        // Display; the test `nothing_listening_is_deferred_and_never_sent` pins that.
        let never_connected = e.to_string().starts_with("Connection error") || e.is_tls();
        let reply = if e.is_tls() {
            tls_failed(&place, &why)
        } else if never_connected {
            format!("cannot connect to the outgoing server {place}: {why}; check its host and port and that you are online")
        } else {
            format!("the connection to the outgoing server {place} was lost before the message went out: {e}")
        };
        Outcome::Deferred {
            reply,
            maybe_sent: false,
            reached: !never_connected,
        }
    }
}

/// The TLS stream of port 465, made here so that its socket has `TCP_NODELAY` (lettre's own
/// keeps Nagle's algorithm on), handed to lettre as its transport.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl lettre::transport::smtp::client::AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A failed TLS handshake with the outgoing server at `place`, and what to check.
fn tls_failed(place: &str, why: &str) -> String {
    format!(
        "TLS with the outgoing server {place} failed ({why}); if it uses its own CA, give the \
         account that CA's certificate as its CA file, and check the port and the security mode \
         (TLS for 465, STARTTLS for 587)"
    )
}

/// The same outcome for every recipient in `which`.
fn fill(outcomes: &mut [Option<Outcome>], which: &[(usize, Address)], outcome: &Outcome) {
    for (i, _) in which {
        outcomes[*i] = Some(outcome.clone());
    }
}

/// `250 2.0.0 Ok: queued as …`.
fn reply_text(response: &Response) -> String {
    let text: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), text.join(" "))
        .trim_end()
        .to_owned()
}

/// Verified TLS towards `settings.host`: the system's roots plus the CA file.
fn tls_parameters(settings: &Settings) -> Result<TlsParameters, SetupError> {
    let tls_error = |e: lettre::transport::smtp::Error| SetupError::Tls {
        host: settings.host.clone(),
        reason: e.to_string(),
    };
    let mut builder =
        TlsParameters::builder(settings.host.clone()).certificate_store(CertificateStore::None);
    for root in crate::client::tls::trusted_roots(settings.ca_file.as_deref())? {
        builder =
            builder.add_root_certificate(Certificate::from_der(root.to_vec()).map_err(tls_error)?);
    }
    builder.build_rustls().map_err(tls_error)
}

#[cfg(test)]
mod tests;
