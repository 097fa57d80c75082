//! One SMTP session with the delivering peer: the state machine (Connected → Greeted → Mail → Rcpt
//! → Data) and the loop that owns the socket. smtp-proto parses lines and un-stuffs DATA; it does
//! no I/O, this file does all of it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ParseError, Request};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::policy::{uses_quoting, Verdict};
use super::reply::Reply;
use super::{ListenerEvent, ListenerSettings, RecipientPolicy};
use crate::maildir::{Delivery, Maildir};
use crate::report::MessageInfo;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// How much un-stuffed DATA is gathered before it goes to disk.
const WRITE_CHUNK: usize = 64 * 1024;
/// How much of the stored message is kept to read From/Subject/Message-ID from.
const HEAD_LIMIT: usize = 64 * 1024;

/// What every session shares with the listener.
pub(crate) struct Context {
    pub(crate) settings: Arc<ListenerSettings>,
    pub(crate) policy: Arc<RecipientPolicy>,
    pub(crate) maildir: Arc<Maildir>,
    pub(crate) events: mpsc::UnboundedSender<ListenerEvent>,
    pub(crate) shutdown: CancellationToken,
}

/// The peer's connection: plain TCP, or TLS after STARTTLS (`Gone` only mid-handshake).
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection given up in a TLS handshake",
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
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
    /// After at least one accepted RCPT.
    Rcpt {
        sender: String,
        recipients: Vec<String>,
    },
}

/// What the loop does after a command.
enum Next {
    Continue,
    StartData,
    StartTls,
    Close,
}

/// One complete input line, or the news that one was too long.
pub(crate) enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// Cuts command lines out of the input buffer; I/O-free.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl LineSplitter {
    /// Takes the next complete line from `buf[*start..]` (advancing `start`), without ever
    /// holding more than one line's worth of an over-long one: `max` is the longest content
    /// taken, CRLF not counted. `None` when no complete line is there yet.
    pub(crate) fn next_line(&mut self, buf: &[u8], start: &mut usize, max: usize) -> Option<Line> {
        loop {
            let avail = &buf[*start..];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = avail[..=i].to_vec();
                    *start += i + 1;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    let content = line.strip_suffix(b"\n").unwrap_or(&line);
                    let content = content.strip_suffix(b"\r").unwrap_or(content);
                    if content.len() > max {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Complete(line));
                }
                None => {
                    if self.discarding {
                        *start = buf.len();
                        return None;
                    }
                    // +1: the CR of a line that is exactly at the limit may already be here.
                    if avail.len() > max.saturating_add(1) {
                        *start = buf.len();
                        self.discarding = true;
                        return Some(Line::TooLong);
                    }
                    // Not complete yet: keep it.
                    return None;
                }
            }
        }
    }
}

/// Why a message that was read to its end is not stored.
enum Refusal {
    TooBig,
    /// A bare CR or LF in the data (see `Unstuffer`).
    BareLineEnd,
    Storage(io::Error),
}

/// The name the peer gave in EHLO/HELO, and which of the two it used.
struct Helo {
    name: String,
    esmtp: bool,
}

/// Serves one connection until QUIT, an error, a timeout, or shutdown.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let mut session = Session {
        ctx,
        peer,
        stream: Conn::Plain(stream),
        inbuf: Vec::with_capacity(READ_CHUNK),
        start: 0,
        out: Vec::new(),
        state: State::Connected,
        helo: None,
        errors: 0,
        lines: LineSplitter::default(),
    };
    session.serve().await;
}

struct Session {
    ctx: Arc<Context>,
    peer: SocketAddr,
    stream: Conn,
    /// Bytes read but not yet consumed start at `start`.
    inbuf: Vec<u8>,
    start: usize,
    /// Replies not yet written: pipelined commands are answered in one write (RFC 2920).
    out: Vec<u8>,
    state: State,
    helo: Option<Helo>,
    errors: u32,
    lines: LineSplitter,
}

