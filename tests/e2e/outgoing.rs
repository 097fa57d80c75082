//! Outgoing mail (issue 19): `mailcall-cli sendmail` queues while nothing is sent, and the next
//! fetch sends it through the account's outgoing server — a real Postfix submission server with
//! STARTTLS, its own CA and SASL AUTH — before it asks the ISP (a real Postfix) for the incoming
//! mail. A refused recipient never holds back the others; a sender no account holds is refused
//! with nothing queued.

use std::time::Duration;

use mailcall_e2e::{
    poll_until, Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp, PostfixLan,
};

use crate::{fetch, listener_port, write_base_config};

/// The smarthost's login.
pub(crate) const LOGIN: (&str, &str) = ("office", "s3cret-smarthost");

/// `account set isp` for the ISP at `isp_port` holding office.test, sending through `smarthost`.
pub(crate) fn set_account_with_smarthost(
    cli: &Cli,
    isp_port: u16,
    smarthost: &PostfixLan,
) -> CliOutput {
    let isp_port = isp_port.to_string();
    let port = smarthost.port().to_string();
    let ca = smarthost
        .ca_file()
        .expect("the smarthost has TLS")
        .display()
        .to_string();
    let out = cli.run_with_stdin(
        &[
            "account",
            "set",
            "isp",
            "--host",
            "127.0.0.1",
            "--port",
            &isp_port,
            "--security",
            "none",
            "--domain",
            "office.test",
            "--smarthost",
            "127.0.0.1",
            "--smarthost-port",
            &port,
            "--smarthost-ca-file",
            &ca,
            "--smarthost-user",
            LOGIN.0,
            "--smarthost-password-stdin",
        ],
        Some(&format!("{}\n", LOGIN.1)),
    );
    out.assert_success();
    out
}

/// A message from me@office.test to `to`, as a local program writes it (LF line ends).
fn outgoing_text(n: usize, to: &str) -> String {
    format!(
        "From: Me <me@office.test>\nTo: {to}\nSubject: outgoing {n}\nDate: Sun, 6 Dec 2026 12:00:00 +0000\nMessage-ID: <out-{n}@office.test>\n\nLine one of {n}.\n.leading dot\nlast line\n"
    )
}

fn sendmail(cli: &Cli, text: &str) -> CliOutput {
    cli.run_with_stdin(&["sendmail", "-t", "-i"], Some(text))
}

/// How many SMTP sessions the smarthost has seen (its smtpd logs each `connect from`).
fn connections(smarthost: &PostfixLan) -> usize {
    smarthost.log().matches(": connect from").count()
}

#[test]
fn mail_written_offline_waits_and_leaves_before_the_etrn_at_the_next_fetch() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], lp));
    let incoming: Vec<Message> = (0..3)
        .map(|n| Message::numbered("office.test", n))
        .collect();
    isp.queue_all(&incoming);
    isp.wait_deferred(3, Duration::from_secs(30));
    let smarthost = PostfixLan::smarthost("example.org", &["alice", "bob"], LOGIN);
    // The harness's own readiness probe is a connection too: counted once its log line is in.
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        smarthost.log().contains("disconnect from").then_some(())
    })
    .expect("the smarthost logs the readiness probe");
    let before = connections(&smarthost);

    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    let texts: Vec<String> = (0..20)
        .map(|n| outgoing_text(n, "Alice <alice@example.org>"))
        .collect();
    for text in &texts {
        let out = sendmail(&cli, text);
        assert_eq!(
            out.code(),
            Some(0),
            "sendmail must queue the message\n{out}"
        );
    }
    // Queued, and nothing has gone to the smarthost.
    let queue = cli.run(&["queue"]);
    queue.assert_success();
    assert_eq!(
        queue.stdout.matches("smarthost:isp").count(),
        20,
        "the queue lists the 20 outgoing messages\n{queue}"
    );
    assert_eq!(
        connections(&smarthost),
        before,
        "nothing may connect to the smarthost before a fetch\n{}",
        smarthost.log()
    );

    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!(
        "{out}\nsmarthost log:\n{}\nISP log:\n{}",
        smarthost.log(),
        isp.log()
    );
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    // The incoming half as before.
    assert_eq!(maildir.new_messages().len(), 3, "{context}");

    // Every outgoing message arrived once, its text intact below the Received: lines.
    let alice = smarthost.maildir("alice");
    let got = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let stored = alice.new_messages();
        (stored.len() >= 20).then_some(stored)
    })
    .unwrap_or_else(|| panic!("20 messages must reach alice at the smarthost\n{context}"));
    let mut ids: Vec<String> = got.iter().filter_map(|m| m.message_id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = (0..20).map(|n| format!("<out-{n}@office.test>")).collect();
    want.sort();
    assert_eq!(ids, want, "each exactly once\n{context}");
    for m in &got {
        let stored = std::fs::read_to_string(&m.path).unwrap();
        let n: usize = m
            .message_id
            .as_deref()
            .and_then(|id| id.strip_prefix("<out-"))
            .and_then(|id| id.strip_suffix("@office.test>"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            stored.ends_with(&texts[n]),
            "the message must arrive as written, below the Received: lines\n{stored}"
        );
        assert!(stored.contains("(Mailcall sendmail, from user"), "{stored}");
    }
    // Sent before the ETRN: Mailcall's own output says so in order, and AUTH was used.
    let sent_at = out.stdout.find("sent: ").unwrap_or(usize::MAX);
    let etrn_at = out.stdout.find("ETRN office.test").unwrap_or(0);
    assert!(
        sent_at < etrn_at,
        "the outgoing mail is sent before the ETRN\n{context}"
    );
    assert!(
        smarthost.log().contains("sasl_username=office"),
        "the smarthost saw AUTH\n{context}"
    );
    // Nothing is left in the queue.
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("smarthost:isp"), "{queue}");
}

