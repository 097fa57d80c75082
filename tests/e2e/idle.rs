//! An idle daemon sleeps. Reading its accounts from the real Secret Service starts helper
//! threads (zbus on async-io, which hands blocking calls to the `blocking` crate's pool); none of
//! them may stay behind waking on a timer. `blocking` 1.7.0 keeps its last pool thread forever,
//! waking every 500 ms (its idle-exit test became `thread_count > limit && timed out`), which
//! is where most of the idle daemon's 3 wakeups a second in benchmark row 4c came from; the
//! lock file pins 1.6.2, whose idle threads exit. This test fails on 1.7.0.

use std::fs;
use std::time::Duration;

use mailcall_e2e::{free_port, poll_until, AccountArgs, Cli, KeyringEnv, RunningCli};

/// `(thread id, name, context switches so far)` for every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String, u64)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<_> = tasks
        .flatten()
        .map(|t| {
            let dir = t.path();
            let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let switches = fs::read_to_string(dir.join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            (
                t.file_name().to_string_lossy().into_owned(),
                name.trim().to_string(),
                switches,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_idle_daemon_keeps_no_helper_thread_waking_after_reading_the_keyring() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    // A password makes the account's secret a real keyring item the daemon reads at start.
    cli.set_account(
        &AccountArgs::new("isp", free_port())
            .security("starttls")
            .user("mc", "secret")
            .domains(&["example.org"]),
    );
    let mut daemon = RunningCli::daemon(&env, &cli, &["--listen", "127.0.0.1:0"]);
    // The daemon holds the account it read from the keyring (its control socket says so).
    let status = cli.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}\n{status}"));
    assert_eq!(
        status["accounts"],
        serde_json::json!(["isp"]),
        "the daemon did not load the account from the keyring: {status}\n{}",
        daemon.output()
    );

    // The pool's threads exit 500 ms after their last job; allow for a slow machine.
    let pid = daemon.pid();
    let settled = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let pool: Vec<_> = threads(pid)
            .into_iter()
            .filter(|(_, name, _)| name.starts_with("blocking-"))
            .collect();
        pool.is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "10 s after start the daemon still keeps a blocking-pool thread that wakes on a timer \
         (thread, name, context switches): {:?}\n{}",
        threads(pid),
        daemon.output()
    );
    assert!(
        daemon.exited().is_none(),
        "the daemon exited\n{}",
        daemon.output()
    );
}
