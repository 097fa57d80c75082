//! DATA's storage side: the writer that streams an un-stuffed message into its copies (or
//! nowhere, once it is refused), the `Received:` we add (the router adds the rest, see
//! [`crate::spool::copies`]), what we read back from the headers for people (From, Subject,
//! Message-ID), and the 4xx a storage failure earns. The command state machine in `session`
//! drives it.

use std::io;
use std::net::IpAddr;

use super::reply::Reply;
use crate::spool::copies::Copies;
use crate::spool::Headline;

/// How much un-stuffed DATA is gathered before it goes to disk.
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;
/// How much of the stored message is kept to read From/Subject/Message-ID from.
const HEAD_LIMIT: usize = 64 * 1024;

/// Why a message that was read to its end is not stored.
pub(crate) enum Refusal {
    TooBig,
    /// A bare CR or LF in the data (see `codec::Unstuffer`).
    BareLineEnd,
    Storage(io::Error),
}

/// How the message came: the peer's EHLO/HELO name and which of the two, and whether over TLS.
pub(crate) struct Arrival<'a> {
    /// The name the peer gave; `None` if it never greeted.
    pub(crate) helo: Option<(&'a str, bool)>,
    /// Whether the session is encrypted.
    pub(crate) tls: bool,
    /// Whether the client authenticated (submission).
    pub(crate) auth: bool,
    /// The peer's address.
    pub(crate) ip: IpAddr,
    /// Our name.
    pub(crate) host: &'a str,
}

/// `Received:` for a copy standing for `recipients` (named in a `for` clause only when it is
/// one: several would show Bcc recipients to each other), ending in CRLF.
pub(crate) fn received_header(arrival: &Arrival<'_>, recipients: &[String], id: &str) -> String {
    let (helo, with) = match arrival.helo {
        // RFC 3848: ESMTPS when the mail came over TLS, ESMTPSA when authenticated too.
        Some((name, esmtp)) => (
            name,
            match (esmtp, arrival.tls, arrival.auth) {
                (true, true, true) => "ESMTPSA",
                (true, false, true) => "ESMTPA",
                (true, true, false) => "ESMTPS",
                (true, false, false) => "ESMTP",
                (false, _, _) => "SMTP",
            },
        ),
        None => ("unknown", "SMTP"),
    };
    let (host, ip) = (arrival.host, arrival.ip);
    let date = chrono::Local::now().to_rfc2822();
    let for_clause = match recipients {
        [only] => format!("\r\n\tfor <{only}>"),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ({ip})\r\n\
         \tby {host} (Mailcall) with {with} id {id}{for_clause};\r\n\
         \t{date}\r\n"
    )
}

/// Where un-stuffed DATA goes: the copies while all is well, nowhere once the message is
/// refused (too big, or the disk failed) — the rest is still read, so the peer gets its answer.
pub(crate) struct BodyWriter {
    pub(crate) copies: Option<Copies>,
    /// Submission: the message gathered in memory (bounded by `max`), queued whole at the end.
    pub(crate) buffer: Option<Vec<u8>>,
    pub(crate) max: u64,
    pub(crate) body_size: u64,
    /// The first bytes of the message as it came, for `message_headline`.
    pub(crate) head: Vec<u8>,
    pub(crate) refusal: Option<Refusal>,
}

impl BodyWriter {
    /// Takes un-stuffed message bytes: counted, kept for the headers, written.
    pub(crate) async fn put(&mut self, bytes: &[u8]) {
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
        if let Some(buffer) = self.buffer.as_mut() {
            buffer.extend_from_slice(bytes);
        }
        let result = match self.copies.as_mut() {
            Some(copies) => copies.write(bytes).await,
            None => Ok(()),
        };
        if let Err(e) = result {
            self.refuse(Refusal::Storage(e)).await;
        }
    }

    /// Gives up the message: its tmp/ files go, the rest of DATA is still read.
    pub(crate) async fn refuse(&mut self, refusal: Refusal) {
        if let Some(copies) = self.copies.take() {
            copies.abort().await;
        }
        self.buffer = None;
        self.refusal = Some(refusal);
    }
}

/// From/Subject/Message-ID of a message, read from its first bytes only (the listener's
/// report of what it stored, and the spool's listing).
pub(crate) fn message_headline(head: &[u8]) -> Headline {
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
    Headline {
        from: from.filter(|f| !f.is_empty()),
        subject,
        message_id,
    }
}

/// 4xx for anything that kept the message from disk: the peer keeps the mail and retries.
pub(crate) fn storage_error(e: &io::Error) -> Reply {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn trace_headers_say_how_the_mail_came() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let arrival = Arrival {
            helo: Some(("isp.test", true)),
            tls: true,
            auth: false,
            ip,
            host: "mx.test",
        };
        let one = received_header(&arrival, &["u@y.test".to_string()], "ID1");
        assert!(
            one.starts_with("Received: from isp.test (192.0.2.7)\r\n"),
            "{one}"
        );
        assert!(
            one.contains("with ESMTPS id ID1\r\n\tfor <u@y.test>;"),
            "{one}"
        );
        let plain = Arrival {
            helo: None,
            tls: false,
            ..arrival
        };
        let two = received_header(&plain, &["a@y.test".into(), "b@y.test".into()], "ID2");
        let authenticated = Arrival {
            auth: true,
            ..arrival
        };
        let three = received_header(&authenticated, &[], "ID3");
        assert!(three.contains("with ESMTPSA id ID3;"), "{three}");
        assert!(
            two.contains("from unknown") && two.contains("with SMTP id ID2;"),
            "{two}"
        );
    }
}
