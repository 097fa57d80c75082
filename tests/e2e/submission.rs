//! The submission listener (issue 19 §1): a real mail program, s-nail, submits over SMTP to the
//! running daemon's submission port; the message waits in the queue, and `mailcall-cli send`
//! delivers it to a real Postfix smarthost, its text intact under the Received: lines. A sender
//! no account holds is refused and nothing is queued; so is a LAN host (in a network namespace)
//! that is neither listed nor logged in, while the login (its password from the keyring) over TLS
//! lets it submit. While a watched link is up, a submitted message leaves
//! by itself.

use std::process::{Command, Stdio};
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, Finished};
use mailcall_e2e::{free_port, poll_until, Cli, KeyringEnv, Netns, PostfixLan, RunningCli};

use crate::listener_port;
use crate::outgoing::{set_account_with_smarthost, LOGIN};

/// `s-nail` sending `body` from `from` to `to` through `smtp://127.0.0.1:PORT`, with no resource
/// files read; returns its exit status and output.
fn s_nail(env: &KeyringEnv, port: u16, from: &str, to: &str, body: &str) -> (bool, String) {
    s_nail_as(Command::new("s-nail"), env, port, from, to, body)
}

/// [`s_nail`] with `cmd` as the s-nail to run (one inside a network namespace).
fn s_nail_as(
    mut cmd: Command,
    env: &KeyringEnv,
    port: u16,
    from: &str,
    to: &str,
    body: &str,
) -> (bool, String) {
    cmd.env("HOME", env.root())
        .env("LC_ALL", "C")
        .args([
            "-:/",
            "-Sv15-compat",
            "-Sttycharset=utf8",
            "-Ssmtp-auth=none",
        ])
        .arg(format!("-Smta=smtp://127.0.0.1:{port}"))
        .arg(format!("-Sfrom={from}"))
        .args(["-s", "hello from s-nail", to])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("s-nail runs (Debian package s-nail)");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn s_nail_submits_to_the_running_daemon_and_send_delivers_it_to_the_smarthost() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let sp = free_port();
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    cli.write_config(&format!(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"none-here\"]\nsubmit-listen = \"127.0.0.1:{sp}\"\n"
    ));
    // No link is watched, so the message waits for `send`. No ISP is asked here: the account's
    // incoming side points at a port nobody serves.
    set_account_with_smarthost(&cli, free_port(), &smarthost);
    let maildir = env.root().join("Maildir").display().to_string();
    let listen = format!("127.0.0.1:{lp}");
    let mut daemon = RunningCli::daemon(&env, &cli, &["--listen", &listen, "--maildir", &maildir]);

    let body = "Line one.\n.leading dot\nlast line\n";
    let (ok, said) = s_nail(&env, sp, "me@office.test", "alice@example.org", body);
    assert!(
        ok,
        "s-nail must submit\n{said}\ndaemon:\n{}",
        daemon.output()
    );
    // A sender no account holds: refused at MAIL FROM, nothing queued.
    let (ok, said) = s_nail(&env, sp, "me@elsewhere.test", "alice@example.org", body);
    assert!(!ok, "a foreign sender must be refused\n{said}");

    let queue = cli.run(&["queue"]);
    queue.assert_success();
    assert_eq!(
        queue.stdout.matches("smarthost:isp").count(),
        1,
        "one message waits for the smarthost\n{queue}\ndaemon:\n{}",
        daemon.output()
    );
    // Durable before the 250: even a killed daemon leaves it in the queue for `send`.
    daemon.kill9();

    let out = cli.run(&["send"]);
    let context = format!("{out}\nsmarthost log:\n{}", smarthost.log());
    assert_eq!(out.code(), Some(0), "send must succeed\n{context}");
    let alice = smarthost.maildir("alice");
    let got = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let stored = alice.new_messages();
        (!stored.is_empty()).then_some(stored)
    })
    .unwrap_or_else(|| panic!("the message must reach alice at the smarthost\n{context}"));
    assert_eq!(got.len(), 1, "{context}");
    let stored = std::fs::read_to_string(&got[0].path).unwrap();
    assert!(stored.contains("Subject: hello from s-nail"), "{stored}");
    assert!(
        stored.replace("\r\n", "\n").contains(body),
        "the body arrives as written\n{stored}"
    );
    assert!(
        stored.contains("by client.test (Mailcall)"),
        "our Received: is there\n{stored}"
    );
    let queue = cli.run(&["queue"]);
    assert!(!queue.stdout.contains("smarthost:isp"), "{queue}");
}

