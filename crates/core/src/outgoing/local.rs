//! What a local program hands `mailcall-cli sendmail` (cron, scripts, mutt, `git send-email`,
//! s-nail's `mta=`), made into a message the outgoing queue can keep: the input read the way
//! sendmail reads it, line ends made CRLF, recipients taken from the header with `-t` (and `Bcc:`
//! removed), and our `Received:` on top. Nothing else in the message changes. No I/O here.

use std::fmt;

/// How the input is read, as sendmail's flags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOptions {
    /// `-t`: the recipients are read from `To:`, `Cc:` and `Bcc:` (those given as arguments too),
    /// and `Bcc:` is removed.
    pub recipients_from_header: bool,
    /// `-i`/`-oi` not given: a line holding only `.` ends the message, as in sendmail.
    pub dot_ends_input: bool,
    /// `-f`: the envelope sender; otherwise the address in `From:` (`Sender:` first when
    /// present: it names who really sent it).
    pub sender: Option<String>,
    /// The recipients given as arguments.
    pub recipients: Vec<String>,
}

/// A message ready for the outgoing queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMessage {
    /// The envelope sender (empty: the null sender).
    pub sender: String,
    /// The envelope recipients, each once, in order of appearance.
    pub recipients: Vec<String>,
    /// The message without our `Received:` (CRLF line ends, ends with CRLF).
    pub body: Vec<u8>,
}

/// Why a local message cannot be queued; nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// No recipient anywhere.
    #[error("no recipients: give them as arguments, or use -t to take them from the To:, Cc: and Bcc: lines")]
    NoRecipients,
    /// No `-f` and no `From:` address.
    #[error("no sender: give one with -f ADDRESS, or write a From: line in the message")]
    NoSender,
    /// An address that is not one.
    #[error("{which} {address:?} is not a mail address (write user@example.org)")]
    BadAddress {
        /// "the sender" or "the recipient".
        which: &'static str,
        /// The text given.
        address: String,
    },
    /// Nothing came on the input.
    #[error("the message is empty: write it on standard input, header first")]
    Empty,
}

impl LocalMessage {
    /// Reads `input` as `options` say.
    pub fn read(input: &[u8], options: &LocalOptions) -> Result<Self, LocalError> {
        let body = normalize(input, options.dot_ends_input);
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(LocalError::Empty);
        }
        let header_end = header_end(&body);
        let header = &body[..header_end];
        let mut recipients = Vec::new();
        for r in &options.recipients {
            // sendmail takes "a@x, b@y" as two recipients; so does Mailcall.
            for one in r.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                recipients.push(checked(bare(one), "the recipient")?);
            }
        }
        let mut body_out = body.clone();
        if options.recipients_from_header {
            for name in ["to", "cc", "bcc"] {
                for field in fields(header, name) {
                    for address in addresses(&field) {
                        recipients.push(checked(&address, "the recipient")?);
                    }
                }
            }
            body_out = without_field(&body, header_end, "bcc");
        }
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
        if recipients.is_empty() {
            return Err(LocalError::NoRecipients);
        }
        let sender = match &options.sender {
            Some(s) => {
                let s = bare(s);
                if s.is_empty() {
                    String::new()
                } else {
                    checked(s, "the sender")?
                }
            }
            None => ["sender", "from"]
                .iter()
                .find_map(|name| {
                    fields(header, name)
                        .first()
                        .and_then(|f| addresses(f).into_iter().next())
                })
                .ok_or(LocalError::NoSender)?,
        };
        Ok(LocalMessage {
            sender,
            recipients,
            body: body_out,
        })
    }
}

impl fmt::Display for LocalMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from <{}> to {} recipient(s), {} bytes",
            self.sender,
            self.recipients.len(),
            self.body.len()
        )
    }
}

/// `Received:` for a message a local program handed over: who, where, when.
pub fn received_header(host: &str, user: &str) -> String {
    let date = chrono::Local::now().to_rfc2822();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    format!("Received: by {host} (Mailcall sendmail, from user {user});\r\n\t{date}\r\n")
}

