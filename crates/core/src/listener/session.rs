//! One SMTP session, server side: the command state machine (Connected → Greeted → Mail →
//! Rcpt → Data) over any stream. It owns the session's decisions — replies, limits, the relay
//! policy, when a message may be acknowledged; the pieces it drives each do one job: `conn`
//! the stream and its buffers, `codec` the line splitter and DATA un-stuffer (I/O-free),
//! `data` the writer that puts a message on disk. smtp-proto parses the command lines.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{Line, LineSplitter, Unstuffer};
use super::conn::{Connection, Read};
use super::data::{
    message_headline, received_header, storage_error, Arrival, BodyWriter, Refusal, WRITE_CHUNK,
};
use super::policy::{judge_form, uses_quoting, Verdict};
use super::reply::Reply;
use super::submission::{auth_turn, AuthStep, AuthTurn, Submission, LOGIN_USER};
use super::{AskedPeers, ListenerEvent, ListenerSettings, RecipientPolicy};
use crate::maildir::Maildir;
use crate::outgoing::queue::{submit, SubmitError};
use crate::report::{MessageInfo, QueuedCopy};
use crate::routing::Target;
use crate::spool::copies::Router;

/// What every session shares: the listener's settings, who may receive mail here, where it
/// is stored (the router: routes, Maildirs, the spool), where sessions report, when to stop,
/// and which ISP addresses a running fetch has asked (the listener's gate lets those past the
/// per-peer limit). One per service; the TCP listener and the ODMR client's turned-around
/// connections use the same.
pub struct Reception {
    pub(crate) settings: Arc<ListenerSettings>,
    pub(crate) policy: Arc<RecipientPolicy>,
    pub(crate) router: Arc<Router>,
    pub(crate) events: mpsc::UnboundedSender<ListenerEvent>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) asked: AskedPeers,
    /// Set for the submission listener: outgoing mail, queued for the accounts' servers.
    pub(crate) submission: Option<Arc<Submission>>,
}

impl Reception {
    /// What sessions share: their settings, the recipient policy, the Maildir (everything goes
    /// there until [`Reception::with_router`]), the channel their events go to, and the token
    /// that stops them.
    pub fn new(
        settings: Arc<ListenerSettings>,
        policy: Arc<RecipientPolicy>,
        maildir: Arc<Maildir>,
        events: mpsc::UnboundedSender<ListenerEvent>,
        shutdown: CancellationToken,
    ) -> Self {
        Reception {
            settings,
            policy,
            router: Arc::new(Router::single((*maildir).clone())),
            events,
            shutdown,
            asked: AskedPeers::default(),
            submission: None,
        }
    }

    /// The same in the submission role: who may send is `submission`'s to say (loopback, its
    /// networks, its login over TLS), recipients may be anywhere, and messages are queued for
    /// the sender's account's outgoing server instead of delivered here.
    pub fn with_submission(mut self, submission: Arc<Submission>) -> Self {
        self.submission = Some(submission);
        self
    }

    /// The ISP addresses running fetches have asked (see [`AskedPeers`]).
    pub fn asked(&self) -> &AskedPeers {
        &self.asked
    }

    /// The same, delivering through `router` (routes, their Maildirs, the spool).
    pub fn with_router(mut self, router: Arc<Router>) -> Self {
        self.router = router;
        self
    }

    /// A reception like this one — the same recipient policy and deliveries — with other
    /// settings, another event channel and another stop token (ODMR's turned line).
    pub fn derive(
        &self,
        settings: Arc<ListenerSettings>,
        events: mpsc::UnboundedSender<ListenerEvent>,
        shutdown: CancellationToken,
    ) -> Self {
        Reception {
            settings,
            policy: self.policy.clone(),
            router: self.router.clone(),
            events,
            shutdown,
            asked: self.asked.clone(),
            submission: self.submission.clone(),
        }
    }
}

/// Where the session stands; the DATA phase runs inside `Session::data` and ends in `Greeted`.
#[derive(Debug)]
enum State {
    /// Before EHLO/HELO.
    Connected,
    /// After EHLO/HELO (or RSET, or a finished message): no transaction.
    Greeted,
    /// After MAIL: a sender, no recipient yet.
    Mail { sender: String },
    /// After at least one accepted RCPT: the recipients and where each goes.
    Rcpt {
        sender: String,
        recipients: Vec<String>,
        targets: Vec<Target>,
    },
}

