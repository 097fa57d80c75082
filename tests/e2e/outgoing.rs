//! Outgoing mail (issue 19): `mailcall-cli sendmail` queues while nothing is sent, and the next
//! fetch sends it through the account's outgoing server — a real Postfix submission server with
//! STARTTLS, its own CA and SASL AUTH — before it asks the ISP (a real Postfix) for the incoming
//! mail. A refused recipient never holds back the others; a sender no account holds is refused
//! with nothing queued. With a daemon running, `send` and `fetch --via-running` go through it
//! (it holds the queue), and `fetch --no-send` only receives.

use std::time::Duration;

use mailcall_e2e::{
    poll_until, AccountArgs, Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp,
    PostfixLan, RunningCli,
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
    let port = smarthost.port().to_string();
    let ca = smarthost
        .ca_file()
        .expect("the smarthost has TLS")
        .display()
        .to_string();
    // The smarthost's own login: its password goes on stdin like the ISP's would.
    let (argv, _) = AccountArgs::new("isp", isp_port)
        .domains(&["office.test"])
        .args(&[
            "--smarthost",
            "127.0.0.1",
            "--smarthost-port",
            &port,
            "--smarthost-ca-file",
            &ca,
            "--smarthost-user",
            LOGIN.0,
            "--smarthost-password-stdin",
        ])
        .argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = cli.run_with_stdin(&argv, Some(&format!("{}\n", LOGIN.1)));
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

/// What `user` holds at the smarthost once at least `n` messages are there: Postfix stores a
/// message a moment after its `250`, so this waits for it (with a deadline) before counting.
fn arrived(smarthost: &PostfixLan, user: &str, n: usize) -> Vec<mailcall_e2e::StoredMessage> {
    let maildir = smarthost.maildir(user);
    poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let stored = maildir.new_messages();
        (stored.len() >= n).then_some(stored)
    })
    .unwrap_or_else(|| {
        panic!(
            "{n} message(s) must reach {user} at the smarthost\n{}",
            smarthost.log()
        )
    })
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
    // And Mailcall's history: the flush's records (with the smarthost's transcript) come before
    // the fetch's, and the last message the smarthost took was taken before the ETRN went out.
    let history = cli.run(&["history", "--json", "--limit", "50"]);
    history.assert_success();
    let records: Vec<serde_json::Value> = history
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fetch_at = records
        .iter()
        .position(|r| r["kind"] == "fetch")
        .unwrap_or_else(|| panic!("no fetch record\n{history}"));
    let lines = |r: &serde_json::Value| -> Vec<(String, String, String)> {
        r["transcripts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t[1].as_array().cloned().unwrap_or_default())
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                (instant(&s("at")), s("dir"), s("line"))
            })
            .collect()
    };
    let taken: Vec<String> = records[..fetch_at]
        .iter()
        .filter(|r| r["kind"] == "handover")
        .flat_map(lines)
        .filter(|(_, dir, line)| dir == "received" && line.contains("queued as"))
        .map(|(at, _, _)| at)
        .collect();
    assert_eq!(
        taken.len(),
        20,
        "the flush records before the fetch show the smarthost taking each message\n{history}"
    );
    let etrn = lines(&records[fetch_at])
        .into_iter()
        .find(|(_, dir, line)| dir == "sent" && line.starts_with("ETRN "))
        .map(|(at, _, _)| at)
        .unwrap_or_else(|| panic!("no ETRN in the fetch's transcript\n{history}"));
    assert!(
        taken.iter().all(|at| *at <= etrn),
        "every message was taken before the ETRN: {taken:?} vs {etrn}\n{history}"
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
        let stored = arrived(&smarthost, user, 1);
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
    assert!(
        out.stderr.contains("config set default-outgoing-account"),
        "the refusal names the setting that fixes it\n{out}"
    );
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

    // The fix, typed as the error says: the default account sends what no domain claims.
    cli.run(&["config", "set", "default-outgoing-account", "isp"])
        .assert_success();
    let out = cli.run_with_stdin(
        &[
            "sendmail",
            "-f",
            "stranger@elsewhere.test",
            "alice@example.org",
        ],
        Some("Subject: through the default\n\nbody\n"),
    );
    assert_eq!(out.code(), Some(0), "{out}");
    let sent = cli.run(&["send"]);
    assert_eq!(
        sent.code(),
        Some(0),
        "{sent}\nsmarthost log:\n{}",
        smarthost.log()
    );
    let got = arrived(&smarthost, "alice", 1);
    let stored = std::fs::read_to_string(&got[0].path).unwrap();
    assert!(stored.contains("Subject: through the default"), "{stored}");
}

