//! The Windows build of `mailcall-cli` (`x86_64-pc-windows-gnu`) run under Wine against the same
//! real peers as the Linux tests: a Postfix ISP over STARTTLS with AUTH (the password in the
//! Credential Manager as Wine provides it), an ETRN fetch into a Maildir named by its Windows
//! path, an ODMR fetch from Exim, a route to Dovecot over LMTP, the daemon answering `status`,
//! `pause` and `fetch --via-running` over its token channel, a fetch killed mid-drain then run
//! again, and the installer (scripts/package-windows.sh) installed and uninstalled silently.
//!
//! Not part of a plain `cargo test` (it needs the .exe and the tests' Wine prefix):
//! `scripts/test.sh --only windows` builds the .exe and runs it, or by hand, as root after
//! `tests/setup.sh`:
//!
//! ```sh
//! cargo build --target x86_64-pc-windows-gnu -p mailcall-cli
//! cargo test -p mailcall-e2e --test windows
//! ```

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use mailcall_e2e::wine::{win_path, WinCli};
use mailcall_e2e::{
    free_port, poll_until, AccountArgs, Dovecot, DovecotOptions, EximIsp, EximOptions, IspOptions,
    Maildir, Message, PostfixIsp,
};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-wine";

/// Characters Windows does not allow in a file name.
const NOT_IN_WINDOWS_NAMES: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*'];

fn numbered(domain: &str, count: usize) -> Vec<Message> {
    (0..count).map(|n| Message::numbered(domain, n)).collect()
}

/// `account set NAME --host 127.0.0.1 --port PORT --security none --domain D` under Wine.
fn set_plain_account(cli: &WinCli, name: &str, port: u16, domain: &str) {
    let (argv, _) = AccountArgs::new(name, port).domains(&[domain]).argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    cli.run(&argv).assert_success();
}

/// `fetch --listen 127.0.0.1:LP --maildir WINDOWS-PATH --idle-timeout 10 --max-wait 60`.
///
/// The fetch ends 5 s after the ISP delivered and closed (the "ISP finished" rule); the idle
/// timeout only ends a fetch to which nothing (more) came, so it leaves room for Postfix's
/// connections under Wine on a busy machine (with 3 s, a run on a doubly loaded machine saw a
/// second fetch's greetings lost: most likely the fetch had ended before they came).
fn fetch(cli: &WinCli, lp: u16, maildir: &Maildir) -> mailcall_e2e::CliOutput {
    let argv = fetch_argv(lp, maildir, 10, 60);
    cli.run(&argv.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `fetch --listen 127.0.0.1:LP --maildir WINDOWS-PATH --idle-timeout IDLE --max-wait MAX`.
fn fetch_argv(lp: u16, maildir: &Maildir, idle_secs: u32, max_wait_secs: u32) -> Vec<String> {
    let listen = format!("127.0.0.1:{lp}");
    let md = win_path(maildir.path());
    let (idle, max_wait) = (idle_secs.to_string(), max_wait_secs.to_string());
    [
        "fetch",
        "--listen",
        &listen,
        "--maildir",
        &md,
        "--idle-timeout",
        &idle,
        "--max-wait",
        &max_wait,
    ]
    .map(str::to_string)
    .into()
}

/// Each of `want` exactly once in new/, every file complete, tmp/ empty, every name one Windows
/// allows.
fn assert_exactly_once(maildir: &Maildir, want: &[Message], context: &dyn std::fmt::Display) {
    let stored = maildir.new_messages();
    assert!(
        stored.iter().all(|m| m.complete),
        "incomplete files in new/: {stored:#?}\n{context}"
    );
    let mut ids: Vec<String> = want.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    assert_eq!(maildir.message_ids(), ids, "each exactly once\n{context}");
    assert_eq!(stored.len(), want.len(), "{context}");
    assert!(maildir.files("tmp").is_empty(), "tmp/ left\n{context}");
    for m in &stored {
        let name = m.path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.contains(NOT_IN_WINDOWS_NAMES) && !name.ends_with(['.', ' ']),
            "{name:?} is not a valid Windows file name\n{context}"
        );
    }
}

#[test]
fn credential_manager_account_checks_and_fetches_over_starttls_with_auth() {
    let cli = WinCli::new("auth");
    let lp = free_port();
    let isp = PostfixIsp::start(
        IspOptions::new(&["wine-auth.test"], lp)
            .with_tls()
            .with_auth(USER, PASSWORD),
    );
    let mail = numbered("wine-auth.test", 5);
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(30));

    // The password goes to the Credential Manager; the config names the CA by its Windows path.
    let ca = win_path(&isp.ca_file());
    let (argv, stdin) = AccountArgs::new("wineauth", isp.port())
        .security("starttls")
        .user(USER, PASSWORD)
        .domains(&["wine-auth.test"])
        .args(&["--ca-file", &ca])
        .argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    cli.run_with_stdin(&argv, stdin.as_deref()).assert_success();
    let everything: String = mailcall_e2e::files_under(cli.root())
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
        .collect();
    assert!(
        !everything.contains(PASSWORD),
        "the password is in a file of the test's directory"
    );

    let out = cli.run(&["check", "wineauth"]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "check must succeed\n{context}");
    out.assert_mentions("ETRN advertised: yes")
        .assert_mentions("TLS: yes")
        .assert_mentions("AUTH: yes");

    let maildir = Maildir::new(cli.root().join("Maildir"));
    let out = fetch(&cli, lp, &maildir);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    assert_exactly_once(&maildir, &mail, &context);
    // The ISP releases the mail only after AUTH (IspOptions::with_auth): it came, so AUTH
    // with the password from the Credential Manager was accepted.
    isp.wait_queue_empty(Duration::from_secs(20));
}

