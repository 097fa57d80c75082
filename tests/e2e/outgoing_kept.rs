//! The smarthost leg's kept connection and its transcript, against real servers (issue 19).
//!
//! - A provider that ends a connection's use after some messages (Exim's
//!   `smtp_accept_max_per_connection`, `421` at the next `MAIL`) gets every message of a flush
//!   exactly once: the message refused that way is sent again at once on a new connection, and
//!   never counts as one that may have gone out twice.
//! - The history shows the flush's transcript (`history --transcript`, `--json`): EHLO,
//!   STARTTLS, `AUTH PLAIN <redacted>` and its reply, MAIL/RCPT/DATA and the replies. The
//!   password is in neither the history file nor anything the CLI prints.

use std::time::Duration;

use mailcall_e2e::exim::{base64_encode, EximIsp, EximOptions};
use mailcall_e2e::{poll_until, AccountArgs, Cli, KeyringEnv, PostfixLan};

use crate::outgoing::{set_account_with_smarthost, LOGIN};

/// A message from me@office.test to `to`, as a local program writes it.
fn text(n: usize, to: &str) -> String {
    format!(
        "From: me@office.test\nTo: {to}\nSubject: kept {n}\nMessage-ID: <kept-{n}@office.test>\n\nbody {n}\n"
    )
}

/// A config whose link is never up: mail leaves only when `send` asks.
fn write_offline_config(cli: &Cli) {
    cli.write_config(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"nolink*\"]\nsubmit-listen = \"off\"\n",
    );
}

fn queue_text(cli: &Cli, n: usize, to: &str) {
    let out = cli.run_with_stdin(&["sendmail", "-t", "-i"], Some(&text(n, to)));
    assert_eq!(out.code(), Some(0), "sendmail must queue it\n{out}");
}

#[test]
fn a_provider_that_limits_messages_per_connection_gets_each_message_once() {
    let env = KeyringEnv::new();
    let exim =
        EximIsp::start(EximOptions::new(&["example.org"]).with_max_messages_per_connection(1));
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    // Plain SMTP without a login to Exim's injection port (no AUTH, no TLS there); the
    // account's incoming side points at a port nobody serves: only `send` runs.
    let exim_port = exim.inject_port().to_string();
    cli.set_account(
        &AccountArgs::new("isp", mailcall_e2e::free_port())
            .domains(&["office.test"])
            .args(&[
                "--smarthost",
                "127.0.0.1",
                "--smarthost-port",
                &exim_port,
                "--smarthost-security",
                "none",
            ]),
    );
    // The runner sends through at most four connections per server: with twelve messages,
    // at least eight go on a connection that already carried one.
    const N: usize = 12;
    for n in 0..N {
        queue_text(&cli, n, "alice@example.org");
    }

    let out = cli.run(&["send"]);
    let context = format!("{out}\n{}", exim.log());
    assert_eq!(out.code(), Some(0), "every message is sent\n{context}");
    let ids = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let ids = exim.queued_message_ids("example.org");
        (ids.len() >= N).then_some(ids)
    })
    .unwrap_or_else(|| panic!("{N} messages must reach Exim\n{context}"));
    let want: std::collections::BTreeSet<String> =
        (0..N).map(|n| format!("<kept-{n}@office.test>")).collect();
    assert_eq!(ids, want, "each once\n{context}");
    assert_eq!(exim.queue_len(), N, "no second copy\n{context}");
    // Exim turned a kept connection away (421) at least eight times; each time Mailcall sent
    // the message again on a new connection, and its history says so as often.
    let turned_away = exim
        .main_log()
        .matches("too many messages in one connection")
        .count();
    assert!(turned_away >= N - 4, "{turned_away}\n{context}");
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("smarthost:isp"), "{queue}");
    let history = cli.run(&["history", "--transcript"]);
    history.assert_success();
    assert_eq!(
        history
            .stdout
            .matches("kept connection was closed before the message went out")
            .count(),
        turned_away,
        "{history}"
    );
    assert!(!history.stdout.contains("may have"), "{history}");
}

