//! Delivery per recipient against real peers (issue 10): a Postfix ISP releases mail with ETRN,
//! Mailcall routes each recipient — alice to Dovecot over LMTP/TCP, bob over the LMTP unix
//! socket, a whole other domain into a Maildir++ folder Dovecot reads — and each user's mailbox
//! holds exactly theirs with the right Delivered-To; Dovecot stopped in the middle of a drain
//! loses nothing (the ISP got 250 only for what was spooled; the daemon is killed with SIGKILL
//! and started again; the queue drains by itself once Dovecot is back, each Message-ID exactly
//! once); a real Postfix behind an `smtp:` route with STARTTLS and its own CA, a recipient it
//! refuses held in the queue and bounced into the postmaster's Maildir.

use std::time::Duration;

use mailcall_e2e::dovecot::MailboxStatus;
use mailcall_e2e::{
    poll_until, Cli, Dovecot, DovecotOptions, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp,
    PostfixLan, RunningCli,
};

use crate::{fetch, listener_port, set_plain_account};

fn message(n: usize, to: &str) -> Message {
    Message {
        from: "sender@outside.test".into(),
        to: to.into(),
        subject: format!("routed {n}"),
        message_id: format!("<route-{n}@outside.test>"),
        body: format!("Routed message {n}.\n.dot line\n{}", "y".repeat(100)),
    }
}

fn ids<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<String> {
    let mut v: Vec<String> = messages.into_iter().map(|m| m.message_id.clone()).collect();
    v.sort();
    v
}

fn route(cli: &Cli, args: &[&str]) {
    let mut all = vec!["route", "add"];
    all.extend_from_slice(args);
    cli.run(&all).assert_success();
}

