//! A tiny blocking IMAP4rev1 client over a plain `TcpStream`, to read mailboxes the way a mail
//! program does (LOGIN, LIST/LSUB, STATUS, SELECT/EXAMINE, FETCH). Not a product client: no TLS,
//! no IDLE, literals only as far as a test needs them (server literals are read; names sent
//! by the client are always quoted strings).

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one read may wait for the server before the test gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Untagged responses read for one command at most (a test mailbox holds a few hundred mails).
const MAX_RESPONSES: usize = 100_000;
/// The largest literal the client accepts from the server.
const MAX_LITERAL: usize = 64 * 1024 * 1024;

/// One untagged response (`* ...`), with any literals the server sent inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged {
    /// The response without `* `, literals left as their `{N}` markers (lossy UTF-8).
    pub text: String,
    /// The literals' bytes, in order.
    pub literals: Vec<Vec<u8>>,
}

/// The server's answer to one command: the untagged responses and the tagged status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Every untagged response before the tagged one.
    pub untagged: Vec<Untagged>,
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The rest of the tagged line (response code and text).
    pub text: String,
}

impl Response {
    /// True for a tagged `OK`.
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }

    /// The untagged responses whose text starts with `prefix` (case-insensitive).
    pub fn starting_with(&self, prefix: &str) -> Vec<&Untagged> {
        let prefix = prefix.to_ascii_uppercase();
        self.untagged
            .iter()
            .filter(|u| u.text.to_ascii_uppercase().starts_with(&prefix))
            .collect()
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for u in &self.untagged {
            writeln!(f, "* {}", u.text)?;
        }
        write!(f, "{} {}", self.status, self.text)
    }
}

/// What SELECT or EXAMINE reported about a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// `* N EXISTS`.
    pub exists: u32,
    /// `* N RECENT`.
    pub recent: u32,
    /// `[UIDVALIDITY n]`.
    pub uidvalidity: Option<u32>,
    /// `[UIDNEXT n]`.
    pub uidnext: Option<u32>,
    /// `[READ-ONLY]` in the tagged OK (always for EXAMINE).
    pub read_only: bool,
}

/// The counts STATUS reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    /// How many messages the folder holds (STATUS MESSAGES).
    pub messages: u32,
    /// How many are new since the last look (STATUS RECENT).
    pub recent: u32,
    /// How many are not read yet (STATUS UNSEEN).
    pub unseen: u32,
}

/// One line of LIST or LSUB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Name attributes, e.g. `\HasNoChildren`, `\Noselect`, `\Marked`, `\Subscribed`.
    pub attributes: Vec<String>,
    /// The hierarchy separator (`None` for NIL: a flat namespace).
    pub separator: Option<char>,
    /// The mailbox name as the server sent it (modified UTF-7 for non-ASCII names).
    pub name: String,
}

/// The flags of one message, from `FETCH (UID FLAGS)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags {
    /// Sequence number.
    pub seq: u32,
    /// The message's IMAP UID.
    pub uid: u32,
    /// Flags, e.g. `\Seen`, `\Recent`.
    pub flags: Vec<String>,
}

/// A plain IMAP connection.
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    greeting: String,
    next_tag: u32,
}