/// What the loop does after a command.
enum Next {
    Continue,
    StartData,
    StartTls,
    Close,
}

/// The name the peer gave in EHLO/HELO, and which of the two it used.
struct Helo {
    name: String,
    esmtp: bool,
}

/// Serves one TCP connection the ISP opened, until QUIT, an error, a timeout, or shutdown.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, reception: Arc<Reception>) {
    serve(stream, peer, false, Vec::new(), reception).await;
}

/// Serves one SMTP session on any stream, as the server: our greeting, then the peer's
/// commands, every limit and the relay policy, durable delivery. `secure` says the stream is
/// encrypted already (then STARTTLS is not offered); `leftover` is input read from it before.
/// The ODMR client hands its connection to the ISP here once the line has turned around.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    secure: bool,
    leftover: Vec<u8>,
    reception: Arc<Reception>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        ctx: reception.clone(),
        peer,
        conn: Connection::new(stream, secure, leftover),
        state: State::Connected,
        helo: None,
        errors: 0,
        lines: LineSplitter::default(),
        auth: None,
        user: None,
        account: None,
        ends: tokio::time::Instant::now() + reception.settings.max_session_time,
        spoke: false,
        junk: 0,
        unclaimed: None,
        put_off: false,
    };
    session.serve().await;
}

