//! A private Exim 4.99.1 per test as the ODMR (RFC 2645) provider: the "ISP" that holds mail
//! for the customer's domains until the customer connects, authenticates and says `ATRN`, and
//! then delivers it over that same connection with the roles reversed.
//!
//! Debian 12's exim4 is 4.96, which has no ATRN; `tests/setup/exim.sh` builds 4.99.1 from the
//! upstream source into a cache dir outside the clone. The harness finds the binary at
//! `$MAILCALL_EXIM` (a path to an `exim` binary), else `$MAILCALL_CACHE_DIR/exim/bin/exim`, else
//! `/var/cache/mailcall/exim/bin/exim`; without one, [`EximIsp::start`] panics with "run
//! tests/setup/exim.sh". The tests run as root (Exim keeps root with `-C` only for root).
//!
//! ```no_run
//! use mailcall_e2e::exim::{EximIsp, EximOptions};
//! let isp = EximIsp::start(EximOptions::new(&["customer.test", "example.org"]));
//! let held = isp.queue_numbered("customer.test", 3); // injected on isp.inject_port()
//! // Your ODMR client: connect to 127.0.0.1:isp.atrn_port(), EHLO, (STARTTLS with
//! // isp.ca_file()), AUTH as isp.user()/isp.password(), `ATRN customer.test`, then serve SMTP.
//! isp.wait_queue("customer.test delivered", std::time::Duration::from_secs(20), |q| {
//!     q.iter().all(|m| !m.is_for("customer.test"))
//! });
//! assert_eq!(isp.atrn_requests()[0].authenticator, mailcall_e2e::exim::AUTHENTICATOR_CRAM_MD5);
//! ```
//!
//! Each instance has its own dir (a [`crate::test_dir`], 0755 so Exim's run user `mail` can
//! traverse it): `configure`, `spool/` and `log/` (owned by `mail`), `tls/` (its own CA and a
//! server certificate, see [`crate::tls`]) and `daemon.out`. Two ports on 127.0.0.1, both free
//! ports picked at start: the ATRN port (ATRN, AUTH and STARTTLS are offered only there) and an
//! injection port where tests queue mail with plain SMTP (no AUTH, no TLS, no ATRN). The daemon
//! runs in the foreground (`exim -C configure -bdf`) in its own process group; dropping the
//! instance sends SIGTERM to that group, then SIGKILL to what is left (by PID/PGID only).
//! `queue_only`: nothing is ever delivered except through ATRN. Set `MAILCALL_E2E_KEEP=1` to keep
//! the dir.
//!
//! Facts this relies on (Exim 4.99.1 built by tests/setup/exim.sh, Debian 12, measured here):
//! - Build: 18-37 s with `make -j2` on 2 cores (the script prints it). `exim -bV` does not list ATRN: since 4.99 it
//!   is always built (src/atrn.c); the option `acl_smtp_atrn` exists only in such builds.
//!   `Support for:` lists `OpenSSL`, `Authenticators (built-in): cram_md5 plaintext`.
//! - Start: `-bdf` answers (220) on both ports about 50 ms after the spawn
//!   ([`EximIsp::started_in`]); with the CA and certificate made first, `start` takes ~0.1 s.
//! - Greeting: `220 provider.test ESMTP Exim 4.99.1 <date>`.
//! - EHLO on the ATRN port: `250-provider.test Hello <helo> [127.0.0.1]`, `SIZE 52428800`,
//!   `LIMITS MAILMAX=1000 RCPTMAX=50000`, `8BITMIME`, `ATRN`, `PIPELINING`, `PIPECONNECT`,
//!   `AUTH CRAM-MD5 PLAIN`, `CHUNKING`, `STARTTLS`, `HELP` (in that order; ATRN only when offered,
//!   AUTH lists the configured mechanisms, and with `tls_before_auth` AUTH only after STARTTLS).
//!   After STARTTLS the EHLO reply no longer has STARTTLS. EHLO on the injection port has none of
//!   ATRN, AUTH, STARTTLS.
//! - `ATRN` before AUTH: `530 ATRN is not permitted without authentication`. ATRN where it is
//!   not offered (injection port, or `without_atrn`): `502 ATRN command used when not
//!   advertised`. AUTH where it is not offered: `503 AUTH command used when not advertised`.
//! - AUTH PLAIN (initial response or after `334 `) and AUTH CRAM-MD5 (`334 <base64 of
//!   <pid.time@provider.test>>`, answer `base64("user " + hex hmac-md5)`): `235 Authentication
//!   succeeded`; a wrong password: `535 Incorrect authentication data`. CRAM-MD5 takes the user
//!   name up to the first space, so a user with a space can use PLAIN only. A mechanism not
//!   offered: `504 <MECH> authentication mechanism not supported`.
//! - After AUTH: `ATRN d1,d2` (comma-separated, RFC 2645) or a bare `ATRN` (every domain of the
//!   instance). A domain the instance does not hold: `450 ATRN request refused` (nothing else
//!   happens, the session goes on). Nothing held for any asked domain: `453 You have no mail`
//!   (the session goes on, but see the bugs below). Mail held: `250 ODMR provider turning line
//!   around`, then Exim is the client on the same socket: it sends nothing until the customer's
//!   `220` greeting (nothing came in 3 s), then `EHLO provider.test`, and for each held message
//!   MAIL FROM / RCPT TO / DATA (pipelined when the customer offers PIPELINING), `RSET` between
//!   messages only after a rejection, and `QUIT` after the last one, then closes. Only recipients in the asked domains
//!   are sent; a message's other recipients stay queued.
//! - On the turned line Exim uses what the customer's EHLO offers: STARTTLS there makes Exim
//!   send `STARTTLS` (over a plain line; a `454` and it goes on in plain). A `550` to RCPT makes
//!   Exim bounce that message (a `<>` message to the sender stays in the queue: `queue_only`) and
//!   go on with `RSET`. A `4xx` ends the turn: Exim sends `QUIT`, the rest stays queued, and the
//!   refused recipient waits for its retry time ([`EximOptions::retry_interval`], 1 s by
//!   default): an ATRN before that still gets `250`, then Exim delivers only the rest and, when
//!   nothing is left, closes the connection right after the customer's 220 without a word.
//! - fetchmail's EHLO name is the machine's hostname; Exim logs `ATRN '<arg>' received from
//!   (<helo>) [127.0.0.1]`, then `Start ODMR queue run: pid=N -qq -Rr @(d1|d2)`, a `=>` line per
//!   delivery and `End queue run`. An ATRN session does not get Exim's `no MAIL in SMTP
//!   connection ... A=<authenticator>:<id>` line (other sessions do), so the ATRN ACL writes its
//!   own line, read back by [`EximIsp::atrn_requests`]: `mailcall-e2e: ATRN request
//!   A=<authenticator>:<user> domains='<arg>'`, where `<authenticator>` is `cram_md5` or
//!   `plain`. The ACL must write it before the `atrn_domains` condition: that condition reads
//!   spool files, which resets `$authenticated_id`, `$sender_host_authenticated` and `$acl_m*`.
//! - Without a `begin retry` section Exim bounces at the first temporary failure ("retry timeout
//!   exceeded"); the config has `* * F,7d,<retry_interval>` (Exim refuses `0s`).
//!   `deliver_drop_privilege` keeps a bounce from logging "exim user lost privilege for using -C".
//! - `daemon_startup_retries = 0`: a port that is taken fails the start at once (the default
//!   retries 9 times, 30 s apart); the harness then picks new ports (3 tries).
//!
//! Two Exim 4.99.1 bugs a client meets (pinned by tests in tests/e2e/odmr_peer.rs):
//! - ATRN over TLS delivers only the first message of a turn. Exim hands the connection to a new
//!   delivery process per message; for TLS it forks a proxy that holds the TLS state, but in
//!   ATRN mode (transports/smtp.c keeps `tls_out` for `atrn_domains`) the new process writes
//!   through the proxy and reads the socket itself with a stale copy of the TLS state. The
//!   customer gets MAIL/RCPT/DATA of message 2, answers, then a corrupt record (a TLS error) and
//!   the end of the connection; Exim logs "Remote host closed connection in response to
//!   pipelined MAIL FROM" and defers the rest, which the next ATRN gets (again one). Plain
//!   turns deliver any number (fetchmail: 22 in one turn).
//!   Why, in the source: `tls_state_in_to_out()` (tls-openssl.c) moves the server TLS state to
//!   `tls_out` on fd 0 and then `memset`s `tls_in` to zero, so `tls_in.active.sock` is 0 — the
//!   "inactive" value is -1. Message 2's transport process gets the proxy's socketpair as fd 0
//!   too, so `ip_recv()` (ip.c: `tls_in.active.sock == cctx->sock`) decrypts the proxy's plain
//!   text with the queue runner's stale server state, and `tpt_write()` (transport.c:
//!   `tls_out.active.sock == fd`) would encrypt the body with its stale `tls_out`. Measured (an
//!   `exim -d+transport+tls` build with the first one fixed, `tls_in.active.sock = -1` after the
//!   memset): message 2's MAIL/RCPT/DATA and our 250/250/354 then pass, its body goes out as
//!   TLS records from the stale state inside the proxied session, then `QUIT`, and the
//!   connection ends inside DATA ("Remote host closed connection in response to end of data")
//!   — both need fixing upstream. No provider setting avoids it: `hosts_noproxy_tls = *` shuts TLS
//!   down and says EHLO in clear on the same connection (a downgrade no client should follow;
//!   Mailcall never reads plain text after TLS), `hosts_nopass_tls = *` closes the connection
//!   after message 1, and no transport or router option changes which process holds the ATRN
//!   socket. TLS terminated in front of Exim (benches/run.sh uses socat) avoids it: Exim then
//!   sees a plain connection and delivers up to `connection_max_messages` (500) per turn.
//!   Mailcall's ODMR client copes by asking again on a new connection while a turn brings new
//!   mail (tests/e2e/odmr.rs: 50 messages, 50 turns).
//! - `atrn_domains` reads spool files, and reading one resets the per-message variables of the
//!   session: `$received_port`, `$authenticated_id` and more. So after a `453` with other mail in
//!   the spool, a second ATRN in the same session gets `502 ATRN command used when not
//!   advertised` here (the port test in `acl_smtp_atrn`; without it, by the source, `530`). Send every domain in
//!   one ATRN (as fetchmail does), or reconnect.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{run_checked, ChildGuard};
use crate::smtp::{Message, SmtpClient};

