//! One ETRN session with an ISP: connect, secure, authenticate, ask once per domain, quit.
//!
//! lettre does TCP/TLS/EHLO/AUTH; every lettre await runs under a timeout. ETRN goes through
//! lettre's `command()`, and the EHLO reply is parsed here because lettre drops `ETRN`.

use std::error::Error as _;
use std::fmt::Display;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, TlsParameters, TlsParametersBuilder,
};
use lettre::transport::smtp::commands::{Ehlo, Quit};
use lettre::transport::smtp::extension::{ClientId, Extension};
use lettre::transport::smtp::Error as SmtpError;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::command::Etrn;
use super::ehlo::EhloReply;
use super::reply;
use super::tap::TappedStream;
use super::transcript::SharedTranscript;
use super::{ClientSettings, EtrnError, ServerInfo};
use crate::account::{Account, Security};
use crate::event::{Event, EventSink};
use crate::report::{DomainOutcome, DomainReport};

/// The longest pause between two attempts of the same ETRN, however the delay doubles.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// One reply: its code and text lines (a rejected reply comes as one joined line).
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" ")
    }
}

/// The state of one conversation with the ISP.
pub(super) struct Session<'a> {
    account: &'a Account,
    settings: &'a ClientSettings,
    transcript: SharedTranscript,
    /// Whether the stream tap still records (plain-text phase only).
    recording: Arc<AtomicBool>,
    /// What we learned of the server.
    pub(super) info: ServerInfo,
}

impl<'a> Session<'a> {
    /// A session that has not connected yet.
    pub(super) fn new(account: &'a Account, settings: &'a ClientSettings) -> Self {
        Session {
            account,
            settings,
            transcript: SharedTranscript::default(),
            recording: Arc::new(AtomicBool::new(false)),
            info: ServerInfo::default(),
        }
    }

    /// The transcript so far.
    pub(super) fn transcript(&self) -> &SharedTranscript {
        &self.transcript
    }

    fn host(&self) -> String {
        self.account.host.clone()
    }

    fn note(&self, text: &str) {
        self.transcript.lock().note(text);
    }

    /// Connects, secures, says EHLO, authenticates and checks that ETRN is offered.
    pub(super) async fn open(&mut self) -> Result<AsyncSmtpConnection, EtrnError> {
        // Everything that can be refused without the network is refused before connecting.
        let credentials = self.credentials()?;
        let tls = match self.account.security {
            Security::None => None,
            Security::Starttls | Security::Tls => Some(self.tls_parameters().await?),
        };
        let helo = self
            .account
            .helo
            .clone()
            .unwrap_or_else(|| self.settings.default_helo.clone());
        let client_id = ClientId::Domain(helo);

        let mut conn = match (self.account.security, tls.clone()) {
            (Security::Tls, Some(params)) => self.connect_implicit_tls(params, &client_id).await?,
            _ => self.connect_plain(&client_id).await?,
        };
        match self.prepare(&mut conn, tls, &client_id, credentials).await {
            Ok(()) => Ok(conn),
            Err(err) => {
                if connection_still_usable(&err) && !conn.has_broken() {
                    self.quit(&mut conn).await;
                }
                Err(err)
            }
        }
    }

    async fn prepare(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        tls: Option<TlsParameters>,
        client_id: &ClientId,
        credentials: Option<Credentials>,
    ) -> Result<(), EtrnError> {
        if let (Security::Starttls, Some(params)) = (self.account.security, tls) {
            self.starttls(conn, params, client_id).await?;
        }
        // From here on every line is recorded by the session itself.
        self.recording.store(false, Ordering::Release);
        self.info.tls = conn.is_encrypted();

        let ehlo = self
            .exchange(conn, Ehlo::new(client_id.clone()), "the reply to EHLO")
            .await?;
        if ehlo.code != 250 {
            return Err(self.refusal(&ehlo, "EHLO"));
        }
        let parsed = EhloReply::parse(ehlo.lines.iter().map(String::as_str));
        self.info.extensions = parsed.keywords.clone();
        self.info.etrn_advertised = parsed.advertises("ETRN");

        if let Some(credentials) = credentials {
            self.authenticate(conn, &credentials).await?;
        }
        if !self.info.etrn_advertised {
            return Err(EtrnError::EtrnNotAdvertised { host: self.host() });
        }
        Ok(())
    }

