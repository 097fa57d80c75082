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
mod durability;
mod faults;
mod fetch;
mod hostile;
mod odmr;
mod odmr_peer;
mod peers;
mod port25;
mod readers;
mod reload;
mod secrets;
mod tls_auth;
mod triggers;

use mailcall_e2e::{free_port, AccountArgs, Cli, CliOutput};

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
    cli.write_config("hostname = \"client.test\"\n");
}

/// A listener port for one test.
pub fn listener_port() -> u16 {
    free_port()
}