/// The provider's `primary_hostname`: its greeting, and the EHLO it sends on the turned line.
pub const PROVIDER_HOSTNAME: &str = "provider.test";
/// The AUTH user every instance has unless [`EximOptions::with_credentials`] says otherwise.
pub const DEFAULT_USER: &str = "customer";
/// The password of [`DEFAULT_USER`].
pub const DEFAULT_PASSWORD: &str = "odmr-s3cret";
/// [`AtrnRequest::authenticator`] for a client that logged in with CRAM-MD5.
pub const AUTHENTICATOR_CRAM_MD5: &str = "cram_md5";
/// [`AtrnRequest::authenticator`] for a client that logged in with PLAIN.
pub const AUTHENTICATOR_PLAIN: &str = "plain";
/// How long the daemon may take to answer on both ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Which SASL mechanisms the ATRN port offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanisms {
    /// `AUTH CRAM-MD5 PLAIN` (the default).
    CramMd5AndPlain,
    /// `AUTH CRAM-MD5` only.
    CramMd5,
    /// `AUTH PLAIN` only.
    Plain,
    /// No AUTH at all: ATRN is then always `530`.
    None,
}

impl AuthMechanisms {
    fn cram(self) -> bool {
        matches!(self, Self::CramMd5AndPlain | Self::CramMd5)
    }