/// A config whose link is never up (no interface matches its `interfaces`): a daemon with it
/// sends only when asked, or at a fetch.
fn write_offline_config(cli: &Cli) {
    cli.write_config(
        "hostname = \"client.test\"\nfetch-at-start = false\nidle-timeout = 3\nmax-wait = 60\ninterfaces = [\"nolink*\"]\nsubmit-listen = \"off\"\n",
    );
}

/// A daemon on the config as it is, its listener on `listen_port`.
fn daemon(env: &KeyringEnv, cli: &Cli, listen_port: u16) -> RunningCli {
    let maildir = env.root().join("Maildir").display().to_string();
    let listen = format!("127.0.0.1:{listen_port}");
    RunningCli::daemon(env, cli, &["--listen", &listen, "--maildir", &maildir])
}

/// The smarthost's connections once its readiness probe is logged (it is a connection too).
fn settled_connections(smarthost: &PostfixLan) -> usize {
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        smarthost.log().contains("disconnect from").then_some(())
    })
    .expect("the smarthost logs the readiness probe");
    connections(smarthost)
}

#[test]
fn send_goes_through_the_running_daemon_which_sends_each_message_once() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], lp));
    let smarthost = PostfixLan::smarthost("example.org", &["alice", "bob"], LOGIN);
    let before = settled_connections(&smarthost);
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    let daemon = daemon(&env, &cli, lp);

    // Queued while the daemon holds the spool's lock; it is told, and (no link) sends nothing.
    let out = sendmail(&cli, &outgoing_text(1, "alice@example.org"));
    assert_eq!(out.code(), Some(0), "{out}\n{}", daemon.output());
    assert_eq!(
        connections(&smarthost),
        before,
        "no link: nothing goes before it is asked\n{}",
        daemon.output()
    );

    // `send` asks the daemon (it holds the queue), which sends it and says how it went.
    let out = cli.run(&["send"]);
    let context = format!(
        "{out}\n{}\nsmarthost log:\n{}",
        daemon.output(),
        smarthost.log()
    );
    assert_eq!(out.code(), Some(0), "everything was sent\n{context}");
    out.assert_mentions("asked the running Mailcall")
        .assert_mentions("sent to alice@example.org: 250")
        .assert_mentions("sent: 1 recipient(s), refused: 0, deferred: 0");
    let stored = arrived(&smarthost, "alice", 1);
    assert_eq!(stored.len(), 1, "alice gets it once\n{context}");
    assert_eq!(
        stored[0].message_id.as_deref(),
        Some("<out-1@office.test>"),
        "{context}"
    );
    assert!(
        smarthost.log().contains("sasl_username=office"),
        "{context}"
    );
    // Nothing is left: a second `send` sends nothing, and says so with success.
    let again = cli.run(&["send"]);
    assert_eq!(again.code(), Some(0), "{again}");
    again.assert_mentions("sent: 0 recipient(s), refused: 0, deferred: 0");
    assert_eq!(smarthost.maildir("alice").new_messages().len(), 1);
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("smarthost:isp"), "{queue}");
}