impl Session {
    async fn serve(&mut self) {
        let greeting = format!("{} ESMTP Mailcall", self.ctx.settings.hostname);
        self.push(Reply::plain(220, vec![greeting]));
        loop {
            while let Some(line) = self.next_line() {
                let next = match line {
                    Line::Complete(line) => self.command(&line),
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
            let wait = self.ctx.settings.command_timeout;
            let shutdown = self.ctx.shutdown.clone();
            self.compact();
            let read = tokio::select! {
                // Shutdown wins over a peer that never stops sending.
                biased;
                _ = shutdown.cancelled() => {
                    self.push(Reply::new(421, "4.3.2", format!("{host} Service shutting down")));
                    let _ = self.flush().await;
                    return;
                }
                read = timeout(wait, self.stream.read_buf(&mut self.inbuf)) => read,
            };
            match read {
                Err(_elapsed) => {
                    self.push(Reply::new(
                        421,
                        "4.4.2",
                        format!("{host} Error: timeout exceeded"),
                    ));
                    let _ = self.flush().await;
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
            }
        }
    }

    fn next_line(&mut self) -> Option<Line> {
        let max = self.ctx.settings.max_line_length;
        self.lines.next_line(&self.inbuf, &mut self.start, max)
    }

    /// Drops consumed input and makes room for one more read.
    fn compact(&mut self) {
        self.inbuf.drain(..self.start);
        self.start = 0;
        self.inbuf.reserve(READ_CHUNK);
    }

    fn push(&mut self, reply: Reply) {
        if (500..600).contains(&reply.code()) {
            self.errors += 1;
        }
        self.out.extend_from_slice(reply.to_string().as_bytes());
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // A peer that never reads must not pin the session forever.
        let wait = self.ctx.settings.command_timeout;
        let stream = &mut self.stream;
        let out = &self.out;
        // flush: TLS holds written records until asked to send them.
        let result = timeout(wait, async move {
            stream.write_all(out).await?;
            stream.flush().await
        })
        .await;
        self.out.clear();
        result.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    /// After our `220` to STARTTLS: the handshake, then a fresh session (RFC 3207 4.2).
    /// Returns whether the session goes on.
    async fn start_tls(&mut self) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        // Whatever the peer sent after STARTTLS came in plaintext, open to a man in the middle:
        // it is dropped, never read as commands inside TLS (CVE-2011-0411 and kin).
        self.inbuf.clear();
        self.start = 0;
        self.lines = LineSplitter::default();
        let Some(config) = self.ctx.settings.tls.clone() else {
            return false;
        };
        let Conn::Plain(tcp) = std::mem::replace(&mut self.stream, Conn::Gone) else {
            return false;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let wait = self.ctx.settings.command_timeout;
        match timeout(wait, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Conn::Tls(Box::new(tls));
                // Nothing learned before TLS counts: the peer must say EHLO again.
                self.state = State::Connected;
                self.helo = None;
                true
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                false
            }
            Err(_elapsed) => {
                tracing::info!(peer = %self.peer, "TLS handshake timed out");
                false
            }
        }
    }

    fn check_errors(&mut self) -> Next {
        if self.errors > self.ctx.settings.max_errors {
            let host = &self.ctx.settings.hostname;
            let reply = Reply::new(421, "4.7.0", format!("{host} Error: too many errors"));
            self.push(reply);
            return Next::Close;
        }
        Next::Continue
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
                self.push(Reply::plain(250, lines));
            }
            Request::Helo { host } => {
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
                self.push(reply);
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
                self.reset();
                self.push(Reply::new(250, "2.0.0", "Ok"));
            }
            Request::Noop { .. } => self.push(Reply::new(250, "2.0.0", "Ok")),
            Request::Quit => {
                self.push(Reply::new(221, "2.0.0", "Bye"));
                return Next::Close;
            }
            Request::Vrfy { .. } => self.push(Reply::new(252, "2.5.2", "Cannot VRFY user")),
            Request::Help { .. } => self.push(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            )),
            // Not offered: STARTTLS without a certificate, AUTH, CHUNKING and the rest.
            Request::StartTls if self.offers_tls() => {
                if matches!(self.state, State::Connected) {
                    self.push(need_helo());
                } else {
                    self.push(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    return Next::StartTls;
                }
            }
            Request::StartTls if self.stream.is_tls() => {
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

    /// Whether STARTTLS is on offer: a certificate is configured and TLS is not on yet.
    fn offers_tls(&self) -> bool {
        self.ctx.settings.tls.is_some() && !self.stream.is_tls()
    }

    fn greeted(&mut self, host: &str, esmtp: bool) {
        self.helo = Some(Helo {
            name: clean(host),
            esmtp,
        });
        self.state = State::Greeted;
    }

    fn reset(&mut self) {
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
        match self.ctx.policy.judge(address) {
            Verdict::Accept => {}
            Verdict::Malformed => {
                return Reply::new(501, "5.1.3", "Bad recipient address syntax");
            }
            Verdict::RelayDenied => return denied,
        }
        self.state = match std::mem::replace(&mut self.state, State::Greeted) {
            State::Mail { sender } => State::Rcpt {
                sender,
                recipients: vec![shown],
            },
            State::Rcpt {
                sender,
                mut recipients,
            } => {
                if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&shown)) {
                    recipients.push(shown);
                }
                State::Rcpt { sender, recipients }
            }
            other => other,
        };
        Reply::new(250, "2.1.5", "Ok")
    }

    /// The DATA phase: streams the message to the Maildir, answers, and returns whether the
    /// session goes on.
    async fn data(&mut self) -> bool {
        let (sender, recipients) = match std::mem::replace(&mut self.state, State::Greeted) {
            State::Rcpt { sender, recipients } => (sender, recipients),
            other => {
                self.state = other;
                return true;
            }
        };
        let mut delivery = match self.ctx.maildir.begin().await {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a file in the Maildir's tmp/");
                self.push(storage_error(&e));
                return true;
            }
        };
        let trace = self.trace_headers(&sender, &recipients, delivery.id());
        if let Err(e) = delivery.write(trace.as_bytes()).await {
            delivery.abort().await;
            self.push(storage_error(&e));
            return true;
        }
        self.push(Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        if self.flush().await.is_err() {
            return false;
        }

        let mut writer = BodyWriter {
            delivery: Some(delivery),
            max: self.ctx.settings.max_message_size,
            body_size: 0,
            head: trace.into_bytes(),
            refusal: None,
        };
        let mut unstuffer = Unstuffer::new();
        loop {
            let consumed = unstuffer.feed(&self.inbuf[self.start..]);
            self.start += consumed;
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
            self.compact();
            let wait = self.ctx.settings.data_timeout;
            match timeout(wait, self.stream.read_buf(&mut self.inbuf)).await {
                Err(_elapsed) => {
                    // `writer` drops its Delivery: the tmp/ file goes, nothing reaches new/.
                    let host = &self.ctx.settings.hostname;
                    let reply = Reply::new(421, "4.4.2", format!("{host} Error: timeout exceeded"));
                    self.push(reply);
                    let _ = self.flush().await;
                    return false;
                }
                // Peer gone mid-DATA: the dropped Delivery removes the tmp/ file.
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(_)) => {}
            }
        }

        let size = writer.delivery.as_ref().map(Delivery::size).unwrap_or(0);
        let result = match (writer.refusal.take(), writer.delivery.take()) {
            (Some(refusal), delivery) => {
                if let Some(delivery) = delivery {
                    delivery.abort().await;
                }
                Err(refusal)
            }
            (None, Some(delivery)) => {
                let id = delivery.id().to_owned();
                delivery
                    .commit()
                    .await
                    .map(|path| (id, path))
                    .map_err(Refusal::Storage)
            }
            (None, None) => Err(Refusal::Storage(io::Error::other("delivery lost"))),
        };
        match result {
            Ok((id, path)) => {
                // Only now, with file and directory entry on disk, may the peer forget the mail.
                self.push(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
                let sent = self.flush().await;
                let stored_at = Utc::now();
                let mut info = message_info(&writer.head);
                info.sender = sender;
                info.recipients = recipients;
                info.size = size;
                info.path = path;
                info.peer = self.peer.ip().to_string();
                info.stored_at = stored_at;
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
                self.push(Reply::new(
                    550,
                    "5.5.2",
                    "Error: bare CR or LF in message data; every line must end in CRLF \
                     (RFC 5321 2.3.8). Nothing was stored",
                ));
                true
            }
            Err(Refusal::Storage(e)) => {
                tracing::warn!(error = %e, "storing a message in the Maildir failed");
                self.push(storage_error(&e));
                true
            }
        }
    }

    /// `Return-Path:` and `Received:`, each line ending in CRLF.
    fn trace_headers(&self, sender: &str, recipients: &[String], id: &str) -> String {
        let (helo, with) = match &self.helo {
            // RFC 3848: ESMTPS when the mail came over TLS.
            Some(h) => (
                h.name.as_str(),
                match (h.esmtp, self.stream.is_tls()) {
                    (true, true) => "ESMTPS",
                    (true, false) => "ESMTP",
                    (false, _) => "SMTP",
                },
            ),
            None => ("unknown", "SMTP"),
        };
        let host = &self.ctx.settings.hostname;
        let ip = self.peer.ip();
        let date = chrono::Local::now().to_rfc2822();
        let for_clause = match recipients {
            [only] => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        format!(
            "Return-Path: <{sender}>\r\n\
             Received: from {helo} ({ip})\r\n\
             \tby {host} (Mailcall) with {with} id {id}{for_clause};\r\n\
             \t{date}\r\n"
        )
    }
}

/// DATA un-stuffing on top of smtp-proto's `DataReceiver`, drained in pieces as input arrives,
/// and the watch for line ends that are not CRLF.
///
/// smtp-proto 0.2.5 ends a message only on CRLF "." CRLF: a bare "\n.\n", "\n.\r\n" or
/// "\r.\r\n" is kept as data, and "\r\n.." becomes "\r\n.". So no bare line end can end a
/// message early or start a second one here.
///
/// Bare CR and bare LF are nonetheless refused: a message that holds one gets `550 5.5.2` once
/// its end is read, and nothing is stored. Why reject rather than normalise: real MTAs (the ISP's
/// Postfix, Exim, Sendmail) always send CRLF, so a bare line end only comes from a broken or
/// hostile client — the SMTP-smuggling pattern (CVE-2023-51764/51765/51766), where a different
/// reading of the same bytes by two servers injects a second message. Rejecting means no reading
/// of what we store can disagree with ours; normalising would rewrite what the sender signed
/// (DKIM). Sendmail 8.18 and Postfix's `smtpd_forbid_bare_newline = reject` do the same.
/// One quirk of the receiver: a line "." followed by several CRs and LF (".\r\r\n") also ends
/// the message — it holds a bare CR, so it is refused as well.
pub(crate) struct Unstuffer {
    receiver: DataReceiver,
    /// Un-stuffed bytes not handed out yet.
    buf: Vec<u8>,
    done: bool,
    /// The last raw byte consumed (LF at first: the one that ended "DATA").
    prev: u8,
    /// A CR not followed by LF, or an LF not preceded by CR, was consumed.
    bare_line_end: bool,
}

impl Unstuffer {
    pub(crate) fn new() -> Self {
        let mut receiver = DataReceiver::new();
        let mut buf = Vec::with_capacity(WRITE_CHUNK + READ_CHUNK);
        // The receiver starts as if mid-line; feeding it the CRLF that ended "DATA" makes a
        // leading ".\r\n" end the message and a leading ".." un-stuff.
        receiver.ingest(&mut b"\r\n".iter(), &mut buf);
        buf.clear();
        Unstuffer {
            receiver,
            buf,
            done: false,
            prev: b'\n',
            bare_line_end: false,
        }
    }

    /// Takes input up to the end of the message; returns how many bytes it consumed.
    pub(crate) fn feed(&mut self, input: &[u8]) -> usize {
        if self.done {
            return 0;
        }
        let mut iter = input.iter();
        self.done = self.receiver.ingest(&mut iter, &mut self.buf);
        let consumed = input.len() - iter.as_slice().len();
        if !self.bare_line_end {
            for &b in &input[..consumed] {
                if (b == b'\n' && self.prev != b'\r') || (self.prev == b'\r' && b != b'\n') {
                    self.bare_line_end = true;
                    break;
                }
                self.prev = b;
            }
        }
        consumed
    }

    /// Whether the end-of-data marker was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the data so far held a bare CR or bare LF (the message is then refused).
    pub(crate) fn saw_bare_line_end(&self) -> bool {
        self.bare_line_end
    }

    /// The bytes that are final. Until the end, the last byte is held back: the receiver takes
    /// a CR back out of its buffer when the LF of a split CRLF "." CRLF arrives later.
    pub(crate) fn ready(&self) -> &[u8] {
        let keep = usize::from(!self.done && !self.buf.is_empty());
        &self.buf[..self.buf.len() - keep]
    }

    /// Forgets what `ready` returned.
    pub(crate) fn clear_ready(&mut self) {
        let n = self.ready().len();
        self.buf.drain(..n);
    }
}

/// Where un-stuffed DATA goes: the Delivery while all is well, nowhere once the message is
/// refused (too big, or the disk failed) — the rest is still read, so the peer gets its answer.
struct BodyWriter {
    delivery: Option<Delivery>,
    max: u64,
    body_size: u64,
    /// The first bytes of the stored file (trace headers included), for `message_info`.
    head: Vec<u8>,
    refusal: Option<Refusal>,
}

impl BodyWriter {
    async fn put(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.refusal.is_some() {
            return;
        }
        self.body_size += bytes.len() as u64;
        if self.body_size > self.max {
            self.refuse(Refusal::TooBig).await;
            return;
        }
        let room = HEAD_LIMIT.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        // The message is stored with CRLF line ends, exactly as it came over the wire: that is
        // what the sender signed (DKIM) and what Maildir readers (Dovecot, mutt) take fine.
        let result = match self.delivery.as_mut() {
            Some(delivery) => delivery.write(bytes).await,
            None => Ok(()),
        };
        if let Err(e) = result {
            self.refuse(Refusal::Storage(e)).await;
        }
    }

    async fn refuse(&mut self, refusal: Refusal) {
        if let Some(delivery) = self.delivery.take() {
            delivery.abort().await;
        }
        self.refusal = Some(refusal);
    }
}

/// From/Subject/Message-ID of a stored message, read from its first bytes only.
fn message_info(head: &[u8]) -> MessageInfo {
    let parsed = mail_parser::MessageParser::new().parse_headers(head);
    let (from, subject, message_id) = match &parsed {
        Some(message) => (
            message.from().and_then(|a| a.first()).map(|addr| {
                match (addr.name(), addr.address()) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (Some(name), None) => name.to_owned(),
                    (None, Some(address)) => address.to_owned(),
                    (None, None) => String::new(),
                }
            }),
            message.subject().map(str::to_owned),
            message
                .message_id()
                .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_owned()),
        ),
        None => (None, None, None),
    };
    MessageInfo {
        sender: String::new(),
        recipients: Vec::new(),
        from: from.filter(|f| !f.is_empty()),
        subject,
        message_id,
        size: 0,
        path: Default::default(),
        peer: String::new(),
        stored_at: Utc::now(),
    }
}

/// Peer-supplied text made safe for a reply or header line: no control characters (CR, LF).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn need_helo() -> Reply {
    Reply::new(503, "5.5.1", "Error: send HELO/EHLO first")
}