    fn plain(self) -> bool {
        matches!(self, Self::CramMd5AndPlain | Self::Plain)
    }

    /// The EHLO keyword line these give, e.g. `AUTH CRAM-MD5 PLAIN`; `None` for no AUTH.
    pub fn ehlo_line(self) -> Option<&'static str> {
        match self {
            Self::CramMd5AndPlain => Some("AUTH CRAM-MD5 PLAIN"),
            Self::CramMd5 => Some("AUTH CRAM-MD5"),
            Self::Plain => Some("AUTH PLAIN"),
            Self::None => None,
        }
    }
}

/// How one test's provider is set up; start from [`EximOptions::new`] and chain the `with_*`.
#[derive(Debug, Clone)]
pub struct EximOptions {
    /// The ODMR domains it holds mail for (the injection port accepts mail for these only).
    /// The one user may ATRN any of them.
    pub domains: Vec<String>,
    /// AUTH user.
    pub user: String,
    /// AUTH password.
    pub password: String,
    /// Which mechanisms the ATRN port offers.
    pub mechanisms: AuthMechanisms,
    /// Offer STARTTLS on the ATRN port (certificate from the instance's own CA).
    pub tls: bool,
    /// Offer AUTH only after STARTTLS (needs `tls`).
    pub tls_before_auth: bool,
    /// Offer ATRN at all (off: no `ATRN` in EHLO, and `502` to the command).
    pub atrn: bool,
    /// Exim time for the retry rule's interval (`1s`, `1h`): how long a recipient the customer
    /// refused with 4xx waits before an ATRN takes it again.
    pub retry_interval: String,
    /// `smtp_accept_max_per_connection`: after this many `MAIL` commands on one connection,
    /// each further one gets `421 too many messages in this connection` (Exim keeps the
    /// connection open; measured with `exim -bh`). `None`: Exim's default, 1000.
    pub max_messages_per_connection: Option<u32>,
}

impl EximOptions {
    /// Holds mail for `domains`; user [`DEFAULT_USER`], CRAM-MD5 and PLAIN, STARTTLS offered but
    /// not required, ATRN offered, retry interval 1 s.
    pub fn new(domains: &[&str]) -> Self {
        Self {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            user: DEFAULT_USER.to_string(),
            password: DEFAULT_PASSWORD.to_string(),
            mechanisms: AuthMechanisms::CramMd5AndPlain,
            tls: true,
            tls_before_auth: false,
            atrn: true,
            retry_interval: "1s".to_string(),
            max_messages_per_connection: None,
        }
    }

    /// Another AUTH user and password.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.user = user.to_string();
        self.password = password.to_string();
        self
    }

    /// Offer only these mechanisms (or none).
    pub fn with_mechanisms(mut self, mechanisms: AuthMechanisms) -> Self {
        self.mechanisms = mechanisms;
        self
    }

    /// No STARTTLS.
    pub fn without_tls(mut self) -> Self {
        self.tls = false;
        self.tls_before_auth = false;
        self
    }

    /// AUTH is offered only after STARTTLS (turns TLS on).
    pub fn with_tls_before_auth(mut self) -> Self {
        self.tls = true;
        self.tls_before_auth = true;
        self
    }

    /// Do not offer ATRN (for "the provider has no ODMR" tests).
    pub fn without_atrn(mut self) -> Self {
        self.atrn = false;
        self
    }

    /// At most `n` messages per connection (Exim's `smtp_accept_max_per_connection`), as
    /// providers limit them: a client keeping its connection meets a `421` at the next `MAIL`.
    pub fn with_max_messages_per_connection(mut self, n: u32) -> Self {
        self.max_messages_per_connection = Some(n);
        self
    }

    /// The retry interval as an Exim time, e.g. `"1h"` for a realistic provider.
    pub fn with_retry_interval(mut self, interval: &str) -> Self {
        self.retry_interval = interval.to_string();
        self
    }
}

