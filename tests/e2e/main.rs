//! The one end-to-end test binary: `mailcall-cli` against a private Postfix (the ISP) and
//! gnome-keyring (the Secret Service), every test in its own hermetic world.
//!
//! Run: `cargo build -p mailcall-cli && cargo test -p mailcall-e2e` as root after
//! `tests/setup.sh` (or set MAILCALL_CLI to a built binary).
//!
//! The ODMR (ATRN) tests run a private Exim 4.99.1 as the provider (`mailcall_e2e::EximIsp`,
//! see tests/exim.rs for the facts it relies on). Debian has no Exim with ATRN, so
//! `tests/setup/exim.sh` (called by `tests/setup.sh`) builds it from the upstream tarball into
//! /var/cache/mailcall (or set MAILCALL_EXIM to a built `exim`); `odmr_peer` checks that
//! provider over raw sockets and with fetchmail's ODMR mode.

#![allow(clippy::unwrap_used)]

mod accounts;
mod daemon_log;
mod durability;
mod everyday;
mod exit_codes;
mod faults;
mod fetch;
mod headless;
mod hostile;
mod idle;
mod ipup;
mod json;
mod linkworld;
mod odd_addresses;
mod odmr;
mod odmr_peer;
mod outgoing;
mod outgoing_crash;
mod outgoing_kept;
mod outgoing_oauth2;
mod outgoing_queue;
mod pause;
mod peers;
mod port25;
mod readers;
mod reload;
mod retry;
mod routing;
mod secrets;
mod settings_race;
mod strangers;
mod submission;
mod terminal;
mod tls_auth;
mod triggers;
mod unclaimed;

use std::time::Duration;

use mailcall_e2e::{free_port, AccountArgs, Cli, CliOutput, KeyringEnv};

/// Idle timeout for fetches: Postfix starts delivering within milliseconds of the 250.
pub const IDLE: &str = "3";

/// `account set NAME --host 127.0.0.1 --port PORT --security none` plus a `--domain` per domain.
pub fn set_plain_account(cli: &Cli, name: &str, port: u16, domains: &[&str]) -> CliOutput {
    cli.set_account(&AccountArgs::new(name, port).domains(domains))
}

/// `fetch --listen 127.0.0.1:LP --maildir DIR --idle-timeout 3 --max-wait 60` plus `extra`.
pub fn fetch(cli: &Cli, listen_port: u16, maildir: &std::path::Path, extra: &[&str]) -> CliOutput {
    let listen = format!("127.0.0.1:{listen_port}");
    let maildir = maildir.display().to_string();
    let mut args = vec![
        "fetch",
        "--listen",
        &listen,
        "--maildir",
        &maildir,
        "--idle-timeout",
        IDLE,
        "--max-wait",
        "60",
    ];
    args.extend(extra);
    cli.run(&args)
}

/// A config whose listener greets as `client.test` (Postfix reports a loop if the listener
/// greets with the ISP's own name).
pub fn write_base_config(cli: &Cli) {
    // No submission listener: a daemon with an outgoing account would take 127.0.0.1:587,
    // which tests run side by side (or a local mail server) would fight over.
    cli.write_config("hostname = \"client.test\"\nsubmit-listen = \"off\"\n");
}

/// A listener port for one test.
pub fn listener_port() -> u16 {
    free_port()
}

/// Runs `line` the way a user types it: `sh -c LINE` in the session's environment, with
/// `mailcall-cli` found on PATH and `extra_env` set (e.g. PASSWORD for the password hint).
pub fn typed(env: &KeyringEnv, line: &str, extra_env: &[(&str, &str)]) -> CliOutput {
    let binary = mailcall_e2e::cli::cli_binary();
    let bin_dir = binary.parent().unwrap_or(std::path::Path::new("/"));
    let mut cmd = env.command("sh");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.arg("-c").arg(line).env("PATH", path);
    cmd.envs(extra_env.iter().copied());
    let done = mailcall_e2e::process::run_with_timeout(&mut cmd, None, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("cannot run sh -c {line:?}: {e}"));
    CliOutput {
        command: format!("sh -c {line:?}"),
        status: done.status,
        stdout: done.stdout,
        stderr: done.stderr,
        elapsed: done.elapsed,
    }
}

/// The command after the first `to fix: ` in the output.
pub fn fix_line(out: &CliOutput) -> String {
    out.all_output()
        .lines()
        .find_map(|l| {
            l.split_once("to fix: ")
                .map(|(_, fix)| fix.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no `to fix:` line in the output\n{out}"))
}
