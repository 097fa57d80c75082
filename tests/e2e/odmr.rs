//! `mailcall-cli` in ODMR mode (RFC 2645, ATRN) against the real provider, Exim 4.99.1
//! ([`EximIsp`], facts in tests/exim.rs): mail held across two domains fetched over STARTTLS with
//! AUTH and the ISP's own CA with no listener bound; no mail (453), a wrong password, ATRN not
//! offered; the link cut mid-delivery and `kill -9` mid-drain losing nothing; CRAM-MD5 used
//! when the ISP prefers it.
//!
//! Exim 4.99.1 delivers only the first message of a turn over TLS (tests/exim.rs, pinned in
//! odmr_peer.rs); no provider setting avoids it (the next delivery process reads the socket
//! through the TLS state its queue runner left behind). Mailcall's client asks again on a new
//! connection while a turn brings new mail, so every test here sees all of it arrive — one turn
//! per message. The figures are printed with `--nocapture`.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use mailcall_e2e::exim::{AUTHENTICATOR_CRAM_MD5, AUTHENTICATOR_PLAIN};
use mailcall_e2e::process::run_checked;
use mailcall_e2e::{
    poll_until, AccountArgs, AuthMechanisms, Cli, CliOutput, EximIsp, EximOptions, KeyringEnv,
    Maildir, Message, RunningCli,
};

use crate::{listener_port, write_base_config, IDLE};

const ALPHA: &str = "alpha.test";
const BETA: &str = "beta.test";

/// `account set isp --mode odmr` at the provider's ATRN port: STARTTLS, its user and password,
/// its CA, and `domains`.
fn odmr_account(isp: &EximIsp, domains: &[&str]) -> AccountArgs {
    AccountArgs::new("isp", isp.atrn_port())
        .security("starttls")
        .user(isp.user(), isp.password())
        .ca_file(&isp.ca_file())
        .domains(domains)
        .args(&["--mode", "odmr"])
}

/// The arguments of a fetch delivering into `maildir`, with a listen address that must stay
/// unbound (ODMR needs no listener).
fn fetch_args(listen_port: u16, maildir: &Maildir, max_wait: &str) -> Vec<String> {
    [
        "fetch",
        "--listen",
        &format!("127.0.0.1:{listen_port}"),
        "--maildir",
        &maildir.path().display().to_string(),
        "--idle-timeout",
        IDLE,
        "--max-wait",
        max_wait,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn fetch(cli: &Cli, listen_port: u16, maildir: &Maildir) -> CliOutput {
    let args = fetch_args(listen_port, maildir, "120");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli.run(&args)
}

/// Whether anything listens on 127.0.0.1:`port`: a connect, and `ss` as a second witness.
fn something_listens(port: u16) -> bool {
    let connects = TcpStream::connect(("127.0.0.1", port)).is_ok();
    let ss = run_checked(
        Command::new("ss").args(["-Htln", &format!("sport = :{port}")]),
        None,
    )
    .map(|o| !o.stdout.trim().is_empty())
    .unwrap_or(false);
    connects || ss
}

fn sorted_ids(messages: &[Message]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids
}

/// How many copies of each Message-ID are in new/; every file must be complete.
fn copies(maildir: &Maildir, context: &dyn std::fmt::Display) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    for m in maildir.new_messages() {
        assert!(m.complete, "a truncated file in new/: {m:?}\n{context}");
        let id = m
            .message_id
            .clone()
            .unwrap_or_else(|| panic!("no Message-ID in {}\n{context}", m.path.display()));
        *copies.entry(id).or_insert(0) += 1;
    }
    copies
}

/// The number of `ATRN` lines in the output (one per turn or retry).
fn atrn_lines(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("ATRN ")).count()
}