#[test]
fn fetch_via_running_sends_first_and_no_send_only_receives() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], lp));
    isp.queue_all(&[Message::numbered("office.test", 0)]);
    isp.wait_deferred(1, Duration::from_secs(30));
    let smarthost = PostfixLan::smarthost("example.org", &["alice", "bob"], LOGIN);
    let before = settled_connections(&smarthost);
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    let daemon = daemon(&env, &cli, lp);
    let maildir = Maildir::new(env.root().join("Maildir"));

    sendmail(&cli, &outgoing_text(1, "alice@example.org")).assert_success();
    let out = cli.run(&["fetch", "--via-running"]);
    let context = format!(
        "{out}\n{}\nsmarthost log:\n{}\nISP log:\n{}",
        daemon.output(),
        smarthost.log(),
        isp.log()
    );
    assert_eq!(out.code(), Some(0), "{context}");
    out.assert_mentions("asked the running Mailcall")
        .assert_mentions("summary: 1 message(s)");
    // Sent first, then asked: in the fetch's output and in the daemon's own log.
    let sent_at = out.stdout.find("sent: ").unwrap_or(usize::MAX);
    let asked_at = out.stdout.find("office.test (isp): 250").unwrap_or(0);
    assert!(sent_at < asked_at, "sent before the ETRN\n{context}");
    let log = daemon.output();
    let sent_at = log.find("sent: ").unwrap_or(usize::MAX);
    let etrn_at = log.find("ETRN office.test").unwrap_or(0);
    assert!(sent_at < etrn_at, "sent before the ETRN\n{context}");
    assert_eq!(arrived(&smarthost, "alice", 1).len(), 1, "{context}");
    let stored = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (maildir.new_messages().len() == 1).then_some(())
    });
    assert!(stored.is_some(), "the incoming message arrived\n{context}");
    let after_first = connections(&smarthost);
    assert!(after_first > before, "{context}");

    // --no-send only receives (the ISP is asked): the next message stays queued, and the
    // smarthost sees nobody.
    sendmail(&cli, &outgoing_text(2, "bob@example.org")).assert_success();
    let out = cli.run(&["fetch", "--via-running", "--no-send"]);
    let context = format!(
        "{out}\n{}\nsmarthost log:\n{}",
        daemon.output(),
        smarthost.log()
    );
    assert_eq!(out.code(), Some(0), "{context}");
    out.assert_mentions("summary: 0 message(s)")
        .assert_mentions("office.test (isp): 250");
    assert!(!out.stdout.contains("sent: "), "{context}");
    assert_eq!(connections(&smarthost), after_first, "{context}");
    assert!(
        smarthost.maildir("bob").new_messages().is_empty(),
        "{context}"
    );
    let queue = cli.run(&["queue"]);
    assert!(
        queue.stdout.contains("bob@example.org -> smarthost:isp"),
        "still queued\n{queue}"
    );
}

/// The smarthost's connections once every session so far has ended and been logged.
fn quiet_connections(smarthost: &PostfixLan) -> usize {
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let log = smarthost.log();
        let opened = log.matches(": connect from").count();
        (opened > 0 && opened == log.matches(": disconnect from").count()).then_some(opened)
    })
    .unwrap_or_else(|| panic!("the smarthost's sessions end\n{}", smarthost.log()))
}

/// How long an absence is watched for: a message that would leave goes within milliseconds of
/// the nudge, so this is a wide margin, not a synchronisation.
const ABSENCE: Duration = Duration::from_secs(3);