    fn credentials(&self) -> Result<Option<Credentials>, EtrnError> {
        let Some(user) = &self.account.username else {
            return Ok(None);
        };
        if self.account.security == Security::None {
            return Err(EtrnError::PlaintextAuth {
                account: self.account.name.clone(),
            });
        }
        let password = self
            .account
            .password
            .as_ref()
            .ok_or_else(|| EtrnError::NoPassword {
                account: self.account.name.clone(),
            })?;
        Ok(Some(Credentials::new(
            user.clone(),
            password.expose().to_owned(),
        )))
    }

    /// TLS settings: the system's roots plus the account's CA file; verification always on.
    async fn tls_parameters(&self) -> Result<TlsParameters, EtrnError> {
        let mut builder = TlsParametersBuilder::new(self.host());
        let ca_path = self.account.ca_file.as_ref();
        if let Some(path) = ca_path {
            let shown = path.display().to_string();
            let ca_error = |reason: String| EtrnError::CaFile {
                path: shown.clone(),
                reason,
            };
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| ca_error(e.to_string()))?;
            // lettre accepts a file with no certificate in it; that would silently trust nothing.
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(ca_error(
                    "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            let cert = Certificate::from_pem(&pem).map_err(|e| ca_error(error_chain(&e)))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().map_err(|e| match ca_path {
            Some(path) => EtrnError::CaFile {
                path: path.display().to_string(),
                reason: error_chain(&e),
            },
            None => EtrnError::Tls {
                host: self.host(),
                reason: error_chain(&e),
            },
        })
    }

