//! Runs the `mailcall-cli` binary under test in a [`KeyringEnv`], with a per-test config file,
//! optional stdin and a deadline; the result prints stdout and stderr in every assert message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::keyring_env::KeyringEnv;
use crate::process::run_with_timeout;

/// How long one CLI run may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the binary is: `$MAILCALL_CLI`, else `mailcall-cli` in the target dir that holds the
/// test executable (`<target>/debug/deps/e2e-*` → `<target>/debug/mailcall-cli`).
pub fn cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MAILCALL_CLI") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("mailcall-cli");
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p mailcall-cli` first (same target dir), \
         or set MAILCALL_CLI to the binary",
        bin.display()
    );
    bin
}

/// The CLI bound to one test's environment and config file.
pub struct Cli<'a> {
    env: &'a KeyringEnv,
    config: PathBuf,
    binary: PathBuf,
    timeout: Duration,
}

impl<'a> Cli<'a> {
    /// The CLI in `env`, with `--config <env root>/config.toml`.
    pub fn new(env: &'a KeyringEnv) -> Self {
        Self {
            env,
            config: env.root().join("config.toml"),
            binary: cli_binary(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The CLI in `env` with another config file (`--config PATH`): a second config in the same
    /// session, or the platform's default path that commands typed without `--config` read.
    pub fn with_config(env: &'a KeyringEnv, config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            ..Self::new(env)
        }
    }

    /// The config file every run passes with `--config`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The binary being run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The config file's current text (empty if it does not exist).
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// Replaces the config file's contents (its directory is made when missing).
    pub fn write_config(&self, toml: &str) {
        if let Some(dir) = self.config.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(&self.config, toml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config.display()));
    }

    /// Runs `mailcall-cli --config CFG ARGS`.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_stdin(args, None)
    }

    /// Runs it with `stdin` fed and closed.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let mut cmd = self.env.command(&self.binary);
        cmd.arg("--config").arg(&self.config).args(args);
        if let Some(level) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", level);
        }
        let shown = format!(
            "mailcall-cli --config {} {}",
            self.config.display(),
            args.join(" ")
        );
        let done = run_with_timeout(&mut cmd, stdin.map(str::as_bytes), self.timeout)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        CliOutput {
            command: shown,
            status: done.status,
            stdout: done.stdout,
            stderr: done.stderr,
            elapsed: done.elapsed,
        }
    }
}

/// What one CLI run produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status; `None` when killed at the deadline.
    pub status: Option<ExitStatus>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CliOutput {
    /// The exit code (`None` when killed or ended by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stdout and stderr together, for "somewhere in the output" checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics (with the whole output) unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code(), Some(0), "expected success\n{self}");
        self
    }

    /// Panics unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "expected exit code {code}\n{self}");
        self
    }

    /// Panics unless it ran to completion and exited non-zero.
    pub fn assert_failure(&self) -> &Self {
        assert!(
            matches!(self.code(), Some(c) if c != 0),
            "expected a non-zero exit code\n{self}"
        );
        self
    }

    /// Panics unless stdout or stderr contains `needle` (case-insensitive).
    pub fn assert_mentions(&self, needle: &str) -> &Self {
        assert!(
            self.all_output()
                .to_lowercase()
                .contains(&needle.to_lowercase()),
            "expected the output to mention {needle:?}\n{self}"
        );
        self
    }

    /// The stdout lines that start with `prefix`.
    pub fn lines_starting_with(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(prefix))
            .collect()
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Some(s) => format!("{s}"),
            None => "killed at the deadline".to_string(),
        };
        write!(
            f,
            "$ {}\n  -> {status} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command, self.elapsed, self.stdout, self.stderr
        )
    }
}