/// LF, CRLF and a lone CR all end a line, and each becomes CRLF; the last line gets one too.
/// With `dot_ends`, a line holding only `.` ends the input (sendmail without `-i`).
fn normalize(input: &[u8], dot_ends: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    let mut line_start = 0;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'\n' || b == b'\r' {
            let line = &input[line_start..i];
            if dot_ends && line == b"." {
                return out;
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            i += if b == b'\r' && input.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            line_start = i;
            continue;
        }
        i += 1;
    }
    let last = &input[line_start..];
    let ends_input = dot_ends && last == b".";
    if !last.is_empty() && !ends_input {
        out.extend_from_slice(last);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Where the header ends: the offset of the blank line (or the end, for a header only).
fn header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 0;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2)
}

/// The header's fields as (name, whole field with its folded lines), in order.
fn header_fields(header: &[u8]) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let end = header[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(header.len(), |p| pos + p + 2);
        let line = &header[pos..end];
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(last) = out.last_mut() {
                last.1.end = end;
            }
        } else {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|c| {
                    String::from_utf8_lossy(&line[..c])
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            out.push((name, pos..end));
        }
        pos = end;
    }
    out
}

/// The values of every `name:` field (unfolded), in order.
fn fields(header: &[u8], name: &str) -> Vec<String> {
    header_fields(header)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, range)| {
            let text = String::from_utf8_lossy(&header[range]);
            let value = text.split_once(':').map_or("", |(_, v)| v);
            value.replace("\r\n", "")
        })
        .collect()
}

/// The message without its `name:` fields.
fn without_field(message: &[u8], header_end: usize, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut kept = 0;
    for (n, range) in header_fields(&message[..header_end]) {
        if n == name {
            out.extend_from_slice(&message[kept..range.start]);
            kept = range.end;
        }
    }
    out.extend_from_slice(&message[kept..]);
    out
}

