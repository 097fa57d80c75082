//! Raw bytes to an SMTP server: whatever a hostile peer might send (NUL, bare LF, floods), with
//! replies read back one at a time under a deadline, and a way to tell a closed connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use crate::smtp::Reply;

/// How long one reply may take before the read fails (nothing in these tests waits longer).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A raw connection: bytes go out exactly as given, replies come back parsed.
pub struct RawSmtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// What reading a reply found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A complete reply.
    Reply(Reply),
    /// The server closed the connection (EOF or reset) before a reply began.
    Closed,
    /// Nothing within the read timeout.
    TimedOut,
}

impl RawSmtp {
    /// Connects to 127.0.0.1:`port`; does not read the greeting.
    pub fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        Self::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Connects and requires a 220 greeting.
    pub fn greeted(port: u16) -> Self {
        let mut c = Self::connect(port).expect("connecting to the listener");
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "greeting: {greeting}");
        c
    }

    /// Sets how long a read may wait.
    pub fn set_read_timeout(&self, t: Duration) {
        self.writer
            .set_read_timeout(Some(t))
            .expect("setting a read timeout");
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// A second handle on the socket, for writing from another thread while this one reads.
    pub fn writer_clone(&self) -> TcpStream {
        self.writer.try_clone().expect("cloning the socket")
    }

    /// Reads one reply, or tells that the connection closed or went silent.
    pub fn read(&mut self) -> ReadOutcome {
        let mut lines = Vec::new();
        for _ in 0..1000 {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) if lines.is_empty() => return ReadOutcome::Closed,
                Ok(0) => panic!("connection closed in the middle of a reply: {lines:?}"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return ReadOutcome::TimedOut
                }
                Err(_) if lines.is_empty() => return ReadOutcome::Closed,
                Err(e) => panic!("reading a reply after {lines:?}: {e}"),
            }
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not a reply line: {line:?}"));
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return ReadOutcome::Reply(Reply { code, lines });
            }
        }
        panic!("a reply of more than 1000 lines")
    }

    /// Reads one line without its CRLF, e.g. a command once the line has turned around (ODMR's
    /// ATRN makes the server the client); `None` when the connection closed or went silent.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
        }
    }

    /// Reads one reply; panics if the connection closed or went silent.
    pub fn reply(&mut self) -> Reply {
        match self.read() {
            ReadOutcome::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
        self.reply()
    }

    /// Sends `line` and requires `code`.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.command(line);
        assert_eq!(reply.code, code, "{line:?} got {reply}");
        reply
    }

    /// Whether the server has closed its side: a read returns EOF (or reset) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.set_read_timeout(wait);
        let mut buf = [0u8; 512];
        // Bounded: every read either returns data (drained) or ends the loop.
        for _ in 0..10_000 {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }
}