#[test]
fn fifty_messages_over_starttls_and_auth_with_no_listener_arrive_exactly_once() {
    let env = KeyringEnv::new();
    // AUTH only inside TLS, as a real provider would have it.
    let isp = EximIsp::start(EximOptions::new(&[ALPHA, BETA]).with_tls_before_auth());
    let alpha = isp.queue_numbered(ALPHA, 30);
    let beta = isp.queue_numbered(BETA, 20);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(&odmr_account(&isp, &[ALPHA, BETA]));
    let shown = cli.run(&["account", "show", "isp"]);
    shown.assert_success().assert_mentions("mode: odmr");

    let maildir = Maildir::new(env.root().join("Maildir"));
    let lp = listener_port();
    let args = fetch_args(lp, &maildir, "300");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut run = RunningCli::spawn(&env, &cli, &args, &[]);
    run.wait_for_line("no listener", Duration::from_secs(30));
    // While the fetch runs, nothing listens on the port it was given: ODMR binds none.
    let mut probes = 0;
    let finished = poll_until(Duration::from_secs(300), Duration::from_millis(100), || {
        probes += 1;
        assert!(
            !something_listens(lp),
            "something listens on 127.0.0.1:{lp} during an ODMR fetch\n{}",
            run.output()
        );
        run.exited()
    });
    let took = started.elapsed();
    let status = finished.unwrap_or_else(|| panic!("the fetch did not end\n{}", run.output()));
    let out = run.output();
    let context = format!("{out}\n{}", isp.log());
    assert!(status.success(), "the fetch must succeed\n{context}");

    let all: Vec<Message> = alpha.iter().chain(&beta).cloned().collect();
    let copies = copies(&maildir, &context);
    assert_eq!(
        copies.keys().cloned().collect::<Vec<_>>(),
        sorted_ids(&all),
        "every Message-ID must arrive\n{context}"
    );
    assert!(
        copies.values().all(|&n| n == 1),
        "each Message-ID exactly once: {copies:?}\n{context}"
    );
    assert!(maildir.files("tmp").is_empty(), "{context}");
    isp.wait_queue("alpha and beta delivered", Duration::from_secs(20), |q| {
        q.iter().all(|m| !m.is_for(ALPHA) && !m.is_for(BETA))
    });
    assert!(
        out.contains("summary: 50 message(s)"),
        "expected `summary: 50 message(s)`\n{out}"
    );
    for line in [
        "alpha.test (isp): 250 the ISP turned the line around to deliver, 30 message(s)",
        "beta.test (isp): 250 the ISP turned the line around to deliver, 20 message(s)",
    ] {
        assert!(out.contains(line), "no {line:?}\n{out}");
    }
    // Exim saw one ATRN naming both domains per turn, each after AUTH over TLS.
    let requests = isp.atrn_requests();
    assert!(
        requests
            .iter()
            .all(|r| r.domains == "alpha.test,beta.test" && r.user == isp.user()),
        "{requests:?}"
    );
    let log = isp.main_log();
    let tls_deliveries = log
        .lines()
        .filter(|l| l.contains(" => user@") && l.contains(" X=TLS"))
        .count();
    assert_eq!(
        tls_deliveries, 50,
        "every delivery over the turned TLS line\n{context}"
    );
    let turns = out
        .lines()
        .filter(|l| l.starts_with("ATRN ") && l.contains("): 250 "))
        .count();
    eprintln!(
        "50 messages over ODMR (STARTTLS, AUTH, no listener) in {took:.1?}: {} ATRN, {turns} turns (Exim 4.99.1 delivers one message per TLS turn), {probes} listen probes refused\n{out}",
        requests.len()
    );
}

#[test]
fn no_mail_is_453_and_a_success() {
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(&odmr_account(&isp, &[ALPHA]));
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, listener_port(), &maildir);
    out.assert_success();
    assert!(
        out.stdout
            .contains("ATRN alpha.test (isp): 453 You have no mail - no mail waiting"),
        "{out}"
    );
    assert!(
        out.stdout.contains("ended: nothing to wait for"),
        "no turn: nothing to wait for\n{out}"
    );
    assert!(maildir.new_messages().is_empty());
    assert_eq!(atrn_lines(&out.stdout), 1, "{out}");
}

#[test]
fn a_wrong_password_is_an_authentication_failure_with_its_fix() {
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    isp.queue_numbered(ALPHA, 2);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(
        &AccountArgs::new("isp", isp.atrn_port())
            .security("starttls")
            .user(isp.user(), "not-the-password")
            .ca_file(&isp.ca_file())
            .domains(&[ALPHA])
            .args(&["--mode", "odmr"]),
    );
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, listener_port(), &maildir);
    out.assert_failure()
        .assert_mentions("authentication failed")
        .assert_mentions("535 Incorrect authentication data")
        .assert_mentions("--password-stdin");
    assert!(maildir.new_messages().is_empty());
    assert_eq!(
        isp.queued_message_ids(ALPHA).len(),
        2,
        "the mail stays held"
    );
    assert!(
        !out.stdout.contains("odmr-s3cret") && !out.stderr.contains("not-the-password"),
        "{out}"
    );
}

