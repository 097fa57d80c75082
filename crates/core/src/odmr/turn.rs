//! The turned line: once the ISP said `250` to ATRN, Mailcall is the SMTP server on the same
//! connection (TLS included) and the ISP the client. The session is the listener's own
//! ([`crate::listener::serve`]: greeting, EHLO, relay policy, every limit, durable delivery),
//! over a [`Reception`] derived from the service's for this turn: the same settings, policy and
//! Maildir, waits bounded by the fetch's idle timeout (a provider that goes quiet must not hold
//! the fetch for the listener's 5-minute command timeout), the fetch's stop token, and the
//! events counted on their way to the service's channel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::Stream;
use crate::listener::{self, ListenerEvent, ListenerSettings, Reception};

/// What a turn needs from the fetch session around it.
#[derive(Clone)]
pub struct Turnaround {
    /// The service's reception (settings, recipient policy, Maildir, event channel).
    pub reception: Arc<Reception>,
    /// The fetch's idle timeout: the longest the ISP may stay silent on the turned line.
    pub idle_timeout: Duration,
    /// Cancelled when the fetch ends early (max wait, shutdown): the turned session then ends
    /// as the listener's do at shutdown (421 at the next command; a message in DATA finishes).
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Turnaround {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turnaround")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    /// The ISP said QUIT (our last reply was 221): it delivered what it wanted to.
    Quit,
    /// We ended it with 421: the ISP was silent for the idle timeout, or the fetch stopped.
    Closed,
    /// The connection ended without QUIT: the link dropped or the ISP hung up.
    Cut,
}

/// What one turn stored, and how it ended.
#[derive(Debug)]
pub struct TurnReport {
    /// The Message-ID of each message stored and acknowledged (`None`: it had none).
    pub stored: Vec<Option<String>>,
    /// How it ended.
    pub end: TurnEnd,
}

impl Turnaround {
    /// The listener's settings with every wait bounded by the idle timeout.
    fn settings(&self) -> ListenerSettings {
        let mut settings = (*self.reception.settings).clone();
        settings.command_timeout = settings.command_timeout.min(self.idle_timeout);
        settings.data_timeout = settings.data_timeout.min(self.idle_timeout);
        settings
    }

    /// Serves the ISP's deliveries on `stream` until it says QUIT, goes silent, or the fetch
    /// stops; `leftover` is what it sent after its 250 before we took the stream back.
    pub async fn serve(&self, stream: Stream, leftover: Vec<u8>, peer: SocketAddr) -> TurnReport {
        let secure = stream.is_tls();
        let last_reply = Arc::new(AtomicU16::new(0));
        let stream = Tap {
            inner: stream,
            last_reply: last_reply.clone(),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reception = Arc::new(self.reception.derive(
            Arc::new(self.settings()),
            tx,
            self.stop.clone(),
        ));
        let onward = self.reception.events.clone();
        let session = listener::serve(stream, peer, secure, leftover, reception);
        // The derived reception (and its sender) goes with the session: the channel ends then.
        let forward = async move {
            let mut stored = Vec::new();
            while let Some(ev) = rx.recv().await {
                if let ListenerEvent::Stored(info) = &ev {
                    stored.push(info.message_id.clone());
                }
                let _ = onward.send(ev);
            }
            stored
        };
        let ((), stored) = tokio::join!(session, forward);
        let end = match last_reply.load(Ordering::SeqCst) {
            221 => TurnEnd::Quit,
            421 => TurnEnd::Closed,
            _ => TurnEnd::Cut,
        };
        TurnReport { stored, end }
    }
}

/// The turned stream, passed through, noting the code of the last reply we wrote on it: that
/// tells a turn the ISP ended with QUIT (221) from one we closed (421) or one that was cut.
struct Tap<S> {
    inner: S,
    last_reply: Arc<AtomicU16>,
}

impl<S> Tap<S> {
    /// Notes the code of the last complete reply line in `written` (`250 ...`, not `250-...`).
    fn note(&self, written: &[u8]) {
        let last = written.rsplit(|&b| b == b'\n').find(|line| {
            line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit) && line[3] == b' '
        });
        if let Some(line) = last {
            let code = line[..3]
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
            self.last_reply.store(code, Ordering::SeqCst);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            this.note(&buf[..*n]);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