/// One message in the provider's queue (`exim -bp`, plus the Message-ID from its spool header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Exim's message id (`1xYk9S-000000006ra-40wD`).
    pub id: String,
    /// Envelope sender without brackets; empty for a bounce.
    pub sender: String,
    /// Recipients not delivered yet.
    pub recipients: Vec<String>,
    /// Recipients already delivered (the message stays while others are pending).
    pub delivered: Vec<String>,
    /// `*** frozen ***`.
    pub frozen: bool,
    /// The Message-ID header with its brackets, if the header file could be read.
    pub message_id: Option<String>,
}

impl Queued {
    /// Whether a pending recipient is in `domain`.
    pub fn is_for(&self, domain: &str) -> bool {
        self.recipients.iter().any(|r| {
            r.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
        })
    }
}

/// An ATRN the provider accepted for checking, as its ACL logged it (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtrnRequest {
    /// The authenticator that let the client in: [`AUTHENTICATOR_CRAM_MD5`] or
    /// [`AUTHENTICATOR_PLAIN`].
    pub authenticator: String,
    /// The authenticated user.
    pub user: String,
    /// The ATRN argument as sent (`customer.test,example.org`, or empty).
    pub domains: String,
}

/// A running private Exim; dropping it stops the daemon's process group by its id.
pub struct EximIsp {
    binary: PathBuf,
    options: EximOptions,
    atrn_port: u16,
    inject_port: u16,
    root: PathBuf,
    started_in: Duration,
    daemon: Option<ChildGuard>,
    dir: Option<tempfile::TempDir>,
}

/// The exim binary: `$MAILCALL_EXIM`, else `$MAILCALL_CACHE_DIR/exim/bin/exim`, else
/// `/var/cache/mailcall/exim/bin/exim`; panics with what to run when none exists.
pub fn exim_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MAILCALL_EXIM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "MAILCALL_EXIM={} is not a file: point it at an exim 4.99+ binary, or unset it and \
             run tests/setup/exim.sh",
            path.display()
        );
        return path;
    }
    let cache = std::env::var_os("MAILCALL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/mailcall"));
    let path = cache.join("exim/bin/exim");
    assert!(
        path.is_file(),
        "{} does not exist: the ODMR provider (Exim 4.99.1) is not built; run \
         tests/setup/exim.sh as root (it needs the exim-4.99.1 source tarball, see \
         MAILCALL_PEERS_DIR there), or set MAILCALL_EXIM to an exim binary",
        path.display()
    );
    path
}

impl EximIsp {
    /// Writes the config, spool, log and TLS material, starts the daemon on two free ports and
    /// waits until both answer; panics with the log if it does not.
    pub fn start(options: EximOptions) -> Self {
        validate(&options);
        let binary = exim_binary();
        let dir = crate::test_dir("exim");
        let root = dir.path().to_path_buf();
        let mut isp = Self {
            binary,
            options,
            atrn_port: 0,
            inject_port: 0,
            root,
            started_in: Duration::ZERO,
            daemon: None,
            dir: Some(dir),
        };
        if let Err(e) = isp.prepare() {
            panic!("preparing the Exim ODMR provider failed: {e}");
        }
        // A port taken between free_port() and Exim's bind fails at once: pick new ones.
        let mut last = String::new();
        for _ in 0..3 {
            isp.atrn_port = crate::free_port();
            isp.inject_port = loop {
                let p = crate::free_port();
                if p != isp.atrn_port {
                    break p;
                }
            };
            match isp.launch() {
                Ok(()) => return isp,
                Err(e) => {
                    let out = crate::read_for_diagnostics(&isp.root.join("daemon.out"));
                    let busy = out.contains("in use") || isp.main_log().contains("in use");
                    last = e;
                    if !busy {
                        break;
                    }
                }
            }
        }
        panic!(
            "starting the Exim ODMR provider failed: {last}\n{}",
            isp.log()
        );
    }

    /// The ODMR port on 127.0.0.1: ATRN, AUTH and STARTTLS are offered here.
    pub fn atrn_port(&self) -> u16 {
        self.atrn_port
    }

    /// The injection port on 127.0.0.1: plain SMTP for queueing test mail, no ATRN/AUTH/TLS.
    pub fn inject_port(&self) -> u16 {
        self.inject_port
    }

    /// The AUTH user.
    pub fn user(&self) -> &str {
        &self.options.user
    }

    /// The AUTH password.
    pub fn password(&self) -> &str {
        &self.options.password
    }

    /// The options it runs with.
    pub fn options(&self) -> &EximOptions {
        &self.options
    }

