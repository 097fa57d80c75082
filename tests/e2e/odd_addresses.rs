//! Addresses that are legal but odd reach the LAN server intact (issue 21 item 3): a sender with
//! a quoted local part keeps its quotes through the spool into the real Dovecot over LMTP
//! (Dovecot refuses the unquoted form, and an unquoted `"x> SIZE=1"@…` would put text into
//! MAIL FROM's parameters); a recipient with trailing dots is handed on in the form the policy
//! checked, without them.

use std::time::Duration;

use mailcall_e2e::{
    free_port, poll_until, Cli, Dovecot, DovecotOptions, FakeIsp, KeyringEnv, Maildir, RawSmtp,
    RunningCli, Script,
};

use crate::{set_plain_account, write_base_config};

/// The Return-Path lines of every message in `maildir` (new/ and cur/), sorted.
fn return_paths(maildir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            found.extend(
                text.lines()
                    .take_while(|l| !l.is_empty())
                    .filter(|l| l.to_ascii_lowercase().starts_with("return-path:"))
                    .map(str::to_string),
            );
        }
    }
    found.sort();
    found
}

#[test]
fn a_quoted_sender_and_a_recipient_with_trailing_dots_reach_dovecot_intact() {
    let env = KeyringEnv::new();
    let isp = FakeIsp::start(Script::EtrnOk);
    let dovecot = Dovecot::start(DovecotOptions::new());
    let port = free_port();
    let maildir = Maildir::new(env.root().join("Maildir"));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["example.org"]);
    let lmtp = format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port());
    cli.run(&["route", "add", "alice@example.org", &lmtp])
        .assert_success();
    let mut run = RunningCli::fetch(&env, &cli, port, maildir.path(), 600);
    run.wait_for_line("ETRN example.org (isp): 250", Duration::from_secs(30));

    // The ISP delivers as an MTA would: two senders with quoted local parts, one recipient
    // fully qualified with a trailing dot.
    let mut c = RawSmtp::greeted(port);
    c.expect("EHLO isp.outside.test", 250);
    let cases = [
        ("\"john smith\"@outside.test", "alice@example.org.", "odd-1"),
        ("\"x> SIZE=1\"@outside.test", "alice@example.org", "odd-2"),
    ];
    for (sender, recipient, id) in cases {
        c.expect(&format!("MAIL FROM:<{sender}>"), 250);
        c.expect(&format!("RCPT TO:<{recipient}>"), 250);
        c.expect("DATA", 354);
        c.send(
            format!(
                "From: {sender}\r\nTo: {recipient}\r\nSubject: {id}\r\nMessage-ID: <{id}@outside.test>\r\n\r\nodd addresses\r\n.\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let stored = c.reply();
        assert_eq!(stored.code, 250, "{stored}");
    }
    c.expect("QUIT", 221);

    let want = ["<odd-1@outside.test>", "<odd-2@outside.test>"];
    let got = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let ids = dovecot.message_ids("alice", "INBOX");
        (ids.len() >= want.len()).then_some(ids)
    });
    let context = || {
        format!(
            "{}\nDovecot:\n{}\nqueue:\n{}",
            run.output(),
            dovecot.log(),
            cli.run(&["queue", "list"]).stdout
        )
    };
    let Some(ids) = got else {
        panic!("Dovecot did not get both messages\n{}", context());
    };
    let want_ids: Vec<String> = want
        .iter()
        .map(|s| s.trim_matches(['<', '>']).to_string())
        .collect();
    let ids: Vec<String> = ids
        .iter()
        .map(|s| s.trim_matches(['<', '>']).to_string())
        .collect();
    assert_eq!(ids, want_ids, "{}", context());
    let messages = dovecot.messages("alice", "INBOX");
    assert!(
        messages
            .iter()
            .all(|m| m.delivered_to == "alice@example.org"),
        "handed on as checked, without the trailing dot: {messages:#?}\n{}",
        context()
    );
    // Dovecot writes the MAIL FROM it was given as Return-Path: quoted, as the ISP sent it.
    assert_eq!(
        return_paths(&dovecot.maildir("alice")),
        [
            "Return-Path: <\"john smith\"@outside.test>",
            "Return-Path: <\"x> SIZE=1\"@outside.test>",
        ],
        "{}",
        context()
    );
    assert!(
        maildir.new_messages().is_empty(),
        "nothing for the catch-all"
    );
}
