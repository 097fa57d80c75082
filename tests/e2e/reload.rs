//! `account set` / `account remove` while `mailcall-cli daemon` runs: a SIGHUP makes the daemon
//! read the accounts again, and its listener accepts exactly the new accounts' domains.

use std::time::Duration;

use mailcall_e2e::{poll_until, Cli, KeyringEnv, RawSmtp, RunningCli};

use crate::{listener_port, set_plain_account};

/// The reply code the daemon's listener gives `RCPT TO:<user@domain>` in a fresh transaction.
fn rcpt_code(port: u16, domain: &str) -> u16 {
    let mut smtp = RawSmtp::greeted(port);
    smtp.expect("EHLO isp.test", 250);
    smtp.expect("MAIL FROM:<sender@remote.example>", 250);
    let code = smtp.command(&format!("RCPT TO:<user@{domain}>")).code;
    let _ = smtp.command("QUIT");
    code
}

/// Sends SIGHUP to the daemon and waits until it logged the reload numbered `n` (1-based).
fn hangup(daemon: &RunningCli, n: usize) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -HUP failed");
    let reloaded = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        (daemon.output().matches("SIGHUP: reloaded").count() >= n).then_some(())
    });
    assert!(reloaded.is_some(), "no reload logged\n{}", daemon.output());
}

#[test]
fn sighup_reloads_accounts_edited_while_the_daemon_runs() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    // No automatic fetch: the test only watches which recipients the listener takes.
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    // The ISP is never asked here; the account only names the domains.
    set_plain_account(&cli, "isp", 9, &["alpha.test"]);
    let lp = listener_port();
    let listen = format!("127.0.0.1:{lp}");
    let maildir = env.root().join("Maildir").display().to_string();
    let daemon = RunningCli::daemon(&env, &cli, &["--listen", &listen, "--maildir", &maildir]);

    assert_eq!(rcpt_code(lp, "alpha.test"), 250, "{}", daemon.output());
    assert_eq!(rcpt_code(lp, "beta.test"), 550, "{}", daemon.output());

    // `account set` while the daemon runs tells it (RELOAD on the control socket): no signal.
    let out = set_plain_account(&cli, "isp", 9, &["alpha.test", "beta.test"]);
    out.assert_mentions("the running Mailcall has read its accounts again");
    assert_eq!(rcpt_code(lp, "beta.test"), 250, "{}", daemon.output());

    cli.run(&["account", "remove", "isp"])
        .assert_success()
        .assert_mentions("the running Mailcall has read its accounts again");
    assert_eq!(rcpt_code(lp, "alpha.test"), 550, "{}", daemon.output());

    // An edit the daemon was not told about (the control socket out of reach, as for a script
    // run under another XDG_RUNTIME_DIR) waits for SIGHUP.
    let elsewhere = env.root().join("elsewhere");
    let elsewhere = elsewhere.display().to_string();
    let hidden = [("XDG_RUNTIME_DIR", elsewhere.as_str())];
    let args = [
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--security",
        "none",
        "--domain",
        "gamma.test",
    ];
    let out = mailcall_e2e::run_cli_with_env(&env, &cli, &args, None, &hidden);
    out.assert_success();
    assert!(!out.stdout.contains("running Mailcall"), "{out}");
    assert_eq!(rcpt_code(lp, "gamma.test"), 550, "{}", daemon.output());
    hangup(&daemon, 1);
    assert_eq!(rcpt_code(lp, "gamma.test"), 250, "{}", daemon.output());
}