#[test]
fn one_refused_recipient_gets_the_sender_one_report_and_the_others_arrive_once() {
    let env = KeyringEnv::new();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], listener_port()));
    let smarthost = PostfixLan::smarthost("example.org", &["alice", "bob"], LOGIN);
    let cli = Cli::new(&env);
    let mailbox = Maildir::new(env.root().join("Maildir"));
    cli.write_config(&format!(
        "hostname = \"client.test\"\nmaildir = \"{}\"\n",
        mailbox.path().display()
    ));
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    let text = outgoing_text(
        1,
        "alice@example.org, nobody@example.org,\n bob@example.org",
    );
    sendmail(&cli, &text).assert_success();
    let out = cli.run(&["send"]);
    let context = format!("{out}\nsmarthost log:\n{}", smarthost.log());
    assert_eq!(
        out.code(),
        Some(1),
        "a refused recipient fails the send\n{context}"
    );
    assert!(
        out.stdout.contains("refused to nobody@example.org: 550"),
        "{context}"
    );
    for user in ["alice", "bob"] {
        let stored = smarthost.maildir(user).new_messages();
        assert_eq!(stored.len(), 1, "{user} gets it once\n{context}");
    }
    // The sender (me@office.test, a local user: the default Maildir) gets one delivery report
    // naming the refused address, and the queue is empty.
    let reports = mailbox.new_messages();
    assert_eq!(reports.len(), 1, "one report\n{context}");
    let report = std::fs::read_to_string(&reports[0].path).unwrap();
    assert!(report.contains("report-type=delivery-status"), "{report}");
    assert!(
        report.contains("Final-Recipient: rfc822; nobody@example.org"),
        "{report}"
    );
    assert!(
        !report.contains("Final-Recipient: rfc822; alice@"),
        "{report}"
    );
    assert!(report.contains("To: <me@office.test>"), "{report}");
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("nobody@example.org"), "{queue}");
}

#[test]
fn a_sender_no_account_holds_is_refused_and_nothing_is_queued() {
    let env = KeyringEnv::new();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], listener_port()));
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    let out = cli.run_with_stdin(
        &[
            "sendmail",
            "-f",
            "stranger@elsewhere.test",
            "alice@example.org",
        ],
        Some("Subject: x\n\nbody\n"),
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("elsewhere.test"), "{out}");
    let no_rcpt = cli.run_with_stdin(
        &["sendmail", "-f", "me@office.test"],
        Some("Subject: x\n\nbody\n"),
    );
    assert_eq!(no_rcpt.code(), Some(2), "{no_rcpt}");
    let queue = cli.run(&["queue"]);
    assert!(
        !queue.stdout.contains("smarthost:"),
        "nothing queued\n{queue}"
    );
}