    /// The instance's directory (configure, spool/, log/, tls/, daemon.out).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The CA (PEM) that signed the server certificate, for clients' trust (exists with TLS).
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }

    /// The generated config file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("configure")
    }

    /// How long the daemon took from spawn until both ports answered.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The daemon's PID (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(ChildGuard::pid)
    }

    /// SIGKILLs every process of the daemon's group but the daemon itself: the sessions, queue
    /// runners and deliveries it forked (a delivery cut mid-DATA, as when the provider's side of
    /// the link dies). Returns how many were signalled. By PID, only this instance's group.
    pub fn kill_deliveries(&self) -> usize {
        let Some(pgid) = self.pid() else { return 0 };
        let pids: Vec<u32> = processes_in_group(pgid)
            .into_iter()
            .filter(|&p| p != pgid)
            .collect();
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        pids.len()
    }

    /// SIGKILLs the daemon and everything it forked at once, as when the provider's machine or
    /// the link to it is gone: no delivery finishes, no new connection is taken. The spool stays
    /// ([`EximIsp::queue`] still reads it). Returns how many processes were signalled.
    pub fn kill_everything(&mut self) -> usize {
        let Some(guard) = self.daemon.take() else {
            return 0;
        };
        let pgid = guard.pid();
        let count = processes_in_group(pgid).len();
        signal_group("KILL", pgid);
        drop(guard);
        count
    }

    /// The whole main log (`log/mainlog`), empty if there is none yet.
    pub fn main_log(&self) -> String {
        fs::read_to_string(self.root.join("log/mainlog")).unwrap_or_default()
    }

    /// For failure messages: the last 80 lines of the main log, the panic log and the daemon's
    /// own output when they are not empty.
    pub fn log(&self) -> String {
        const KEEP: usize = 80;
        let main = self.main_log();
        let lines: Vec<&str> = main.lines().collect();
        let mut text = if lines.len() <= KEEP {
            format!("exim mainlog:\n{main}")
        } else {
            format!(
                "exim mainlog (last {KEEP} of {} lines, all in {}):\n{}",
                lines.len(),
                self.root.join("log/mainlog").display(),
                lines[lines.len() - KEEP..].join("\n")
            )
        };
        for (name, path) in [
            ("paniclog", self.root.join("log/paniclog")),
            ("daemon output", self.root.join("daemon.out")),
        ] {
            if let Ok(s) = fs::read_to_string(&path) {
                if !s.trim().is_empty() {
                    text.push_str(&format!("\nexim {name}:\n{s}"));
                }
            }
        }
        text
    }

    /// The ATRN requests the provider accepted for checking (after AUTH, on the ATRN port), in
    /// order, with the authenticator that let each client in.
    pub fn atrn_requests(&self) -> Vec<AtrnRequest> {
        self.main_log()
            .lines()
            .filter_map(|l| {
                l.split_once("mailcall-e2e: ATRN request A=")
                    .map(|(_, r)| r)
            })
            .filter_map(|rest| {
                let (auth, domains) = rest.split_once(" domains='")?;
                let (authenticator, user) = auth.split_once(':').unwrap_or((auth, ""));
                Some(AtrnRequest {
                    authenticator: authenticator.to_string(),
                    user: user.to_string(),
                    domains: domains.strip_suffix('\'').unwrap_or(domains).to_string(),
                })
            })
            .collect()
    }

    /// Queues `messages` over one plain SMTP session on the injection port; each is in the
    /// spool when this returns. Panics with the log on any refusal.
    pub fn queue_all(&self, messages: &[Message]) {
        let result = (|| {
            let (mut smtp, _) = SmtpClient::connect(self.inject_port)?;
            smtp.expect("EHLO outside.test", 250)?;
            for msg in messages {
                smtp.send(msg)?;
            }
            smtp.command("QUIT").map(|_| ())
        })();
        if let Err(e) = result {
            panic!(
                "queueing test mail at the Exim provider failed: {e}\n{}",
                self.log()
            );
        }
    }

    /// Queues `count` numbered messages for `user@domain` ([`Message::numbered`] 0..count) and
    /// returns them.
    pub fn queue_numbered(&self, domain: &str, count: usize) -> Vec<Message> {
        let messages: Vec<Message> = (0..count).map(|n| Message::numbered(domain, n)).collect();
        self.queue_all(&messages);
        messages
    }

    /// The queue: `exim -bp`, with each message's Message-ID from its spool header file.
    pub fn queue(&self) -> Vec<Queued> {
        let out = match run_checked(self.exim_cmd().arg("-bp"), None) {
            Ok(out) => out,
            Err(e) => panic!("reading the Exim queue failed: {e}\n{}", self.log()),
        };
        let mut queue = parse_bp(&out.stdout);
        if queue.is_empty() {
            return queue;
        }
        // The header files themselves (`exim -Mvh` shows only one message per run): Exim
        // rewrites them by rename, and one delivered meanwhile just has none any more.
        for q in &mut queue {
            let header = self.root.join("spool/input").join(format!("{}-H", q.id));
            if let Ok(text) = fs::read_to_string(header) {
                q.message_id = header_message_id(&text);
            }
        }
        queue
    }

    /// Number of messages queued (bounces included).
    pub fn queue_len(&self) -> usize {
        self.queue().len()
    }

    /// The Message-IDs of queued messages with a pending recipient in `domain`.
    pub fn queued_message_ids(&self, domain: &str) -> BTreeSet<String> {
        self.queue()
            .into_iter()
            .filter(|q| q.is_for(domain))
            .filter_map(|q| q.message_id)
            .collect()
    }

    /// Polls the queue until `done` holds, and returns that queue; panics naming `what`, with
    /// the queue and the log, after `timeout`.
    pub fn wait_queue(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Queued]) -> bool,
    ) -> Vec<Queued> {
        let mut last = Vec::new();
        let got = crate::poll_until(timeout, Duration::from_millis(50), || {
            last = self.queue();
            done(&last).then(|| last.clone())
        });
        got.unwrap_or_else(|| {
            panic!(
                "the Exim queue did not reach \"{what}\" within {timeout:?}: {last:#?}\n{}",
                self.log()
            )
        })
    }

    /// `exim -C <configure>` (add the arguments).
    pub fn exim_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-C").arg(self.config_file());
        cmd
    }

    fn prepare(&self) -> Result<(), String> {
        let (uid, gid) = mail_ids()?;
        for sub in ["spool", "log"] {
            let d = self.root.join(sub);
            fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
            std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                .map_err(|e| format!("chown mail {}: {e}", d.display()))?;
        }
        if self.options.tls {
            crate::tls::make_ca_and_server_cert(&self.root.join("tls"), "Mailcall e2e ODMR CA")?;
        }
        Ok(())
    }

    fn launch(&mut self) -> Result<(), String> {
        fs::write(self.config_file(), self.config())
            .map_err(|e| format!("writing {}: {e}", self.config_file().display()))?;
        let out_path = self.root.join("daemon.out");
        let out = fs::File::create(&out_path)
            .map_err(|e| format!("creating {}: {e}", out_path.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cloning a file handle: {e}"))?;
        let start = Instant::now();
        let child = self
            .exim_cmd()
            .arg("-bdf")
            // Its own process group: Drop signals the daemon and every session it forked.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let mut guard = ChildGuard::new("exim daemon", child);
        let ports = [self.atrn_port, self.inject_port];
        let mut exited = None;
        let up = crate::poll_until(START_TIMEOUT, Duration::from_millis(10), || {
            if let Some(status) = guard.exited() {
                exited = Some(status);
                return Some(false);
            }
            ports.iter().all(|&p| greets(p)).then_some(true)
        });
        match (up, exited) {
            (Some(true), _) => {
                self.started_in = start.elapsed();
                self.daemon = Some(guard);
                Ok(())
            }
            (_, Some(status)) => Err(format!("the exim daemon exited at start ({status})")),
            _ => {
                stop_group(guard);
                Err(format!(
                    "the exim daemon does not answer on 127.0.0.1:{ports:?} after {START_TIMEOUT:?}"
                ))
            }
        }
    }

    fn config(&self) -> String {
        let o = &self.options;
        let atrn = self.atrn_port.to_string();
        let on_atrn_port =
            |value: &str| format!("${{if = {{$received_port}}{{{atrn}}} {{{value}}}{{}}}}");
        let auth_hosts = if o.mechanisms == AuthMechanisms::None {
            String::new()
        } else if o.tls_before_auth {
            format!(
                "${{if and {{{{= {{$received_port}}{{{atrn}}}}}{{def:tls_in_cipher}}}} {{*}}{{}}}}"
            )
        } else {
            on_atrn_port("*")
        };
        let mut main = TEMPLATE.to_string();
        let tls = if o.tls {
            format!(
                "tls_advertise_hosts = {}\ntls_certificate = {}\ntls_privatekey = {}\n",
                on_atrn_port("*"),
                self.root.join("tls/server.pem").display(),
                self.root.join("tls/server.key").display()
            )
        } else {
            "tls_advertise_hosts =\n".to_string()
        };
        let atrn_acl = if o.atrn {
            format!("acl_smtp_atrn = {}\n", on_atrn_port("check_atrn"))
        } else {
            "# ATRN not offered (EximOptions::without_atrn)\n".to_string()
        };
        let user = exim_quote(&o.user);
        let password = exim_quote(&o.password);
        let mut auths = String::new();
        if o.mechanisms.cram() {
            auths.push_str(&format!(
                "cram_md5:\n  driver = cram_md5\n  public_name = CRAM-MD5\n  \
                 server_secret = ${{if eq{{$auth1}}{{{user}}}{{{password}}}fail}}\n  \
                 server_set_id = $auth1\n"
            ));
        }
        if o.mechanisms.plain() {
            auths.push_str(&format!(
                "plain:\n  driver = plaintext\n  public_name = PLAIN\n  server_prompts = :\n  \
                 server_condition = ${{if and {{{{eq{{$auth2}}{{{user}}}}}{{eq{{$auth3}}{{{password}}}}}}}{{yes}}{{no}}}}\n  \
                 server_set_id = $auth2\n"
            ));
        }
        for (key, value) in [
            ("@EXIM@", self.binary.display().to_string()),
            ("@DIR@", self.root.display().to_string()),
            ("@ATRN_PORT@", atrn),
            ("@INJECT_PORT@", self.inject_port.to_string()),
            ("@DOMAINS_COLON@", o.domains.join(" : ")),
            ("@DOMAINS_COMMA@", o.domains.join(",")),
            ("@DOMAINS_INLIST@", o.domains.join(":")),
            ("@AUTH_HOSTS@", auth_hosts),
            ("@TLS@", tls),
            ("@ATRN_ACL@", atrn_acl),
            ("@RETRY@", o.retry_interval.clone()),
            (
                "@MAIL_MAX@",
                o.max_messages_per_connection
                    .map(|n| format!("smtp_accept_max_per_connection = {n}\n"))
                    .unwrap_or_default(),
            ),
            ("@AUTHENTICATORS@", auths),
        ] {
            main = main.replace(key, &value);
        }
        main
    }
}

impl Drop for EximIsp {
    fn drop(&mut self) {
        if let Some(guard) = self.daemon.take() {
            stop_group(guard);
        }
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "Exim ODMR provider");
        }
    }
}

