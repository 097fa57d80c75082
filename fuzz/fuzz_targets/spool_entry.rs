//! Fuzzes the spool's reader with an arbitrary message file and state file, next to a good
//! message: `Spool::entry`, `Spool::entries` and what the runner reads from an entry. A corrupt
//! file never panics, is reported once, and never changes how the other message reads or what
//! its files hold.
#![no_main]

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailcall_core::spool::{Entry, Spool, Status};

/// The first line of every spool file.
const MAGIC: &[u8] = b"MAILCALL-SPOOL 1\n";
/// The good message, its state and their names (the good one sorts first).
const GOOD: &str = "1700000000.M1P1Q1.fuzz";
const GOOD_FILE: &[u8] = b"MAILCALL-SPOOL 1\n\
{\"received_at\":\"2026-01-01T00:00:00Z\",\"sender\":\"a@example.net\",\
\"recipients\":[{\"address\":\"b@example.com\",\"target\":{\"destination\":\"lmtp:127.0.0.1:24\"}},\
{\"address\":\"c@example.com\",\"target\":{\"destination\":\"lmtp:127.0.0.1:24\"}}],\
\"peer\":\"127.0.0.1\"}\n\
From: a@example.net\r\nSubject: hello\r\n\r\nbody\r\n";
const GOOD_STATE: &[u8] =
    b"{\"recipients\":[{\"status\":\"failed\",\"attempts\":2,\"reply\":\"550 no\"}]}";
const FUZZED: &str = "1700000001.M2P2Q2.fuzz";

struct Fixture {
    root: PathBuf,
    spool: Spool,
    good: Entry,
}

/// One spool per process, in the temporary directory (`TMPDIR`), with the good message in it.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("mailcall-fuzz-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spool = Spool::open(&root).expect("a spool in the temporary directory");
        std::fs::write(root.join("new").join(GOOD), GOOD_FILE).expect("the good message");
        std::fs::write(root.join("state").join(GOOD), GOOD_STATE).expect("the good state");
        let good = spool
            .entry(GOOD)
            .expect("the good message reads")
            .expect("the good message is there");
        assert_eq!(good.envelope.recipients.len(), 2);
        Fixture { root, spool, good }
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, cut, rest @ ..] = data else {
        return;
    };
    let f = fixture();
    // The input is the message file, then the state file; `cut` says where (in 1/256ths).
    let at = rest.len() * usize::from(*cut) / 256;
    let (file, state) = rest.split_at(at);
    let mut message = Vec::new();
    if mode & 1 == 1 {
        // Past the magic line, to the envelope's JSON.
        message.extend_from_slice(MAGIC);
    }
    message.extend_from_slice(file);
    let message_path = f.root.join("new").join(FUZZED);
    let state_path = f.root.join("state").join(FUZZED);
    std::fs::write(&message_path, &message).expect("write the fuzzed message");
    if mode & 2 == 2 {
        std::fs::write(&state_path, state).expect("write the fuzzed state");
    } else {
        let _ = std::fs::remove_file(&state_path);
    }

    let read = f.spool.entry(FUZZED);
    match &read {
        Ok(Some(entry)) => check_entry(f, entry, message.len() as u64),
        Ok(None) => panic!("a message that is there read as gone"),
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof),
                "{e}"
            );
        }
    }

    // The whole spool: the good message reads as before; the fuzzed one is either an entry or
    // one problem, never both, never twice.
    let (entries, problems) = f.spool.entries().expect("the spool lists");
    let good: Vec<&Entry> = entries.iter().filter(|e| e.name == GOOD).collect();
    assert_eq!(good.len(), 1, "the good message is missing or twice");
    same_entry(good[0], &f.good);
    let fuzzed = entries.iter().filter(|e| e.name == FUZZED).count();
    assert_eq!(fuzzed + problems.len(), 1, "{problems:?}");
    assert_eq!(fuzzed == 1, matches!(read, Ok(Some(_))));

    // Nothing was written to the good message's files.
    assert_eq!(
        std::fs::read(f.root.join("new").join(GOOD)).expect("the good message"),
        GOOD_FILE
    );
    assert_eq!(
        std::fs::read(f.root.join("state").join(GOOD)).expect("the good state"),
        GOOD_STATE
    );
});

/// What the runner and `queue list` read from an entry holds together.
fn check_entry(f: &Fixture, entry: &Entry, file_len: u64) {
    assert_eq!(entry.name, FUZZED);
    assert_eq!(
        entry.state.recipients.len(),
        entry.envelope.recipients.len(),
        "one state per recipient"
    );
    assert!(entry.data_offset > MAGIC.len() as u64);
    assert_eq!(entry.data_offset + entry.size, file_len);
    let data = f.spool.read_message(entry).expect("the message reads");
    assert_eq!(data.len() as u64, entry.size);
    let _ = f.spool.headline(entry);
    let _ = entry.is_outgoing();
    let _ = entry.next_attempt();
    let _ = entry.last_reply();
    for r in &entry.envelope.recipients {
        for status in [
            Status::Queued,
            Status::Delivered,
            Status::Failed,
            Status::Bounced,
        ] {
            for i in entry.recipients_for(&r.target, status) {
                assert!(i < entry.envelope.recipients.len());
            }
        }
    }
}

/// The same envelope, state and place in the file.
fn same_entry(a: &Entry, b: &Entry) {
    assert_eq!(a.envelope, b.envelope);
    assert_eq!(a.state, b.state);
    assert_eq!((a.data_offset, a.size), (b.data_offset, b.size));
}
