//! Fuzzes the listener session's pure core with a peer's arbitrary bytes: command line splitting,
//! command parsing, the relay policy and DATA un-stuffing (see `listener::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailcall_core::listener::fuzzing::session_input(data);
});