/// SIGTERM to the daemon's process group (the daemon and the sessions and deliveries it forked),
/// wait for the daemon, then SIGKILL the daemon (the guard) and whatever is left in the group.
fn stop_group(mut guard: ChildGuard) {
    let pgid = guard.pid();
    signal_group("TERM", pgid);
    let _ = crate::poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        guard.exited().map(|_| ())
    });
    drop(guard);
    signal_group("KILL", pgid);
}

fn signal_group(signal: &str, pgid: u32) {
    // `kill -SIG -- -PGID`: only the group this harness created for its daemon.
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_string(), format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The processes whose process group is `pgid`, from `/proc/<pid>/stat` (field 5; the command
/// name in parentheses may hold spaces, so fields are counted after its closing `)`).
fn processes_in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Connects, reads a `220 ` greeting and says QUIT: the port answers SMTP.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let mut line = String::new();
    let ok = BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220 ");
    let _ = writer.write_all(b"QUIT\r\n");
    ok
}

/// The uid and gid of `mail`, Exim's run user (EXIM_USER=ref:mail in the build).
fn mail_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = run_checked(Command::new("id").args([flag, "mail"]), None)?;
        out.stdout
            .trim()
            .parse()
            .map_err(|e| format!("`id {flag} mail` printed {:?}: {e}", out.stdout))
    };
    Ok((id("-u")?, id("-g")?))
}