impl ImapClient {
    /// Connects to 127.0.0.1:`port` and reads the greeting (must be `* OK`).
    pub fn connect(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to IMAP at 127.0.0.1:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
            greeting: String::new(),
            next_tag: 1,
        };
        let greeting = client.read_line()?;
        if !greeting.starts_with("* OK") {
            return Err(format!("IMAP greeting is not `* OK`: {greeting:?}"));
        }
        client.greeting = greeting;
        Ok(client)
    }

    /// The server's greeting line.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Sends `command` with a fresh tag and reads everything up to the tagged reply (any status).
    pub fn command(&mut self, command: &str) -> Result<Response, String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .map_err(|e| format!("sending IMAP {command:?}: {e}"))?;
        let mut untagged = Vec::new();
        for _ in 0..MAX_RESPONSES {
            let (line, literals) = self.read_response()?;
            if let Some(rest) = line.strip_prefix("* ") {
                untagged.push(Untagged {
                    text: rest.to_string(),
                    literals,
                });
            } else if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(Response {
                    untagged,
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                });
            } else if line.starts_with('+') {
                return Err(format!(
                    "IMAP {command:?}: the server wants a continuation ({line:?}); this client sends none"
                ));
            } else {
                return Err(format!("IMAP {command:?}: unexpected line {line:?}"));
            }
        }
        Err(format!(
            "IMAP {command:?}: more than {MAX_RESPONSES} responses"
        ))
    }

    /// Sends `command` and requires a tagged OK; the error holds the whole exchange.
    pub fn ok(&mut self, command: &str) -> Result<Response, String> {
        let response = self.command(command)?;
        if response.is_ok() {
            Ok(response)
        } else {
            Err(format!("IMAP {command:?} failed:\n{response}"))
        }
    }

    /// `LOGIN user password` (both sent as quoted strings); the password is not in any error.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), String> {
        let response = self.command(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        if response.is_ok() {
            Ok(())
        } else {
            Err(format!("IMAP LOGIN as {user:?} failed:\n{response}"))
        }
    }

    /// `SELECT mailbox` (read-write: Dovecot moves new/ files to cur/ and takes \Recent).
    pub fn select(&mut self, mailbox: &str) -> Result<Selected, String> {
        let response = self.ok(&format!("SELECT {}", quote(mailbox)))?;
        Ok(parse_selected(&response))
    }

    /// `EXAMINE mailbox` (read-only: nothing moves, \Recent stays).
    pub fn examine(&mut self, mailbox: &str) -> Result<Selected, String> {
        let response = self.ok(&format!("EXAMINE {}", quote(mailbox)))?;
        Ok(parse_selected(&response))
    }

    /// `STATUS mailbox (MESSAGES RECENT UNSEEN)`.
    pub fn status(&mut self, mailbox: &str) -> Result<MailboxStatus, String> {
        let response = self.ok(&format!(
            "STATUS {} (MESSAGES RECENT UNSEEN)",
            quote(mailbox)
        ))?;
        let line = response
            .starting_with("STATUS ")
            .first()
            .map(|u| u.text.clone())
            .ok_or_else(|| format!("no STATUS response:\n{response}"))?;
        let item =
            |name: &str| number_after(&line, name).ok_or_else(|| format!("no {name} in {line:?}"));
        Ok(MailboxStatus {
            messages: item("MESSAGES")?,
            recent: item("RECENT")?,
            unseen: item("UNSEEN")?,
        })
    }

    /// `LIST "" pattern`: every mailbox matching `pattern` (`*` = all).
    pub fn list(&mut self, pattern: &str) -> Result<Vec<ListEntry>, String> {
        self.list_kind("LIST", pattern)
    }

    /// `LSUB "" pattern`: the subscribed mailboxes matching `pattern`.
    pub fn lsub(&mut self, pattern: &str) -> Result<Vec<ListEntry>, String> {
        self.list_kind("LSUB", pattern)
    }

    fn list_kind(&mut self, kind: &str, pattern: &str) -> Result<Vec<ListEntry>, String> {
        let response = self.ok(&format!("{kind} \"\" {}", quote(pattern)))?;
        response
            .starting_with(&format!("{kind} "))
            .into_iter()
            .map(|u| parse_list(u, kind))
            .collect()
    }

    /// `FETCH 1:* (UID FLAGS)` in the selected mailbox, by sequence number.
    pub fn fetch_flags(&mut self) -> Result<Vec<MessageFlags>, String> {
        let response = self.ok("FETCH 1:* (UID FLAGS)")?;
        let mut all = Vec::new();
        for u in response.untagged.iter() {
            let Some((seq, rest)) = u.text.split_once(' ') else {
                continue;
            };
            if !rest.to_ascii_uppercase().starts_with("FETCH ") {
                continue;
            }
            let seq: u32 = seq
                .parse()
                .map_err(|_| format!("bad FETCH line {:?}", u.text))?;
            all.push(MessageFlags {
                seq,
                uid: number_after(rest, "UID").ok_or_else(|| format!("no UID in {:?}", u.text))?,
                flags: flags_in(rest).ok_or_else(|| format!("no FLAGS in {:?}", u.text))?,
            });
        }
        all.sort_by_key(|m| m.seq);
        Ok(all)
    }

    /// `FETCH seq (RFC822.SIZE BODY.PEEK[])`: the message's size as IMAP reports it, and its
    /// bytes (PEEK: sets no \Seen).
    pub fn fetch_message(&mut self, seq: u32) -> Result<(u64, Vec<u8>), String> {
        let response = self.ok(&format!("FETCH {seq} (RFC822.SIZE BODY.PEEK[])"))?;
        let fetched = response
            .untagged
            .iter()
            .find(|u| u.text.starts_with(&format!("{seq} FETCH")))
            .ok_or_else(|| format!("no FETCH response for {seq}:\n{response}"))?;
        let size = number_after(&fetched.text, "RFC822.SIZE")
            .ok_or_else(|| format!("no RFC822.SIZE in {:?}", fetched.text))?;
        let body = fetched
            .literals
            .first()
            .cloned()
            .ok_or_else(|| format!("no BODY[] literal in {:?}", fetched.text))?;
        Ok((u64::from(size), body))
    }

    /// `LOGOUT`.
    pub fn logout(mut self) -> Result<(), String> {
        self.ok("LOGOUT").map(|_| ())
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading from the IMAP server: {e}"))?;
        if n == 0 {
            return Err("the IMAP server closed the connection".to_string());
        }
        let text = String::from_utf8_lossy(&line);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// One response line; a line ending in `{N}` is followed by N literal bytes and more line.
    fn read_response(&mut self) -> Result<(String, Vec<Vec<u8>>), String> {
        let mut text = String::new();
        let mut literals = Vec::new();
        // Bounded: a response with more than a thousand literals is not one a test reads.
        for _ in 0..1000 {
            let line = self.read_line()?;
            text.push_str(&line);
            let Some(size) = literal_size(&line) else {
                return Ok((text, literals));
            };
            if size > MAX_LITERAL {
                return Err(format!("IMAP literal of {size} bytes is too large"));
            }
            let mut buf = vec![0; size];
            self.reader
                .read_exact(&mut buf)
                .map_err(|e| format!("reading a {size}-byte IMAP literal: {e}"))?;
            literals.push(buf);
        }
        Err("IMAP response with more than 1000 literals".to_string())
    }
}