#[test]
fn atrn_not_offered_is_said_with_the_mode_as_the_fix_and_check_agrees() {
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]).without_atrn());
    isp.queue_numbered(ALPHA, 1);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(&odmr_account(&isp, &[ALPHA]));
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, listener_port(), &maildir);
    out.assert_failure()
        .assert_mentions("does not advertise ATRN")
        .assert_mentions("account edit isp --mode etrn");
    assert_eq!(atrn_lines(&out.stdout), 0, "no ATRN may be sent\n{out}");
    assert!(!isp.main_log().contains("ATRN '"), "{}", isp.log());

    let check = cli.run(&["check", "isp"]);
    check
        .assert_failure()
        .assert_mentions("ATRN advertised: no")
        .assert_mentions("TLS: yes")
        .assert_mentions("mode: odmr");
    // And against a provider that offers it.
    let good = EximIsp::start(EximOptions::new(&[ALPHA]));
    cli.set_account(&odmr_account(&good, &[ALPHA]));
    let check = cli.run(&["check", "isp"]);
    check
        .assert_success()
        .assert_mentions("ATRN advertised: yes")
        .assert_mentions("AUTH: yes (CRAM-MD5)");
}

#[test]
fn cram_md5_is_used_when_the_isp_lists_it_first() {
    let env = KeyringEnv::new();
    // Exim's default here: `AUTH CRAM-MD5 PLAIN`, CRAM-MD5 first.
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    assert_eq!(
        isp.options().mechanisms,
        AuthMechanisms::CramMd5AndPlain,
        "the provider lists CRAM-MD5 first"
    );
    let held = isp.queue_numbered(ALPHA, 2);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(&odmr_account(&isp, &[ALPHA]));
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, listener_port(), &maildir);
    out.assert_success();
    assert_eq!(
        maildir.message_ids(),
        sorted_ids(&held),
        "{out}\n{}",
        isp.log()
    );
    // Exim logged the cram_md5 login for every ATRN.
    let requests = isp.atrn_requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.authenticator == AUTHENTICATOR_CRAM_MD5),
        "{requests:?}"
    );
    assert!(!requests
        .iter()
        .any(|r| r.authenticator == AUTHENTICATOR_PLAIN));
    // The history's transcript says CRAM-MD5, and holds no credential.
    let history = cli.run(&["history", "--json"]);
    history.assert_success();
    assert!(
        history.stdout.contains("AUTH CRAM-MD5"),
        "the transcript names the mechanism\n{history}"
    );
    assert!(!history.stdout.contains(isp.password()), "{history}");
    assert!(history.stdout.contains(r#""mode":"odmr""#), "{history}");
}

/// Exim's queue runs all ended (each ATRN starts one): nothing holds a message lock any more.
fn wait_queue_runs_ended(isp: &EximIsp, timeout: Duration) {
    let ended = poll_until(timeout, Duration::from_millis(50), || {
        let log = isp.main_log();
        let started = log.matches("Start ODMR queue run").count();
        let ended = log.matches("End queue run").count();
        (started == ended).then_some(())
    });
    assert!(
        ended.is_some(),
        "Exim's ODMR queue runs did not end within {timeout:?}\n{}",
        isp.log()
    );
}

/// Exim holds a 40 MB message for ALPHA, then two small ones (Exim runs the queue in order, so
/// the big one's DATA lasts long enough to be cut in the middle); a fetch is started and
/// returned once Mailcall is inside that DATA (its file in tmp/ has grown past 1 MB).
fn fetch_inside_a_big_delivery<'a>(
    env: &'a KeyringEnv,
    isp: &EximIsp,
    cli: &'a Cli<'a>,
    maildir: &Maildir,
) -> (RunningCli, Vec<Message>) {
    const BIG: usize = 40 * 1024 * 1024;
    let mut big = Message::numbered(ALPHA, 0);
    let line = "y".repeat(98);
    big.body = std::iter::repeat_n(line.as_str(), BIG / 100)
        .collect::<Vec<_>>()
        .join("\n");
    isp.queue_all(std::slice::from_ref(&big));
    let small: Vec<Message> = (1..3).map(|n| Message::numbered(ALPHA, n)).collect();
    isp.queue_all(&small);
    let all: Vec<Message> = std::iter::once(big).chain(small).collect();

    write_base_config(cli);
    cli.set_account(&odmr_account(isp, &[ALPHA]));
    let args = fetch_args(listener_port(), maildir, "120");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = RunningCli::spawn(env, cli, &args, &[]);
    let in_data = poll_until(Duration::from_secs(60), Duration::from_millis(1), || {
        maildir
            .files("tmp")
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 1024 * 1024))
            .then_some(())
    });
    assert!(
        in_data.is_some(),
        "the big message's DATA was never seen in progress\n{}\n{}",
        run.output(),
        isp.log()
    );
    (run, all)
}

