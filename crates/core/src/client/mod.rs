//! The SMTP client side: one connection to the ISP, opened, secured and authenticated the same
//! way whatever comes next — ETRN ([`crate::etrn`]), ATRN with the line turned around (ODMR) —
//! with its transcript and typed errors.
//!
//! [`open`] connects (implicit TLS from the first byte when the account says so), reads the
//! greeting, says EHLO, upgrades with STARTTLS (never falling back to plain text) and says EHLO
//! again, then authenticates (PLAIN, LOGIN or CRAM-MD5, as the server prefers; never without
//! TLS). The parsers ([`reply`], [`ehlo`], [`auth`]) do no I/O; [`conn`] owns the socket.

pub mod auth;
pub mod conn;
pub mod ehlo;
mod error;
pub mod reply;
pub mod tls;
pub mod transcript;
pub mod transfer;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use conn::{Connection, Stream};
pub use error::IspError;

use crate::account::{Account, Secret, Security};
use crate::report::TranscriptLine;
use auth::Mechanism;
use ehlo::EhloReply;
use reply::Reply;
use transcript::Transcript;

/// Timeouts and retry policy of the client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Limit on TCP connect (and each TLS handshake).
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
    /// The greeting line (code and text).
    pub greeting: String,
    /// Whether the connection was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// Whether AUTH succeeded.
    pub authenticated: bool,
    /// The AUTH mechanism used, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The EHLO keywords (first word of each extension line), from the last EHLO.
    pub extensions: Vec<String>,
}

impl ServerInfo {
    /// Whether the last EHLO reply listed `keyword` (`ETRN`, `ATRN`).
    pub fn advertises(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword))
    }
}

/// Where to connect and as whom: an account's connection settings, checked.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The account's name (for messages and the settings that fix a problem).
    pub account: String,
    /// The server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The name we give in EHLO.
    pub helo: String,
    /// User and password for AUTH.
    pub credentials: Option<(String, Secret)>,
}

impl Endpoint {
    /// The endpoint of `account`; refuses, before any connection, a password that would go out
    /// without TLS and a user name without a password. An account with a password command has
    /// it run here (once per connection), its output never logged.
    pub async fn of(account: &Account, settings: &ClientSettings) -> Result<Self, IspError> {
        let credentials = match &account.username {
            None => None,
            Some(user) => {
                if account.security == Security::None {
                    return Err(IspError::PlaintextAuth {
                        account: account.name.clone(),
                    });
                }
                Some((user.clone(), account_password(account).await?))
            }
        };
        Ok(Endpoint {
            account: account.name.clone(),
            host: account.host.clone(),
            port: account.port,
            security: account.security,
            ca_file: account.ca_file.clone(),
            helo: account
                .helo
                .clone()
                .unwrap_or_else(|| settings.default_helo.clone()),
            credentials,
        })
    }
}

/// The account's password: the stored one, or what its password command prints (run now, its
/// output never logged).
pub async fn account_password(account: &Account) -> Result<Secret, IspError> {
    match (&account.password, &account.password_command) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(cmd)) => crate::user_command::password_from_command(cmd)
            .await
            .map_err(|e| IspError::PasswordCommand {
                account: account.name.clone(),
                reason: e.to_string(),
            }),
        (None, None) => Err(IspError::NoPassword {
            account: account.name.clone(),
        }),
    }
}

/// Opening failed: why, what was learned, and the conversation up to there.
#[derive(Debug)]
pub struct OpenError {
    /// What went wrong.
    pub error: IspError,
    /// What was learned of the server before it failed.
    pub info: ServerInfo,
    /// The conversation, AUTH redacted.
    pub transcript: Transcript,
}

/// Which greeting a client says: `EHLO` to an SMTP server, `LHLO` to an LMTP one (RFC 2033,
/// whose server answers exactly like an EHLO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hello {
    /// SMTP.
    #[default]
    Ehlo,
    /// LMTP.
    Lhlo,
}

impl Hello {
    fn verb(self) -> &'static str {
        match self {
            Hello::Ehlo => "EHLO",
            Hello::Lhlo => "LHLO",
        }
    }
}

/// Where a server listens: a host and port, or a local unix socket (LMTP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket's path.
    Unix(PathBuf),
}

/// A mail server Mailcall hands mail on to (a LAN MTA over SMTP, Dovecot over LMTP): no
/// account, no AUTH, the certificate verified when TLS is asked for.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where it listens.
    pub address: Address,
    /// SMTP or LMTP.
    pub hello: Hello,
    /// How the connection is secured (only `None` over a unix socket).
    pub security: Security,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The name we give in EHLO/LHLO.
    pub helo: String,
}

