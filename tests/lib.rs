//! Hermetic end-to-end harness: real peers (Postfix as the ISP, gnome-keyring as the Secret
//! Service) started per test, plus a runner for the `mailcall-cli` binary and Maildir checks.
//!
//! Every test builds its own world: a temp dir with HOME and XDG dirs, a private D-Bus session
//! bus with gnome-keyring on it ([`KeyringEnv`]), a private Postfix instance on a free loopback
//! port ([`PostfixIsp`]) or a private Exim 4.99 as the ODMR (ATRN) provider ([`EximIsp`]), and
//! runs the CLI against them ([`Cli`]). Each process the harness
//! starts is owned by a guard that kills it by PID on drop, so tests can run in parallel threads.
//!
//! Set `MAILCALL_E2E_KEEP=1` to keep the temp dirs (maillog, queue, Maildir) for debugging.

#![forbid(unsafe_code)]

pub mod cli;
pub mod dovecot;
pub mod exim;
pub mod fake_isp;
pub mod keyring_env;
pub mod maildir;
pub mod netns;
pub mod oauth2;
pub mod postfix;
pub mod postfix_lan;
pub mod process;
pub mod raw;
pub mod running;
pub mod smtp;
pub mod swaks;
pub mod tls;
pub mod tmpfs;
pub mod users;
pub mod wine;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use cli::{AccountArgs, Cli, CliOutput};
pub use dovecot::{
    Dovecot, DovecotMessage, DovecotOptions, DovecotUser, ImapClient, LmtpClient, LmtpDelivery,
};
pub use exim::{AtrnRequest, AuthMechanisms, EximIsp, EximOptions};
pub use fake_isp::{FakeIsp, Script};
pub use keyring_env::KeyringEnv;
pub use maildir::{Maildir, StoredMessage};
pub use netns::Netns;
pub use oauth2::OAuth2Auth;
pub use postfix::{IspOptions, PostfixIsp, QueueEntry};
pub use postfix_lan::PostfixLan;
pub use raw::{RawSmtp, ReadOutcome};
pub use running::{run_cli_with_env, RunningCli};
pub use smtp::{Message, BODY_END};
pub use tmpfs::Tmpfs;
pub use users::{RunUserLink, TestUser};

/// Ports [`free_port`] handed out in this process: never one twice (tests run as threads of one
/// process, and two of them once got the same port: one test's ISP then relayed into the other's).
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A loopback port that was free a moment ago and that no other call in this process got.
///
/// It comes from below the kernel's ephemeral range (`ip_local_port_range`), so nothing that
/// binds port 0 or connects out (a daemon on `127.0.0.1:0`, a fake ISP, Postfix's smtp client)
/// can take it between the test choosing it and its server binding it. Where that range leaves
/// too little room below it, the kernel's choice (bind to port 0) is used instead.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (first, end) = (10_000u32, low.min(65_536));
    if end > first + 1_000 {
        let span = end - first;
        // Processes (test binaries, runs side by side) start at different places.
        let offset = std::process::id().wrapping_mul(7_919) % span;
        for i in 0..span {
            let port = u16::try_from(first + (offset + i) % span).expect("below 65536");
            if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed.insert(port);
                return port;
            }
        }
    }
    for _ in 0..1_000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 for a free port");
        let port = listener
            .local_addr()
            .expect("a bound listener has a local address")
            .port();
        if handed.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port left that this test process has not handed out already")
}

/// Polls `cond` every `every` until it returns `Some` or `timeout` passes (then `None`).
///
/// This is the only waiting the harness does: a condition with a deadline, never a bare sleep.
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A temp dir for one test's files; mode 0755 so the postfix and nobody users can traverse it.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("mailcall-e2e-{prefix}-"))
        .tempdir()
        .expect("creating a temp dir under the system temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 on the test's temp dir");
    dir
}

/// Keeps the temp dir when `MAILCALL_E2E_KEEP` is set, and says where it is.
pub(crate) fn maybe_keep(dir: tempfile::TempDir, what: &str) {
    if std::env::var_os("MAILCALL_E2E_KEEP").is_some() {
        let path = dir.keep();
        eprintln!("kept {what} at {}", path.display());
    }
}

/// Reads a file to a string for a failure message; says why if it cannot.
pub fn read_for_diagnostics(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The TCP sockets on loopback port `port` with their owning processes (`ss -tanp`), for a
/// failure message: who still listens there, which connections are open and in what state.
pub fn tcp_state(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args(["-tanp", &format!("( sport = :{port} or dport = :{port} )")])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("<cannot run ss: {e}>"),
    }
}

/// Whether the tests run as root (some need it: setpriv to another user).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Every regular file under `dir`, recursively (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Bounded: a test's tree holds a few hundred entries at most.
    for _ in 0..100_000 {
        let Some(d) = stack.pop() else { break };
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_file() {
                found.push(e.path());
            }
        }
    }
    found
}