#[test]
fn the_history_shows_the_smarthost_transcript_with_the_login_redacted() {
    let env = KeyringEnv::new();
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    set_account_with_smarthost(&cli, mailcall_e2e::free_port(), &smarthost);
    queue_text(&cli, 1, "alice@example.org");
    let out = cli.run(&["send"]);
    let context = format!("{out}\nsmarthost log:\n{}", smarthost.log());
    assert_eq!(out.code(), Some(0), "{context}");

    let shown = cli.run(&["history", "--transcript"]);
    shown.assert_success();
    let text = &shown.stdout;
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from the history\n{shown}"))
    };
    // In order: the greeting's EHLO, STARTTLS, the login, then the transaction.
    let order = [
        at("C: EHLO "),
        at("C: STARTTLS"),
        at("AUTH PLAIN <redacted>"),
        at("S: 235"),
        at("C: MAIL FROM:<me@office.test>"),
        at("C: RCPT TO:<alice@example.org>"),
        at("C: DATA"),
        at("S: 250 2.0.0 Ok: queued as"),
        at("C: QUIT"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{shown}");

    // The password, as typed and as AUTH PLAIN sends it, is nowhere.
    let password = LOGIN.1;
    let plain = base64_encode(format!("\0{}\0{password}", LOGIN.0).as_bytes());
    let json = cli.run(&["history", "--json"]);
    json.assert_success();
    assert!(json.stdout.contains("AUTH PLAIN <redacted>"), "{json}");
    let file = env.data_home().join("mailcall/history.jsonl");
    let stored = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    for (what, body) in [
        ("history --transcript", text.as_str()),
        ("history --json", json.stdout.as_str()),
        ("the history file", stored.as_str()),
        ("send's output", &format!("{}{}", out.stdout, out.stderr)),
    ] {
        assert!(
            !body.contains(password) && !body.contains(&plain),
            "the password leaked into {what}:\n{body}"
        );
    }
}

/// Port 465's way, TLS from the first byte: the mail reaches a real Postfix in wrappermode
/// (`smtpd_tls_wrappermode`), the transcript says the certificate was verified and no STARTTLS
/// was needed; a server whose certificate the account's CAs do not vouch for gets nothing, and
/// the mail waits with the fix named.
#[test]
fn a_smarthost_with_tls_from_the_first_byte_gets_the_mail_and_its_certificate_is_checked() {
    let env = KeyringEnv::new();
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    write_offline_config(&cli);
    set_account_with_smarthost(&cli, mailcall_e2e::free_port(), &smarthost);
    let tls_port = smarthost.tls_port().to_string();
    cli.run(&[
        "account",
        "edit",
        "isp",
        "--smarthost-security",
        "tls",
        "--smarthost-port",
        &tls_port,
    ])
    .assert_success();
    for n in 1..=3 {
        queue_text(&cli, n, "alice@example.org");
    }
    let out = cli.run(&["send"]);
    let context = format!("{out}\nsmarthost log:\n{}", smarthost.log());
    assert_eq!(out.code(), Some(0), "{context}");
    let inbox = smarthost.maildir("alice");
    let arrived = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let ids = inbox.message_ids();
        (ids.len() == 3).then_some(ids)
    });
    assert_eq!(
        arrived,
        Some(vec![
            "<kept-1@office.test>".to_string(),
            "<kept-2@office.test>".to_string(),
            "<kept-3@office.test>".to_string()
        ]),
        "{context}"
    );
    let shown = cli.run(&["history", "--transcript"]);
    shown.assert_success();
    assert!(
        shown.stdout.contains("TLS, the certificate verified")
            && shown.stdout.contains("AUTH PLAIN <redacted>")
            && !shown.stdout.contains("C: STARTTLS"),
        "{shown}"
    );

    // The system's CAs alone do not vouch for the test CA: nothing is sent, the mail waits.
    cli.run_with_stdin(
        &[
            "account",
            "edit",
            "isp",
            "--no-smarthost-ca-file",
            "--smarthost-password-stdin",
        ],
        Some(&format!("{}\n", LOGIN.1)),
    )
    .assert_success();
    queue_text(&cli, 4, "alice@example.org");
    let out = cli.run(&["send"]);
    assert_ne!(out.code(), Some(0), "{out}");
    out.assert_mentions(&format!(
        "TLS with the outgoing server 127.0.0.1:{tls_port} failed"
    ))
    .assert_mentions("CA file");
    let queue = cli.run(&["queue", "list"]);
    assert!(
        queue.stdout.contains("kept-4") || queue.stdout.contains("kept 4"),
        "{queue}"
    );
    assert_eq!(inbox.message_ids().len(), 3, "{out}");
}