fn too_big() -> Reply {
    Reply::new(552, "5.3.4", "Error: message too big for this system")
}

/// 4xx for anything that kept the message from disk: the peer keeps the mail and retries.
fn storage_error(e: &io::Error) -> Reply {
    if e.kind() == io::ErrorKind::StorageFull {
        Reply::new(
            452,
            "4.3.1",
            "Error: insufficient system storage, try again later",
        )
    } else {
        Reply::new(
            451,
            "4.3.0",
            "Error: local storage failure, try again later",
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, draining after every piece.
    fn unstuff(input: &[u8], step: usize) -> (Vec<u8>, usize) {
        let (out, pos, _) = unstuff_checked(input, step);
        (out, pos)
    }

    /// Like `unstuff`, also saying whether a bare line end was seen.
    fn unstuff_checked(input: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !u.is_done() {
            let end = (pos + step).min(input.len());
            pos += u.feed(&input[pos..end]);
            out.extend_from_slice(u.ready());
            u.clear_ready();
        }
        assert!(u.is_done(), "end of data not seen in {input:?}");
        (out, pos, u.saw_bare_line_end())
    }

    #[test]
    fn bare_line_ends_are_seen_in_any_piece_size() {
        let cases: &[(&[u8], bool)] = &[
            (b".\r\n", false),
            (b"a\r\nb\r\n\r\n.\r\n", false),
            (b"a\nb\r\n.\r\n", true),
            (b"a\rb\r\n.\r\n", true),
            (b"a\r\r\n.\r\n", true),
            (b"\n.\r\n\r\n.\r\n", true),
            (b"x\n.\r\n.\r\n", true),
            (b"x\r.\r\n.\r\n", true),
            (b"x\n.\n\r\n.\r\n", true),
            (b"x\r\n.\r\r\n", true),
            (b"\r\n.\r\n", false),
        ];
        for (input, bare) in cases {
            for step in 1..=input.len() {
                let (_, consumed, seen) = unstuff_checked(input, step);
                assert_eq!(seen, *bare, "input {input:?} in pieces of {step}");
                assert_eq!(consumed, input.len(), "input {input:?}");
            }
        }
        // What comes after the end is not data, and not judged.
        let mut u = Unstuffer::new();
        u.feed(b"ok\r\n.\r\nbare\nafter\r");
        assert!(u.is_done() && !u.saw_bare_line_end());
    }

    #[test]
    fn unstuffing_in_any_piece_size() {
        let cases: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"..x\r\n.\r\n", b".x\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),
            (b"a\n.\nb\r.\r\n\r\n.\r\n", b"a\n.\nb\r.\r\n\r\n"),
            (b"x\r\n\r\n.\r\n", b"x\r\n\r\n"),
        ];
        for (input, expected) in cases {
            for step in 1..=input.len() {
                let (out, consumed) = unstuff(input, step);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(expected),
                    "input {input:?} in pieces of {step}"
                );
                assert_eq!(consumed, input.len());
            }
        }
    }

    #[test]
    fn storage_errors_are_transient() {
        let full = storage_error(&io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(
            full.to_string(),
            "452 4.3.1 Error: insufficient system storage, try again later\r\n"
        );
        let other = storage_error(&io::Error::from(io::ErrorKind::NotFound));
        assert!(other.to_string().starts_with("451 4.3.0 "));
    }

    #[test]
    fn input_after_the_end_is_left_alone() {
        let mut u = Unstuffer::new();
        let input = b"body\r\n.\r\nQUIT\r\n";
        assert_eq!(u.feed(input), input.len() - 6);
        assert!(u.is_done());
        assert_eq!(u.ready(), b"body\r\n");
        assert_eq!(u.feed(b"more"), 0);
    }
}