/// swaks inside `ns`, from `me@office.test` to alice@example.org through `server`.
fn swaks_in(ns: &Netns, server: &str, extra: &[&str]) -> Finished {
    let mut cmd = ns.command("swaks");
    cmd.args(["--server", server, "--timeout", "20", "--helo", "lan.test"])
        .args(["--from", "me@office.test", "--to", "alice@example.org"])
        .args(extra);
    run_with_timeout(&mut cmd, None, Duration::from_secs(60)).expect("running swaks")
}

#[test]
fn a_lan_host_submits_only_after_auth_over_tls_with_the_password_from_the_keyring() {
    let env = KeyringEnv::new();
    let ns = Netns::new();
    // A LAN address in the namespace: connections to it come from it, not from loopback.
    ns.add_tun("lan0", "10.99.0.1", "10.99.0.2");
    ns.link_up("lan0");
    let (lp, sp) = (free_port(), free_port());
    let cli = Cli::new(&env);
    cli.write_config(&format!(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"none-here\"]\nsubmit-listen = \"0.0.0.0:{sp}\"\n"
    ));
    let out = cli.run(&[
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        "2",
        "--security",
        "none",
        "--domain",
        "office.test",
        "--smarthost",
        "127.0.0.1",
        "--smarthost-port",
        "3",
    ]);
    out.assert_success();
    // The submission login: its user in the config, its password in the keyring.
    cli.run(&["config", "set", "submit-user", "me"])
        .assert_success();
    let out = cli.run_with_stdin(&["config", "set-submit-password"], Some("subm1t-pw\n"));
    out.assert_success();
    assert!(
        !out.stdout.contains("subm1t-pw") && !out.stderr.contains("subm1t-pw"),
        "{out}"
    );
    assert!(
        !std::fs::read_to_string(cli.config_path())
            .unwrap()
            .contains("subm1t-pw"),
        "the password is in no file"
    );
    let log = env.root().join("daemon.log");
    let maildir = env.root().join("Maildir").display().to_string();
    let mut cmd = ns.command(cli.binary());
    cmd.env_clear()
        .envs(env.env())
        .current_dir(env.home())
        .env("MAILCALL_LOG", "info")
        .arg("--config")
        .arg(cli.config_path())
        .args([
            "daemon",
            "--listen",
            &format!("127.0.0.1:{lp}"),
            "--maildir",
            &maildir,
        ]);
    let _daemon = ns.spawn("mailcall daemon", &mut cmd, &log);
    let up = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let text = mailcall_e2e::read_for_diagnostics(&log);
        text.contains("listening for outgoing mail").then_some(())
    });
    assert!(
        up.is_some(),
        "the submission listener must come up\n{}",
        mailcall_e2e::read_for_diagnostics(&log)
    );

    let refused = swaks_in(&ns, &format!("10.99.0.1:{sp}"), &[]);
    let transcript = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        transcript.contains("530 5.7.0 Authentication required"),
        "an unlisted LAN host without a login is refused at MAIL FROM\n{transcript}"
    );
    assert!(!refused.status.is_some_and(|s| s.success()), "{transcript}");
    let queue = cli.run(&["queue"]);
    assert!(
        !queue.stdout.contains("smarthost:isp"),
        "nothing queued\n{queue}"
    );

    // A wrong password over TLS: 535, nothing queued.
    let lan = format!("10.99.0.1:{sp}");
    let auth = |password: &'static str| {
        [
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "me",
            "--auth-password",
            password,
        ]
    };
    let wrong = swaks_in(&ns, &lan, &auth("guess"));
    let transcript = format!("{}{}", wrong.stdout, wrong.stderr);
    assert!(transcript.contains("535 5.7.8"), "{transcript}");
    let queue = cli.run(&["queue"]);
    assert!(
        !queue.stdout.contains("smarthost:isp"),
        "nothing queued\n{queue}"
    );

    // Loopback in the same namespace may; so may the LAN host with the login over TLS.
    let local = swaks_in(&ns, &format!("127.0.0.1:{sp}"), &[]);
    let transcript = format!("{}{}", local.stdout, local.stderr);
    assert!(local.status.is_some_and(|s| s.success()), "{transcript}");
    let logged_in = swaks_in(&ns, &lan, &auth("subm1t-pw"));
    let transcript = format!("{}{}", logged_in.stdout, logged_in.stderr);
    assert!(
        logged_in.status.is_some_and(|s| s.success()) && transcript.contains("235 2.7.0"),
        "{transcript}\n{}",
        mailcall_e2e::read_for_diagnostics(&log)
    );
    let queue = cli.run(&["queue"]);
    assert_eq!(queue.stdout.matches("smarthost:isp").count(), 2, "{queue}");
    let daemon_log = mailcall_e2e::read_for_diagnostics(&log);
    assert!(
        !daemon_log.contains("subm1t-pw"),
        "the password is in no log"
    );
}

