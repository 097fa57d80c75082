//! A tiny blocking LMTP client (RFC 2033) over TCP or a unix socket: LHLO, then MAIL, one RCPT
//! per recipient and DATA, reading the one reply per accepted recipient that LMTP sends after
//! the final dot. For the harness's self-tests and for handing test mail to Dovecot directly.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::smtp::Reply;

/// How long one read may wait for the server.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What happened to one message handed over in one LMTP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpDelivery {
    /// The reply to `MAIL FROM`.
    pub mail: Reply,
    /// Each recipient with its reply to `RCPT TO`, in the order sent.
    pub rcpt: Vec<(String, Reply)>,
    /// The reply to `DATA` (354 to go on); `None` when no recipient was accepted (no DATA sent).
    pub data: Option<Reply>,
    /// After the final dot: one reply per recipient whose RCPT got 250, in RCPT order.
    pub per_recipient: Vec<(String, Reply)>,
}

impl LmtpDelivery {
    /// The final outcome for `recipient`: its post-DATA reply if RCPT was accepted, else its
    /// RCPT reply. `None` for an address that was not among the recipients.
    pub fn outcome(&self, recipient: &str) -> Option<&Reply> {
        self.per_recipient
            .iter()
            .chain(self.rcpt.iter().filter(|(_, r)| r.code != 250))
            .find(|(a, _)| a == recipient)
            .map(|(_, r)| r)
    }

    /// The final code for each recipient, in RCPT order.
    pub fn codes(&self) -> Vec<(String, u16)> {
        self.rcpt
            .iter()
            .filter_map(|(a, _)| self.outcome(a).map(|r| (a.clone(), r.code)))
            .collect()
    }
}

impl fmt::Display for LmtpDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MAIL -> {}", self.mail)?;
        for (a, r) in &self.rcpt {
            writeln!(f, "RCPT <{a}> -> {r}")?;
        }
        match &self.data {
            Some(r) => writeln!(f, "DATA -> {r}")?,
            None => writeln!(f, "DATA not sent (no recipient accepted)")?,
        }
        for (a, r) in &self.per_recipient {
            writeln!(f, "after the dot, <{a}> -> {r}")?;
        }
        Ok(())
    }
}

/// An LMTP connection that has been greeted (220).
pub struct LmtpClient {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    greeting: Reply,
}

impl LmtpClient {
    /// Connects to 127.0.0.1:`port` and reads the greeting.
    pub fn connect_tcp(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to LMTP at 127.0.0.1:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Self::greet(Box::new(stream), Box::new(writer))
    }

    /// Connects to the unix socket at `path` and reads the greeting.
    pub fn connect_unix(path: &Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot connect to LMTP at {}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Self::greet(Box::new(stream), Box::new(writer))
    }

    fn greet(reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Result<Self, String> {
        let mut reader = BufReader::new(reader);
        let greeting = read_reply(&mut reader)?;
        if greeting.code != 220 {
            return Err(format!("LMTP greeting: {greeting}"));
        }
        Ok(Self {
            reader,
            writer,
            greeting,
        })
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> Result<Reply, String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("sending LMTP {line:?}: {e}"))?;
        read_reply(&mut self.reader)
    }

    /// `LHLO name`; requires 250 (the reply lists the extensions).
    pub fn lhlo(&mut self, name: &str) -> Result<Reply, String> {
        let reply = self.command(&format!("LHLO {name}"))?;
        if reply.code == 250 {
            Ok(reply)
        } else {
            Err(format!("LHLO got {reply}"))
        }
    }

    /// One transaction: `MAIL FROM:<from>`, `RCPT TO:<r>` for each of `recipients`, and (when at
    /// least one was accepted) DATA with `data` (CRLF lines, already dot-stuffed, without the
    /// final dot), then one reply per accepted recipient. Refusals are results, not errors;
    /// errors are for a broken connection or a reply that makes no sense.
    pub fn deliver(
        &mut self,
        from: &str,
        recipients: &[&str],
        data: &str,
    ) -> Result<LmtpDelivery, String> {
        let mail = self.command(&format!("MAIL FROM:<{from}>"))?;
        if mail.code != 250 {
            return Err(format!("MAIL FROM:<{from}> got {mail}"));
        }
        let mut rcpt = Vec::new();
        for r in recipients {
            let reply = self.command(&format!("RCPT TO:<{r}>"))?;
            rcpt.push((r.to_string(), reply));
        }
        let accepted: Vec<String> = rcpt
            .iter()
            .filter(|(_, reply)| reply.code == 250)
            .map(|(a, _)| a.clone())
            .collect();
        if accepted.is_empty() {
            let rset = self.command("RSET")?;
            if rset.code != 250 {
                return Err(format!("RSET got {rset}"));
            }
            return Ok(LmtpDelivery {
                mail,
                rcpt,
                data: None,
                per_recipient: Vec::new(),
            });
        }
        let data_reply = self.command("DATA")?;
        if data_reply.code != 354 {
            return Err(format!("DATA got {data_reply}"));
        }
        let mut text = data.to_string();
        if !text.ends_with("\r\n") {
            text.push_str("\r\n");
        }
        text.push_str(".\r\n");
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("sending the message data: {e}"))?;
        let mut per_recipient = Vec::new();
        for a in accepted {
            let reply = read_reply(&mut self.reader)
                .map_err(|e| format!("reading the post-DATA reply for <{a}>: {e}"))?;
            per_recipient.push((a, reply));
        }
        Ok(LmtpDelivery {
            mail,
            rcpt,
            data: Some(data_reply),
            per_recipient,
        })
    }

    /// `QUIT`; the reply (221) is not required, the connection is dropped either way.
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

/// Reads one (possibly multi-line) reply.
fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut lines = Vec::new();
    // A reply of more than 100 lines is not something these tests meet: stop there.
    for _ in 0..100 {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading an LMTP reply: {e}"))?;
        if n == 0 {
            return Err(format!("LMTP connection closed mid-reply after {lines:?}"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an LMTP reply line: {line:?}"))?;
        lines.push(line.get(4..).unwrap_or("").to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, lines });
        }
    }
    Err("LMTP reply longer than 100 lines".to_string())
}