#[test]
fn a_link_cut_mid_delivery_stores_nothing_partial_and_the_isp_keeps_every_message() {
    let env = KeyringEnv::new();
    let mut isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    let cli = Cli::new(&env);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let (mut run, all) = fetch_inside_a_big_delivery(&env, &isp, &cli, &maildir);
    // The provider's side gone at once: the delivery dies mid-DATA and no ATRN can follow.
    let killed = isp.kill_everything();
    assert!(
        killed > 1,
        "Exim's daemon and its delivery: {killed} process(es)"
    );
    let status = poll_until(Duration::from_secs(60), Duration::from_millis(20), || {
        run.exited()
    })
    .unwrap_or_else(|| panic!("the fetch did not end after the cut\n{}", run.output()));
    let out = run.output();
    let context = format!("{out}\n{}", isp.log());
    assert!(
        !status.success(),
        "a cut turn is a failure to report\n{context}"
    );
    assert!(
        out.contains("without the ISP's QUIT"),
        "the cut is named\n{context}"
    );
    assert!(
        maildir.files("new").is_empty(),
        "nothing partial (nor anything else) may be in new/: {:?}\n{context}",
        maildir.files("new")
    );
    assert!(
        maildir.files("tmp").is_empty(),
        "the partial file must be gone from tmp/: {:?}\n{context}",
        maildir.files("tmp")
    );
    // The cut message got no 250: the provider's spool still holds all three.
    let mut held: Vec<String> = isp
        .queue()
        .iter()
        .filter(|m| m.is_for(ALPHA))
        .filter_map(|m| m.message_id.clone())
        .collect();
    held.sort();
    assert_eq!(held, sorted_ids(&all), "{context}");
}

#[test]
fn a_turn_cut_mid_delivery_stores_nothing_partial_and_the_next_atrn_brings_the_mail() {
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    let cli = Cli::new(&env);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let (mut run, all) = fetch_inside_a_big_delivery(&env, &isp, &cli, &maildir);
    // Only the provider's delivery dies: its daemon still takes the next ATRN.
    let killed = isp.kill_deliveries();
    assert!(killed > 0, "no Exim delivery process to kill");
    let status = poll_until(Duration::from_secs(60), Duration::from_millis(20), || {
        run.exited()
    })
    .unwrap_or_else(|| panic!("the fetch did not end after the cut\n{}", run.output()));
    let out = run.output();
    let context = format!("{out}\n{}", isp.log());
    // The cut message got no 250, so Exim kept it; the turn brought nothing new and ended
    // without QUIT, so Mailcall asked once more, and that ATRN brought all of it.
    assert!(
        status.success(),
        "the mail came on the next ATRN\n{context}"
    );
    let copies = copies(&maildir, &context);
    assert_eq!(
        copies.keys().cloned().collect::<Vec<_>>(),
        sorted_ids(&all),
        "{context}"
    );
    assert!(copies.values().all(|&n| n == 1), "{copies:?}\n{context}");
    assert!(
        maildir.files("tmp").is_empty(),
        "the partial file must be gone from tmp/: {:?}\n{context}",
        maildir.files("tmp")
    );
    isp.wait_queue("alpha delivered", Duration::from_secs(20), |q| {
        q.iter().all(|m| !m.is_for(ALPHA))
    });
    let history = cli.run(&["history", "--transcript", "--limit", "1"]);
    history
        .assert_success()
        .assert_mentions("the connection ended without QUIT")
        .assert_mentions("asking once more whether the ISP still holds mail");
    eprintln!("cut mid-DATA after {killed} Exim process(es) killed; the next ATRN got all 3");
}