struct Session<S> {
    ctx: Arc<Reception>,
    peer: SocketAddr,
    conn: Connection<S>,
    state: State,
    helo: Option<Helo>,
    errors: u32,
    lines: LineSplitter,
    /// Submission: an AUTH exchange waiting for the client's next line.
    auth: Option<AuthStep>,
    /// Submission: the login the client authenticated as.
    user: Option<String>,
    /// Submission: the account the current transaction's sender sends through.
    account: Option<String>,
    /// When the session's time is up (`max_session_time`).
    ends: tokio::time::Instant,
    /// Whether the peer has sent a whole command line yet (until then `first_command_timeout`).
    spoke: bool,
    /// Commands that moved no transaction forward since the last message stored.
    junk: u32,
    /// Set by `recipient` when it put off a recipient in a domain no account takes, offered by
    /// the ISP a fetch asked: that domain.
    unclaimed: Option<String>,
    /// Whether the current transaction had a recipient put off that way.
    put_off: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn serve(&mut self) {
        let greeting = format!("{} ESMTP Mailcall", self.ctx.settings.hostname);
        self.push(Reply::plain(220, vec![greeting]));
        // The command timeout bounds the whole wait for one command line, not each read: a
        // peer trickling a byte at a time (slowloris) must not hold the session forever.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            while let Some(line) = self.next_line() {
                // A whole line arrived: the next command gets its own full timeout.
                deadline = None;
                self.spoke = true;
                if tokio::time::Instant::now() >= self.ends {
                    self.push(session_too_long(&self.ctx.settings.hostname));
                    let _ = self.flush().await;
                    return;
                }
                let next = match line {
                    Line::Complete(line) => match self.auth.take() {
                        Some(step) => self.auth_line(step, &line),
                        None => self.command(&line),
                    },
                    Line::TooLong => {
                        self.push(Reply::new(500, "5.5.2", "Line too long"));
                        self.check_errors()
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Close => {
                        let _ = self.flush().await;
                        return;
                    }
                    Next::StartTls => {
                        if !self.start_tls().await {
                            return;
                        }
                    }
                    Next::StartData => {
                        if !self.data().await {
                            return;
                        }
                    }
                }
            }
            // Input drained: now the peer waits for our answers.
            if self.flush().await.is_err() {
                return;
            }
            let host = self.ctx.settings.hostname.clone();
            let wait = if self.spoke {
                self.ctx.settings.command_timeout
            } else {
                // Short, never longer than any other command's.
                self.ctx
                    .settings
                    .first_command_timeout
                    .min(self.ctx.settings.command_timeout)
            };
            let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
            // Never past the session's end, however busy the peer keeps it.
            let until = until.min(self.ends);
            let shutdown = self.ctx.shutdown.clone();
            let read = tokio::select! {
                // Shutdown wins over a peer that never stops sending.
                biased;
                _ = shutdown.cancelled() => {
                    self.push(Reply::new(421, "4.3.2", format!("{host} Service shutting down")));
                    let _ = self.flush().await;
                    return;
                }
                read = self.conn.read_more(until) => read,
            };
            match read {
                Read::TimedOut => {
                    let reply = if tokio::time::Instant::now() >= self.ends {
                        session_too_long(&host)
                    } else {
                        Reply::new(421, "4.4.2", format!("{host} Error: timeout exceeded"))
                    };
                    self.push(reply);
                    let _ = self.flush().await;
                    return;
                }
                Read::Closed => return,
                Read::Data => {}
            }
        }
    }

    fn next_line(&mut self) -> Option<Line> {
        let max = self.ctx.settings.max_line_length;
        let (input, start) = self.conn.input();
        self.lines.next_line(input, start, max)
    }

    fn push(&mut self, reply: Reply) {
        if (500..600).contains(&reply.code()) {
            self.errors += 1;
        }
        if reply.is_transient() {
            // Put off: the peer keeps that mail for now; a fetch that asked it must know.
            let _ = self.ctx.events.send(ListenerEvent::Refused {
                peer: self.peer,
                reply: reply.line(),
                at_connect: false,
            });
        }
        self.conn.queue(reply.to_string().as_bytes());
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.conn.flush(self.ctx.settings.command_timeout).await
    }

    /// After our `220` to STARTTLS: the handshake, then a fresh session (RFC 3207 4.2).
    /// Returns whether the session goes on.
    async fn start_tls(&mut self) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        self.lines = LineSplitter::default();
        let Some(config) = self.ctx.settings.tls.clone() else {
            return false;
        };
        let wait = self.ctx.settings.command_timeout;
        if !self.conn.upgrade(config, wait, self.peer).await {
            return false;
        }
        // Nothing learned before TLS counts: the peer must say EHLO again.
        self.state = State::Connected;
        self.helo = None;
        self.user = None;
        self.account = None;
        true
    }

    fn check_errors(&mut self) -> Next {
        let host = &self.ctx.settings.hostname;
        let reply = if self.errors > self.ctx.settings.max_errors {
            Reply::new(421, "4.7.0", format!("{host} Error: too many errors"))
        } else if self.junk > self.ctx.settings.max_junk_commands {
            // NOOP, RSET and the like are free to send and fail nothing: without a limit a
            // peer could hold its slot as long as the session lasts, asking for no mail.
            Reply::new(
                421,
                "4.7.0",
                format!("{host} Error: too many commands without mail"),
            )
        } else {
            return Next::Continue;
        };
        self.push(reply);
        Next::Close
    }

    /// Answers one command line.
    fn command(&mut self, line: &[u8]) -> Next {
        let next = match Request::parse(&mut line.iter()) {
            Ok(request) => self.request(request, line),
            Err(e) => {
                self.push(parse_error_reply(&e));
                Next::Continue
            }
        };
        match next {
            Next::Continue => self.check_errors(),
            other => other,
        }
    }

    fn request(&mut self, request: Request<std::borrow::Cow<'_, str>>, line: &[u8]) -> Next {
        let settings = Arc::clone(&self.ctx.settings);
        match request {
            Request::Ehlo { host } => {
                self.junk += u32::from(self.helo.is_some());
                self.greeted(&host, true);
                let mut lines = vec![
                    settings.hostname.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", settings.max_message_size),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if self.offers_tls() {
                    lines.push("STARTTLS".into());
                }
                if self.offers_auth() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                self.push(Reply::plain(250, lines));
            }
            Request::Helo { host } => {
                self.junk += u32::from(self.helo.is_some());
                self.greeted(&host, false);
                self.push(Reply::plain(250, vec![settings.hostname.clone()]));
            }
            Request::Mail { from } => match self.state {
                State::Connected => self.push(need_helo()),
                State::Mail { .. } | State::Rcpt { .. } => {
                    self.push(Reply::new(503, "5.5.1", "Error: nested MAIL command"))
                }
                State::Greeted => {
                    if from.size as u64 > settings.max_message_size {
                        self.push(too_big());
                    } else if let Some(refused) = self.submitter(&from.address) {
                        self.push(refused);
                    } else {
                        self.state = State::Mail {
                            sender: clean(&from.address),
                        };
                        self.push(Reply::new(250, "2.1.0", "Ok"));
                    }
                }
            },
            Request::Rcpt { to } => {
                let reply = self.recipient(&to.address, line);
                match self.unclaimed.take() {
                    Some(domain) => {
                        // Not a refusal to count against the ISP (asking it again brings the
                        // same mail to the same answer): the fetch reports the domain instead.
                        let _ = self.ctx.events.send(ListenerEvent::Unclaimed {
                            peer: self.peer,
                            domain,
                        });
                        self.conn.queue(reply.to_string().as_bytes());
                        self.put_off = true;
                    }
                    None => {
                        self.junk += u32::from(reply.is_transient());
                        self.push(reply);
                    }
                }
            }
            Request::Data => match self.state {
                State::Connected => self.push(need_helo()),
                State::Greeted => self.push(Reply::new(503, "5.5.1", "Error: need MAIL command")),
                State::Mail { .. } => {
                    self.push(Reply::new(503, "5.5.1", "Error: need RCPT command"))
                }
                State::Rcpt { .. } => return Next::StartData,
            },
            Request::Rset => {
                // Ending a transaction whose recipients we put off (the ISP asked, mail no
                // account takes) is the ISP moving on to its next message, not junk.
                self.junk += u32::from(!std::mem::take(&mut self.put_off));
                self.reset();
                self.push(Reply::new(250, "2.0.0", "Ok"));
            }
            Request::Noop { .. } => {
                self.junk += 1;
                self.push(Reply::new(250, "2.0.0", "Ok"))
            }
            Request::Quit => {
                self.push(Reply::new(221, "2.0.0", "Bye"));
                return Next::Close;
            }
            Request::Vrfy { .. } => {
                self.junk += 1;
                self.push(Reply::new(252, "2.5.2", "Cannot VRFY user"))
            }
            Request::Help { .. } => {
                self.junk += 1;
                self.push(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
                ))
            }
            // Not offered: STARTTLS without a certificate, AUTH, CHUNKING and the rest.
            Request::StartTls if self.offers_tls() => {
                if matches!(self.state, State::Connected) {
                    self.push(need_helo());
                } else {
                    self.push(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    return Next::StartTls;
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } if self.ctx.submission.is_some() => {
                let reply = self.auth_command(mechanism, &initial_response);
                self.push(reply);
            }
            Request::StartTls if self.conn.is_tls() => {
                self.push(Reply::new(503, "5.5.1", "Error: TLS already active"))
            }
            Request::StartTls
            | Request::Auth { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Lhlo { .. } => {
                self.push(Reply::new(502, "5.5.1", "Error: command not implemented"))
            }
        }
        Next::Continue
    }

    /// Submission: whether AUTH is on offer — only inside TLS, with a login configured, and
    /// not yet authenticated.
    fn offers_auth(&self) -> bool {
        self.ctx
            .submission
            .as_ref()
            .is_some_and(|s| s.has_login() && self.conn.is_tls() && self.user.is_none())
    }

    /// Submission, at `MAIL FROM`: `None` when this peer may send from `sender` (the account it
    /// leaves through is noted), else the refusal. Not in the submission role: always `None`.
    fn submitter(&mut self, sender: &str) -> Option<Reply> {
        let submission = self.ctx.submission.clone()?;
        if self.user.is_none() && !submission.trusts(self.peer.ip()) {
            tracing::info!(peer = %self.peer, "unauthenticated submission refused");
            return Some(Reply::new(530, "5.7.0", "Authentication required"));
        }
        match submission.account_for(sender) {
            Ok(account) => {
                self.account = Some(account);
                None
            }
            Err(e) => Some(Reply::new(
                553,
                "5.7.1",
                format!("<{}>: {e}", clean(sender)),
            )),
        }
    }

    /// Submission: `AUTH` (PLAIN or LOGIN, over TLS only).
    fn auth_command(&mut self, mechanism: u64, initial: &str) -> Reply {
        if !self.conn.is_tls() {
            // RFC 4954 4: no password over plaintext; nothing else changes.
            return Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            );
        }
        match self.state {
            State::Connected => return need_helo(),
            State::Greeted => {}
            State::Mail { .. } | State::Rcpt { .. } => {
                return Reply::new(
                    503,
                    "5.5.1",
                    "Error: AUTH not permitted during a transaction",
                )
            }
        }
        if self.user.is_some() {
            return Reply::new(503, "5.5.1", "Error: already authenticated");
        }
        let step = match mechanism {
            smtp_proto::AUTH_PLAIN => AuthStep::Plain,
            smtp_proto::AUTH_LOGIN => AuthStep::LoginUser,
            _ => return Reply::new(504, "5.5.4", "Unrecognized authentication type"),
        };
        if initial.is_empty() {
            let challenge = match step {
                AuthStep::LoginUser => LOGIN_USER,
                _ => "",
            };
            self.auth = Some(step);
            return Reply::plain(334, vec![challenge.into()]);
        }
        self.auth_reply(auth_turn(step, initial.as_bytes()))
    }

    /// Submission: one client line inside an AUTH exchange.
    fn auth_line(&mut self, step: AuthStep, line: &[u8]) -> Next {
        let reply = self.auth_reply(auth_turn(step, line));
        self.push(reply);
        self.check_errors()
    }

    fn auth_reply(&mut self, turn: AuthTurn) -> Reply {
        match turn {
            AuthTurn::Ask(step, challenge) => {
                self.auth = Some(step);
                Reply::plain(334, vec![challenge.into()])
            }
            AuthTurn::Done(user, password) => {
                let known = self
                    .ctx
                    .submission
                    .as_ref()
                    .is_some_and(|s| s.check(&user, &password));
                if known {
                    tracing::info!(peer = %self.peer, user = %clean(&user), "submission login");
                    self.user = Some(user);
                    Reply::new(235, "2.7.0", "Authentication successful")
                } else {
                    tracing::warn!(peer = %self.peer, "submission login failed");
                    Reply::new(535, "5.7.8", "Authentication credentials invalid")
                }
            }
            AuthTurn::Cancelled => Reply::new(501, "5.0.0", "Authentication cancelled"),
            AuthTurn::Malformed => Reply::new(501, "5.5.2", "Cannot decode response"),
        }
    }

    /// Whether this peer is the ISP a running fetch asked (never in the submission role).
    fn offered_by_the_asked_isp(&self) -> bool {
        self.ctx.submission.is_none() && self.ctx.asked.contains(self.peer.ip())
    }

    /// Whether STARTTLS is on offer: a certificate is configured and TLS is not on yet.
    fn offers_tls(&self) -> bool {
        self.ctx.settings.tls.is_some() && self.conn.can_upgrade()
    }

    fn greeted(&mut self, host: &str, esmtp: bool) {
        self.helo = Some(Helo {
            name: clean(host),
            esmtp,
        });
        self.state = State::Greeted;
    }

    fn reset(&mut self) {
        self.account = None;
        self.state = match self.state {
            State::Connected => State::Connected,
            _ => State::Greeted,
        };
    }

    /// Judges one `RCPT TO` and records it when accepted.
    fn recipient(&mut self, address: &str, line: &[u8]) -> Reply {
        let count = match &self.state {
            State::Connected => return need_helo(),
            State::Greeted => return Reply::new(503, "5.5.1", "Error: need MAIL command"),
            State::Mail { .. } => 0,
            State::Rcpt { recipients, .. } => recipients.len(),
        };
        if count >= self.ctx.settings.max_recipients {
            return Reply::new(452, "4.5.3", "Error: too many recipients");
        }
        if address.is_empty() {
            return Reply::new(501, "5.1.3", "Bad recipient address syntax");
        }
        let shown = clean(address);
        let denied = Reply::new(550, "5.7.1", format!("<{shown}>: relay access denied"));
        if uses_quoting(line) {
            return denied;
        }
        // Submission: mail to the world, through the sender's account (its form still judged).
        let outgoing = self.ctx.submission.as_ref().and(self.account.as_ref());
        let verdict = match outgoing {
            Some(_) => judge_form(address),
            None => self.ctx.policy.judge(address),
        };
        match verdict {
            Verdict::Accept => {}
            Verdict::Malformed => {
                return Reply::new(501, "5.1.3", "Bad recipient address syntax");
            }
            Verdict::Foreign if self.offered_by_the_asked_isp() => {
                // The ISP a fetch asked brings mail no account takes (an ETRN argument that
                // releases more than our domains): a 4xx, so it keeps the mail instead of
                // bouncing it to its senders, and the fetch tells the user which domain.
                let domain = address
                    .rsplit_once('@')
                    .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
                    .unwrap_or_default();
                let domain = clean(&domain);
                let reply = Reply::new(
                    450,
                    "4.7.1",
                    format!("<{shown}>: no account here takes mail for {domain} yet; keep it"),
                );
                self.unclaimed = Some(domain);
                return reply;
            }
            Verdict::RelayDenied | Verdict::Foreign => return denied,
        }
        let target = match outgoing {
            Some(account) => Target::smarthost(account),
            // Ours, but maybe nobody's: no route names it and unknown recipients are refused.
            None => match self.ctx.router.route(&shown) {
                Some(target) => target,
                None => {
                    return Reply::new(
                        550,
                        "5.1.1",
                        format!("<{shown}>: Recipient address rejected: user unknown"),
                    )
                }
            },
        };
        self.state = match std::mem::replace(&mut self.state, State::Greeted) {
            State::Mail { sender } => State::Rcpt {
                sender,
                recipients: vec![shown],
                targets: vec![target],
            },
            State::Rcpt {
                sender,
                mut recipients,
                mut targets,
            } => {
                if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&shown)) {
                    recipients.push(shown);
                    targets.push(target);
                }
                State::Rcpt {
                    sender,
                    recipients,
                    targets,
                }
            }
            other => other,
        };
        Reply::new(250, "2.1.5", "Ok")
    }

    /// Reads DATA to its end into `writer` (which refuses what breaks the rules but reads on);
    /// returns whether the session goes on (not on a timeout or a peer gone).
    async fn read_body(&mut self, writer: &mut BodyWriter) -> bool {
        let mut unstuffer = Unstuffer::new();
        let data_ends = tokio::time::Instant::now() + self.ctx.settings.max_data_time;
        loop {
            let consumed = unstuffer.feed(self.conn.unread());
            self.conn.consume(consumed);
            if unstuffer.saw_bare_line_end() && writer.refusal.is_none() {
                // Read on to the end, store nothing: the tmp/ file goes now.
                writer.refuse(Refusal::BareLineEnd).await;
            }
            if unstuffer.is_done() || unstuffer.ready().len() >= WRITE_CHUNK {
                writer.put(unstuffer.ready()).await;
                unstuffer.clear_ready();
            }
            if unstuffer.is_done() {
                break;
            }
            // RFC 5321 4.5.3.2.6: the data timeout bounds each read; `max_data_time` the whole
            // message, so a byte now and then cannot hold the session for ever.
            let until = tokio::time::Instant::now() + self.ctx.settings.data_timeout;
            match self.conn.read_more(until.min(data_ends)).await {
                Read::TimedOut => {
                    // `writer` drops its copies: the tmp/ files go, nothing reaches new/.
                    let host = &self.ctx.settings.hostname;
                    let reply = if tokio::time::Instant::now() >= data_ends {
                        Reply::new(
                            421,
                            "4.4.2",
                            format!("{host} Error: message data took too long"),
                        )
                    } else {
                        Reply::new(421, "4.4.2", format!("{host} Error: timeout exceeded"))
                    };
                    self.push(reply);
                    let _ = self.flush().await;
                    return false;
                }
                // Peer gone mid-DATA: the dropped copies remove their tmp/ files.
                Read::Closed => return false,
                Read::Data => {}
            }
        }

        true
    }

    /// The DATA phase: streams the message into its copies (Maildirs, the spool), answers,
    /// and returns whether the session goes on.
    async fn data(&mut self) -> bool {
        let (sender, recipients, targets) = match std::mem::replace(&mut self.state, State::Greeted)
        {
            State::Rcpt {
                sender,
                recipients,
                targets,
            } => (sender, recipients, targets),
            other => {
                self.state = other;
                return true;
            }
        };
        if let Some(submission) = self.ctx.submission.clone() {
            return self.submit(&submission, sender, recipients).await;
        }
        let arrival = Arrival {
            helo: self.helo.as_ref().map(|h| (h.name.as_str(), h.esmtp)),
            tls: self.conn.is_tls(),
            auth: self.user.is_some(),
            ip: self.peer.ip(),
            host: &self.ctx.settings.hostname,
        };
        let routed: Vec<(String, Target)> = recipients.iter().cloned().zip(targets).collect();
        let received = |rcpts: &[String], id: &str| received_header(&arrival, rcpts, id);
        let peer = self.peer.ip().to_string();
        let copies = match self
            .ctx
            .router
            .open(&sender, &peer, &routed, &received)
            .await
        {
            Ok(copies) => copies,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start storing a message");
                self.push(storage_error(&e));
                return true;
            }
        };
        self.push(Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        if self.flush().await.is_err() {
            return false;
        }

        let mut writer = BodyWriter {
            copies: Some(copies),
            buffer: None,
            max: self.ctx.settings.max_message_size,
            body_size: 0,
            head: Vec::new(),
            refusal: None,
        };
        if !self.read_body(&mut writer).await {
            return false;
        }

        let size = writer.copies.as_ref().map(|c| c.size()).unwrap_or(0);
        let result = match (writer.refusal.take(), writer.copies.take()) {
            (Some(refusal), copies) => {
                if let Some(copies) = copies {
                    copies.abort().await;
                }
                Err(refusal)
            }
            (None, Some(copies)) => {
                let id = copies.id().to_owned();
                copies
                    .commit()
                    .await
                    .map(|stored| (id, stored))
                    .map_err(Refusal::Storage)
            }
            (None, None) => Err(Refusal::Storage(io::Error::other("delivery lost"))),
        };
        match result {
            Ok((id, stored)) => {
                // Only now, with every copy and its directory entry on disk, may the peer
                // forget the mail.
                self.push(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
                self.junk = 0;
                let sent = self.flush().await;
                let stored_at = Utc::now();
                let headline = message_headline(&writer.head);
                let path = stored
                    .iter()
                    .find(|c| !c.queued)
                    .or(stored.first())
                    .map(|c| c.path.clone())
                    .unwrap_or_default();
                let mut copies: Vec<QueuedCopy> = stored
                    .iter()
                    .map(|c| QueuedCopy {
                        recipients: c.recipients.clone(),
                        destination: c
                            .targets
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        path: c.path.clone(),
                        queued: c.queued,
                    })
                    .collect();
                if copies.len() == 1 && !copies[0].queued {
                    // The plain case (one Maildir) says no more than `path` does.
                    copies.clear();
                }
                let info = MessageInfo {
                    sender,
                    recipients,
                    from: headline.from,
                    subject: headline.subject,
                    message_id: headline.message_id,
                    size,
                    path,
                    copies,
                    peer: self.peer.ip().to_string(),
                    stored_at,
                };
                // Stored even if the 250 got lost: the file is there (the peer may send it again).
                let _ = self.ctx.events.send(ListenerEvent::Stored(Box::new(info)));
                sent.is_ok()
            }
            Err(Refusal::TooBig) => {
                self.push(too_big());
                true
            }
            Err(Refusal::BareLineEnd) => {
                tracing::warn!(peer = %self.peer, "message with a bare CR or LF refused");
                self.push(bare_line_end());
                true
            }
            Err(Refusal::Storage(e)) => {
                tracing::warn!(error = %e, "storing a message in the Maildir failed");
                self.push(storage_error(&e));
                true
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Submission's DATA phase: the message is read whole (within the size limit), then queued
    /// with its envelope and our `Received:` on top — durable before the `250`; a storage error
    /// is a 4xx and nothing is queued. Returns whether the session goes on.
    async fn submit(
        &mut self,
        submission: &Submission,
        sender: String,
        recipients: Vec<String>,
    ) -> bool {
        let Some(account) = self.account.take() else {
            self.push(Reply::new(503, "5.5.1", "Error: need MAIL command"));
            return true;
        };
        self.push(Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        if self.flush().await.is_err() {
            return false;
        }
        let mut writer = BodyWriter {
            copies: None,
            buffer: Some(Vec::new()),
            max: self.ctx.settings.max_message_size,
            body_size: 0,
            head: Vec::new(),
            refusal: None,
        };
        if !self.read_body(&mut writer).await {
            return false;
        }
        match writer.refusal.take() {
            Some(Refusal::TooBig) => {
                self.push(too_big());
                return true;
            }
            Some(Refusal::BareLineEnd) => {
                self.push(bare_line_end());
                return true;
            }
            Some(Refusal::Storage(e)) => {
                self.push(storage_error(&e));
                return true;
            }
            None => {}
        }
        let body = writer.buffer.take().unwrap_or_default();
        let arrival = Arrival {
            helo: self.helo.as_ref().map(|h| (h.name.as_str(), h.esmtp)),
            tls: self.conn.is_tls(),
            auth: self.user.is_some(),
            ip: self.peer.ip(),
            host: &self.ctx.settings.hostname,
        };
        let trace = format!("{:X}", Utc::now().timestamp_micros());
        let received = received_header(&arrival, &recipients, &trace);
        let peer = match &self.user {
            Some(user) => format!("{} (login {})", self.peer.ip(), clean(user)),
            None => self.peer.ip().to_string(),
        };
        let queued = submit(
            submission.spool(),
            &account,
            &sender,
            &recipients,
            &received,
            &body,
            &peer,
        )
        .await;
        let id = match queued {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "queueing a submitted message failed");
                let reply = match e {
                    SubmitError::Storage { source, .. } => storage_error(&source),
                    _ => Reply::new(
                        451,
                        "4.3.0",
                        "Error: local storage failure, try again later",
                    ),
                };
                self.push(reply);
                return true;
            }
        };
        // Durable with its envelope: only now may the submitter forget it.
        self.push(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
        self.junk = 0;
        let sent = self.flush().await;
        let headline = message_headline(&writer.head);
        // The queue's directory: the file's own name carries the host part besides the id.
        let path = submission.spool().root().join("new");
        let info = MessageInfo {
            sender,
            copies: vec![QueuedCopy {
                recipients: recipients.clone(),
                destination: Target::smarthost(&account).to_string(),
                path: path.clone(),
                queued: true,
            }],
            recipients,
            from: headline.from,
            subject: headline.subject,
            message_id: headline.message_id,
            size: writer.body_size,
            path,
            peer,
            stored_at: Utc::now(),
        };
        let _ = self.ctx.events.send(ListenerEvent::Stored(Box::new(info)));
        sent.is_ok()
    }
}

/// Peer-supplied text made safe for a reply or header line: no control characters (CR, LF).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn session_too_long(host: &str) -> Reply {
    Reply::new(
        421,
        "4.4.2",
        format!("{host} Error: session too long, please connect again"),
    )
}

fn need_helo() -> Reply {
    Reply::new(503, "5.5.1", "Error: send HELO/EHLO first")
}

fn bare_line_end() -> Reply {
    Reply::new(
        550,
        "5.5.2",
        "Error: bare CR or LF in message data; every line must end in CRLF (RFC 5321 2.3.8). \
         Nothing was stored",
    )
}

fn too_big() -> Reply {
    Reply::new(552, "5.3.4", "Error: message too big for this system")
}

fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, "5.5.2", "Error: command not recognized"),
        ParseError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        ParseError::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        ParseError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter: {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            let param: String = clean(param).chars().take(64).collect();
            Reply::new(555, "5.5.4", format!("Unsupported parameter: {param}"))
        }
        ParseError::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
        ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Error: command not recognized")
        }
    }
}