#[test]
fn etrn_fetch_into_a_windows_maildir_each_message_exactly_once() {
    let cli = WinCli::new("fetch");
    let lp = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["wine-fetch.test"], lp));
    let mail = numbered("wine-fetch.test", 25);
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(30));
    set_plain_account(&cli, "winefetch", isp.port(), "wine-fetch.test");

    let maildir = Maildir::new(cli.root().join("Maildir"));
    let out = fetch(&cli, lp, &maildir);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    out.assert_mentions("25");
    assert_exactly_once(&maildir, &mail, &context);
    isp.wait_queue_empty(Duration::from_secs(20));
}

#[test]
fn odmr_fetch_from_exim_over_starttls_with_auth() {
    let cli = WinCli::new("odmr");
    let isp = EximIsp::start(EximOptions::new(&["wine-odmr.test"]).with_tls_before_auth());
    let mail = isp.queue_numbered("wine-odmr.test", 5);
    let ca = win_path(&isp.ca_file());
    let (argv, stdin) = AccountArgs::new("wineodmr", isp.atrn_port())
        .security("starttls")
        .user(isp.user(), isp.password())
        .domains(&["wine-odmr.test"])
        .args(&["--ca-file", &ca, "--mode", "odmr"])
        .argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    cli.run_with_stdin(&argv, stdin.as_deref()).assert_success();

    let maildir = Maildir::new(cli.root().join("Maildir"));
    // ODMR binds no listener: the port given stays unused.
    let out = fetch(&cli, free_port(), &maildir);
    let context = format!("{out}\nExim log:\n{}", isp.log());
    assert_eq!(
        out.code(),
        Some(0),
        "the ODMR fetch must succeed\n{context}"
    );
    out.assert_mentions("summary: 5 message(s)");
    assert_exactly_once(&maildir, &mail, &context);
}

#[test]
fn a_route_hands_alices_mail_to_dovecot_over_lmtp() {
    let cli = WinCli::new("lmtp");
    let lp = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["wine-lmtp.test"], lp));
    let dovecot = Dovecot::start(DovecotOptions::new().with_user("alice"));
    let to_alice: Vec<Message> = (0..4)
        .map(|n| Message {
            to: "alice@wine-lmtp.test".into(),
            message_id: format!("<wine-lmtp-{n}@outside.test>"),
            ..Message::numbered("wine-lmtp.test", n)
        })
        .collect();
    let others = numbered("wine-lmtp.test", 2);
    isp.queue_all(&to_alice);
    isp.queue_all(&others);
    isp.wait_deferred(6, Duration::from_secs(30));
    set_plain_account(&cli, "winelmtp", isp.port(), "wine-lmtp.test");
    let lmtp = format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port());
    cli.run(&["route", "add", "alice@wine-lmtp.test", &lmtp])
        .assert_success();

    let maildir = Maildir::new(cli.root().join("Maildir"));
    let out = fetch(&cli, lp, &maildir);
    let context = format!("{out}\nISP:\n{}\nDovecot:\n{}", isp.log(), dovecot.log());
    assert_eq!(out.code(), Some(0), "fetch must succeed\n{context}");
    let mut want: Vec<String> = to_alice.iter().map(|m| m.message_id.clone()).collect();
    want.sort();
    let mut got = Vec::new();
    let handed = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        got = dovecot.message_ids("alice", "INBOX");
        (got.len() >= want.len()).then_some(())
    });
    assert!(handed.is_some(), "alice has {got:?}\n{context}");
    assert_eq!(got, want, "alice's mail, each once, at Dovecot\n{context}");
    // The others went to the default Maildir, each once.
    assert_exactly_once(&maildir, &others, &context);
    cli.run(&["queue"])
        .assert_success()
        .assert_mentions("the queue is empty");
}

