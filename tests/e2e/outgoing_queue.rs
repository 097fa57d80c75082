//! The outgoing queue against a real Postfix smarthost (issue 19, §5 and §6): a held message is
//! not sent until it is released (each `mailcall-cli` run is a new process: the hold is on
//! disk); past `max-queue-lifetime` a recipient the smarthost keeps deferring is given up and
//! its sender gets one RFC 3464 report in their Maildir, while a message from the null sender
//! `<>` gets none.

use std::time::Duration;

use mailcall_e2e::{poll_until, Cli, IspOptions, KeyringEnv, Maildir, PostfixIsp, PostfixLan};

use crate::listener_port;
use crate::outgoing::{set_account_with_smarthost, LOGIN};

/// The queue as `queue --json` lists it, one value per message.
fn queued(cli: &Cli) -> Vec<serde_json::Value> {
    let out = cli.run(&["queue", "--json"]);
    out.assert_success();
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

/// How many SMTP sessions the smarthost has seen, once its readiness probe is logged.
fn connections(smarthost: &PostfixLan) -> usize {
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        smarthost.log().contains("disconnect from").then_some(())
    })
    .expect("the smarthost logs the readiness probe");
    smarthost.log().matches(": connect from").count()
}

fn config(cli: &Cli, mailbox: &Maildir, extra: &str) {
    cli.write_config(&format!(
        "hostname = \"client.test\"\nmaildir = \"{}\"\nsubmit-listen = \"off\"\n{extra}",
        mailbox.path().display()
    ));
}

#[test]
fn a_held_message_is_not_sent_until_released() {
    let env = KeyringEnv::new();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], listener_port()));
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    let mailbox = Maildir::new(env.root().join("Maildir"));
    config(&cli, &mailbox, "");
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    cli.run_with_stdin(
        &["sendmail", "-f", "me@office.test", "alice@example.org"],
        Some("Subject: held\n\nwait for me\n"),
    )
    .assert_success();
    let listed = queued(&cli);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["direction"], "out", "{listed:?}");
    let id = listed[0]["id"].as_str().expect("an id").to_string();

    let hold = cli.run(&["queue", "hold", &id]);
    hold.assert_success();
    assert!(hold.stdout.contains("held 1 message(s)"), "{hold}");
    let listed = queued(&cli);
    assert_eq!(listed[0]["held"], true, "{listed:?}");
    assert!(listed[0]["next_attempt"].is_null(), "{listed:?}");
    let text = cli.run(&["queue"]);
    assert!(text.stdout.contains("held (queue release)"), "{text}");

    // A send (as at every fetch) leaves it alone: nothing connects to the smarthost.
    let before = connections(&smarthost);
    let send = cli.run(&["send"]);
    assert_eq!(send.code(), Some(0), "{send}");
    assert_eq!(
        connections(&smarthost),
        before,
        "a held message is not sent\n{}",
        smarthost.log()
    );
    assert_eq!(queued(&cli).len(), 1, "still queued");
    assert!(smarthost.maildir("alice").new_messages().is_empty());

    // Released, the next send takes it to the smarthost, once.
    let release = cli.run(&["queue", "release", &id]);
    release.assert_success();
    assert!(
        release.stdout.contains("released 1 message(s)"),
        "{release}"
    );
    assert_eq!(queued(&cli)[0]["held"], false);
    let send = cli.run(&["send"]);
    assert_eq!(send.code(), Some(0), "{send}\n{}", smarthost.log());
    let stored = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let stored = smarthost.maildir("alice").new_messages();
        (!stored.is_empty()).then_some(stored)
    })
    .unwrap_or_else(|| panic!("the released message must arrive\n{}", smarthost.log()));
    assert_eq!(stored.len(), 1);
    assert!(
        queued(&cli).is_empty(),
        "the queue is empty once it is sent"
    );
}

#[test]
fn past_the_lifetime_the_sender_gets_one_report_and_the_null_sender_none() {
    let env = KeyringEnv::new();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], listener_port()));
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    // The smarthost defers what it would refuse: nobody@example.org gets 450 4.1.1.
    smarthost.soft_bounce();
    let cli = Cli::new(&env);
    let mailbox = Maildir::new(env.root().join("Maildir"));
    // 0 hours: a recipient still deferred at its first failed try is given up.
    config(&cli, &mailbox, "max-queue-lifetime = 0\n");
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    cli.run_with_stdin(
        &[
            "sendmail",
            "-f",
            "me@office.test",
            "nobody@example.org",
            "alice@example.org",
        ],
        Some("Subject: from me\n\nto two\n"),
    )
    .assert_success();
    cli.run_with_stdin(
        &["sendmail", "-f", "<>", "nobody@example.org"],
        Some("Subject: a report of my own\n\nnull sender\n"),
    )
    .assert_success();
    assert_eq!(queued(&cli).len(), 2);

    let send = cli.run(&["send"]);
    let context = format!("{send}\nsmarthost log:\n{}", smarthost.log());
    assert!(
        smarthost.log().contains("450 4.1.1 <nobody@example.org>"),
        "the smarthost deferred nobody@\n{context}"
    );
    // alice@ got hers; nobody@ was given up in both messages, and both left the queue.
    let alice = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let stored = smarthost.maildir("alice").new_messages();
        (!stored.is_empty()).then_some(stored)
    })
    .unwrap_or_else(|| panic!("alice@ must get the message\n{context}"));
    assert_eq!(alice.len(), 1, "{context}");
    let left = queued(&cli);
    assert!(left.is_empty(), "both given up: {left:?}\n{context}");
    // One report, for me@office.test (a local user: the default Maildir), none for `<>`.
    let reports = mailbox.new_messages();
    assert_eq!(reports.len(), 1, "one report only\n{context}");
    let report = std::fs::read_to_string(&reports[0].path).unwrap();
    assert!(report.contains("To: <me@office.test>"), "{report}");
    assert!(report.contains("report-type=delivery-status"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822; nobody@example.org\r\nOriginal-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\n"),
        "{report}"
    );
    assert!(report.contains("max-queue-lifetime"), "{report}");
    assert!(
        report.contains("Subject: from me"),
        "the message is attached\n{report}"
    );
    assert!(!report.contains("a report of my own"), "{report}");
    assert!(
        !report.contains("Final-Recipient: rfc822; alice@"),
        "{report}"
    );
}