#[test]
fn while_a_watched_link_is_up_a_submitted_message_leaves_by_itself() {
    use crate::linkworld::{LinkWorld, WorldOptions};

    let world = LinkWorld::new(WorldOptions::new(&[]));
    let cli = world.cli();
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    smarthost.move_into(&world.ns);
    set_account_with_smarthost(&cli, world.isp.port(), &smarthost);
    let sp = free_port();
    cli.run(&["config", "set", "submit-listen", &format!("127.0.0.1:{sp}")])
        .assert_success();
    // Paused: no automatic fetch at link-up, so what leaves, leaves by the runner's own sending.
    cli.run(&["pause"]).assert_success();
    let daemon = world.start_daemon();
    world.dial_in();
    let (ok, said) = s_nail_as(
        world.ns.command("s-nail"),
        &world.env,
        sp,
        "me@office.test",
        "alice@example.org",
        "Sent while the link is up.\n",
    );
    assert!(ok, "s-nail must submit\n{said}\n{}", world.context());
    // The runner of the same daemon hears of it: no `send`, no fetch.
    let arrived = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (smarthost.maildir("alice").new_messages().len() == 1).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the submitted message leaves by itself\n{}\nsmarthost log:\n{}",
        world.context(),
        smarthost.log()
    );
    assert!(
        world.records().iter().all(|r| r["kind"] != "fetch"),
        "no fetch ran (paused)\n{}",
        world.context()
    );
    world.stop_daemon(daemon);
}

#[test]
fn a_full_disk_answers_452_at_submission_and_nothing_is_acknowledged_or_left_behind() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let sp = free_port();
    // The data directory (the queue lives in it) on a 2 MiB filesystem.
    let fs = mailcall_e2e::Tmpfs::mount(2048);
    let data = fs.path().join("data");
    let cli = Cli::new(&env);
    cli.write_config(&format!(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"none-here\"]\nsubmit-listen = \"127.0.0.1:{sp}\"\ndata-dir = \"{}\"\n",
        data.display()
    ));
    // Nothing is sent here: the smarthost's port is one nobody serves.
    set_account_with_smarthost(
        &cli,
        free_port(),
        &PostfixLan::smarthost("example.org", &["alice"], LOGIN),
    );
    let maildir = env.root().join("Maildir").display().to_string();
    let listen = format!("127.0.0.1:{lp}");
    let daemon = RunningCli::daemon(&env, &cli, &["--listen", &listen, "--maildir", &maildir]);

    // A 300 KB message with 64 KB left: it cannot be made durable.
    let message = env.root().join("big.eml");
    let line = "x".repeat(76);
    let mut text =
        String::from("From: me@office.test\r\nTo: alice@example.org\r\nSubject: big\r\n\r\n");
    while text.len() < 300 * 1024 {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    std::fs::write(&message, &text).unwrap();
    let filler = fs.fill_leaving("filler", 64 * 1024);
    let swaks = || {
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &format!("127.0.0.1:{sp}"), "--timeout", "30"])
            .args(["--helo", "client.test", "--from", "me@office.test"])
            .args(["--to", "alice@example.org", "--data"])
            .arg(&message);
        let done = run_with_timeout(&mut cmd, None, Duration::from_secs(60)).expect("swaks runs");
        let transcript = format!("{}{}", done.stdout, done.stderr);
        (done.status.is_some_and(|s| s.success()), transcript)
    };
    let (ok, transcript) = swaks();
    assert!(!ok, "a full disk must not acknowledge\n{transcript}");
    assert!(
        transcript.contains("<** 452 4.3.1"),
        "the submitter hears 452 4.3.1 after the data\n{transcript}\ndaemon:\n{}",
        daemon.output()
    );
    // sendmail: a clear error, non-zero, nothing queued.
    let out = cli.run_with_stdin(
        &["sendmail", "-f", "me@office.test", "alice@example.org"],
        Some(&text),
    );
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("nothing was queued"), "{out}");
    let queue = cli.run(&["queue"]);
    assert!(
        !queue.stdout.contains("smarthost:isp"),
        "nothing acknowledged, nothing queued\n{queue}"
    );
    let spool_tmp = data.join("spool").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&spool_tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "partial files left in the queue: {left:?}");

    // Space again: the same submission is taken.
    std::fs::remove_file(&filler).unwrap();
    let (ok, transcript) = swaks();
    assert!(ok, "{transcript}\ndaemon:\n{}", daemon.output());
    let queue = cli.run(&["queue"]);
    assert_eq!(queue.stdout.matches("smarthost:isp").count(), 1, "{queue}");
}