    async fn tcp_connect(&self) -> Result<TcpStream, EtrnError> {
        let (host, port) = (self.host(), self.account.port);
        self.note(&format!("connecting to {host}:{port}"));
        let connect_error = |reason: String| EtrnError::Connect {
            host: host.clone(),
            port,
            reason,
        };
        match timeout(
            self.settings.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Err(_) => Err(connect_error(format!(
                "timed out after {:.1} s",
                self.settings.connect_timeout.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(connect_error(e.to_string())),
            Ok(Ok(tcp)) => {
                if let Ok(peer) = tcp.peer_addr() {
                    self.note(&format!("connected to {peer}"));
                }
                Ok(tcp)
            }
        }
    }

    /// TCP, then lettre reads the greeting and sends EHLO over a tapped stream.
    async fn connect_plain(
        &mut self,
        client_id: &ClientId,
    ) -> Result<AsyncSmtpConnection, EtrnError> {
        let tcp = self.tcp_connect().await?;
        // Wait for the greeting's first byte ourselves, so a silent server is named as such.
        let mut probe = [0u8; 1];
        match timeout(self.settings.reply_timeout, tcp.peek(&mut probe)).await {
            Err(_) => return Err(self.timed_out("the greeting", self.settings.reply_timeout)),
            Ok(Err(e)) => return Err(self.protocol("the greeting", e.to_string())),
            Ok(Ok(0)) => {
                return Err(self.protocol(
                    "the greeting",
                    "the server closed the connection without a greeting".into(),
                ))
            }
            Ok(Ok(_)) => {}
        }
        self.recording.store(true, Ordering::Release);
        let tapped = TappedStream::new(tcp, self.transcript.clone(), self.recording.clone());
        let result = timeout(
            self.settings.reply_timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(tapped), client_id),
        )
        .await;
        let step = if self.transcript.lock().has_sent("EHLO") {
            "the reply to EHLO"
        } else {
            "the greeting"
        };
        let conn = match result {
            Err(_) => return Err(self.timed_out(step, self.settings.reply_timeout)),
            Ok(Err(e)) => return Err(self.lettre_error(&e, step)),
            Ok(Ok(conn)) => conn,
        };
        self.info.greeting = self
            .transcript
            .lock()
            .first_received()
            .unwrap_or_default()
            .to_owned();
        Ok(conn)
    }

    /// TLS from the first byte: lettre connects, handshakes, reads the greeting and says EHLO.
    async fn connect_implicit_tls(
        &mut self,
        params: TlsParameters,
        client_id: &ClientId,
    ) -> Result<AsyncSmtpConnection, EtrnError> {
        let (host, port) = (self.host(), self.account.port);
        self.note(&format!(
            "connecting to {host}:{port} with implicit TLS (certificate verified)"
        ));
        let limit = self.settings.connect_timeout + self.settings.reply_timeout * 2;
        let result = timeout(
            limit,
            AsyncSmtpConnection::connect_tokio1(
                (host.as_str(), port),
                Some(self.settings.connect_timeout),
                client_id,
                Some(params),
                None,
            ),
        )
        .await;
        match result {
            Err(_) => Err(self.timed_out("the TLS handshake, greeting or EHLO reply", limit)),
            Ok(Err(e)) if e.status().is_some() => Err(self.lettre_error(&e, "the greeting")),
            Ok(Err(e)) => Err(self.connect_failure(&e)),
            Ok(Ok(conn)) => {
                // The greeting was read inside the TLS layer, out of our sight.
                self.note(
                    "TLS established; greeting and first EHLO exchanged inside TLS (not recorded)",
                );
                Ok(conn)
            }
        }
    }

    async fn starttls(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        params: TlsParameters,
        client_id: &ClientId,
    ) -> Result<(), EtrnError> {
        if !conn.server_info().supports_feature(Extension::StartTls) {
            return Err(EtrnError::StarttlsNotOffered { host: self.host() });
        }
        let limit = self.settings.connect_timeout + self.settings.reply_timeout * 2;
        match timeout(limit, conn.starttls(params, client_id)).await {
            Err(_) => Err(self.timed_out("STARTTLS, the TLS handshake or the EHLO reply", limit)),
            Ok(Err(e)) => match e.status() {
                // The tap stops at a 2xx to STARTTLS: if it still records, STARTTLS was refused.
                Some(code) if self.recording.load(Ordering::Acquire) => {
                    let code = u16::from(code);
                    let text = source_text(&e);
                    Err(if reply::is_closing(code) {
                        EtrnError::ServiceClosing {
                            host: self.host(),
                            text,
                        }
                    } else {
                        EtrnError::StarttlsRefused {
                            host: self.host(),
                            code,
                            text,
                        }
                    })
                }
                Some(_) => Err(self.lettre_error(&e, "EHLO after STARTTLS")),
                None => Err(self.tls_failure(&e)),
            },
            Ok(Ok(())) => {
                self.note(
                    "TLS established, certificate verified; EHLO sent again (reply not recorded)",
                );
                Ok(())
            }
        }
    }

    async fn authenticate(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        credentials: &Credentials,
    ) -> Result<(), EtrnError> {
        // Checked again here, not only before connecting: a password never goes out in clear.
        if !conn.is_encrypted() {
            return Err(EtrnError::PlaintextAuth {
                account: self.account.name.clone(),
            });
        }
        let mechanism = conn
            .server_info()
            .get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login])
            .ok_or_else(|| EtrnError::AuthUnsupported {
                host: self.host(),
                offered: self.info.extensions.join(" "),
            })?;
        self.transcript.lock().auth(&mechanism.to_string());
        // AUTH LOGIN takes three round trips.
        let limit = self.settings.reply_timeout * 3;
        match timeout(limit, conn.auth(&[mechanism], credentials)).await {
            Err(_) => Err(self.timed_out("the reply to AUTH", limit)),
            Ok(Ok(response)) => {
                let code = u16::from(response.code());
                self.transcript.lock().reply(code, response.message());
                self.info.authenticated = true;
                Ok(())
            }
            Ok(Err(e)) => match e.status() {
                Some(code) => {
                    let code = u16::from(code);
                    let text = source_text(&e);
                    self.transcript.lock().reply(code, [text.as_str()]);
                    Err(if reply::is_closing(code) {
                        EtrnError::ServiceClosing {
                            host: self.host(),
                            text,
                        }
                    } else {
                        EtrnError::AuthFailed {
                            host: self.host(),
                            account: self.account.name.clone(),
                            code,
                            text,
                        }
                    })
                }
                None => Err(self.protocol("AUTH", error_chain(&e))),
            },
        }
    }

