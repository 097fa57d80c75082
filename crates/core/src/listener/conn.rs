//! The delivering peer's connection, seen from our server side: any byte stream (a TCP socket
//! the ISP opened, or — for ODMR — the stream we opened to the ISP, TLS already on), the input
//! buffer, replies gathered for one write (pipelining), and the STARTTLS upgrade.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout, timeout_at, Instant};

/// How much is read from the socket at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// The byte stream: as it came, or TLS over it after STARTTLS (`Gone` only mid-handshake).
enum Stream<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection given up in a TLS handshake",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// What reading more input brought.
pub(crate) enum Read {
    /// Some bytes arrived.
    Data,
    /// The peer closed the connection (or it broke).
    Closed,
    /// Nothing arrived by the deadline.
    TimedOut,
}

/// The connection with its buffers.
pub(crate) struct Connection<S> {
    stream: Stream<S>,
    /// The stream under us is encrypted already (ODMR over TLS): TLS counts as on, and
    /// STARTTLS is not offered.
    secure_below: bool,
    /// Bytes read but not yet consumed start at `start`.
    inbuf: Vec<u8>,
    start: usize,
    /// Replies not yet written: pipelined commands are answered in one write (RFC 2920).
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// A connection over `stream`; `secure` when it is encrypted already, `leftover` the bytes
    /// read from it before (ODMR: what the ISP sent right after its `250` to ATRN).
    pub(crate) fn new(stream: S, secure: bool, leftover: Vec<u8>) -> Self {
        let mut inbuf = leftover;
        inbuf.reserve(READ_CHUNK);
        Connection {
            stream: Stream::Plain(stream),
            secure_below: secure,
            inbuf,
            start: 0,
            out: Vec::new(),
        }
    }

    /// Whether the conversation is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        self.secure_below || matches!(self.stream, Stream::Tls(_))
    }

    /// Whether STARTTLS can still be started.
    pub(crate) fn can_upgrade(&self) -> bool {
        !self.is_tls() && matches!(self.stream, Stream::Plain(_))
    }

    /// The input not consumed yet.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.inbuf[self.start..]
    }

    /// All input and the position of what is not consumed yet (for the line splitter).
    pub(crate) fn input(&mut self) -> (&[u8], &mut usize) {
        (&self.inbuf, &mut self.start)
    }

    /// Marks `n` more input bytes consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Queues bytes (a reply) for the next flush.
    pub(crate) fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Writes the queued replies within `wait`: a peer that never reads must not pin the
    /// session forever.
    pub(crate) async fn flush(&mut self, wait: Duration) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
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

    /// Drops consumed input and reads more, by `deadline`.
    pub(crate) async fn read_more(&mut self, deadline: Instant) -> Read {
        self.inbuf.drain(..self.start);
        self.start = 0;
        self.inbuf.reserve(READ_CHUNK);
        match timeout_at(deadline, self.stream.read_buf(&mut self.inbuf)).await {
            Err(_) => Read::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(_)) => Read::Data,
        }
    }

    /// After our `220` to STARTTLS: the handshake. Whatever the peer sent after STARTTLS came
    /// in plaintext, open to a man in the middle: it is dropped, never read as commands inside
    /// TLS (CVE-2011-0411 and kin). Returns whether TLS is on.
    pub(crate) async fn upgrade(
        &mut self,
        config: Arc<rustls::ServerConfig>,
        wait: Duration,
        peer: std::net::SocketAddr,
    ) -> bool {
        self.inbuf.clear();
        self.start = 0;
        let Stream::Plain(plain) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return false;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match timeout(wait, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                true
            }
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "TLS handshake failed");
                false
            }
            Err(_elapsed) => {
                tracing::info!(%peer, "TLS handshake timed out");
                false
            }
        }
    }
}
