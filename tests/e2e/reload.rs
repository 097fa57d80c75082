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

/// One Mailcall runs per user (it owns the control socket), so `status`, `pause` and
/// `fetch --via-running` reach it whatever `--config` they are given. Given another config
/// file, they say that the running one uses its own, and the fetch's hints name that file (its
/// accounts are the ones to fix); given the same one, they say nothing more.
#[test]
fn commands_given_another_config_say_the_running_mailcall_uses_its_own() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    // The ISP's port is closed: a fetch fails at once, with a hint to fix the account.
    set_plain_account(&cli, "isp", 9, &["alpha.test"]);
    let daemon = RunningCli::daemon(&env, &cli, &["--listen", "127.0.0.1:0"]);
    let running = cli.config_path().display().to_string();
    let other = Cli::with_config(&env, env.root().join("other.toml"));
    other.write_config("hostname = \"other.test\"\n");
    let other_path = other.config_path().display().to_string();
    let note = format!("note: the running Mailcall uses {running}, not {other_path}");

    let same = cli.run(&["status"]);
    same.assert_success()
        .assert_mentions(&format!("config: {running}"));
    assert!(!same.stderr.contains("note:"), "{same}");

    let status = other.run(&["status"]);
    status
        .assert_success()
        .assert_mentions(&format!("config: {running}"));
    assert!(
        status.stderr.contains(&note) && status.stderr.contains("this is its state"),
        "{status}"
    );
    let json = other.run(&["status", "--json"]);
    let value: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{json}"));
    assert_eq!(value["config"], running.as_str(), "{json}");
    assert!(json.stderr.contains(&note), "{json}");

    let fetched = other.run(&["fetch", "--via-running"]);
    assert!(
        fetched.stdout.contains("asked the running Mailcall")
            && fetched.stderr.contains(&note)
            && fetched
                .stderr
                .contains("it fetched with its own accounts and settings"),
        "{fetched}"
    );
    let fix = crate::fix_line(&fetched);
    assert!(
        fix.starts_with(&format!("mailcall-cli --config {running} account edit isp")),
        "the hint edits the running Mailcall's account, in its config: {fix}\n{fetched}"
    );

    let paused = other.run(&["pause"]);
    paused.assert_success();
    assert!(
        paused.stderr.contains(&note) && paused.stderr.contains("it is the one paused"),
        "{paused}"
    );
    // `--quiet` keeps the note back, as it does everything but errors.
    let quiet = other.run(&["--quiet", "resume"]);
    quiet.assert_success();
    assert!(quiet.all_output().trim().is_empty(), "{quiet}");
    assert!(daemon.output().contains("mailcall daemon running"));
}
