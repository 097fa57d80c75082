//! Where `mailcall-cli daemon` logs: `--log-file` (appended, 0600, plain text with timestamps,
//! nothing on stderr) and the journal's line format when stderr is the stream `JOURNAL_STREAM`
//! names (a `<priority>` prefix per line, no timestamp, no colour), as systemd sets it for a
//! unit; a `JOURNAL_STREAM` that is not stderr (inherited by a redirected child) is ignored.
//! The real journald reading these lines is in tests/package (the daemon under systemd --user).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mailcall_e2e::process::ChildGuard;
use mailcall_e2e::{poll_until, Cli, KeyringEnv};

/// Runs `daemon --listen 127.0.0.1:0 ARGS` with stderr into `stderr_file` and `env_vars` set,
/// waits until `log` (a file) says it runs (once more than before), stops it with SIGTERM and
/// waits for a clean exit.
fn run_daemon_until_running(
    env: &KeyringEnv,
    cli: &Cli,
    args: &[&str],
    stderr_file: &Path,
    log: &Path,
    env_vars: &[(&str, String)],
) {
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_file)
        .unwrap();
    let mut cmd = env.command(cli.binary());
    cmd.arg("--config")
        .arg(cli.config_path())
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env_vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    // The log may hold earlier runs (it is appended to): wait for one more start line.
    let starts = || {
        fs::read_to_string(log)
            .unwrap_or_default()
            .matches("mailcall daemon running")
            .count()
    };
    let before = starts();
    let mut daemon = ChildGuard::new("mailcall-cli daemon", cmd.spawn().unwrap());
    let runs = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        (starts() > before).then_some(())
    });
    assert!(
        runs.is_some(),
        "the daemon did not log that it runs within 30 s (exited: {:?})\n{}:\n{}\nstderr:\n{}",
        daemon.exited(),
        log.display(),
        fs::read_to_string(log).unwrap_or_default(),
        fs::read_to_string(stderr_file).unwrap_or_default()
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM failed");
    let stopped = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        daemon.exited()
    });
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly on SIGTERM: {stopped:?}\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

fn setup() -> (KeyringEnv, std::path::PathBuf) {
    // No accounts, so no keyring: the daemon warns about that and runs its listener.
    let env = KeyringEnv::without_secret_service();
    let root = env.root().to_path_buf();
    (env, root)
}

#[test]
fn log_file_is_private_appended_and_plain_with_nothing_on_stderr() {
    let (env, root) = setup();
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    let log = root.join("daemon.log");
    let stderr = root.join("stderr");
    let log_arg = log.display().to_string();
    for _ in 0..2 {
        run_daemon_until_running(&env, &cli, &["--log-file", &log_arg], &stderr, &log, &[]);
    }
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("mailcall daemon running").count(),
        2,
        "two runs, both appended:\n{text}"
    );
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600,
        "the log names hosts and senders: owner only"
    );
    assert!(!text.contains('\u{1b}'), "no colour in a file:\n{text}");
    for line in text.lines().filter(|l| !l.starts_with("  ")) {
        assert!(
            line.starts_with("20") && line.contains(" INFO ")
                || line.contains(" WARN ")
                || line.contains(" ERROR "),
            "a file line starts with a timestamp and a level: {line:?}"
        );
    }
    assert!(text.contains(" WARN "), "the no-accounts warning:\n{text}");
    assert_eq!(
        fs::read_to_string(&stderr).unwrap(),
        "",
        "with --log-file nothing is logged on stderr"
    );
}

#[test]
fn on_the_journal_stream_lines_carry_syslog_priorities_and_nothing_else() {
    let (env, root) = setup();
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    let stderr = root.join("stderr");
    fs::write(&stderr, "").unwrap();
    // What systemd sets: the device and inode of the stream it made stderr.
    let meta = fs::metadata(&stderr).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    run_daemon_until_running(
        &env,
        &cli,
        &[],
        &stderr,
        &stderr,
        &[("JOURNAL_STREAM", stream)],
    );
    let text = fs::read_to_string(&stderr).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("<4>no accounts in ")),
        "the warning as priority 4:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>mailcall daemon running")),
        "the start line as priority 6:\n{text}"
    );
    for line in text.lines() {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            matches!(prio, "<3>" | "<4>" | "<6>" | "<7>"),
            "every line starts with a priority: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}') && !line[3..].starts_with("20"),
            "no colour or timestamp: {line:?}"
        );
    }
}

#[test]
fn a_journal_stream_that_is_not_stderr_is_ignored() {
    let (env, root) = setup();
    let cli = Cli::new(&env);
    cli.write_config("hostname = \"client.test\"\nfetch-at-start = false\n");
    let stderr = root.join("stderr");
    // Inherited from a unit by a process whose stderr was redirected elsewhere.
    run_daemon_until_running(
        &env,
        &cli,
        &[],
        &stderr,
        &stderr,
        &[("JOURNAL_STREAM", "8:1".to_string())],
    );
    let text = fs::read_to_string(&stderr).unwrap();
    assert!(
        text.contains(" INFO ") && !text.contains("<6>"),
        "the ordinary format:\n{text}"
    );
}