/// A quoted string: `"` and `\` escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `N` when `line` ends with a literal marker `{N}`.
fn literal_size(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].parse().ok()
}

/// The number after the word `name` (e.g. `UID 7`, `MESSAGES 3`, `[UIDNEXT 4]`).
fn number_after(text: &str, name: &str) -> Option<u32> {
    let upper = text.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| c.is_whitespace() || "()[]".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
}

/// The words inside `FLAGS (...)`.
fn flags_in(text: &str) -> Option<Vec<String>> {
    let upper = text.to_ascii_uppercase();
    let start = upper.find("FLAGS (")? + "FLAGS (".len();
    let end = text[start..].find(')')? + start;
    Some(
        text[start..end]
            .split_whitespace()
            .map(String::from)
            .collect(),
    )
}

fn parse_selected(response: &Response) -> Selected {
    let mut selected = Selected {
        exists: 0,
        recent: 0,
        uidvalidity: None,
        uidnext: None,
        read_only: response.text.to_ascii_uppercase().contains("[READ-ONLY]"),
    };
    for u in &response.untagged {
        let words: Vec<&str> = u.text.split_whitespace().collect();
        match words.as_slice() {
            [n, kind, ..] if kind.eq_ignore_ascii_case("EXISTS") => {
                selected.exists = n.parse().unwrap_or(0);
            }
            [n, kind, ..] if kind.eq_ignore_ascii_case("RECENT") => {
                selected.recent = n.parse().unwrap_or(0);
            }
            _ => {}
        }
        if let Some(v) = number_after(&u.text, "UIDVALIDITY") {
            selected.uidvalidity = Some(v);
        }
        if let Some(v) = number_after(&u.text, "UIDNEXT") {
            selected.uidnext = Some(v);
        }
    }
    selected
}

