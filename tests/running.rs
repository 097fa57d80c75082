//! `mailcall-cli` as a long-running process: a `fetch` whose listener stays up while a test
//! pokes at it, whose stdout is watched line by line, and which can be killed with SIGKILL by
//! PID mid-flight. Also a one-shot runner with extra environment variables.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::{Cli, CliOutput};
use crate::keyring_env::KeyringEnv;
use crate::process::{run_with_timeout, ChildGuard};

/// A `mailcall-cli` process running in the background; dropping it kills it by PID.
pub struct RunningCli {
    guard: ChildGuard,
    command: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl RunningCli {
    /// Starts `mailcall-cli --config CFG ARGS` in `env` with `extra_env` set.
    pub fn spawn(env: &KeyringEnv, cli: &Cli, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let mut cmd = env.command(cli.binary());
        cmd.arg("--config").arg(cli.config_path()).args(args);
        cmd.envs(extra_env.iter().copied());
        Self::start(cmd, format!("mailcall-cli {}", args.join(" ")))
    }

    /// Starts `cmd` (shown as `command` in messages) with its output watched: how a test runs
    /// the CLI some other way (the Windows build under Wine, tests/wine.rs).
    pub fn start(mut cmd: std::process::Command, command: String) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let mut guard = ChildGuard::new("mailcall-cli", child);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = guard.child_mut().stdout.take().expect("stdout was piped");
        let err = guard.child_mut().stderr.take().expect("stderr was piped");
        {
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    stdout.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut err = err;
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self {
            guard,
            command,
            stdout,
            stderr,
        }
    }

    /// Starts `daemon ARGS` and waits until it logs that it runs (its listener, when it needs
    /// one, and its control socket are up by then); panics with its output when it does not
    /// within 30 s.
    pub fn daemon(env: &KeyringEnv, cli: &Cli, args: &[&str]) -> Self {
        let mut argv = vec!["daemon"];
        argv.extend_from_slice(args);
        Self::spawn(env, cli, &argv, &[]).until_daemon_runs(Duration::from_secs(30), "")
    }

    /// Waits (up to `limit`) until this daemon logs that it runs, else panics saying so
    /// (`under`: where it ran, e.g. " under Wine").
    pub fn until_daemon_runs(mut self, limit: Duration, under: &str) -> Self {
        let running = "mailcall daemon running";
        // Until it says so, or it ends (then there is nothing more to wait for).
        crate::poll_until(limit, Duration::from_millis(20), || {
            (self.said(running) || self.exited().is_some()).then_some(())
        });
        assert!(
            self.said(running) && self.exited().is_none(),
            "the daemon did not start{under} (exited: {:?})\n{}",
            self.exited(),
            self.output()
        );
        self
    }

    /// Starts `fetch --listen 127.0.0.1:PORT --maildir DIR --idle-timeout IDLE --max-wait 600`
    /// and waits until it says it listens (the listener is bound before that line).
    pub fn fetch(
        env: &KeyringEnv,
        cli: &Cli,
        listen_port: u16,
        maildir: &std::path::Path,
        idle_secs: u64,
    ) -> Self {
        let listen = format!("127.0.0.1:{listen_port}");
        let maildir = maildir.display().to_string();
        let idle = idle_secs.to_string();
        let mut run = Self::spawn(
            env,
            cli,
            &[
                "fetch",
                "--listen",
                &listen,
                "--maildir",
                &maildir,
                "--idle-timeout",
                &idle,
                "--max-wait",
                "600",
            ],
            &[],
        );
        run.wait_for_line("listening on", Duration::from_secs(30));
        run
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether it has printed `needle` so far, on stdout or stderr (where a daemon logs).
    pub fn said(&self, needle: &str) -> bool {
        self.stdout_lines().iter().any(|l| l.contains(needle)) || self.stderr().contains(needle)
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "$ {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command,
            self.stdout_lines().join("\n"),
            self.stderr()
        )
    }

    /// Waits until a stdout line contains `needle`; panics with the output (and whether the
    /// process died) when it does not within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let found = crate::poll_until(timeout, Duration::from_millis(10), || {
            self.stdout_lines().into_iter().find(|l| l.contains(needle))
        });
        match found {
            Some(line) => line,
            None => panic!(
                "no stdout line with {needle:?} within {timeout:?} (exited: {:?})\n{}",
                self.guard.exited(),
                self.output()
            ),
        }
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.guard.exited()
    }

    /// SIGKILL by PID (no chance to clean up, like a power cut for the process) and reap it.
    pub fn kill9(&mut self) {
        // Child::kill is SIGKILL to this one PID.
        let _ = self.guard.child_mut().kill();
        let _ = self.guard.child_mut().wait();
    }
}

/// Runs `mailcall-cli --config CFG ARGS` to completion with `extra_env` set (e.g.
/// `MAILCALL_LOG=debug`), stdin fed and closed.
pub fn run_cli_with_env(
    env: &KeyringEnv,
    cli: &Cli,
    args: &[&str],
    stdin: Option<&str>,
    extra_env: &[(&str, &str)],
) -> CliOutput {
    let mut cmd = env.command(cli.binary());
    cmd.arg("--config").arg(cli.config_path()).args(args);
    cmd.envs(extra_env.iter().copied());
    let vars: Vec<String> = extra_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let shown = format!(
        "{} mailcall-cli --config {} {}",
        vars.join(" "),
        cli.config_path().display(),
        args.join(" ")
    );
    let done = run_with_timeout(
        &mut cmd,
        stdin.map(str::as_bytes),
        crate::cli::DEFAULT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.binary().display()));
    CliOutput::of_run(shown, done)
}
