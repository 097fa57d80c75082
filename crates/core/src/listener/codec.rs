//! The session's I/O-free codecs: cutting command lines out of the input (never buffering an
//! over-long one) and un-stuffing DATA while watching for line ends that are not CRLF. Both are
//! table-tested in every piece size and fuzzed (`fuzz/`, through `super::fuzzing`).

use smtp_proto::request::receiver::DataReceiver;

use super::conn::READ_CHUNK;
use super::data::WRITE_CHUNK;

/// One complete input line, or the news that one was too long.
pub(crate) enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// Cuts command lines out of the input buffer; I/O-free.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl LineSplitter {
    /// Takes the next complete line from `buf[*start..]` (advancing `start`), without ever
    /// holding more than one line's worth of an over-long one: `max` is the longest content
    /// taken, CRLF not counted. `None` when no complete line is there yet.
    pub(crate) fn next_line(&mut self, buf: &[u8], start: &mut usize, max: usize) -> Option<Line> {
        loop {
            let avail = &buf[*start..];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = avail[..=i].to_vec();
                    *start += i + 1;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    let content = line.strip_suffix(b"\n").unwrap_or(&line);
                    let content = content.strip_suffix(b"\r").unwrap_or(content);
                    if content.len() > max {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Complete(line));
                }
                None => {
                    if self.discarding {
                        *start = buf.len();
                        return None;
                    }
                    // +1: the CR of a line that is exactly at the limit may already be here.
                    if avail.len() > max.saturating_add(1) {
                        *start = buf.len();
                        self.discarding = true;
                        return Some(Line::TooLong);
                    }
                    // Not complete yet: keep it.
                    return None;
                }
            }
        }
    }
}

/// DATA un-stuffing on top of smtp-proto's `DataReceiver`, drained in pieces as input arrives,
/// and the watch for line ends that are not CRLF.
///
/// smtp-proto 0.2.5 ends a message only on CRLF "." CRLF: a bare "\n.\n", "\n.\r\n" or
/// "\r.\r\n" is kept as data, and "\r\n.." becomes "\r\n.". So no bare line end can end a
/// message early or start a second one here.
///
/// Bare CR and bare LF are nonetheless refused: a message that holds one gets `550 5.5.2` once
/// its end is read, and nothing is stored. Why reject rather than normalise: real MTAs (the ISP's
/// Postfix, Exim, Sendmail) always send CRLF, so a bare line end only comes from a broken or
/// hostile client — the SMTP-smuggling pattern (CVE-2023-51764/51765/51766), where a different
/// reading of the same bytes by two servers injects a second message. Rejecting means no reading
/// of what we store can disagree with ours; normalising would rewrite what the sender signed
/// (DKIM). Sendmail 8.18 and Postfix's `smtpd_forbid_bare_newline = reject` do the same.
/// One quirk of the receiver: a line "." followed by several CRs and LF (".\r\r\n") also ends
/// the message — it holds a bare CR, so it is refused as well.
pub(crate) struct Unstuffer {
    receiver: DataReceiver,
    /// Un-stuffed bytes not handed out yet.
    buf: Vec<u8>,
    done: bool,
    /// The last raw byte consumed (LF at first: the one that ended "DATA").
    prev: u8,
    /// A CR not followed by LF, or an LF not preceded by CR, was consumed.
    bare_line_end: bool,
}

impl Unstuffer {
    pub(crate) fn new() -> Self {
        let mut receiver = DataReceiver::new();
        let mut buf = Vec::with_capacity(WRITE_CHUNK + READ_CHUNK);
        // The receiver starts as if mid-line; feeding it the CRLF that ended "DATA" makes a
        // leading ".\r\n" end the message and a leading ".." un-stuff.
        receiver.ingest(&mut b"\r\n".iter(), &mut buf);
        buf.clear();
        Unstuffer {
            receiver,
            buf,
            done: false,
            prev: b'\n',
            bare_line_end: false,
        }
    }