#[test]
fn thirty_messages_for_alice_bob_and_another_domain_each_land_in_their_own_mailbox() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.org", "other.test"], lp));
    let carol_root = env.root().join("carol-Maildir");
    let dovecot = Dovecot::start(DovecotOptions::new().with_user_maildir("carol", &carol_root));
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\n");
    set_plain_account(&cli, "isp", isp.port(), &["example.org", "other.test"]);
    let lmtp_tcp = format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port());
    let lmtp_unix = format!("lmtp:unix:{}", dovecot.lmtp_socket().display());
    let folder = carol_root.join(".Other");
    let folder_route = format!("maildir:{}", folder.display());
    route(&cli, &["alice@example.org", &lmtp_tcp]);
    route(&cli, &["bob@example.org", &lmtp_unix]);
    route(&cli, &["@other.test", &folder_route]);
    // A route that cannot be is a setup problem: exit 2, the fix named, nothing saved.
    let bad = cli.run(&["route", "add", "alice@example.org", "pop3:mail.lan"]);
    bad.assert_code(2)
        .assert_mentions("maildir:")
        // The fix names this run's config file, as every hint does.
        .assert_mentions(&format!(
            "to fix: mailcall-cli --config {} route add PATTERN maildir:",
            cli.config_path().display()
        ));
    let listed = cli.run(&["route", "list"]);
    listed
        .assert_success()
        .assert_mentions("alice@example.org")
        .assert_mentions("@other.test");

    // 12 for alice, 10 for bob, 5 for the other domain, 3 for alice and bob at once.
    let alice: Vec<Message> = (0..12).map(|n| message(n, "alice@example.org")).collect();
    let bob: Vec<Message> = (12..22).map(|n| message(n, "bob@example.org")).collect();
    let other: Vec<Message> = (22..27).map(|n| message(n, "user@other.test")).collect();
    let both: Vec<Message> = (27..30).map(|n| message(n, "alice@example.org")).collect();
    isp.queue_all(&alice);
    isp.queue_all(&bob);
    isp.queue_all(&other);
    for m in &both {
        isp.queue_to(m, &["alice@example.org", "bob@example.org"]);
    }
    isp.wait_deferred(30, Duration::from_secs(30));

    let default = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, default.path(), &[]);
    let context = format!("{out}\nISP:\n{}\nDovecot:\n{}", isp.log(), dovecot.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    assert!(out.stdout.contains("summary: 30 message(s)"), "{context}");
    isp.wait_queue_empty(Duration::from_secs(10));
    assert!(
        default.new_messages().is_empty(),
        "nothing for the catch-all\n{context}"
    );

    let alice_got = dovecot.messages("alice", "INBOX");
    let bob_got = dovecot.messages("bob", "INBOX");
    let context = format!("{context}\nalice: {alice_got:#?}\nbob: {bob_got:#?}");
    assert_eq!(
        dovecot.message_ids("alice", "INBOX"),
        ids(alice.iter().chain(&both)),
        "{context}"
    );
    assert_eq!(
        dovecot.message_ids("bob", "INBOX"),
        ids(bob.iter().chain(&both)),
        "{context}"
    );
    assert!(
        alice_got
            .iter()
            .all(|m| m.delivered_to == "alice@example.org" && m.flags == ["\\Recent"]),
        "{context}"
    );
    assert!(
        bob_got.iter().all(|m| m.delivered_to == "bob@example.org"),
        "{context}"
    );

    // The other domain's mail is in carol's Maildir++ folder: doveadm and IMAP read it.
    assert!(
        folder.join("maildirfolder").is_file(),
        "the folder Mailcall made has its marker"
    );
    dovecot.hand_over("carol");
    let carol = dovecot.messages("carol", "Other");
    assert_eq!(
        dovecot.message_ids("carol", "Other"),
        ids(&other),
        "{carol:#?}\n{}",
        dovecot.log()
    );
    assert!(
        carol
            .iter()
            .all(|m| m.delivered_to == "user@other.test" && m.flags == ["\\Recent"]),
        "{carol:#?}"
    );
    assert_eq!(dovecot.mailboxes("carol"), ["INBOX", "Other"]);
    let mut imap = dovecot.imap("carol");
    assert_eq!(
        imap.status("Other").unwrap(),
        MailboxStatus {
            messages: 5,
            recent: 5,
            unseen: 5
        }
    );
    let selected = imap.select("Other").unwrap();
    assert_eq!((selected.exists, selected.recent), (5, 5), "{selected:?}");
    imap.logout().unwrap();

    // Nothing waits, and the history says what was handed on.
    cli.run(&["queue"])
        .assert_success()
        .assert_mentions("the queue is empty");
    let history = cli.run(&["history", "--limit", "50"]);
    history
        .assert_success()
        .assert_mentions("hand-over")
        .assert_mentions("lmtp:unix:");
    eprintln!("{out}");
}

/// Dovecot's count for `user`, or `None` while doveadm cannot tell (instance stopped).
fn count(dovecot: &Dovecot, user: &str) -> Option<usize> {
    dovecot
        .doveadm_json(&["search", "-u", user, "mailbox", "INBOX", "ALL"])
        .ok()
        .map(|r| r.len())
}

/// The messages in `user`'s Maildir, counted on disk (doveadm needs the instance running).
fn on_disk(dovecot: &Dovecot, user: &str) -> usize {
    let md = Maildir::new(dovecot.maildir(user));
    md.files("new").len() + md.files("cur").len()
}

/// The Message-IDs of hand-overs that ended unsure (the whole message sent, then a 421 or
/// silence), from the daemon's log lines `handed on: <id> -> ...: ... may have stored it)`.
fn unsure_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("handed on: <") && l.contains("the server may have stored it"))
        .filter_map(|l| {
            let start = l.find("handed on: <")? + "handed on: ".len();
            let end = start + l[start..].find('>')? + 1;
            Some(l[start..end].to_string())
        })
        .collect()
}

fn daemon(env: &KeyringEnv, cli: &Cli, lp: u16, maildir: &std::path::Path) -> RunningCli {
    let listen = format!("127.0.0.1:{lp}");
    let md = maildir.display().to_string();
    RunningCli::daemon(env, cli, &["--listen", &listen, "--maildir", &md])
}

