//! One connection to an SMTP server, owned from connect to close: the stream (plain TCP, or TLS
//! from the first byte or after STARTTLS), a read buffer, the reply timeout on every wait, and the
//! transcript of every line both ways (AUTH redacted). ODMR takes the stream back out of it when
//! the line turns around ([`Connection::into_parts`]).
//!
//! Every failure is typed where it happens: a TCP connect error is [`IspError::Connect`], a read
//! or write error after that is [`IspError::ConnectionLost`], no reply in time is
//! [`IspError::Timeout`], a line that is not SMTP is [`IspError::Protocol`], and a failed handshake
//! is told apart by rustls' own error type ([`super::tls::handshake_error`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::reply::{Reply, ReplyParser};
use super::tls;
use super::transcript::Transcript;
use super::IspError;

/// The longest reply line taken (RFC 5321 allows 512; some servers send long EHLO lines).
const MAX_LINE: usize = 4096;
/// How much is read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// The byte stream under a connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (implicit TLS, or after STARTTLS), the server's certificate verified.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A local unix socket (an LMTP server on the same machine); never encrypted.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Stream {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(s) => s.get_ref().0.peer_addr(),
            #[cfg(unix)]
            Stream::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix socket has no IP address",
            )),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One connection to a server, with its transcript.
#[derive(Debug)]
pub struct Connection {
    /// `None` only while a STARTTLS handshake holds the TCP stream.
    stream: Option<Stream>,
    host: String,
    reply_timeout: Duration,
    /// Bytes read and not yet taken as lines.
    inbuf: Vec<u8>,
    transcript: Transcript,
}