    /// Sends one ETRN per domain (retrying 4xx), filling `reports` in place.
    ///
    /// Returns the error that ended the session early, if any; unasked domains stay `NotSent`.
    pub(super) async fn ask_all(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        reports: &mut [DomainReport],
        events: &EventSink,
    ) -> Option<EtrnError> {
        for report in reports.iter_mut() {
            let command = match Etrn::new(&report.domain) {
                Ok(command) => command,
                Err(why) => {
                    report.text = why;
                    continue;
                }
            };
            if let Err(err) = self.ask(conn, &command, report, events).await {
                return Some(err);
            }
        }
        None
    }

    async fn ask(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        command: &Etrn,
        report: &mut DomainReport,
        events: &EventSink,
    ) -> Result<(), EtrnError> {
        let mut delay = self.settings.retry_delay;
        loop {
            report.attempts += 1;
            let step = format!("the reply to ETRN {}", command.argument());
            let answer = match self.exchange(conn, command, &step).await {
                Ok(answer) => answer,
                Err(err) => {
                    report.text = "no reply: the session failed".into();
                    return Err(err);
                }
            };
            let text = answer.text();
            let outcome = reply::classify(answer.code, &text);
            let will_retry =
                reply::is_retryable(answer.code, &text) && report.attempts <= self.settings.retries;
            events.emit(Event::EtrnReply {
                account: self.account.name.clone(),
                domain: report.domain.clone(),
                code: answer.code,
                text: text.clone(),
                outcome,
                will_retry,
            });
            report.code = Some(answer.code);
            report.text = text.clone();
            report.outcome = outcome;
            if reply::is_closing(answer.code) {
                return Err(EtrnError::ServiceClosing {
                    host: self.host(),
                    text,
                });
            }
            if !will_retry {
                return Ok(());
            }
            self.note(&format!(
                "retrying ETRN {} in {:.1} s",
                command.argument(),
                delay.as_secs_f64()
            ));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Says QUIT; the answer does not matter any more.
    pub(super) async fn quit(&mut self, conn: &mut AsyncSmtpConnection) {
        if let Err(err) = self.exchange(conn, Quit, "the reply to QUIT").await {
            self.note(&format!("QUIT failed: {err}"));
        }
    }

    /// Sends a command, waits (bounded) for the reply and records both.
    ///
    /// Any reply is `Ok`, 4xx/5xx included; `Err` means no usable reply came.
    async fn exchange<C: Display>(
        &mut self,
        conn: &mut AsyncSmtpConnection,
        command: C,
        step: &str,
    ) -> Result<Reply, EtrnError> {
        let line = command.to_string();
        self.transcript.lock().sent(line.trim_end());
        match timeout(self.settings.reply_timeout, conn.command(command)).await {
            Err(_) => Err(self.timed_out(step, self.settings.reply_timeout)),
            Ok(Ok(response)) => {
                let reply = Reply {
                    code: u16::from(response.code()),
                    lines: response.message().map(str::to_owned).collect(),
                };
                self.transcript
                    .lock()
                    .reply(reply.code, reply.lines.iter().map(String::as_str));
                Ok(reply)
            }
            Ok(Err(e)) => match e.status() {
                Some(code) => {
                    let reply = Reply {
                        code: u16::from(code),
                        lines: vec![source_text(&e)],
                    };
                    self.transcript
                        .lock()
                        .reply(reply.code, reply.lines.iter().map(String::as_str));
                    Ok(reply)
                }
                None => Err(self.protocol(step, error_chain(&e))),
            },
        }
    }

    fn refusal(&self, reply: &Reply, step: &str) -> EtrnError {
        if reply::is_closing(reply.code) {
            EtrnError::ServiceClosing {
                host: self.host(),
                text: reply.text(),
            }
        } else {
            self.protocol(step, format!("{} {}", reply.code, reply.text()))
        }
    }

    fn lettre_error(&self, e: &SmtpError, step: &str) -> EtrnError {
        match e.status() {
            Some(code) => self.refusal(
                &Reply {
                    code: u16::from(code),
                    lines: vec![source_text(e)],
                },
                step,
            ),
            None => self.protocol(step, error_chain(e)),
        }
    }

    /// Implicit TLS: lettre's connect error may be TCP or TLS; tell them apart for the user.
    fn connect_failure(&self, e: &SmtpError) -> EtrnError {
        let reason = error_chain(e);
        let lower = reason.to_ascii_lowercase();
        let network = io_kinds(e).into_iter().any(|kind| {
            matches!(
                kind,
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            )
        });
        if !is_certificate_problem(&lower)
            && (network || lower.contains("lookup") || lower.contains("resolve"))
        {
            EtrnError::Connect {
                host: self.host(),
                port: self.account.port,
                reason,
            }
        } else {
            self.tls_failure(e)
        }
    }

    fn tls_failure(&self, e: &SmtpError) -> EtrnError {
        let reason = error_chain(e);
        if is_certificate_problem(&reason.to_ascii_lowercase()) {
            EtrnError::Certificate {
                host: self.host(),
                reason,
            }
        } else {
            EtrnError::Tls {
                host: self.host(),
                reason,
            }
        }
    }

    fn timed_out(&self, step: &str, waited: Duration) -> EtrnError {
        self.note(&format!(
            "no answer within {:.1} s waiting for {step}",
            waited.as_secs_f64()
        ));
        EtrnError::Timeout {
            host: self.host(),
            step: step.to_owned(),
            secs: waited.as_secs_f64(),
        }
    }

    fn protocol(&self, step: &str, reason: String) -> EtrnError {
        if is_lost_connection(&reason) {
            return EtrnError::ConnectionLost {
                host: self.host(),
                step: step.to_owned(),
                reason,
            };
        }
        EtrnError::Protocol {
            host: self.host(),
            step: step.to_owned(),
            reason,
        }
    }
}

/// Whether a QUIT can still be sent after this error (the server is still talking to us).
fn connection_still_usable(err: &EtrnError) -> bool {
    matches!(
        err,
        EtrnError::StarttlsNotOffered { .. }
            | EtrnError::AuthUnsupported { .. }
            | EtrnError::AuthFailed { .. }
            | EtrnError::EtrnNotAdvertised { .. }
            | EtrnError::PlaintextAuth { .. }
    )
}

/// Whether an error's root cause is the connection going away: lettre reports an EOF in the
/// middle of a reply as "incomplete response"; resets and broken pipes come as I/O errors.
fn is_lost_connection(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    [
        "incomplete response",
        "connection reset",
        "connection aborted",
        "broken pipe",
        "unexpected end of file",
        "unexpected eof",
    ]
    .iter()
    .any(|phrase| lower.contains(phrase))
}

/// rustls' verifier errors name the certificate (UnknownIssuer, NotValidForName, Expired).
fn is_certificate_problem(lower: &str) -> bool {
    [
        "certificate",
        "unknownissuer",
        "notvalidforname",
        "expired",
        "badsignature",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// The reply text lettre keeps as the source of a 4xx/5xx error.
fn source_text(e: &SmtpError) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

/// The deepest cause of a lettre error: lettre nests its own errors ("Connection error:
/// Connection error: ..."), and the root says what actually happened.
fn error_chain(e: &SmtpError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

fn io_kinds(e: &SmtpError) -> Vec<io::ErrorKind> {
    let mut kinds = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            kinds.push(io_error.kind());
        }
        source = cause.source();
    }
    kinds
}

/// A report for a domain not asked (yet).
pub(super) fn not_sent(account: &Account, domain: String) -> DomainReport {
    DomainReport {
        account: account.name.clone(),
        domain,
        code: None,
        text: String::new(),
        outcome: DomainOutcome::NotSent,
        attempts: 0,
        messages: 0,
    }
}
