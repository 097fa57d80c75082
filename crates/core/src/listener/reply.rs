//! The listener's SMTP replies: a code, an optional enhanced status code (RFC 3463) and text.

use std::fmt;

/// One SMTP reply, possibly multi-line; `Display` writes it as it goes on the wire (CRLF included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    code: u16,
    /// `None` where RFC 2034 wants no enhanced code: the greeting and the EHLO/HELO answer.
    status: Option<&'static str>,
    lines: Vec<String>,
}

impl Reply {
    /// A single-line reply with an enhanced status code.
    pub(crate) fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO, HELO).
    pub(crate) fn plain(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// The three-digit code.
    pub(crate) fn code(&self) -> u16 {
        self.code
    }

    /// Whether it puts the peer off (4xx): what it meant to deliver stays with it for now.
    pub(crate) fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as one line, for people: its lines joined by a space, no CRLF.
    pub(crate) fn line(&self) -> String {
        self.to_string()
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            match self.status {
                Some(status) => write!(f, "{}{sep}{status} {line}\r\n", self.code)?,
                None => write!(f, "{}{sep}{line}\r\n", self.code)?,
            }
        }
        if self.lines.is_empty() {
            write!(f, "{}\r\n", self.code)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        assert_eq!(
            Reply::new(250, "2.1.0", "Ok").to_string(),
            "250 2.1.0 Ok\r\n"
        );
        assert_eq!(
            Reply::plain(250, vec!["host".into(), "PIPELINING".into()]).to_string(),
            "250-host\r\n250 PIPELINING\r\n"
        );
        let off = Reply::new(421, "4.7.0", "mx Error: too many connections");
        assert!(off.is_transient() && !Reply::new(554, "5.7.1", "no").is_transient());
        assert_eq!(off.line(), "421 4.7.0 mx Error: too many connections");
    }
}