#[test]
fn dovecot_stopped_during_a_drain_loses_nothing_and_the_queue_drains_by_itself() {
    const COUNT: usize = 300;
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.org"], lp));
    let mut dovecot = Dovecot::start(DovecotOptions::new());
    let cli = Cli::new(&env);
    cli.write_config(
        "hostname = \"client.test\"\nfetch-at-start = false\nidle-timeout = 3\nretry-delay = 1\nmax-retry-delay = 2\n",
    );
    set_plain_account(&cli, "isp", isp.port(), &["example.org"]);
    route(
        &cli,
        &[
            "@example.org",
            &format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port()),
        ],
    );
    let mail: Vec<Message> = (0..COUNT)
        .map(|n| message(n, "alice@example.org"))
        .collect();
    isp.queue_all(&mail);
    isp.wait_deferred(COUNT, Duration::from_secs(60));
    let maildir = env.root().join("Maildir");
    let d = daemon(&env, &cli, lp, &maildir);

    // The fetch runs; Dovecot is stopped once the first messages reached it.
    let fetching = {
        let cli_binary = cli.binary().to_path_buf();
        let mut cmd = env.command(&cli_binary);
        cmd.arg("--config")
            .arg(cli.config_path())
            .args(["fetch", "--via-running"]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        mailcall_e2e::process::ChildGuard::new("fetch --via-running", cmd.spawn().unwrap())
    };
    let started = poll_until(Duration::from_secs(60), Duration::from_millis(5), || {
        count(&dovecot, "alice").filter(|n| *n >= 10)
    });
    assert!(started.is_some(), "no mail reached Dovecot\n{}", d.output());
    dovecot.stop();
    let at_stop = on_disk(&dovecot, "alice");
    assert!(
        at_stop < COUNT,
        "Dovecot had everything before it stopped ({at_stop}): nothing was tested"
    );

    // The ISP gets its 250 for everything: what Dovecot did not take is in Mailcall's spool.
    isp.wait_queue_empty(Duration::from_secs(120));
    let mut fetching = fetching;
    let done = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        fetching.exited()
    });
    assert!(
        done.is_some_and(|s| s.success()),
        "the fetch failed\n{}",
        d.output()
    );
    let spool = env.data_home().join("mailcall/spool/new");
    let spooled = mailcall_e2e::files_under(&spool).len();
    let on_disk = on_disk(&dovecot, "alice");
    // Dovecot, stopping, answers `421 4.3.2 Shutting down` after the final dot even to a
    // transaction it has already stored: such a copy may go twice (Mailcall retries: never
    // lost), and it says so. Nothing else may be counted twice, and nothing be missing.
    let unsure_at_stop = unsure_ids(&d.output());
    assert!(
        on_disk + spooled >= COUNT && on_disk + spooled - COUNT <= unsure_at_stop.len(),
        "every message is in Dovecot ({on_disk}) or in the spool ({spooled}), in both only if \
         unsure ({unsure_at_stop:?})\n{}",
        d.output()
    );
    assert!(spooled > 0, "nothing waited in the spool\n{}", d.output());
    let queue = cli.run(&["queue"]);
    queue
        .assert_success()
        .assert_mentions("waiting")
        .assert_mentions("cannot connect");

    // A crash while mail waits, a new start, and Dovecot back: the queue drains by itself.
    let mut d = d;
    d.kill9();
    let d = daemon(&env, &cli, lp, &maildir);
    dovecot.start_again();
    let empty = poll_until(Duration::from_secs(120), Duration::from_millis(100), || {
        mailcall_e2e::files_under(&spool).is_empty().then_some(())
    });
    assert!(
        empty.is_some(),
        "the queue did not drain\n{}\n{}",
        d.output(),
        dovecot.log()
    );
    let got = dovecot.message_ids("alice", "INBOX");
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        ids(&mail),
        "every Message-ID is there: nothing lost"
    );
    let unsure: std::collections::BTreeSet<String> = unsure_ids(&d.output())
        .into_iter()
        .chain(unsure_at_stop)
        .collect();
    let twice: Vec<&String> = got
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(
        twice.iter().all(|id| unsure.contains(*id)),
        "only a copy Dovecot answered 421 for after storing it may be there twice: twice \
         {twice:?}, unsure {unsure:?}"
    );
    assert_eq!(got.len(), COUNT + twice.len());
    eprintln!(
        "Dovecot had {at_stop} at its stop, {spooled} waited in the spool; {} hand-over(s) \
         ended unsure (421 after the data), {} message(s) are there twice",
        unsure.len(),
        twice.len()
    );
}