#[test]
fn while_a_watched_link_is_up_a_queued_message_leaves_by_itself_and_waits_while_none_is() {
    use crate::linkworld::{LinkWorld, WorldOptions};

    let world = LinkWorld::new(WorldOptions::new(&[]));
    let cli = world.cli();
    let smarthost = PostfixLan::smarthost("example.org", &["alice", "bob", "carol"], LOGIN);
    smarthost.move_into(&world.ns);
    set_account_with_smarthost(&cli, world.isp.port(), &smarthost);
    // Paused: no automatic fetch at link-up, so whatever leaves, leaves by link-up sending.
    cli.run(&["pause"]).assert_success();
    let daemon = world.start_daemon();
    let context = |what: &str| {
        format!(
            "{what}\n{}\nsmarthost log:\n{}",
            world.context(),
            smarthost.log()
        )
    };
    let before = quiet_connections(&smarthost);

    // No link: queued, and the smarthost sees nobody.
    sendmail(&cli, &outgoing_text(1, "alice@example.org")).assert_success();
    std::thread::sleep(ABSENCE);
    assert_eq!(
        connections(&smarthost),
        before,
        "{}",
        context("no link: nothing may be sent")
    );
    let queue = cli.run(&["queue"]);
    assert!(queue.stdout.contains("smarthost:isp"), "{queue}");

    // The link comes up: what waited leaves without any fetch.
    world.dial_in();
    let arrived = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (smarthost.maildir("alice").new_messages().len() == 1).then_some(())
    });
    assert!(arrived.is_some(), "{}", context("sent at link-up"));

    // While it is up, a new message leaves within seconds of being queued.
    sendmail(&cli, &outgoing_text(2, "bob@example.org")).assert_success();
    let arrived = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (smarthost.maildir("bob").new_messages().len() == 1).then_some(())
    });
    assert!(arrived.is_some(), "{}", context("sent while up"));
    assert!(
        world.records().iter().all(|r| r["kind"] != "fetch"),
        "{}",
        context("no fetch ran: paused")
    );
    assert_eq!(world.etrn_sessions(), 0, "{}", context("no ETRN"));

    // The link goes: the next message waits again.
    world.hang_up();
    let down = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let log = mailcall_e2e::read_for_diagnostics(&world.log);
        (log.matches("no watched link is up").count() >= 2).then_some(())
    });
    assert!(down.is_some(), "{}", context("the daemon sees the link go"));
    let after = quiet_connections(&smarthost);
    sendmail(&cli, &outgoing_text(3, "carol@example.org")).assert_success();
    std::thread::sleep(ABSENCE);
    assert_eq!(
        connections(&smarthost),
        after,
        "{}",
        context("link down: nothing may be sent")
    );
    assert!(smarthost.maildir("carol").new_messages().is_empty());
    world.stop_daemon(daemon);
}

#[test]
fn a_smarthost_that_is_down_keeps_the_mail_and_it_arrives_once_when_it_is_back() {
    let env = KeyringEnv::new();
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    // No ISP is asked here: the account's incoming side points at a port nobody serves.
    set_account_with_smarthost(&cli, mailcall_e2e::free_port(), &smarthost);
    let out = sendmail(&cli, &outgoing_text(1, "alice@example.org"));
    assert_eq!(out.code(), Some(0), "{out}");

    smarthost.stop();
    let down = cli.run(&["send"]);
    assert_ne!(down.code(), Some(0), "nothing could be sent\n{down}");
    down.assert_mentions("cannot connect to the outgoing server");
    let queue = cli.run(&["queue"]);
    assert_eq!(
        queue.stdout.matches("smarthost:isp").count(),
        1,
        "the message waits\n{queue}"
    );

    smarthost.start_again();
    let back = cli.run(&["send"]);
    let context = format!("{back}\nsmarthost log:\n{}", smarthost.log());
    assert_eq!(back.code(), Some(0), "{context}");
    let got = arrived(&smarthost, "alice", 1);
    assert_eq!(got.len(), 1, "{context}");
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("smarthost:isp"), "{queue}");
}

/// An RFC 3339 UTC time (`2026-12-07T05:01:02.123Z`, any number of fractional digits) as a
/// string that sorts in time order: the fraction padded to nine digits.
fn instant(rfc3339: &str) -> String {
    let body = rfc3339.trim_end_matches('Z');
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{whole}.{fraction:0<9}")
}
