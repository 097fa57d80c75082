//! A TCP stream that copies the plain-text part of the conversation into the transcript.
//!
//! lettre reads the greeting and sends its EHLO (and STARTTLS) itself and keeps no record;
//! the tap sits under lettre, so it sees exactly what crossed the wire until TLS starts.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::transcript::SharedTranscript;

/// A partial line longer than this is recorded as is rather than buffered forever.
const MAX_PENDING: usize = 4096;

/// Wraps the TCP stream and records complete lines each way while `recording` is on.
pub struct TappedStream {
    inner: TcpStream,
    transcript: SharedTranscript,
    recording: Arc<AtomicBool>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    starttls_sent: bool,
}

impl fmt::Debug for TappedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TappedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl TappedStream {
    /// Taps `inner`; recording stops by itself once the server accepts STARTTLS, or when the
    /// caller clears `recording`.
    pub fn new(inner: TcpStream, transcript: SharedTranscript, recording: Arc<AtomicBool>) -> Self {
        TappedStream {
            inner,
            transcript,
            recording,
            rx: Vec::new(),
            tx: Vec::new(),
            starttls_sent: false,
        }
    }

    fn on_received(&mut self, bytes: &[u8]) {
        if !self.recording.load(Ordering::Acquire) {
            return;
        }
        self.rx.extend_from_slice(bytes);
        for line in take_lines(&mut self.rx) {
            let is_last = line.as_bytes().get(3) != Some(&b'-');
            self.transcript.lock().received(&line);
            // After a 2xx to STARTTLS the bytes are TLS records: nothing readable follows.
            if self.starttls_sent && is_last {
                self.starttls_sent = false;
                if line.starts_with('2') {
                    self.recording.store(false, Ordering::Release);
                    self.rx.clear();
                    self.tx.clear();
                    return;
                }
            }
        }
    }

    fn on_sent(&mut self, bytes: &[u8]) {
        if !self.recording.load(Ordering::Acquire) {
            return;
        }
        self.tx.extend_from_slice(bytes);
        for line in take_lines(&mut self.tx) {
            if line.eq_ignore_ascii_case("STARTTLS") {
                self.starttls_sent = true;
            }
            self.transcript.lock().sent(&line);
        }
    }
}

/// Removes and returns the complete lines of `buf` (CRLF or bare LF), lossily decoded.
fn take_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(end) = buf.iter().position(|&b| b == b'\n') {
        let raw: Vec<u8> = buf.drain(..=end).collect();
        let text = String::from_utf8_lossy(&raw);
        lines.push(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if buf.len() > MAX_PENDING {
        lines.push(String::from_utf8_lossy(buf).into_owned());
        buf.clear();
    }
    lines
}

impl AsyncRead for TappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = buf.filled()[before..].to_vec();
            self.on_received(&new);
        }
        result
    }
}

impl AsyncWrite for TappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            self.on_sent(&data[..n]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TappedStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_the_rest() {
        let mut buf = b"220 hi\r\n250-a\n250 b\r\n25".to_vec();
        assert_eq!(take_lines(&mut buf), ["220 hi", "250-a", "250 b"]);
        assert_eq!(buf, b"25");
        let mut long = vec![b'x'; MAX_PENDING + 1];
        assert_eq!(take_lines(&mut long).len(), 1);
        assert!(long.is_empty());
    }
}