/// `LIST (attrs) sep name`, the separator a quoted char or NIL, the name an atom, a quoted
/// string or a literal.
fn parse_list(u: &Untagged, kind: &str) -> Result<ListEntry, String> {
    let bad = || format!("cannot parse {kind} response {:?}", u.text);
    let rest = u.text[kind.len()..].trim_start();
    let rest = rest.strip_prefix('(').ok_or_else(bad)?;
    let (attrs, rest) = rest.split_once(')').ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (separator, rest) = if let Some(r) = rest.strip_prefix("NIL") {
        (None, r)
    } else {
        let r = rest.strip_prefix('"').ok_or_else(bad)?;
        let (sep, r) = if let Some(r2) = r.strip_prefix('\\') {
            (r2.chars().next().ok_or_else(bad)?, &r2[1..])
        } else {
            (r.chars().next().ok_or_else(bad)?, &r[1..])
        };
        (Some(sep), r.strip_prefix('"').ok_or_else(bad)?)
    };
    let name_part = rest.trim();
    let name = if literal_size(name_part).is_some() {
        String::from_utf8_lossy(u.literals.first().ok_or_else(bad)?).into_owned()
    } else if let Some(quoted) = name_part
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    {
        quoted.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        name_part.to_string()
    };
    Ok(ListEntry {
        attributes: attrs.split_whitespace().map(String::from).collect(),
        separator,
        name,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn untagged(text: &str) -> Untagged {
        Untagged {
            text: text.to_string(),
            literals: Vec::new(),
        }
    }

    #[test]
    fn parses_list_lines_as_dovecot_sends_them() {
        let e = parse_list(
            &untagged("LIST (\\HasNoChildren) \".\" Example-org"),
            "LIST",
        )
        .unwrap();
        assert_eq!(e.name, "Example-org");
        assert_eq!(e.separator, Some('.'));
        assert_eq!(e.attributes, ["\\HasNoChildren"]);
        let e = parse_list(&untagged("LSUB () \"/\" \"With space\""), "LSUB").unwrap();
        assert_eq!((e.name.as_str(), e.separator), ("With space", Some('/')));
        assert!(e.attributes.is_empty());
        let e = parse_list(&untagged("LIST (\\Noselect) NIL INBOX"), "LIST").unwrap();
        assert_eq!(e.separator, None);
        let lit = Untagged {
            text: "LIST () \".\" {3}".to_string(),
            literals: vec![b"a\"b".to_vec()],
        };
        assert_eq!(parse_list(&lit, "LIST").unwrap().name, "a\"b");
    }

    #[test]
    fn finds_numbers_flags_and_literal_markers() {
        let line = "1 FETCH (UID 7 FLAGS (\\Seen \\Recent))";
        assert_eq!(number_after(line, "UID"), Some(7));
        assert_eq!(flags_in(line).unwrap(), ["\\Seen", "\\Recent"]);
        assert_eq!(
            flags_in("2 FETCH (FLAGS () UID 3)").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(number_after("OK [UIDNEXT 4] Predicted", "UIDNEXT"), Some(4));
        assert_eq!(literal_size("1 FETCH (BODY[] {120}"), Some(120));
        assert_eq!(literal_size("no literal here"), None);
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