#[test]
fn kill_9_of_the_fetch_mid_drain_loses_nothing() {
    const COUNT: usize = 40;
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    let mail = isp.queue_numbered(ALPHA, COUNT);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(&odmr_account(&isp, &[ALPHA]));
    let maildir = Maildir::new(env.root().join("Maildir"));
    let args = fetch_args(listener_port(), &maildir, "300");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = RunningCli::spawn(&env, &cli, &args, &[]);
    let threshold = COUNT / 4;
    let reached = poll_until(Duration::from_secs(120), Duration::from_millis(1), || {
        (maildir.files("new").len() >= threshold).then_some(())
    });
    run.kill9();
    assert!(
        reached.is_some(),
        "only {} of {COUNT} arrived\n{}\n{}",
        maildir.files("new").len(),
        run.output(),
        isp.log()
    );
    let at_kill = maildir.files("new").len();
    assert!(
        at_kill < COUNT,
        "the drain finished before the kill: nothing was tested"
    );
    // Exim notices the dead connection and defers what was in flight.
    wait_queue_runs_ended(&isp, Duration::from_secs(30));
    let waiting = isp.queued_message_ids(ALPHA).len();
    assert!(waiting > 0, "the ISP must still hold mail after the kill");

    let out = fetch(&cli, listener_port(), &maildir);
    let context = format!("{out}\n{}", isp.log());
    out.assert_success();
    isp.wait_queue("alpha delivered", Duration::from_secs(20), |q| {
        q.iter().all(|m| !m.is_for(ALPHA))
    });
    let copies = copies(&maildir, &context);
    let missing: Vec<&str> = mail
        .iter()
        .map(|m| m.message_id.as_str())
        .filter(|id| !copies.contains_key(*id))
        .collect();
    let extra: usize = copies.values().map(|n| n - 1).sum();
    let report = format!(
        "{COUNT} held, {} files in new/, {} distinct, {} missing, {extra} duplicate(s); killed with {at_kill} in new/, {waiting} still held then",
        copies.values().sum::<usize>(),
        copies.len(),
        missing.len()
    );
    eprintln!("{report}");
    assert!(missing.is_empty(), "lost: {missing:?}\n{report}\n{context}");
    // One message is in flight on the one turned connection: only its 250 can be lost.
    assert!(
        extra <= 1,
        "more duplicates than messages in flight\n{report}"
    );
    assert!(maildir.files("tmp").is_empty(), "{context}");
}

#[test]
fn an_odmr_only_daemon_listens_nowhere_until_an_etrn_account_is_added() {
    let env = KeyringEnv::new();
    let isp = EximIsp::start(EximOptions::new(&[ALPHA]));
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    cli.set_account(&odmr_account(&isp, &[ALPHA]));
    let lp = listener_port();
    let listen = format!("127.0.0.1:{lp}");
    let maildir = env.root().join("Maildir").display().to_string();
    let daemon = RunningCli::daemon(&env, &cli, &["--listen", &listen, "--maildir", &maildir]);
    assert!(
        daemon.output().contains("listen=none (ODMR accounts only"),
        "the daemon says it listens nowhere\n{}",
        daemon.output()
    );
    assert!(!something_listens(lp), "{}", daemon.output());
    let status = cli.run(&["status"]);
    status
        .assert_success()
        .assert_mentions("listening on: nothing (ODMR accounts only");

    // An ETRN account: `account set` tells the daemon, which binds the listener then.
    let out = cli.set_account(&AccountArgs::new("etrn", 9).domains(&[BETA]));
    out.assert_mentions("the running Mailcall has read its accounts again");
    let bound = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        something_listens(lp).then_some(())
    });
    assert!(
        bound.is_some(),
        "no listener after the ETRN account\n{}",
        daemon.output()
    );
    cli.run(&["status"])
        .assert_success()
        .assert_mentions(&format!("listening on: {listen}"));
}
