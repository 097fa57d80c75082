//! SMTP replies as the client reads them (RFC 5321 4.2): `250-first`, ..., `250 last`. The
//! parser does no I/O: it is fed lines and says when a reply is complete, so it is table-tested
//! and fuzzed without a server.

use std::fmt;

/// The most lines one reply may have; a server sending more is broken or hostile.
pub const MAX_REPLY_LINES: usize = 512;

/// One complete reply: its code and its text lines (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, in order (empty text for a bare `250`).
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Whether the code is 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether the code is 3xx (more input wanted: DATA, AUTH challenges).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// What is wrong with a reply line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The line does not start with a three-digit code followed by ` `, `-` or nothing.
    #[error("not an SMTP reply line: {0:?}")]
    Malformed(String),
    /// A continuation line carries another code than the first line.
    #[error("reply lines with different codes ({first} then {then})")]
    MixedCodes {
        /// The first line's code.
        first: u16,
        /// The code that broke the run.
        then: u16,
    },
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("a reply of more than {MAX_REPLY_LINES} lines")]
    TooLong,
}

/// Gathers the lines of one reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line (without its CRLF); `Some` once it was the last line of the reply.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let bytes = line.as_bytes();
        let code_ok = bytes.len() >= 3
            && bytes[..3].iter().all(u8::is_ascii_digit)
            && (b'2'..=b'5').contains(&bytes[0]);
        if !code_ok {
            return Err(ReplyError::Malformed(shorten(line)));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| ReplyError::Malformed(shorten(line)))?;
        let (last, text) = match bytes.get(3) {
            None => (true, ""),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::Malformed(shorten(line))),
        };
        match self.code {
            Some(first) if first != code => {
                return Err(ReplyError::MixedCodes { first, then: code })
            }
            _ => self.code = Some(code),
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooLong);
        }
        self.lines.push(text.to_owned());
        if last {
            self.code = None;
            Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            }))
        } else {
            Ok(None)
        }
    }
}

fn shorten(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Option<Reply>, ReplyError> {
        let mut p = ReplyParser::default();
        let mut last = None;
        for l in lines {
            last = p.push(l)?;
        }
        Ok(last)
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = parse(&["250 ok"]).unwrap().unwrap();
        assert_eq!(
            (r.code, r.lines.as_slice()),
            (250, ["ok".to_string()].as_slice())
        );
        let r = parse(&["250-isp.test", "250-ETRN", "250 STARTTLS"])
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, ["isp.test", "ETRN", "STARTTLS"]);
        assert_eq!(r.text(), "isp.test ETRN STARTTLS");
        let r = parse(&["221"]).unwrap().unwrap();
        assert_eq!((r.code, r.lines.len()), (221, 1));
        assert!(parse(&["250-more"]).unwrap().is_none());
        assert!(parse(&["354 go ahead"]).unwrap().unwrap().is_intermediate());
    }

    #[test]
    fn broken_lines_are_errors() {
        for bad in ["", "25", "abc ok", "250xok", "650 no", "099 no", "2500 ok"] {
            assert!(parse(&[bad]).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&["250-a", "251 b"]),
            Err(ReplyError::MixedCodes {
                first: 250,
                then: 251
            })
        );
        let many: Vec<String> = (0..=MAX_REPLY_LINES).map(|_| "250-x".to_string()).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(parse(&refs), Err(ReplyError::TooLong));
    }
}
