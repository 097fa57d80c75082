//! `fetch` against a plain (no TLS, no AUTH) Postfix ISP: many messages across domains, only the
//! account's domains released, an unknown domain among good ones, and an ISP that is down.

use std::time::Duration;

use mailcall_e2e::{free_port, Cli, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{fetch, listener_port, set_plain_account, write_base_config};

fn numbered(domain: &str, count: usize) -> Vec<Message> {
    (0..count).map(|n| Message::numbered(domain, n)).collect()
}

fn sorted_ids(messages: &[&Message]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids
}

/// Every file in new/ is complete, tmp/ is empty, and the Message-IDs are exactly `want`.
fn assert_maildir_holds(maildir: &Maildir, want: &[&Message], context: &dyn std::fmt::Display) {
    let stored = maildir.new_messages();
    let incomplete: Vec<_> = stored.iter().filter(|m| !m.complete).collect();
    assert!(
        incomplete.is_empty(),
        "incomplete files in new/: {incomplete:#?}\n{context}"
    );
    assert_eq!(
        maildir.message_ids(),
        sorted_ids(want),
        "Message-IDs in new/ differ from those sent (each must arrive exactly once)\n{context}"
    );
    assert_eq!(
        stored.len(),
        want.len(),
        "files without a Message-ID in new/?\n{context}"
    );
    assert!(
        maildir.files("tmp").is_empty(),
        "files left in tmp/: {:?}\n{context}",
        maildir.files("tmp")
    );
}

/// The stdout line for `ETRN <domain>` must exist and carry `code`.
fn assert_etrn_line(out: &mailcall_e2e::CliOutput, domain: &str, code: &str) {
    let lines = out.lines_starting_with(&format!("ETRN {domain} "));
    assert!(
        lines.iter().any(|l| l.contains(&format!(": {code} "))),
        "expected an `ETRN {domain} (...): {code} ...` line\n{out}"
    );
}

#[test]
fn fifty_messages_across_two_domains_arrive_exactly_once() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test", "beta.test"], lp));
    let alpha = numbered("alpha.test", 30);
    let beta = numbered("beta.test", 20);
    isp.queue_all(&alpha);
    isp.queue_all(&beta);
    isp.wait_deferred(50, Duration::from_secs(30));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["alpha.test", "beta.test"]);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");

    let all: Vec<&Message> = alpha.iter().chain(&beta).collect();
    assert_maildir_holds(&maildir, &all, &context);
    isp.wait_queue_empty(Duration::from_secs(10));
    assert_etrn_line(&out, "alpha.test", "250");
    assert_etrn_line(&out, "beta.test", "250");
    assert!(
        out.stdout.contains("summary: 50 message(s)"),
        "expected `summary: 50 message(s)`\n{out}"
    );
    // Shown with --nocapture: what a good run looks like.
    eprintln!("{out}");
}

#[test]
fn only_the_accounts_domains_are_released() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test", "beta.test"], lp));
    let alpha = numbered("alpha.test", 3);
    let beta = numbered("beta.test", 2);
    isp.queue_all(&alpha);
    isp.queue_all(&beta);
    isp.wait_deferred(5, Duration::from_secs(20));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(&cli, "isp", isp.port(), &["alpha.test"]);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");

    let want: Vec<&Message> = alpha.iter().collect();
    assert_maildir_holds(&maildir, &want, &context);
    assert!(
        out.lines_starting_with("ETRN beta.test").is_empty(),
        "beta.test is not the account's domain: no ETRN for it\n{out}"
    );
    // Delivered entries leave the active queue a moment after their 250: wait for that.
    let left = mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let entries = isp.queue_entries();
        (entries.len() == 2).then_some(entries)
    })
    .unwrap_or_else(|| isp.queue_entries());
    assert_eq!(
        left.len(),
        2,
        "beta.test's mail must stay at the ISP: {left:#?}\n{context}"
    );
    assert!(
        left.iter()
            .all(|e| e.queue_name == "deferred" && e.recipients == ["user@beta.test"]),
        "{left:#?}"
    );
}

#[test]
fn unknown_domain_between_two_good_ones_is_reported_and_the_others_fetched() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test", "beta.test"], lp));
    let alpha = numbered("alpha.test", 2);
    let beta = numbered("beta.test", 2);
    isp.queue_all(&alpha);
    isp.queue_all(&beta);
    isp.wait_deferred(4, Duration::from_secs(20));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_plain_account(
        &cli,
        "isp",
        isp.port(),
        &["alpha.test", "unknown.test", "beta.test"],
    );
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    out.assert_failure();

    assert_etrn_line(&out, "unknown.test", "459");
    assert_etrn_line(&out, "alpha.test", "250");
    assert_etrn_line(&out, "beta.test", "250");
    let all: Vec<&Message> = alpha.iter().chain(&beta).collect();
    assert_maildir_holds(&maildir, &all, &context);
    isp.wait_queue_empty(Duration::from_secs(10));
}

#[test]
fn isp_not_running_fails_fast_with_cannot_connect() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    write_base_config(&cli);
    // A port that was free a moment ago: nobody listens, so the connect is refused at once.
    set_plain_account(&cli, "isp", free_port(), &["alpha.test"]);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, listener_port(), maildir.path(), &[]);
    out.assert_failure().assert_mentions("cannot connect");
    assert!(
        out.elapsed < Duration::from_secs(30),
        "a refused connection must not wait for the connect timeout\n{out}"
    );
    assert!(maildir.new_messages().is_empty(), "{out}");
}