/// Connects to `server`, says EHLO or LHLO, and secures the connection as asked; returns it
/// ready for MAIL FROM and what the server offers.
pub async fn open_server(
    server: &Server,
    settings: &ClientSettings,
) -> Result<(Connection, ServerInfo), OpenError> {
    let (host, port) = match &server.address {
        Address::Tcp { host, port } => (host.clone(), Some(*port)),
        Address::Unix(path) => (path.display().to_string(), None),
    };
    let endpoint = Endpoint {
        account: String::new(),
        host,
        port: port.unwrap_or(0),
        security: server.security,
        ca_file: server.ca_file.clone(),
        helo: server.helo.clone(),
        credentials: None,
    };
    let unix = match &server.address {
        Address::Unix(path) => Some(path.as_path()),
        Address::Tcp { .. } => None,
    };
    establish(&endpoint, unix, server.hello, settings).await
}

/// Connects to `endpoint`, secures and authenticates; returns the connection ready for the
/// next command (ETRN, ATRN) and what the server offers.
pub async fn open(
    endpoint: &Endpoint,
    settings: &ClientSettings,
) -> Result<(Connection, ServerInfo), OpenError> {
    establish(endpoint, None, Hello::Ehlo, settings).await
}

/// `open`'s work, for TCP or (with `unix`) a unix socket, greeting with `hello`.
async fn establish(
    endpoint: &Endpoint,
    unix: Option<&std::path::Path>,
    hello: Hello,
    settings: &ClientSettings,
) -> Result<(Connection, ServerInfo), OpenError> {
    let mut info = ServerInfo::default();
    if unix.is_some() && endpoint.security != Security::None {
        return Err(OpenError {
            error: IspError::Tls {
                host: endpoint.host.clone(),
                reason: "TLS over a unix socket is not supported".into(),
            },
            info,
            transcript: Transcript::default(),
        });
    }
    // Everything that can be refused without the network is refused before connecting.
    let config = match endpoint.security {
        Security::None => None,
        Security::Starttls | Security::Tls => {
            match tls::client_config(endpoint.ca_file.as_deref()) {
                Ok(c) => Some(c),
                Err(error) => {
                    return Err(OpenError {
                        error,
                        info,
                        transcript: Transcript::default(),
                    })
                }
            }
        }
    };
    let connected = match unix {
        Some(path) => {
            Connection::connect_unix(
                path,
                settings.connect_timeout,
                settings.reply_timeout,
                Transcript::default(),
            )
            .await
        }
        None => {
            Connection::connect(
                &endpoint.host,
                endpoint.port,
                settings.connect_timeout,
                settings.reply_timeout,
                Transcript::default(),
            )
            .await
        }
    };
    let mut conn = match connected {
        Ok(c) => c,
        Err(error) => {
            let mut transcript = Transcript::default();
            transcript.note(&format!("cannot connect: {error}"));
            return Err(OpenError {
                error,
                info,
                transcript,
            });
        }
    };
    match prepare(&mut conn, endpoint, hello, settings, config, &mut info).await {
        Ok(()) => Ok((conn, info)),
        Err(error) => {
            if still_talking(&error) {
                conn.quit().await;
            }
            let transcript = conn.into_parts().map(|(_, _, t)| t).unwrap_or_default();
            Err(OpenError {
                error,
                info,
                transcript,
            })
        }
    }
}

async fn prepare(
    conn: &mut Connection,
    endpoint: &Endpoint,
    hello: Hello,
    settings: &ClientSettings,
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
    info: &mut ServerInfo,
) -> Result<(), IspError> {
    let host = endpoint.host.clone();
    if let (Security::Tls, Some(config)) = (endpoint.security, config.clone()) {
        conn.upgrade(config, settings.connect_timeout).await?;
    }
    let greeting = conn.read_reply("the greeting").await?;
    info.greeting = greeting.to_string();
    if greeting.code != 220 {
        return Err(refusal(&host, &greeting, "the greeting"));
    }
    let mut ehlo = say_ehlo(conn, hello, &endpoint.helo, &host).await?;
    if endpoint.security == Security::Starttls {
        if !ehlo.advertises("STARTTLS") {
            return Err(IspError::StarttlsNotOffered { host });
        }
        let reply = conn.command("STARTTLS", "the reply to STARTTLS").await?;
        if reply.code != 220 {
            return Err(match reply.code {
                421 => IspError::ServiceClosing {
                    host,
                    text: reply.text(),
                },
                code => IspError::StarttlsRefused {
                    host,
                    code,
                    text: reply.text(),
                },
            });
        }
        let Some(config) = config else {
            unreachable!("STARTTLS always comes with a TLS config")
        };
        conn.upgrade(config, settings.connect_timeout).await?;
        // RFC 3207 4.2: nothing learned before TLS counts; say EHLO again.
        ehlo = say_ehlo(conn, hello, &endpoint.helo, &host).await?;
    }
    info.tls = conn.is_tls();
    info.extensions = ehlo.keywords.clone();
    if let Some((user, password)) = &endpoint.credentials {
        let mechanism = authenticate(conn, endpoint, &ehlo, user, password).await?;
        info.authenticated = true;
        info.mechanism = Some(mechanism.name().to_owned());
    }
    Ok(())
}

async fn say_ehlo(
    conn: &mut Connection,
    hello: Hello,
    helo: &str,
    host: &str,
) -> Result<EhloReply, IspError> {
    let verb = hello.verb();
    let reply = conn
        .command(&format!("{verb} {helo}"), &format!("the reply to {verb}"))
        .await?;
    if reply.code != 250 {
        return Err(refusal(host, &reply, verb));
    }
    Ok(EhloReply::parse(reply.lines.iter().map(String::as_str)))
}