impl Connection {
    /// Opens a TCP connection to `host:port` within `connect_timeout`; replies are then awaited
    /// for at most `reply_timeout` each. Notes go into `transcript`.
    pub async fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        reply_timeout: Duration,
        mut transcript: Transcript,
    ) -> Result<Self, IspError> {
        transcript.note(&format!("connecting to {host}:{port}"));
        let connect_error = |reason: String| IspError::Connect {
            host: host.to_owned(),
            port,
            reason,
        };
        let tcp = match timeout(connect_timeout, TcpStream::connect((host, port))).await {
            Err(_) => {
                return Err(connect_error(format!(
                    "timed out after {:.1} s",
                    connect_timeout.as_secs_f64()
                )))
            }
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        if let Ok(peer) = tcp.peer_addr() {
            transcript.note(&format!("connected to {peer}"));
        }
        Ok(Connection {
            stream: Some(Stream::Plain(tcp)),
            host: host.to_owned(),
            reply_timeout,
            inbuf: Vec::with_capacity(READ_CHUNK),
            transcript,
        })
    }

    /// Opens the unix socket at `path` within `connect_timeout` (a local LMTP server); replies
    /// are then awaited for at most `reply_timeout` each. The path stands for the host in
    /// errors and the transcript.
    pub async fn connect_unix(
        path: &std::path::Path,
        connect_timeout: Duration,
        reply_timeout: Duration,
        mut transcript: Transcript,
    ) -> Result<Self, IspError> {
        let shown = path.display().to_string();
        transcript.note(&format!("connecting to the unix socket {shown}"));
        let connect_error = |reason: String| IspError::Connect {
            host: shown.clone(),
            port: 0,
            reason,
        };
        #[cfg(not(unix))]
        {
            let _ = (connect_timeout, reply_timeout);
            Err(connect_error(
                "Unix sockets are not available on this system: give the server as HOST:PORT"
                    .into(),
            ))
        }
        #[cfg(unix)]
        {
            let unix = match timeout(connect_timeout, tokio::net::UnixStream::connect(path)).await {
                Err(_) => {
                    return Err(connect_error(format!(
                        "timed out after {:.1} s",
                        connect_timeout.as_secs_f64()
                    )))
                }
                Ok(Err(e)) => return Err(connect_error(e.to_string())),
                Ok(Ok(unix)) => unix,
            };
            Ok(Connection {
                stream: Some(Stream::Unix(unix)),
                host: shown,
                reply_timeout,
                inbuf: Vec::with_capacity(READ_CHUNK),
                transcript,
            })
        }
    }

    /// The server's host name, as configured.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// The address connected to (`None` for a unix socket).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.as_ref()?.peer_addr().ok()
    }

    /// The conversation so far.
    pub fn transcript(&mut self) -> &mut Transcript {
        &mut self.transcript
    }

    /// Sets how long each reply may take from now on.
    pub fn set_reply_timeout(&mut self, wait: Duration) {
        self.reply_timeout = wait;
    }

    /// Starts TLS on the TCP stream (implicit TLS right after connect, or after a `220` to
    /// STARTTLS), verifying the certificate against `config`'s roots and the host's name.
    ///
    /// Anything the server sent after its `220` came in plain text, open to a man in the
    /// middle (CVE-2011-0411 and kin): that is a protocol error, never read inside TLS.
    pub async fn upgrade(
        &mut self,
        config: Arc<ClientConfig>,
        handshake_timeout: Duration,
    ) -> Result<(), IspError> {
        if !self.inbuf.is_empty() {
            return Err(IspError::Protocol {
                host: self.host.clone(),
                step: "STARTTLS".into(),
                reason: "the server sent more after its 220, in plain text; refusing to go on"
                    .into(),
            });
        }
        let name = tls::server_name(&self.host)?;
        let tcp = match self.stream.take() {
            Some(Stream::Plain(tcp)) => tcp,
            other => {
                let reason = match &other {
                    #[cfg(unix)]
                    Some(Stream::Unix(_)) => "TLS over a unix socket is not supported",
                    _ => "TLS is already on",
                };
                self.stream = other;
                return Err(IspError::Protocol {
                    host: self.host.clone(),
                    step: "STARTTLS".into(),
                    reason: reason.into(),
                });
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match timeout(handshake_timeout, connector.connect(name, tcp)).await {
            Err(_) => Err(IspError::Timeout {
                host: self.host.clone(),
                step: "the TLS handshake".into(),
                secs: handshake_timeout.as_secs_f64(),
            }),
            Ok(Err(e)) => Err(tls::handshake_error(&self.host, &e)),
            Ok(Ok(tls)) => {
                let version = tls
                    .get_ref()
                    .1
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                self.transcript.note(&format!(
                    "TLS established ({version}), certificate of {} verified",
                    self.host
                ));
                self.stream = Some(Stream::Tls(Box::new(tls)));
                Ok(())
            }
        }
    }

    /// Sends one command line (CRLF added), recording it with AUTH data redacted.
    pub async fn send(&mut self, line: &str, step: &str) -> Result<(), IspError> {
        self.transcript.sent(line);
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, step).await
    }

    /// Writes bytes as they are (message data), without recording them.
    pub async fn write(&mut self, bytes: &[u8], step: &str) -> Result<(), IspError> {
        let wait = self.reply_timeout;
        let host = self.host.clone();
        let stream = self.stream_mut(step)?;
        let result = timeout(wait, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match result {
            Err(_) => Err(IspError::Timeout {
                host,
                step: step.to_owned(),
                secs: wait.as_secs_f64(),
            }),
            Ok(Err(e)) => Err(IspError::ConnectionLost {
                host,
                step: step.to_owned(),
                reason: e.to_string(),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends `line` and reads the reply to it. Any reply is `Ok`, 4xx and 5xx included.
    pub async fn command(&mut self, line: &str, step: &str) -> Result<Reply, IspError> {
        self.send(line, step).await?;
        self.read_reply(step).await
    }

    /// Reads one whole reply within the reply timeout, recording each line.
    pub async fn read_reply(&mut self, step: &str) -> Result<Reply, IspError> {
        let deadline = Instant::now() + self.reply_timeout;
        let mut parser = ReplyParser::default();
        loop {
            let line = self.read_line(step, deadline).await?;
            self.transcript.received(&line);
            match parser.push(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(IspError::Protocol {
                        host: self.host.clone(),
                        step: step.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// Closes the connection: QUIT and its answer, bounded; failures are only noted.
    pub async fn quit(&mut self) {
        if let Err(e) = self.command("QUIT", "the reply to QUIT").await {
            self.transcript.note(&format!("QUIT failed: {e}"));
        }
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(Duration::from_secs(2), stream.shutdown()).await;
        }
    }

    /// The stream, the bytes read but not yet taken, and the transcript: for ODMR, whose
    /// server starts talking on the same stream once it has said `250` to ATRN.
    pub fn into_parts(self) -> Option<(Stream, Vec<u8>, Transcript)> {
        let Connection {
            stream,
            inbuf,
            transcript,
            ..
        } = self;
        stream.map(|s| (s, inbuf, transcript))
    }

    fn stream_mut(&mut self, step: &str) -> Result<&mut Stream, IspError> {
        let host = self.host.clone();
        self.stream
            .as_mut()
            .ok_or_else(|| IspError::ConnectionLost {
                host,
                step: step.to_owned(),
                reason: "the connection was given up in a TLS handshake".into(),
            })
    }

    /// One line without its line end, read by `deadline`.
    async fn read_line(&mut self, step: &str, deadline: Instant) -> Result<String, IspError> {
        loop {
            if let Some(end) = self.inbuf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.inbuf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.inbuf.len() > MAX_LINE {
                return Err(IspError::Protocol {
                    host: self.host.clone(),
                    step: step.to_owned(),
                    reason: format!("a reply line longer than {MAX_LINE} bytes"),
                });
            }
            let host = self.host.clone();
            let wait = self.reply_timeout;
            let lost = |reason: String| IspError::ConnectionLost {
                host: host.clone(),
                step: step.to_owned(),
                reason,
            };
            let mut chunk = [0u8; READ_CHUNK];
            let stream = self.stream_mut(step)?;
            match timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => {
                    self.transcript.note(&format!(
                        "no answer within {:.1} s waiting for {step}",
                        wait.as_secs_f64()
                    ));
                    return Err(IspError::Timeout {
                        host,
                        step: step.to_owned(),
                        secs: wait.as_secs_f64(),
                    });
                }
                Ok(Ok(0)) => {
                    return Err(lost(if self.inbuf.is_empty() {
                        "the server closed the connection".into()
                    } else {
                        "the server closed the connection in the middle of a reply".into()
                    }))
                }
                Ok(Ok(n)) => self.inbuf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(lost(e.to_string())),
            }
        }
    }
}
