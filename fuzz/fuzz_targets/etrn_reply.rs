//! Fuzzes the client's reply handling with an arbitrary server: the reply parser (what the
//! connection uses), the ETRN outcome table, the EHLO parser and the redacting transcript.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailcall_core::client::ehlo::EhloReply;
use mailcall_core::client::reply::{ReplyParser, MAX_REPLY_LINES};
use mailcall_core::client::transcript::Transcript;
use mailcall_core::etrn::reply::{classify, is_closing, is_retryable, pending_count};
use mailcall_core::report::DomainOutcome;

/// Stands in for a password; must never show up in a transcript.
const SECRET: &str = "c2VjcmV0LXBhc3N3b3JkLTQy";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Replies as the client reads them, line by line: the parser never panics, a finished reply
    // has a code the line began with and at most MAX_REPLY_LINES lines.
    let mut parser = ReplyParser::default();
    for line in text.split('\n').take(2 * MAX_REPLY_LINES) {
        let line = line.trim_end_matches('\r');
        let Ok(Some(reply)) = parser.push(line) else {
            continue;
        };
        assert!((200..600).contains(&reply.code));
        assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
        let code = reply.code;
        let lines: Vec<&str> = reply.lines.iter().map(String::as_str).collect();
        let first = lines.first().copied().unwrap_or("");
        check_code(code, first);
        let ehlo = EhloReply::parse(lines.iter().copied());
        for keyword in &ehlo.keywords {
            assert!(ehlo.advertises(keyword));
        }
        let mut t = Transcript::default();
        t.reply(code, lines.iter().copied());
        assert_eq!(t.lines().len(), lines.len().max(1));
    }

    // Any code with any text: the table is total and consistent.
    if let [hi, lo, rest @ ..] = data {
        let code = u16::from_be_bytes([*hi, *lo]);
        check_code(code, &String::from_utf8_lossy(rest));
    }

    // The server says anything, line by line; whenever it challenges (334), we answer with
    // credential data. No server line sequence may make the secret appear in the transcript.
    let mut t = Transcript::default();
    for line in text.split('\n').take(200) {
        let line = line.trim_end_matches('\r');
        t.received(line);
        if line.starts_with("334") && line.as_bytes().get(3) != Some(&b'-') {
            t.sent(SECRET);
        }
        t.sent(&format!("AUTH PLAIN {SECRET}"));
        t.sent(&format!("auth login {SECRET}"));
    }
    for l in t.lines() {
        assert!(
            !l.line.contains(SECRET) || text.contains(SECRET),
            "secret in transcript: {:?}",
            l.line
        );
    }
});

fn check_code(code: u16, text: &str) {
    let outcome = classify(code, text);
    if is_retryable(code, text) {
        assert!((400..=499).contains(&code) && !is_closing(code));
        assert_eq!(outcome, DomainOutcome::Deferred);
    }
    if matches!(
        outcome,
        DomainOutcome::Started { .. } | DomainOutcome::NoMail
    ) {
        assert!(
            (250..=253).contains(&code),
            "{code} {text:?} counted as success"
        );
    }
    if let DomainOutcome::Started { expected: Some(n) } = outcome {
        assert_eq!(code, 253);
        assert!(text.contains(&n.to_string()));
    }
    if let Some(n) = pending_count(text) {
        assert!(
            text.contains(&n.to_string()) || text.contains('+'),
            "{n} from {text:?}"
        );
    }
}