/// AUTH with the first mechanism the server lists that we speak.
async fn authenticate(
    conn: &mut Connection,
    endpoint: &Endpoint,
    ehlo: &EhloReply,
    user: &str,
    password: &Secret,
) -> Result<Mechanism, IspError> {
    let host = endpoint.host.clone();
    // Checked again here, not only before connecting: a password never goes out in clear.
    if !conn.is_tls() {
        return Err(IspError::PlaintextAuth {
            account: endpoint.account.clone(),
        });
    }
    let auth_lines = ehlo
        .lines
        .iter()
        .filter(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("AUTH"));
    let mechanism =
        auth::choose(auth_lines.map(String::as_str)).ok_or_else(|| IspError::AuthUnsupported {
            host: host.clone(),
            offered: ehlo.keywords.join(" "),
        })?;
    let step = "the reply to AUTH";
    let pw = password.expose();
    let mut reply = match mechanism {
        Mechanism::Plain => {
            conn.command(&format!("AUTH PLAIN {}", auth::plain(user, pw)), step)
                .await?
        }
        Mechanism::Login => {
            let mut reply = conn.command("AUTH LOGIN", step).await?;
            for answer in [user, pw] {
                if reply.code != 334 {
                    break;
                }
                reply = conn.command(&auth::encode(answer), step).await?;
            }
            reply
        }
        Mechanism::CramMd5 => {
            let reply = conn.command("AUTH CRAM-MD5", step).await?;
            if reply.code == 334 {
                let Some(answer) = auth::cram_md5(user, pw, &reply.text()) else {
                    // Cancel the exchange (RFC 4954 4) and say why.
                    let _ = conn.command("*", step).await;
                    return Err(IspError::Protocol {
                        host,
                        step: step.into(),
                        reason: "the CRAM-MD5 challenge is not base64".into(),
                    });
                };
                conn.command(&answer, step).await?
            } else {
                reply
            }
        }
    };
    if reply.code == 334 {
        // The server wants more than the mechanism has to give: cancel.
        reply = conn.command("*", step).await?;
    }
    match reply.code {
        235 => Ok(mechanism),
        421 => Err(IspError::ServiceClosing {
            host,
            text: reply.text(),
        }),
        code => Err(IspError::AuthFailed {
            host,
            account: endpoint.account.clone(),
            code,
            text: reply.text(),
        }),
    }
}

/// Why opening a connection failed: the error, what was learned of the server, the dialogue.
pub type Refused = (IspError, ServerInfo, Transcript);

/// Opens a secured, authenticated connection for `account` (its endpoint: password or password
/// command) to a server that advertises `keyword` (`ETRN`, `ATRN`); one that does not is sent
/// QUIT and the error is `missing()`.
pub async fn open_offering(
    account: &Account,
    settings: &ClientSettings,
    keyword: &str,
    missing: impl FnOnce() -> IspError,
) -> Result<(Connection, ServerInfo), Refused> {
    let endpoint = Endpoint::of(account, settings)
        .await
        .map_err(|e| (e, ServerInfo::default(), Transcript::default()))?;
    let (mut conn, info) = open(&endpoint, settings)
        .await
        .map_err(|f| (f.error, f.info, f.transcript))?;
    if !info.advertises(keyword) {
        conn.quit().await;
        let transcript = conn.into_parts().map(|(_, _, t)| t).unwrap_or_default();
        return Err((missing(), info, transcript));
    }
    Ok((conn, info))
}

/// What `check` reports of a connection [`open_offering`] gave: what the server offers, the
/// error if any, and the dialogue (an open connection is closed with QUIT first).
pub async fn check_report(
    opened: Result<(Connection, ServerInfo), Refused>,
) -> (ServerInfo, Option<IspError>, Vec<TranscriptLine>) {
    match opened {
        Err((error, info, transcript)) => (info, Some(error), transcript.into_lines()),
        Ok((mut conn, info)) => {
            conn.quit().await;
            let transcript = conn.into_parts().map(|(_, _, t)| t).unwrap_or_default();
            (info, None, transcript.into_lines())
        }
    }
}

/// A negative reply where only success was expected: 421 closes, anything else is unexpected.
pub fn refusal(host: &str, reply: &Reply, step: &str) -> IspError {
    if reply.code == 421 {
        IspError::ServiceClosing {
            host: host.to_owned(),
            text: reply.text(),
        }
    } else {
        IspError::Protocol {
            host: host.to_owned(),
            step: step.to_owned(),
            reason: reply.to_string(),
        }
    }
}

/// Whether the server is still listening after this error, so a QUIT is polite and possible.
fn still_talking(err: &IspError) -> bool {
    matches!(
        err,
        IspError::StarttlsNotOffered { .. }
            | IspError::AuthUnsupported { .. }
            | IspError::AuthFailed { .. }
            | IspError::PlaintextAuth { .. }
    )
}
