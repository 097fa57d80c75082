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
        CliOutput::of_run(shown, done)
    }
}

/// `account set` for a test, built up instead of spelled out: the host is 127.0.0.1 and the
/// security `none` unless said otherwise; a password goes in through `--password-stdin`.
#[derive(Debug, Clone)]
pub struct AccountArgs {
    name: String,
    host: String,
    port: u16,
    security: &'static str,
    user: Option<(String, String)>,
    ca_file: Option<String>,
    domains: Vec<String>,
    extra: Vec<String>,
}

impl AccountArgs {
    /// Account `name` at 127.0.0.1:`port`, security none, no domains yet.
    pub fn new(name: &str, port: u16) -> Self {
        AccountArgs {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port,
            security: "none",
            user: None,
            ca_file: None,
            domains: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Another host (a name, for certificate tests).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// `--security none|starttls|tls`.
    pub fn security(mut self, security: &'static str) -> Self {
        self.security = security;
        self
    }

    /// `--user USER --password-stdin` with `password` on stdin.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_string(), password.to_string()));
        self
    }

    /// `--ca-file PATH`.
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.display().to_string());
        self
    }

    /// One `--domain D` per domain.
    pub fn domains(mut self, domains: &[&str]) -> Self {
        self.domains.extend(domains.iter().map(|d| d.to_string()));
        self
    }

    /// More arguments as they are (`--connect-command`, ...).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The command line after `mailcall-cli --config CFG`, and what goes on stdin.
    pub fn argv(&self) -> (Vec<String>, Option<String>) {
        let mut argv: Vec<String> = ["account", "set", &self.name, "--host", &self.host, "--port"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(self.port.to_string());
        argv.extend(["--security".to_string(), self.security.to_string()]);
        let mut stdin = None;
        if let Some((user, password)) = &self.user {
            argv.extend(["--user".into(), user.clone(), "--password-stdin".into()]);
            stdin = Some(format!("{password}\n"));
        }
        if let Some(ca) = &self.ca_file {
            argv.extend(["--ca-file".into(), ca.clone()]);
        }
        for d in &self.domains {
            argv.extend(["--domain".into(), d.clone()]);
        }
        argv.extend(self.extra.iter().cloned());
        (argv, stdin)
    }
}

impl Cli<'_> {
    /// Runs `account set` as `args` describes (not asserting anything).
    pub fn try_set_account(&self, args: &AccountArgs) -> CliOutput {
        let (argv, stdin) = args.argv();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run_with_stdin(&argv, stdin.as_deref())
    }

    /// Runs `account set` and asserts it succeeded.
    pub fn set_account(&self, args: &AccountArgs) -> CliOutput {
        let out = self.try_set_account(args);
        out.assert_success();
        out
    }
}

/// What one CLI run produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status; `None` when killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CliOutput {
    /// What the run of `command` that `done` tells of produced.
    pub fn of_run(command: String, done: crate::process::Finished) -> Self {
        CliOutput {
            command,
            status: done.status,
            stdout: done.stdout,
            stderr: done.stderr,
            elapsed: done.elapsed,
        }
    }

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