    /// Takes input up to the end of the message; returns how many bytes it consumed.
    pub(crate) fn feed(&mut self, input: &[u8]) -> usize {
        if self.done {
            return 0;
        }
        let mut iter = input.iter();
        self.done = self.receiver.ingest(&mut iter, &mut self.buf);
        let consumed = input.len() - iter.as_slice().len();
        if !self.bare_line_end {
            for &b in &input[..consumed] {
                if (b == b'\n' && self.prev != b'\r') || (self.prev == b'\r' && b != b'\n') {
                    self.bare_line_end = true;
                    break;
                }
                self.prev = b;
            }
        }
        consumed
    }

    /// Whether the end-of-data marker was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the data so far held a bare CR or bare LF (the message is then refused).
    pub(crate) fn saw_bare_line_end(&self) -> bool {
        self.bare_line_end
    }

    /// The bytes that are final. Until the end, the last byte is held back: the receiver takes
    /// a CR back out of its buffer when the LF of a split CRLF "." CRLF arrives later.
    pub(crate) fn ready(&self) -> &[u8] {
        let keep = usize::from(!self.done && !self.buf.is_empty());
        &self.buf[..self.buf.len() - keep]
    }

    /// Forgets what `ready` returned.
    pub(crate) fn clear_ready(&mut self) {
        let n = self.ready().len();
        self.buf.drain(..n);
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, draining after every piece.
    fn unstuff(input: &[u8], step: usize) -> (Vec<u8>, usize) {
        let (out, pos, _) = unstuff_checked(input, step);
        (out, pos)
    }

    /// Like `unstuff`, also saying whether a bare line end was seen.
    fn unstuff_checked(input: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !u.is_done() {
            let end = (pos + step).min(input.len());
            pos += u.feed(&input[pos..end]);
            out.extend_from_slice(u.ready());
            u.clear_ready();
        }
        assert!(u.is_done(), "end of data not seen in {input:?}");
        (out, pos, u.saw_bare_line_end())
    }

    #[test]
    fn bare_line_ends_are_seen_in_any_piece_size() {
        let cases: &[(&[u8], bool)] = &[
            (b".\r\n", false),
            (b"a\r\nb\r\n\r\n.\r\n", false),
            (b"a\nb\r\n.\r\n", true),
            (b"a\rb\r\n.\r\n", true),
            (b"a\r\r\n.\r\n", true),
            (b"\n.\r\n\r\n.\r\n", true),
            (b"x\n.\r\n.\r\n", true),
            (b"x\r.\r\n.\r\n", true),
            (b"x\n.\n\r\n.\r\n", true),
            (b"x\r\n.\r\r\n", true),
            (b"\r\n.\r\n", false),
        ];
        for (input, bare) in cases {
            for step in 1..=input.len() {
                let (_, consumed, seen) = unstuff_checked(input, step);
                assert_eq!(seen, *bare, "input {input:?} in pieces of {step}");
                assert_eq!(consumed, input.len(), "input {input:?}");
            }
        }
        // What comes after the end is not data, and not judged.
        let mut u = Unstuffer::new();
        u.feed(b"ok\r\n.\r\nbare\nafter\r");
        assert!(u.is_done() && !u.saw_bare_line_end());
    }

    #[test]
    fn unstuffing_in_any_piece_size() {
        let cases: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"..x\r\n.\r\n", b".x\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),
            (b"a\n.\nb\r.\r\n\r\n.\r\n", b"a\n.\nb\r.\r\n\r\n"),
            (b"x\r\n\r\n.\r\n", b"x\r\n\r\n"),
        ];
        for (input, expected) in cases {
            for step in 1..=input.len() {
                let (out, consumed) = unstuff(input, step);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(expected),
                    "input {input:?} in pieces of {step}"
                );
                assert_eq!(consumed, input.len());
            }
        }
    }

    #[test]
    fn input_after_the_end_is_left_alone() {
        let mut u = Unstuffer::new();
        let input = b"body\r\n.\r\nQUIT\r\n";
        assert_eq!(u.feed(input), input.len() - 6);
        assert!(u.is_done());
        assert_eq!(u.ready(), b"body\r\n");
        assert_eq!(u.feed(b"more"), 0);
    }
}
