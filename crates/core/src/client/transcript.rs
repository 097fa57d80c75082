//! Records the SMTP conversation with the ISP line by line, never keeping credentials.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;

use crate::report::{Direction, TranscriptLine};

/// Lines longer than this are cut: a transcript is for people, not for replaying.
const MAX_LINE: usize = 1000;

/// The conversation so far, with AUTH payloads replaced by `<redacted>`.
#[derive(Debug, Default)]
pub struct Transcript {
    lines: Vec<TranscriptLine>,
    /// The server sent a 334 challenge: the next client line is credential data.
    challenge_pending: bool,
}

impl Transcript {
    /// Records a line we sent, redacting AUTH data.
    pub fn sent(&mut self, line: &str) {
        let line = if self.challenge_pending {
            self.challenge_pending = false;
            "<redacted>".to_owned()
        } else {
            redact_command(line)
        };
        self.push(Direction::Sent, line);
    }

    /// Records a line the server sent.
    pub fn received(&mut self, line: &str) {
        let is_last = line.as_bytes().get(3) != Some(&b'-');
        if line.starts_with("334") && is_last {
            self.challenge_pending = true;
        } else if is_last {
            self.challenge_pending = false;
        }
        self.push(Direction::Received, line.to_owned());
    }

    /// Records a reply as `code-line` ... `code line`, one transcript line per reply line.
    pub fn reply<'a>(&mut self, code: u16, lines: impl IntoIterator<Item = &'a str>) {
        let lines: Vec<&str> = lines.into_iter().collect();
        if lines.is_empty() {
            self.received(&code.to_string());
        }
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            self.received(&format!("{code}{sep}{line}"));
        }
    }

    /// Records an authentication exchange we cannot see (lettre runs it): mechanism only.
    pub fn auth(&mut self, mechanism: &str) {
        self.push(Direction::Sent, format!("AUTH {mechanism} <redacted>"));
    }

    /// Records a note of ours (connect, TLS, timeouts).
    pub fn note(&mut self, text: &str) {
        self.push(Direction::Note, text.to_owned());
    }

    /// The first line the server sent, if any.
    pub fn first_received(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.dir == Direction::Received)
            .map(|l| l.line.as_str())
    }

    /// Whether a line starting with `prefix` (case-insensitive) was sent.
    pub fn has_sent(&self, prefix: &str) -> bool {
        self.lines.iter().any(|l| {
            l.dir == Direction::Sent
                && l.line.len() >= prefix.len()
                && l.line.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
    }

    /// The recorded lines.
    pub fn lines(&self) -> &[TranscriptLine] {
        &self.lines
    }

    /// Forgets all but the last `n` lines (a long session keeps a bounded transcript).
    pub fn keep_last(&mut self, n: usize) {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.drain(..skip);
    }

    /// The recorded lines, handing them over.
    pub fn into_lines(self) -> Vec<TranscriptLine> {
        self.lines
    }

    fn push(&mut self, dir: Direction, mut line: String) {
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" [...]");
        }
        self.lines.push(TranscriptLine {
            at: Utc::now(),
            dir,
            line,
        });
    }
}

/// `AUTH PLAIN <base64>` becomes `AUTH PLAIN <redacted>`; other commands are kept.
fn redact_command(line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(cmd), Some(mech), Some(_)) if cmd.eq_ignore_ascii_case("AUTH") => {
            format!("{cmd} {mech} <redacted>")
        }
        _ => line.to_owned(),
    }
}

/// A transcript shared between the session and the stream tap.
#[derive(Debug, Clone, Default)]
pub struct SharedTranscript(Arc<Mutex<Transcript>>);

impl SharedTranscript {
    /// Locks the transcript; a panic elsewhere must not lose what was recorded.
    pub fn lock(&self) -> MutexGuard<'_, Transcript> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The recorded lines so far.
    pub fn snapshot(&self) -> Vec<TranscriptLine> {
        self.lock().lines().to_vec()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pa55";

    fn b64(s: &str) -> String {
        // Tiny base64 encoder so the test needs no extra crate.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn auth_plain_and_login_are_redacted() {
        let mut t = Transcript::default();
        let plain = b64(&format!("\0user\0{PASSWORD}"));
        t.sent(&format!("AUTH PLAIN {plain}"));
        t.received("235 2.7.0 Authentication successful");
        t.sent("AUTH LOGIN");
        t.received("334 VXNlcm5hbWU6");
        t.sent(&b64("user"));
        t.received("334 UGFzc3dvcmQ6");
        t.sent(&b64(PASSWORD));
        t.received("235 ok");
        t.sent("ETRN example.com");
        t.auth("PLAIN");

        let all: Vec<String> = t.lines().iter().map(ToString::to_string).collect();
        let text = all.join("\n") + &format!("{t:?}");
        for secret in [PASSWORD.to_owned(), plain.clone(), b64(PASSWORD)] {
            assert!(!text.contains(&secret), "{secret} leaked:\n{text}");
        }
        let lines: Vec<&str> = t.lines().iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines[0], "AUTH PLAIN <redacted>");
        assert_eq!(lines[2], "AUTH LOGIN");
        assert_eq!(lines[4], "<redacted>");
        assert_eq!(lines[6], "<redacted>");
        assert_eq!(
            lines[8], "ETRN example.com",
            "redaction must stop after the 235"
        );
        assert_eq!(lines[9], "AUTH PLAIN <redacted>");
    }

    #[test]
    fn multi_line_replies_keep_their_shape() {
        let mut t = Transcript::default();
        t.reply(250, ["isp.example", "ETRN", "STARTTLS"]);
        t.reply(221, []);
        let lines: Vec<&str> = t.lines().iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            lines,
            ["250-isp.example", "250-ETRN", "250 STARTTLS", "221"]
        );
        assert_eq!(t.first_received(), Some("250-isp.example"));
        assert!(!t.has_sent("EHLO"));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut t = Transcript::default();
        t.received(&"x".repeat(5000));
        assert!(t.lines()[0].line.len() < 1100);
    }
}