fn validate(o: &EximOptions) {
    assert!(!o.domains.is_empty(), "an ODMR provider needs a domain");
    for d in &o.domains {
        assert!(
            !d.is_empty()
                && d.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'-'),
            "ODMR domain {d:?}: use lowercase letters, digits, dots and hyphens"
        );
    }
    assert!(
        !o.tls_before_auth || o.tls,
        "tls_before_auth needs tls: AUTH would never be offered"
    );
    assert!(!o.user.is_empty(), "an empty AUTH user");
}

/// `s` as literal text inside an Exim expansion: `\`, `$`, `{`, `}` escaped; control characters
/// (a newline would end the config line) are refused.
fn exim_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        assert!(
            !c.is_control(),
            "control character in an Exim config value: {s:?}"
        );
        if matches!(c, '\\' | '$' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses `exim -bp`: an entry line ` <age> <size> <id> <sender> [*** frozen ***]`, then one
/// recipient per line (`D ` before a delivered one), then a blank line.
fn parse_bp(text: &str) -> Vec<Queued> {
    let mut queue: Vec<Queued> = Vec::new();
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens.as_slice() {
            [] => {}
            [_age, _size, id, sender, rest @ ..] if is_message_id(id) => queue.push(Queued {
                id: id.to_string(),
                sender: sender.trim_matches(['<', '>']).to_string(),
                recipients: Vec::new(),
                delivered: Vec::new(),
                frozen: rest.join(" ").contains("frozen"),
                message_id: None,
            }),
            [mark, addr] if mark.ends_with('D') => {
                if let Some(q) = queue.last_mut() {
                    q.delivered.push(addr.to_string());
                }
            }
            [addr] => {
                if let Some(q) = queue.last_mut() {
                    q.recipients.push(addr.to_string());
                }
            }
            _ => {}
        }
    }
    queue
}

/// Exim 4.97+ ids: three base-62 parts, 6-11-4 characters (`1xYk9S-000000006ra-40wD`).
fn is_message_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The Message-ID in a spool header file (`<id>-H`, the format `exim -Mvh` prints): header
/// lines are `NNNf Name: value` (three digits of length, a flag, a space), the flag `I` for
/// the Message-ID; `*` marks a deleted header.
fn header_message_id(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let b = line.as_bytes();
        let numbered = b.len() > 5 && b[..3].iter().all(u8::is_ascii_digit) && b[3] != b'*';
        let (name, value) = line.get(5..)?.split_once(':')?;
        (numbered && name.eq_ignore_ascii_case("message-id")).then(|| value.trim().to_string())
    })
}

impl fmt::Display for Queued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} <{}> -> {:?}{}",
            self.message_id.as_deref().unwrap_or(&self.id),
            self.sender,
            self.recipients,
            if self.frozen { " (frozen)" } else { "" }
        )
    }
}

