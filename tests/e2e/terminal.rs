//! What a message says never controls the terminal (issue 21, item 4): a Subject whose RFC 2047
//! encoded words decode to a screen clear, an OSC 52 clipboard write, a C1 CSI and a bidi
//! override is fetched from a real Postfix, one copy into the Maildir and one into the spool
//! (a LAN server that is down); `fetch`, `history` and `queue` print the rest of the subject
//! and none of those characters.

use std::time::Duration;

use mailcall_e2e::{
    free_port, Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp,
};

use crate::{fetch, listener_port, set_plain_account, write_base_config};

/// The subject as the sender meant it to reach a terminal.
const HOSTILE: &str = concat!(
    "Invoice \u{1b}[2J\u{1b}[H",
    "\u{1b}]52;c;cm0gLXJmIH4K\u{7}",
    " due \u{9b}8m now",
    " \u{202e}fdp.exe\u{7f}",
);

/// Characters a terminal (or a bidi-aware viewer) would act on.
const FORBIDDEN: [char; 5] = ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\u{7f}'];

/// `text` as a `Subject:` of RFC 2047 Q-encoded words (every byte `=XX`), each under the
/// 75-character limit and never splitting a character, after a plain first word.
fn encoded_subject(text: &str) -> String {
    let (first, rest) = text.split_once(' ').unwrap();
    let mut words = vec![first.to_string()];
    let mut word = String::new();
    for c in rest.chars() {
        let mut buf = [0; 4];
        let hex: String = c
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| format!("={b:02X}"))
            .collect();
        if word.len() + hex.len() > 45 {
            words.push(format!("=?UTF-8?Q?{word}?="));
            word.clear();
        }
        word.push_str(&hex);
    }
    words.push(format!("=?UTF-8?Q?{word}?="));
    words.join(" ")
}

/// `out`'s stdout shows the subject's words and none of the hostile characters.
fn assert_harmless(out: &CliOutput, what: &str) {
    for c in FORBIDDEN {
        assert!(
            !out.stdout.contains(c) && !out.stderr.contains(c),
            "{what} printed {c:?} from the subject\n{:?}",
            out.stdout
        );
    }
    for word in ["Invoice", "52;c;cm0gLXJmIH4K", " due ", "8m now", "fdp.exe"] {
        assert!(
            out.stdout.contains(word),
            "{what} lost {word:?} of the subject\n{out}"
        );
    }
}

#[test]
fn a_subject_of_escape_sequences_is_printed_harmless_by_fetch_history_and_queue() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["mail.test", "lan.test"], lp));
    let subject = encoded_subject(HOSTILE);
    let message = |n: usize, to: &str| Message {
        from: "sender@outside.test".into(),
        to: to.into(),
        subject: subject.clone(),
        message_id: format!("<terminal-{n}@outside.test>"),
        body: "Pay now.\n".into(),
    };
    isp.queue_all(&[message(1, "user@mail.test"), message(2, "dave@lan.test")]);
    isp.wait_deferred(2, Duration::from_secs(30));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["mail.test", "lan.test"]);
    // A LAN server nobody answers for: its copy waits in the spool, for `queue` to list.
    let down = format!("lmtp:127.0.0.1:{}", free_port());
    cli.run(&["route", "add", "@lan.test", &down])
        .assert_success();
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    assert_eq!(maildir.new_messages().len(), 1, "{context}");
    // The stored file keeps the subject as sent: only printing replaces anything.
    let stored = std::fs::read_to_string(&maildir.new_messages()[0].path).unwrap();
    assert!(stored.contains(&subject), "{stored}");
    assert_harmless(&out, "fetch");

    let history = cli.run(&["history"]);
    history.assert_success();
    assert_harmless(&history, "history");

    let queue = cli.run(&["queue"]);
    queue.assert_success();
    assert_harmless(&queue, "queue");

    // JSON keeps every character (escaped), so a program reading it loses nothing.
    for args in [&["history", "--json"][..], &["queue", "--json"][..]] {
        let out = cli.run(args);
        out.assert_success();
        for c in FORBIDDEN {
            assert!(!out.stdout.contains(c), "{args:?} printed {c:?}\n{out}");
        }
        let subjects: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|v| {
                let mut found = Vec::new();
                collect_subjects(&v, &mut found);
                found
            })
            .collect();
        assert!(
            subjects.iter().any(|s| s == HOSTILE),
            "{args:?}: the subject is not in the JSON as decoded\n{out}"
        );
    }
}

/// Every string under a `subject` key in `v`.
fn collect_subjects(v: &serde_json::Value, found: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "subject" => found.push(s.clone()),
                    other => collect_subjects(other, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_subjects(v, found)),
        _ => {}
    }
}
