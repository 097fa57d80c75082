//! A tiny blocking SMTP client over a raw `TcpStream`, for putting test mail into the ISP's
//! queue and for poking at the ISP (EHLO, ETRN) by hand. Not a product client: no TLS.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The last body line of every test message: a stored file that ends with it is complete.
pub const BODY_END: &str = "-- mailcall-e2e end of body --";

/// A test message: envelope, a few headers, a body, and [`BODY_END`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Envelope sender and From: header.
    pub from: String,
    /// Envelope recipient and To: header.
    pub to: String,
    /// Subject: header.
    pub subject: String,
    /// Message-ID: header, with the angle brackets.
    pub message_id: String,
    /// Body text (lines separated by `\n`; sent with CRLF).
    pub body: String,
}

impl Message {
    /// Message number `n` for `user@domain`, with a unique Message-ID and a body of a few lines.
    pub fn numbered(domain: &str, n: usize) -> Self {
        Self {
            from: "sender@outside.test".to_string(),
            to: format!("user@{domain}"),
            subject: format!("test {n} for {domain}"),
            message_id: format!("<e2e-{n}.{domain}@outside.test>"),
            body: format!(
                "Message {n} for {domain}.\n.a line that starts with a dot\n{}",
                "x".repeat(200)
            ),
        }
    }

    /// The message as a file holds it: LF lines, not dot-stuffed (for `sendmail`).
    pub fn raw(&self) -> String {
        let mut text = format!(
            "From: <{}>\nTo: <{}>\nSubject: {}\nMessage-ID: {}\n\n",
            self.from, self.to, self.subject, self.message_id
        );
        for line in self.body.lines().chain(std::iter::once(BODY_END)) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The DATA content (CRLF lines, dot-stuffed, without the final `.`).
    pub fn data(&self) -> String {
        let mut text = format!(
            "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: {}\r\n\r\n",
            self.from, self.to, self.subject, self.message_id
        );
        for line in self.body.lines().chain(std::iter::once(BODY_END)) {
            if line.starts_with('.') {
                text.push('.');
            }
            text.push_str(line);
            text.push_str("\r\n");
        }
        text
    }
}

/// One SMTP reply: code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Each line's text after `NNN-`/`NNN `.
    pub lines: Vec<String>,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

/// A plain SMTP connection.
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    /// Connects to 127.0.0.1:`port` and reads the greeting (must be 220).
    pub fn connect(port: u16) -> Result<(Self, Reply), String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = client.read_reply()?;
        if greeting.code != 220 {
            return Err(format!("greeting: {greeting}"));
        }
        Ok((client, greeting))
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> Result<Reply, String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("sending {line:?}: {e}"))?;
        self.read_reply()
    }

    /// Sends a command and requires `code`.
    pub fn expect(&mut self, line: &str, code: u16) -> Result<Reply, String> {
        let reply = self.command(line)?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(format!("{line:?} got {reply}, expected {code}"))
        }
    }

    /// MAIL, RCPT, DATA for `msg`; requires 250 after the final dot.
    pub fn send(&mut self, msg: &Message) -> Result<Reply, String> {
        self.expect(&format!("MAIL FROM:<{}>", msg.from), 250)?;
        self.expect(&format!("RCPT TO:<{}>", msg.to), 250)?;
        self.expect("DATA", 354)?;
        self.writer
            .write_all(format!("{}.\r\n", msg.data()).as_bytes())
            .map_err(|e| format!("sending the message data: {e}"))?;
        let reply = self.read_reply()?;
        if reply.code == 250 {
            Ok(reply)
        } else {
            Err(format!("end of DATA got {reply}"))
        }
    }

    /// MAIL, a RCPT for each of `recipients` (instead of `msg.to`), DATA; requires 250s.
    pub fn send_to(&mut self, msg: &Message, recipients: &[&str]) -> Result<Reply, String> {
        self.expect(&format!("MAIL FROM:<{}>", msg.from), 250)?;
        for r in recipients {
            self.expect(&format!("RCPT TO:<{r}>"), 250)?;
        }
        self.expect("DATA", 354)?;
        self.writer
            .write_all(format!("{}.\r\n", msg.data()).as_bytes())
            .map_err(|e| format!("sending the message data: {e}"))?;
        let reply = self.read_reply()?;
        if reply.code == 250 {
            Ok(reply)
        } else {
            Err(format!("end of DATA got {reply}"))
        }
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        // A reply of more than 100 lines is not something these tests meet: stop there.
        for _ in 0..100 {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("reading a reply: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed mid-reply after {lines:?}"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not a reply line: {line:?}"))?;
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, lines });
            }
        }
        Err("reply longer than 100 lines".to_string())
    }
}