/// Standard base64 with padding (RFC 4648), as SMTP AUTH uses it.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u8> = text.trim().trim_end_matches('=').bytes().collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}

/// `AUTH PLAIN <base64(\0user\0password)>`, the one-line form.
pub fn auth_plain_command(user: &str, password: &str) -> String {
    format!(
        "AUTH PLAIN {}",
        base64_encode(format!("\0{user}\0{password}").as_bytes())
    )
}

/// The client's answer to a CRAM-MD5 challenge (the base64 text after `334 `):
/// `base64("user " + hex(HMAC-MD5(password, challenge)))`, the HMAC by `openssl dgst`.
pub fn cram_md5_response(user: &str, password: &str, challenge_b64: &str) -> String {
    let challenge = base64_decode(challenge_b64)
        .unwrap_or_else(|| panic!("the CRAM-MD5 challenge is not base64: {challenge_b64:?}"));
    let out = run_checked(
        Command::new("openssl").args(["dgst", "-md5", "-hmac", password, "-r"]),
        Some(&challenge),
    )
    .unwrap_or_else(|e| panic!("HMAC-MD5 with openssl: {e}"));
    let digest = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        digest.len(),
        32,
        "openssl dgst -md5 -r printed {:?}",
        out.stdout
    );
    base64_encode(format!("{user} {digest}").as_bytes())
}

/// The provider config; `@NAME@` are filled in by [`EximIsp::config`].
const TEMPLATE: &str = r#"# An ODMR (RFC 2645) provider for one test, written by mailcall-e2e (tests/exim.rs).
primary_hostname = provider.test
exim_path = @EXIM@
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
pid_file_path = @DIR@/exim.pid
keep_environment =
# A taken port fails the start at once (the harness picks new ports).
daemon_startup_retries = 0
# Bounces are written by a re-exec'd exim as the run user; -C would make it log a panic.
deliver_drop_privilege = true
local_interfaces = <; 127.0.0.1.@ATRN_PORT@ ; 127.0.0.1.@INJECT_PORT@
# Loopback only: no DNS, no ident.
host_lookup =
rfc1413_hosts =
never_users =
domainlist odmr_domains = @DOMAINS_COLON@
acl_smtp_rcpt = check_rcpt
@ATRN_ACL@auth_advertise_hosts = @AUTH_HOSTS@
@TLS@# Nothing leaves except through ATRN.
queue_only
queue_run_in_order
@MAIL_MAX@log_selector = +smtp_connection +received_recipients +deliver_time +smtp_no_mail +incoming_interface

begin acl

check_rcpt:
  accept domains = +odmr_domains
  deny   message = relay not permitted

check_atrn:
  # Before atrn_domains: that condition reads spool files, which resets these variables.
  warn   logwrite = mailcall-e2e: ATRN request A=$sender_host_authenticated:$authenticated_id domains='$smtp_command_argument'
  # A bare ATRN asks for every domain of this customer.
  warn   set acl_m0 = @DOMAINS_COMMA@
  defer  message = 450 ATRN request refused
         condition = ${if def:smtp_command_argument}
         condition = ${if forany{<, $smtp_command_argument}{!inlist{${lc:$item}}{@DOMAINS_INLIST@}}}
  # $value is the matching list item: untainted, unlike the command argument.
  warn   condition = ${if def:smtp_command_argument}
         set acl_m0 = ${map {<, $smtp_command_argument} {${if inlist{${lc:$item}}{@DOMAINS_INLIST@} {$value}}}}
  defer  !atrn_domains = <, $acl_m0
         message = 453 You have no mail
  accept

begin routers

to_customer:
  driver = manualroute
  condition = ${if eq {$atrn_mode}{P}}
  route_data = <;$atrn_host
  self = send
  transport = call_customer

begin transports

call_customer:
  driver = smtp

begin retry

*  *  F,7d,@RETRY@

begin authenticators

@AUTHENTICATORS@"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "\0customer\0odmr-s3cret"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"\0a\0b"), "AGEAYg==");
    }

    #[test]
    fn parses_exim_bp() {
        let text = " 0m   235 1xYk9S-000000006ra-40wD <a@outside.test>\n          u0@customer.test\n        D u1@example.org\n\n 2h  1.6K 1xYk9y-000000008AF-3uMA <> *** frozen ***\n          a@outside.test\n\n";
        let q = parse_bp(text);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].recipients, ["u0@customer.test"]);
        assert_eq!(q[0].delivered, ["u1@example.org"]);
        assert!(q[0].is_for("customer.test") && !q[0].is_for("example.org"));
        assert_eq!(q[1].sender, "");
        assert!(q[1].frozen);
    }

    #[test]
    fn finds_the_message_id_in_a_spool_header() {
        let text = "1xYk8d-000000004Jh-3IKZ-H\nroot 0 0\n<a@outside.test>\n2\nu@customer.test\n\n158P Received: from root\n\tid 1xYk8d;\n020* Message-ID: <old@x>\n020I Message-ID: <zz1@x>\n011  Subject: a\n";
        assert_eq!(header_message_id(text).as_deref(), Some("<zz1@x>"));
    }
}
