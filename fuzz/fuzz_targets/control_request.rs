//! Fuzzes the control protocol with an arbitrary client and an arbitrary daemon: request lines as
//! the server reads them (`Request::parse`), and reply lines as the client reads them
//! (`Reply::read`, for every verb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailcall_core::control::{Reply, Request, Verb};

/// Every verb a reply can answer.
const VERBS: [Verb; 9] = [
    Verb::Fetch,
    Verb::Pause,
    Verb::Resume,
    Verb::Status,
    Verb::Reload,
    Verb::Events,
    Verb::Queue,
    Verb::Send,
    Verb::Wake,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Bounded: at most one round per line of the input.
    for line in text.split('\n') {
        // As the server hands it over: the line without its line end and trailing blanks.
        check_request(line.trim_end());
        for verb in VERBS {
            check_reply(verb, line);
        }
    }
});

/// A request the server takes is one the client would send, and it reads back as itself.
fn check_request(line: &str) {
    match Request::parse(line) {
        Ok(request) => {
            assert_eq!(request.check(), Ok(()), "{line:?} taken but fails check");
            let written = request.to_string();
            assert!(
                !written.contains(['\n', '\r']),
                "{line:?} is written over more than one line: {written:?}"
            );
            assert_eq!(
                Request::parse(&written).as_ref(),
                Ok(&request),
                "{line:?} written as {written:?} does not read back"
            );
        }
        Err(e) => {
            // Every refusal says something to the user.
            assert!(!e.to_string().trim().is_empty(), "{line:?}: empty error");
        }
    }
}

/// A reply the client reads is one it can write again and read back as the same kind.
fn check_reply(verb: Verb, line: &str) {
    let Ok(reply) = Reply::read(verb, line) else {
        return;
    };
    if let Reply::Refused { error } = &reply {
        assert!(
            !error.is_empty(),
            "a refusal without a reason from {line:?}"
        );
    }
    let written = reply.to_line();
    assert!(written.ends_with('\n') && !written[..written.len() - 1].contains('\n'));
    let again = Reply::read(verb, written.trim_end())
        .unwrap_or_else(|e| panic!("{verb} reply {written:?} does not read back: {e}"));
    assert_eq!(
        std::mem::discriminant(&again),
        std::mem::discriminant(&reply),
        "{verb} reply {written:?} reads back as another kind"
    );
}