#[test]
fn daemon_answers_status_pause_and_fetch_via_running_over_its_token_channel() {
    let cli = WinCli::new("daemon");
    let lp = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["wine-daemon.test"], lp));
    let maildir = Maildir::new(cli.root().join("Maildir"));
    let listen = format!("127.0.0.1:{lp}");
    let md = win_path(maildir.path());
    cli.write_config(&format!(
        "fetch-at-start = false\nmaildir = \"{}\"\n",
        md.replace('\\', "\\\\")
    ));
    set_plain_account(&cli, "winedaemon", isp.port(), "wine-daemon.test");
    // Held at the ISP before the daemon listens: only an ETRN releases it.
    let mail = numbered("wine-daemon.test", 4);
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(30));
    let mut daemon = cli.daemon(&["--listen", &listen]);

    let out = cli.run(&["status"]);
    assert_eq!(out.code(), Some(0), "{out}\n{}", daemon.output());
    out.assert_mentions("running: yes")
        .assert_mentions(&listen)
        .assert_mentions("automatic fetching: on");

    // The regression test for the lost request: the token and the request in one write.
    let control = std::fs::read_to_string(cli.control_file()).unwrap();
    let mut words = control.split_whitespace();
    let port: u16 = words.next().unwrap().parse().unwrap();
    let token = words.next().unwrap().to_string();
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(format!("{token}\nSTATUS\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    BufReader::new(&raw).read_line(&mut reply).unwrap();
    assert!(
        reply.contains(&listen),
        "no STATUS reply to a request sent with the token: {reply:?}\n{}",
        daemon.output()
    );
    // A client without the token gets nothing at all.
    let mut forged = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    forged
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    forged
        .write_all(format!("{}\nSTATUS\n", "0".repeat(token.len())).as_bytes())
        .unwrap();
    let mut nothing = String::new();
    let read = BufReader::new(&forged).read_line(&mut nothing);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "a forged token was answered: {nothing:?}"
    );

    let out = cli.run(&["pause"]);
    assert_eq!(
        out.code(),
        Some(0),
        "{out}\nthe daemon (exited: {:?}):\n{}",
        daemon.exited(),
        daemon.output()
    );
    cli.run(&["status"])
        .assert_success()
        .assert_mentions("automatic fetching: paused");

    // A manual fetch still works while paused, through the running daemon.
    assert!(
        maildir.files("new").is_empty(),
        "fetched before it was asked"
    );
    let out = cli.run(&["fetch", "--via-running"]);
    let context = format!("{out}\n{}\nISP maillog:\n{}", daemon.output(), isp.log());
    assert_eq!(out.code(), Some(0), "fetch --via-running\n{context}");
    let arrived = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (maildir.files("new").len() >= mail.len()).then_some(())
    });
    assert!(arrived.is_some(), "the mail did not arrive\n{context}");
    isp.wait_queue_empty(Duration::from_secs(20));
    assert_exactly_once(&maildir, &mail, &context);
    cli.run(&["resume"]).assert_success();

    // Ended by force (SIGKILL to Wine: no Windows code runs), it leaves its control file:
    // `status` says nothing answers there, and the next start replaces it.
    daemon.kill9();
    assert!(cli.control_file().is_file(), "the control file went too");
    let out = cli.run(&["status"]);
    assert_eq!(out.code(), Some(3), "{out}");
    out.assert_mentions("running: no")
        .assert_mentions("nothing answers");
    let again = cli.daemon(&["--listen", &listen]);
    let out = cli.run(&["status"]);
    assert_eq!(out.code(), Some(0), "{out}\n{}", again.output());
    out.assert_mentions("running: yes");
}

