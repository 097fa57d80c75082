//! I/O-free entry point for the listener's fuzz target (`fuzz/`): the command line splitter, the
//! command parser, the relay policy and the DATA un-stuffer, each checked against its promises.
//! Not an API for anything else; it panics when a promise is broken — that is the point.

use smtp_proto::Request;

use super::codec::{Line, LineSplitter, Unstuffer};
use super::policy::{uses_quoting, Verdict};
use super::RecipientPolicy;

/// Runs `data` through the session's pure pieces as a peer's byte stream; panics on a broken
/// invariant. The first two bytes choose the line limit and the DATA piece size.
pub fn session_input(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let max_line = 16 + usize::from(*a) * 4;
    let step = 1 + usize::from(*b % 64);
    let policy = RecipientPolicy::new(vec![
        "example.com".parse().expect("a valid domain"),
        "@sub.example.org".parse().expect("a valid domain"),
    ]);
    let mut splitter = LineSplitter::default();
    let mut start = 0;
    // Bounded: every round consumes at least one byte or ends.
    while start < rest.len() {
        let before = start;
        let Some(line) = splitter.next_line(rest, &mut start, max_line) else {
            break;
        };
        assert!(start > before, "the splitter made no progress");
        let Line::Complete(line) = line else {
            continue;
        };
        assert!(line.ends_with(b"\n"));
        assert!(
            line.len() <= max_line + 2,
            "a line over the limit came through"
        );
        match Request::parse(&mut line.iter()) {
            Ok(Request::Rcpt { to }) => check_recipient(&policy, &to.address, &line),
            Ok(Request::Data) => start += check_data(&rest[start..], step),
            Ok(_) | Err(_) => {}
        }
    }
}

/// The relay promise: a recipient is accepted only in our domains, with no routing tricks.
fn check_recipient(policy: &RecipientPolicy, address: &str, line: &[u8]) {
    if uses_quoting(line) || policy.judge(address) != Verdict::Accept {
        return;
    }
    let (local, domain) = address
        .rsplit_once('@')
        .expect("accepted means local@domain");
    assert!(!local.is_empty() && !local.contains(['%', '!', '@', '"']));
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    assert!(
        domain == "example.com"
            || domain == "sub.example.org"
            || domain.ends_with(".sub.example.org"),
        "relay: accepted {address:?}"
    );
}

/// Feeds DATA whole and in `step`-sized pieces; both must agree with each other and with a
/// plain reading of RFC 5321's rules. Returns the bytes the message took.
fn check_data(input: &[u8], step: usize) -> usize {
    let whole = unstuff(input, input.len().max(1));
    let pieces = unstuff(input, step);
    assert_eq!(whole, pieces, "piece size {step} changed the result");
    let (out, consumed, done, bare) = whole;
    let (ref_out, ref_consumed) = reference_unstuff(input);
    if done {
        assert_eq!(Some(consumed), ref_consumed, "end of data found elsewhere");
        assert_eq!(out, ref_out, "un-stuffed output differs");
    } else {
        assert_eq!(ref_consumed, None, "end of data missed");
        assert_eq!(consumed, input.len());
    }
    let taken = &input[..consumed];
    assert_eq!(
        bare,
        has_bare_line_end(taken),
        "bare line end judged wrongly"
    );
    // The smuggling promise: without a bare line end, only CRLF "." CRLF ends a message.
    if done && !bare {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(taken);
        assert!(framed.ends_with(b"\r\n.\r\n"), "ended on {taken:?}");
    }
    consumed
}

fn unstuff(input: &[u8], step: usize) -> (Vec<u8>, usize, bool, bool) {
    let mut u = Unstuffer::new();
    let mut out = Vec::new();
    let mut pos = 0;
    for piece in input.chunks(step) {
        let n = u.feed(piece);
        pos += n;
        out.extend_from_slice(u.ready());
        u.clear_ready();
        if u.is_done() {
            break;
        }
        assert_eq!(n, piece.len(), "input held back before the end");
    }
    out.extend_from_slice(u.ready());
    (out, pos, u.is_done(), u.saw_bare_line_end())
}

/// RFC 5321 4.5.2 read plainly, plus smtp-proto's one quirk: a line of "." and one or more CRs
/// and LF ends the data (the last CR dropped). Returns the data and the bytes taken, if ended.
fn reference_unstuff(input: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::new();
    let mut i = 0;
    let at_line_start = |i: usize| i == 0 || (i >= 2 && &input[i - 2..i] == b"\r\n");
    while i < input.len() {
        if input[i] == b'.' && at_line_start(i) {
            let mut j = i + 1;
            while j < input.len() && input[j] == b'\r' {
                j += 1;
            }
            if j > i + 1 && j < input.len() && input[j] == b'\n' {
                out.extend_from_slice(&input[i + 1..j - 1]);
                return (out, Some(j + 1));
            }
            i += 1; // the stuffed dot goes
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    (out, None)
}

fn has_bare_line_end(data: &[u8]) -> bool {
    let mut prev = b'\n';
    for &b in data {
        if (b == b'\n' && prev != b'\r') || (prev == b'\r' && b != b'\n') {
            return true;
        }
        prev = b;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_inputs_hold_the_invariants() {
        let inputs: &[&[u8]] = &[
            b"",
            b"\x00\x01EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n..a\r\n.\r\nQUIT\r\n",
            b"\x10\x03DATA\r\nx\n.\r\nMAIL FROM:<e@x>\r\n.\r\n",
            b"\x00\x00DATA\r\n.\r\r\n",
            b"\x00\x07RCPT TO:<a%b@example.com>\r\nRCPT TO:<@example.com:x@evil.org>\r\n",
            b"\x00\x07RCPT TO:<x@a.sub.example.org.>\r\nDATA\r\n\r.\r\n",
            b"\x00\x05DATA\r\n.",
        ];
        for input in inputs {
            session_input(input);
        }
    }
}