/// The addresses in an address-list field's value (`"A, B" <a@x>, b@y, group: c@z;`),
/// parsed by mail-parser.
fn addresses(value: &str) -> Vec<String> {
    let field = format!("To:{value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(field.as_bytes());
    let Some(list) = parsed.as_ref().and_then(|m| m.to()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| a.address())
        .filter(|a| a.contains('@'))
        .map(str::to_owned)
        .collect()
}

/// `<a@x>` → `a@x`.
fn bare(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

/// A plain `local@domain`, with nothing that would break the envelope.
fn checked(address: &str, which: &'static str) -> Result<String, LocalError> {
    let ok = address
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
    if ok {
        Ok(address.to_owned())
    } else {
        Err(LocalError::BadAddress {
            which,
            address: address.to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(input: &str, options: LocalOptions) -> Result<LocalMessage, LocalError> {
        LocalMessage::read(input.as_bytes(), &options)
    }

    #[test]
    fn line_ends_become_crlf_and_nothing_else_changes() {
        let options = LocalOptions {
            recipients: vec!["bob@example.org".into()],
            sender: Some("me@office.test".into()),
            ..LocalOptions::default()
        };
        let m = read(
            "Subject: x\n\nline 1\r\nline 2\rline 3\n.\n..two\nno end",
            options,
        )
        .unwrap();
        assert_eq!(
            m.body,
            b"Subject: x\r\n\r\nline 1\r\nline 2\r\nline 3\r\n.\r\n..two\r\nno end\r\n"
        );
    }

    #[test]
    fn without_i_a_lone_dot_ends_the_input() {
        let options = LocalOptions {
            recipients: vec!["bob@example.org".into()],
            sender: Some("me@office.test".into()),
            dot_ends_input: true,
            ..LocalOptions::default()
        };
        let m = read("Subject: x\n\nkept\n.\nnot read\n", options).unwrap();
        assert_eq!(m.body, b"Subject: x\r\n\r\nkept\r\n");
    }

    #[test]
    fn minus_t_takes_to_cc_and_bcc_and_removes_bcc() {
        let options = LocalOptions {
            recipients_from_header: true,
            recipients: vec!["extra@example.org".into()],
            ..LocalOptions::default()
        };
        let input = "From: Me <me@office.test>\nTo: \"Smith, Ann\" <ann@example.org>,\n bob@example.org\nBcc: secret@example.org,\n\tsecret2@example.org\nCc: team: carol@example.org, ann@example.org;\nSubject: hi\n\nBcc: not a header\n";
        let m = read(input, options).unwrap();
        assert_eq!(m.sender, "me@office.test");
        assert_eq!(
            m.recipients,
            [
                "extra@example.org",
                "ann@example.org",
                "bob@example.org",
                "carol@example.org",
                "secret@example.org",
                "secret2@example.org"
            ]
        );
        let body = String::from_utf8(m.body).unwrap();
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("\r\n\r\nBcc: not a header\r\n"), "{body}");
        assert!(
            body.starts_with("From: Me <me@office.test>\r\nTo: \"Smith, Ann\""),
            "{body}"
        );
    }

    #[test]
    fn the_sender_is_minus_f_or_sender_or_from() {
        let base = LocalOptions {
            recipients: vec!["bob@example.org".into()],
            ..LocalOptions::default()
        };
        let input = "From: a@office.test\nSender: s@office.test\n\nx\n";
        assert_eq!(read(input, base.clone()).unwrap().sender, "s@office.test");
        let f = LocalOptions {
            sender: Some("<f@office.test>".into()),
            ..base.clone()
        };
        assert_eq!(read(input, f).unwrap().sender, "f@office.test");
        let null = LocalOptions {
            sender: Some("<>".into()),
            ..base.clone()
        };
        assert_eq!(read(input, null).unwrap().sender, "");
        assert_eq!(
            read("Subject: x\n\nx\n", base).unwrap_err(),
            LocalError::NoSender
        );
    }

    #[test]
    fn bad_input_is_refused_with_what_to_do() {
        let base = LocalOptions {
            sender: Some("me@office.test".into()),
            ..LocalOptions::default()
        };
        let e = read("Subject: x\n\nx\n", base.clone()).unwrap_err();
        assert_eq!(e, LocalError::NoRecipients);
        assert!(e.to_string().contains("-t"), "{e}");
        let bad = LocalOptions {
            recipients: vec!["bob".into()],
            ..base.clone()
        };
        assert!(matches!(
            read("S: x\n\nx\n", bad),
            Err(LocalError::BadAddress { .. })
        ));
        let injected = LocalOptions {
            recipients: vec!["bob@example.org> NOTIFY=NEVER".into()],
            ..base.clone()
        };
        assert!(matches!(
            read("S: x\n\nx\n", injected),
            Err(LocalError::BadAddress { .. })
        ));
        let from_header = LocalOptions {
            recipients_from_header: true,
            ..base.clone()
        };
        let e = read("To: a@example.org b@example.org\n\nx\n", from_header).unwrap_err();
        assert!(matches!(e, LocalError::BadAddress { .. }), "{e}");
        let ok = LocalOptions {
            recipients: vec!["bob@example.org".into()],
            ..base
        };
        assert_eq!(read("", ok.clone()).unwrap_err(), LocalError::Empty);
        assert_eq!(read("\n\n", ok).unwrap_err(), LocalError::Empty);
    }

    #[test]
    fn comma_separated_arguments_are_several_recipients_each_once() {
        let options = LocalOptions {
            recipients: vec![
                "a@example.org, b@example.org".into(),
                "A@example.org".into(),
            ],
            sender: Some("me@office.test".into()),
            ..LocalOptions::default()
        };
        let m = read("S: x\n\nx\n", options).unwrap();
        assert_eq!(m.recipients, ["a@example.org", "b@example.org"]);
    }
}