#[test]
fn a_fetch_killed_mid_drain_then_run_again_loses_nothing() {
    const COUNT: usize = 150;
    let cli = WinCli::new("kill");
    let lp = free_port();
    // Wine 8.0's server can keep a connection of the killed process open (seen twice: after
    // the kill, one ESTAB on the listening port held by wineserver64, Postfix's smtp in the
    // middle of that session waiting for a reply). Windows closes a dead process's sockets.
    // Here the ISP defers that message when its wait for the reply runs out, as for a
    // listener that hangs, after 20 s instead of Postfix's own 300-600 s.
    let isp = PostfixIsp::start(IspOptions::new(&["wine-kill.test"], lp).with_reply_timeout(20));
    let mail = numbered("wine-kill.test", COUNT);
    isp.queue_all(&mail);
    isp.wait_deferred(COUNT, Duration::from_secs(60));
    set_plain_account(&cli, "winekill", isp.port(), "wine-kill.test");
    let maildir = Maildir::new(cli.root().join("Maildir"));

    let argv = fetch_argv(lp, &maildir, 600, 600);
    let mut run = cli.spawn_until(
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        "listening on",
        Duration::from_secs(60),
    );
    let threshold = COUNT / 5;
    let reached = poll_until(Duration::from_secs(120), Duration::from_millis(1), || {
        let n = maildir.files("new").len();
        (n >= threshold).then_some(n)
    });
    // SIGKILL to the Wine process: no Windows code runs (like a power cut for the process).
    run.kill9();
    assert!(
        reached.is_some(),
        "only {} of {COUNT} arrived in 120 s\n{}\nthe listening port {lp}: {}\nISP's queue: {}\n{}",
        maildir.files("new").len(),
        run.output(),
        mailcall_e2e::tcp_state(lp),
        queue_summary(&isp.queue_entries()),
        isp.log()
    );
    let at_kill = maildir.files("new").len();
    assert!(
        at_kill < COUNT,
        "the drain finished before the kill ({at_kill}): nothing was tested"
    );
    // Postfix notices the lost connections and defers what was in flight.
    let mut queue = Vec::new();
    let settled = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        queue = isp.queue_entries();
        queue
            .iter()
            .all(|e| e.queue_name == "deferred")
            .then_some(queue.len())
    });
    assert!(
        settled.is_some_and(|n| n > 0),
        "the ISP must still hold mail, all of it deferred, after the kill ({at_kill} of {COUNT} \
         in new/ at the kill); its queue: {}\nthe kill's listening port {lp}: {}\n{}",
        queue_summary(&queue),
        mailcall_e2e::tcp_state(lp),
        isp.log()
    );

    let out = fetch(&cli, lp, &maildir);
    let context = format!(
        "{out}\nkilled with {at_kill} in new/\nISP maillog:\n{}",
        isp.log()
    );
    assert_eq!(out.code(), Some(0), "the second fetch\n{context}");
    isp.wait_queue_empty(Duration::from_secs(60));

    let stored = maildir.new_messages();
    assert!(
        stored.iter().all(|m| m.complete),
        "truncated files in new/\n{context}"
    );
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for m in &stored {
        *copies.entry(m.message_id.clone().unwrap()).or_default() += 1;
    }
    let missing: Vec<&str> = mail
        .iter()
        .map(|m| m.message_id.as_str())
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{context}");
    assert_eq!(copies.len(), COUNT, "{context}");
    // Stored but not yet acknowledged when killed: Postfix sends those again. At most one
    // message is in flight per connection (Postfix's default destination concurrency is 20).
    let duplicates = stored.len() - COUNT;
    assert!(duplicates <= 20, "{duplicates} duplicates\n{context}");
    eprintln!(
        "killed with {at_kill} of {COUNT} in new/; {duplicates} duplicate(s) after the restart"
    );
}

