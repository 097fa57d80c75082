//! The smarthost leg: queued outgoing mail handed to the ISP's submission server with lettre's
//! pooled async SMTP transport.
//!
//! - TLS is always verified: the system's roots plus the account's CA file (the same trust as
//!   the ETRN/ODMR client, [`crate::client::tls::trusted_roots`]); 587 with STARTTLS required,
//!   or 465 with TLS from the first byte. A password is never sent over plain text.
//! - AUTH PLAIN or LOGIN with the account's password, or XOAUTH2 with a token (from the
//!   account's `password-command`, as msmtp's `passwordeval` serves OAuth providers).
//! - The queued bytes leave exactly as queued (`send_raw`; lettre only dot-stuffs them).
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
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::account::outgoing::{OutgoingAuth, OutgoingLogin};
use crate::account::{Account, Secret, Security};
use crate::client::{ClientSettings, IspError};

/// How many connections one [`Smarthost`] keeps open: the queue's workers each hold their own,
/// and each sends one message at a time.
const POOL_SIZE: u32 = 1;
/// The replies that refuse a login rather than a recipient (RFC 4954).
const LOGIN_REFUSED: [u16; 4] = [530, 534, 535, 538];
/// How long an idle pooled connection is kept before it is closed.
const POOL_IDLE: Duration = Duration::from_secs(30);

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

/// One smarthost, with its pool of connections; cheap to clone.
#[derive(Clone)]
pub struct Smarthost {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    host: String,
    port: u16,
}

impl std::fmt::Debug for Smarthost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smarthost")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Smarthost {
    /// Sets up the transport (no connection is made yet); call it inside the tokio runtime,
    /// where the pool keeps its idle connections.
    pub fn new(settings: &Settings) -> Result<Self, SetupError> {
        let host = settings.host.clone();
        let tls = match settings.security {
            Security::None => {
                if settings.login.is_some() {
                    return Err(SetupError::PlaintextLogin { host });
                }
                Tls::None
            }
            Security::Starttls => Tls::Required(tls_parameters(settings)?),
            Security::Tls => Tls::Wrapper(tls_parameters(settings)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(settings.port)
            .tls(tls)
            .hello_name(ClientId::Domain(settings.helo.clone()))
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_SIZE)
                    .idle_timeout(POOL_IDLE),
            );
        if let Some(login) = &settings.login {
            builder = builder
                .credentials(Credentials::new(
                    login.user.clone(),
                    login.secret.expose().to_owned(),
                ))
                .authentication(match login.method {
                    LoginMethod::Password => vec![Mechanism::Plain, Mechanism::Login],
                    LoginMethod::OAuth2 => vec![Mechanism::Xoauth2],
                });
        }
        Ok(Smarthost {
            transport: builder.build(),
            host,
            port: settings.port,
        })
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
                Err(e) if sendable.len() > 1 && e.status().is_some() => {
                    for (i, rcpt) in &sendable {
                        let outcome = match self
                            .transaction(from.clone(), vec![rcpt.clone()], message)
                            .await
                        {
                            Ok(sent) => sent,
                            Err(e) => self.outcome_of(&e),
                        };
                        outcomes[*i] = Some(outcome);
                    }
                }
                Err(e) => fill(&mut outcomes, &sendable, &self.outcome_of(&e)),
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
    ) -> Result<Outcome, lettre::transport::smtp::Error> {
        let envelope = match Envelope::new(from, to) {
            Ok(envelope) => envelope,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reply: format!("554 5.5.1 the envelope cannot be sent: {e}"),
                })
            }
        };
        let response = self.transport.send_raw(&envelope, message).await?;
        Ok(Outcome::Sent {
            reply: reply_text(&response),
        })
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
        let place = self.address();
        if e.is_client() {
            // lettre would not send it at all (8BITMIME or SMTPUTF8 needed and not offered):
            // the same server will say the same tomorrow.
            return Outcome::Refused {
                reply: format!(
                    "554 5.6.0 the outgoing server {place} cannot take this message: {why}"
                ),
            };
        }
        // lettre tells a failed connect ("Connection error") from a lost one only in its
        // Display; the test `a_lost_connection_after_the_data_may_have_sent_it` pins that.
        let never_connected = e.to_string().starts_with("Connection error") || e.is_tls();
        let reply = if e.is_tls() {
            format!(
                "TLS with the outgoing server {place} failed ({why}); if it uses its own CA, give \
                 the account that CA's certificate as its CA file, and check the port and the \
                 security mode (TLS for 465, STARTTLS for 587)"
            )
        } else if never_connected {
            format!("cannot connect to the outgoing server {place}: {why}; check its host and port and that you are online")
        } else {
            format!("the connection to the outgoing server {place} was lost: {e}")
        };
        Outcome::Deferred {
            reply,
            maybe_sent: !never_connected,
            reached: !never_connected,
        }
    }
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