#[test]
fn a_real_postfix_behind_an_smtp_route_with_starttls_and_a_refused_recipient_bounced() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["lan.example"], lp));
    let lan = PostfixLan::start("lan.example", &["dave"], true);
    let cli = Cli::new(&env);
    // Bounces go into the postmaster's Maildir: the maildir setting.
    let default = Maildir::new(env.root().join("Maildir"));
    cli.write_config(&format!(
        "hostname = \"client.test\"\nmaildir = \"{}\"\n",
        default.path().display()
    ));
    set_plain_account(&cli, "isp", isp.port(), &["lan.example"]);
    let ca = lan.ca_file().unwrap().display().to_string();
    route(
        &cli,
        &[
            "@lan.example",
            &format!("smtp:127.0.0.1:{}", lan.port()),
            "--security",
            "starttls",
            "--ca-file",
            &ca,
        ],
    );
    let good: Vec<Message> = (0..5).map(|n| message(n, "dave@lan.example")).collect();
    let refused = message(5, "nobody@lan.example");
    isp.queue_all(&good);
    isp.queue_all(std::slice::from_ref(&refused));
    isp.wait_deferred(6, Duration::from_secs(30));
    let out = fetch(&cli, lp, default.path(), &[]);
    let context = format!("{out}\nLAN:\n{}", lan.log());
    assert_eq!(out.code(), Some(0), "{context}");
    isp.wait_queue_empty(Duration::from_secs(10));

    let dave = lan.maildir("dave");
    let got = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (dave.new_messages().len() == 5).then_some(())
    });
    assert!(got.is_some(), "{context}");
    assert_eq!(dave.message_ids(), ids(&good), "{context}");
    for m in dave.new_messages() {
        let text = std::fs::read_to_string(&m.path).unwrap();
        assert!(text.contains("Delivered-To: dave@lan.example"), "{text}");
        assert_eq!(
            text.matches("Delivered-To:").count(),
            1,
            "Postfix's own, not ours too: {text}"
        );
    }
    assert!(
        lan.log().contains("starttls=1"),
        "STARTTLS was used\n{}",
        lan.log()
    );
    assert!(
        out.stdout.contains("refused, held in the queue"),
        "{context}"
    );

    // The refused one is held, said so, and bounced by hand into the postmaster's Maildir.
    let queue = cli.run(&["queue"]);
    queue
        .assert_success()
        .assert_mentions("REFUSED")
        .assert_mentions("550 5.1.1");
    let id = queue
        .stdout
        .lines()
        .find(|l| l.contains("from <sender@outside.test>"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no id in\n{queue}"))
        .to_string();
    let no = cli.run_with_stdin(&["queue", "bounce", &id], Some("n\n"));
    assert_eq!(no.code(), Some(1), "{no}");
    no.assert_mentions("not confirmed");
    let yes = cli.run(&["queue", "bounce", &id, "--yes"]);
    yes.assert_success()
        .assert_mentions("bounced 1 message(s), 1 recipient(s)");
    let reports = default.new_messages();
    assert_eq!(reports.len(), 1, "{yes}");
    let report = std::fs::read_to_string(&reports[0].path).unwrap();
    assert!(
        report.contains("Final-Recipient: rfc822; nobody@lan.example")
            && report.contains("Status: 5.1.1"),
        "{report}"
    );
    assert!(
        report.contains(&refused.message_id),
        "the message is attached: {report}"
    );
    cli.run(&["queue"])
        .assert_success()
        .assert_mentions("the queue is empty");
}