/// The ISP's queue in a line: how many entries in each queue, and each distinct delay reason.
fn queue_summary(queue: &[mailcall_e2e::postfix::QueueEntry]) -> String {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for e in queue {
        *by_name.entry(e.queue_name.as_str()).or_default() += 1;
        for r in &e.delay_reasons {
            *reasons.entry(r.as_str()).or_default() += 1;
        }
    }
    format!("{by_name:?}, delay reasons {reasons:?}")
}

/// The installer scripts/package-windows.sh built: `$MAILCALL_WINDOWS_SETUP`, else the path it
/// wrote to `<target>/package/windows-setup-path`.
fn installer() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("MAILCALL_WINDOWS_SETUP") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let record = target.join("package/windows-setup-path");
    let path = std::fs::read_to_string(&record).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the installer first: bash scripts/package-windows.sh --debug",
            record.display()
        )
    });
    path.trim().into()
}

/// The Wine prefix's user profile (Linux path): `drive_c/users/<the user running Wine>`.
fn profile() -> std::path::PathBuf {
    let users = mailcall_e2e::wine::prefix().join("drive_c/users");
    std::fs::read_dir(&users)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("AppData").is_dir() && !p.ends_with("Public"))
        .unwrap_or_else(|| panic!("no user profile in {}", users.display()))
}

/// `reg query HKCU\...\Run /v Mailcall` under Wine: the start-at-login entry, if there is one.
fn run_at_login() -> Option<String> {
    let mut cmd = mailcall_e2e::wine::wine_command("reg");
    cmd.args([
        "query",
        r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run",
        "/v",
        "Mailcall",
    ]);
    let done =
        mailcall_e2e::process::run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap();
    done.status
        .is_some_and(|s| s.success())
        .then_some(done.stdout)
}

#[test]
fn the_installer_installs_per_user_and_the_uninstaller_keeps_mail_and_settings() {
    let setup = installer();
    let dir = mailcall_e2e::test_dir("win-setup");
    let place = dir.path().join("Programs/Mailcall");
    // /D= is the last argument, unquoted (NSIS's rule).
    let mut cmd = mailcall_e2e::wine::wine_command(&setup);
    cmd.args(["/S", "/AUTOSTART", &format!("/D={}", win_path(&place))]);
    let done =
        mailcall_e2e::process::run_with_timeout(&mut cmd, None, Duration::from_secs(120)).unwrap();
    assert!(
        done.status.is_some_and(|s| s.success()),
        "the silent install failed: {done:?}"
    );
    let cli = place.join("mailcall-cli.exe");
    assert!(cli.is_file(), "no {} after the install", cli.display());
    assert!(place.join("Uninstall.exe").is_file());

    let mut version = mailcall_e2e::wine::wine_command(&cli);
    version.arg("--version");
    let out = mailcall_e2e::process::run_with_timeout(&mut version, None, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        out.stdout.trim(),
        format!("mailcall-cli {}", env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );

    let profile = profile();
    let menu = profile.join("AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Mailcall");
    assert!(menu.join("Mailcall.lnk").is_file(), "no Start-menu entry");
    let login = run_at_login().expect("/AUTOSTART made no start-at-login entry");
    assert!(login.contains(&win_path(&place)), "{login}");

    // The user's settings and mail, which the uninstaller must leave.
    let data = profile.join("AppData/Roaming/mailcall");
    std::fs::create_dir_all(&data).unwrap();
    let marker = data.join(format!("kept-by-the-uninstaller-{}", std::process::id()));
    std::fs::write(&marker, "mail and settings").unwrap();

    let mut un = mailcall_e2e::wine::wine_command(place.join("Uninstall.exe"));
    un.arg("/S");
    let done =
        mailcall_e2e::process::run_with_timeout(&mut un, None, Duration::from_secs(120)).unwrap();
    assert!(done.status.is_some_and(|s| s.success()), "{done:?}");
    // NSIS's uninstaller runs on from a copy in %TEMP%: wait for it to have removed the files.
    let gone = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        (!place.exists()).then_some(())
    });
    let left = mailcall_e2e::files_under(&place);
    assert!(gone.is_some(), "program files left: {left:?}");
    assert!(!menu.exists(), "the Start-menu entry is left");
    assert_eq!(run_at_login(), None, "the start at login is left");
    assert!(marker.is_file(), "the uninstaller removed the user's data");
    std::fs::remove_file(&marker).unwrap();
}
