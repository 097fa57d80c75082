//! A private Postfix instance per test, standing in for the ISP that holds mail for ETRN.
//!
//! Facts this relies on (Postfix 3.7.11, Debian 12, measured here):
//! - `postfix -c DIR start` runs an instance with its own main.cf/master.cf; its queue and data
//!   dirs must be traversable by the `postfix` user, so the temp root is 0755 (not 0700).
//!   `postfix start` creates the queue subdirs and data dir itself and takes about 2.5 s.
//! - Each message gets one delivery attempt on arrival; nobody listens on the listener port yet,
//!   so it fails with "Connection refused" and lands in `deferred`. With multi-hour
//!   `minimal_backoff_time`/`maximal_backoff_time`/`queue_run_delay`, nothing retries by itself.
//! - `ETRN <domain>` for a domain in `fast_flush_domains` answers `250 Queuing started` and the
//!   flush service asks the queue manager to retry that domain's deferred mail *and* to forget
//!   the "dead destination" mark of the refused connection; delivery starts within ~10 ms.
//!   A domain not in the list gets `459 <d>: service unavailable`.
//! - Debian's smtpd reads the Cyrus SASL app config from `$config_directory/sasl/smtpd.conf`
//!   (seen with strace; `cyrus_sasl_config_path` alone was not enough), so it lives there.
//!   `smtpd_sasl_local_domain` makes user `alice` authenticate as `alice@<realm>` in the sasldb.
//!   Wrong password: `535 5.7.8 Error: authentication failed: authentication failure`.
//!   ETRN with `smtpd_etrn_restrictions = permit_sasl_authenticated, reject` before AUTH:
//!   `554 5.7.1 <d>: Etrn command rejected: Access denied`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run_checked, run_with_timeout};
use crate::smtp::{Message, SmtpClient};

/// How the test ISP is set up.
#[derive(Debug, Clone)]
pub struct IspOptions {
    /// Domains it holds mail for (relay_domains = fast_flush_domains), each routed to the listener.
    pub domains: Vec<String>,
    /// The port where the client's listener will be (the transport's next hop).
    pub listener_port: u16,
    /// The address the client's listener is reached at: 127.0.0.1, or the dial-up link's own
    /// address inside a network namespace (then mail is deferred while the link is down).
    pub listener_host: String,
    /// Offer STARTTLS with a server certificate signed by the ISP's own CA.
    pub tls: bool,
    /// SASL user and password (PLAIN, LOGIN via sasldb); also makes ETRN require AUTH.
    pub auth: Option<(String, String)>,
    /// `smtpd_tls_auth_only`: AUTH only after STARTTLS (effective only with `tls`).
    pub tls_auth_only: bool,
    /// How long its smtp client waits for each reply of the listener, the greeting included
    /// (every `smtp_*_timeout` of a session, in seconds); Postfix's own (120-600 s) when `None`.
    pub reply_timeout: Option<u32>,
}

impl IspOptions {
    /// A plain ISP for `domains` that delivers to 127.0.0.1:`listener_port`.
    pub fn new(domains: &[&str], listener_port: u16) -> Self {
        Self {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            listener_port,
            listener_host: "127.0.0.1".to_string(),
            tls: false,
            auth: None,
            tls_auth_only: false,
            reply_timeout: None,
        }
    }

    /// Defers a delivery whose connection gets no reply (greeting, or answer to a command or
    /// to the message) within `secs` seconds.
    pub fn with_reply_timeout(mut self, secs: u32) -> Self {
        self.reply_timeout = Some(secs);
        self
    }

    /// Delivers to `host` (an IPv4 address) instead of 127.0.0.1.
    pub fn with_listener_host(mut self, host: &str) -> Self {
        self.listener_host = host.to_string();
        self
    }

    /// Adds STARTTLS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds SASL AUTH for `user`/`password`, AUTH only over TLS, and ETRN only after AUTH.
    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self.tls_auth_only = true;
        self
    }
}

/// One line of `postqueue -j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Queue file id.
    pub queue_id: String,
    /// `active`, `deferred`, `hold`, `incoming`, ...
    pub queue_name: String,
    /// Recipient addresses still pending.
    pub recipients: Vec<String>,
    /// Why each pending recipient waits (the last delivery error).
    pub delay_reasons: Vec<String>,
}

/// A running private Postfix; dropping it stops the instance and kills its master by PID.
pub struct PostfixIsp {
    port: u16,
    options: IspOptions,
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// SASL realm of the test ISP.
pub const REALM: &str = "isp.test";

impl PostfixIsp {
    /// Writes the configuration, TLS and SASL material, and starts the instance on a free port.
    pub fn start(options: IspOptions) -> Self {
        let dir = crate::test_dir("isp");
        let root = dir.path().to_path_buf();
        let port = crate::free_port();
        let mut isp = Self {
            port,
            options,
            root,
            dir: Some(dir),
        };
        // A failed start still drops `isp` (stop + kill): no instance outlives the test.
        if let Err(e) = isp.configure_and_start() {
            panic!("starting the test ISP failed: {e}\nmaillog:\n{}", isp.log());
        }
        isp
    }

    /// The ISP's SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The instance's directory (conf/, queue/, data/, tls/, maillog).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The CA that signed the ISP's server certificate (exists only with TLS).
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.join("conf")
    }

    /// The last 60 lines of the instance's maillog, for failure messages (the whole file stays
    /// readable at its path with `MAILCALL_E2E_KEEP=1`).
    pub fn log(&self) -> String {
        const KEEP: usize = 60;
        let path = self.root.join("maillog");
        let text = crate::read_for_diagnostics(&path);
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= KEEP {
            return text;
        }
        format!(
            "[first {} lines of {} cut]\n{}",
            lines.len() - KEEP,
            path.display(),
            lines[lines.len() - KEEP..].join("\n")
        )
    }

    fn configure_and_start(&mut self) -> Result<(), String> {
        let conf = self.conf_dir();
        fs::create_dir_all(conf.join("sasl")).map_err(|e| format!("creating conf dir: {e}"))?;
        // `postfix check/start` chdir into the queue dir before creating its subdirs (and the
        // data dir); a missing one is a fatal error that, without a tty and syslog, says nothing.
        fs::create_dir_all(self.root.join("queue"))
            .map_err(|e| format!("creating queue dir: {e}"))?;
        let mut main = self.main_cf();
        if self.options.tls {
            self.make_tls()?;
            main.push_str(&format!(
                "smtpd_tls_cert_file = {tls}/server.pem\n\
                 smtpd_tls_key_file = {tls}/server.key\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_tls_session_cache_database =\n",
                tls = self.root.join("tls").display()
            ));
        }
        if let Some((user, password)) = self.options.auth.clone() {
            make_sasl(&conf.join("sasl"), &user, &password)?;
            main.push_str(&format!(
                "smtpd_sasl_auth_enable = yes\n\
                 smtpd_sasl_type = cyrus\n\
                 smtpd_sasl_path = smtpd\n\
                 cyrus_sasl_config_path = {}\n\
                 smtpd_sasl_local_domain = {REALM}\n\
                 smtpd_tls_auth_only = {}\n\
                 smtpd_etrn_restrictions = permit_sasl_authenticated, reject\n",
                conf.join("sasl").display(),
                if self.options.tls_auth_only {
                    "yes"
                } else {
                    "no"
                },
            ));
        }
        if let Some(secs) = self.options.reply_timeout {
            for stage in [
                "helo",
                "mail",
                "rcpt",
                "data_init",
                "data_xfer",
                "data_done",
                "rset",
                "quit",
                "starttls",
                "xforward",
            ] {
                main.push_str(&format!("smtp_{stage}_timeout = {secs}s\n"));
            }
        }
        fs::write(conf.join("main.cf"), main).map_err(|e| format!("writing main.cf: {e}"))?;
        fs::write(conf.join("master.cf"), self.master_cf())
            .map_err(|e| format!("writing master.cf: {e}"))?;
        // Postfix prints fatal errors only to a tty or syslog: point the user at a way to see them.
        let hint = |e: String| {
            format!(
                "{e}\n(to see Postfix's own error: script -qc 'postfix -c {} check' /dev/null)",
                conf.display()
            )
        };
        run_checked(self.postfix_cmd().arg("check"), None).map_err(hint)?;
        run_checked(self.postfix_cmd().arg("start"), None).map_err(hint)?;
        let port = self.port;
        crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .map(|_| ())
        .ok_or_else(|| format!("nothing listens on 127.0.0.1:{port} 10 s after postfix start"))
    }

    fn postfix_cmd(&self) -> Command {
        let mut cmd = Command::new("postfix");
        cmd.arg("-c").arg(self.conf_dir());
        cmd
    }

    fn main_cf(&self) -> String {
        let root = self.root.display();
        let domains = self.options.domains.join(" ");
        let transport: Vec<String> = self
            .options
            .domains
            .iter()
            .map(|d| {
                format!(
                    "{d}=smtp:[{}]:{}",
                    self.options.listener_host, self.options.listener_port
                )
            })
            .collect();
        format!(
            "# A test ISP: holds mail for its relay domains until ETRN, then delivers it to the
# client's listener. Written by mailcall-e2e.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = mailcall-isp-{port}
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
myhostname = isp.test
mydomain = isp.test
myorigin = isp.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domains}
fast_flush_domains = $relay_domains
transport_maps = inline:{{ {transport} }}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Only ETRN may release mail: no retries on their own for hours.
minimal_backoff_time = 3h
maximal_backoff_time = 6h
queue_run_delay = 3h
# No DNS anywhere: the next hop is a literal address.
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtp_tls_security_level = none
",
            port = self.port,
            transport = transport.join(", "),
        )
    }

    fn master_cf(&self) -> String {
        // No chroot (column 5 = n): the instance lives in a temp dir without a chroot skeleton.
        let services = [
            "pickup    unix  n       -       n       60      1       pickup",
            "cleanup   unix  n       -       n       -       0       cleanup",
            "qmgr      unix  n       -       n       300     1       qmgr",
            "tlsmgr    unix  -       -       n       1000?   1       tlsmgr",
            "rewrite   unix  -       -       n       -       -       trivial-rewrite",
            "bounce    unix  -       -       n       -       0       bounce",
            "defer     unix  -       -       n       -       0       bounce",
            "trace     unix  -       -       n       -       0       bounce",
            "verify    unix  -       -       n       -       1       verify",
            "flush     unix  n       -       n       1000?   0       flush",
            "proxymap  unix  -       -       n       -       -       proxymap",
            "smtp      unix  -       -       n       -       -       smtp",
            "relay     unix  -       -       n       -       -       smtp",
            "showq     unix  n       -       n       -       -       showq",
            "error     unix  -       -       n       -       -       error",
            "retry     unix  -       -       n       -       -       error",
            "discard   unix  -       -       n       -       -       discard",
            "anvil     unix  -       -       n       -       1       anvil",
            "scache    unix  -       -       n       -       1       scache",
            "postlog   unix-dgram n  -       n       -       1       postlogd",
        ];
        format!(
            "127.0.0.1:{} inet n - n - - smtpd\n{}\n",
            self.port,
            services.join("\n")
        )
    }

    /// An ISP CA, and a server certificate it signs (CA:FALSE, serverAuth, SAN IP:127.0.0.1 and
    /// DNS:localhost): rustls refuses a self-signed CA certificate as a server certificate.
    fn make_tls(&self) -> Result<(), String> {
        crate::tls::make_ca_and_server_cert(&self.root.join("tls"), "Mailcall e2e ISP CA")
            .map(|_| ())
    }

    /// Queues `messages` over one SMTP session to the ISP's port (EHLO, then MAIL/RCPT/DATA each).
    pub fn queue_all(&self, messages: &[Message]) {
        let result = (|| {
            let (mut smtp, _) = SmtpClient::connect(self.port)?;
            smtp.expect("EHLO outside.test", 250)?;
            for msg in messages {
                smtp.send(msg)?;
            }
            smtp.command("QUIT").map(|_| ())
        })();
        if let Err(e) = result {
            panic!(
                "queueing test mail at the ISP failed: {e}\nmaillog:\n{}",
                self.log()
            );
        }
    }

    /// Queues one message for several recipients in one transaction (each recipient once).
    pub fn queue_to(&self, msg: &Message, recipients: &[&str]) {
        let result = (|| {
            let (mut smtp, _) = SmtpClient::connect(self.port)?;
            smtp.expect("EHLO outside.test", 250)?;
            smtp.send_to(msg, recipients)?;
            smtp.command("QUIT").map(|_| ())
        })();
        if let Err(e) = result {
            panic!(
                "queueing test mail at the ISP failed: {e}\nmaillog:\n{}",
                self.log()
            );
        }
    }

    /// Queues `messages` through the ISP's local submission (`sendmail -C`, the maildrop
    /// directory and `pickup`): it goes through files, so it works while the ISP runs inside a
    /// network namespace the test process cannot reach over TCP.
    pub fn submit_all(&self, messages: &[Message]) {
        for msg in messages {
            let mut cmd = Command::new("sendmail");
            cmd.arg("-C")
                .arg(self.conf_dir())
                .args(["-i", "-f", &msg.from, "--", &msg.to]);
            if let Err(e) = run_checked(&mut cmd, Some(msg.raw().as_bytes())) {
                panic!(
                    "submitting test mail at the ISP failed: {e}\nmaillog:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Queues one message.
    pub fn queue(&self, from: &str, to: &str, subject: &str, message_id: &str, body: &str) {
        self.queue_all(&[Message {
            from: from.to_string(),
            to: to.to_string(),
            subject: subject.to_string(),
            message_id: message_id.to_string(),
            body: body.to_string(),
        }]);
    }

    /// The queue as `postqueue -j` shows it, one entry per message. `postqueue` walks the queue
    /// directories one after another while Postfix moves messages between them, so a message
    /// moving from `active` to `deferred` can be listed twice (it is counted once, in the later
    /// queue), and one moving the other way can be missed: a snapshot in motion, fit for waiting
    /// on a condition ([`Self::wait_deferred`]), never for a count to wait for.
    pub fn queue_entries(&self) -> Vec<QueueEntry> {
        let mut cmd = Command::new("postqueue");
        cmd.arg("-c").arg(self.conf_dir()).arg("-j");
        let out = match run_checked(&mut cmd, None) {
            Ok(out) => out,
            Err(e) => panic!(
                "reading the ISP's queue failed: {e}\nmaillog:\n{}",
                self.log()
            ),
        };
        let entries: Vec<QueueEntry> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("postqueue -j line is not JSON ({e}): {line}"));
                let text = |v: &serde_json::Value, k: &str| {
                    v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
                };
                let rcpts = v
                    .get("recipients")
                    .and_then(|r| r.as_array())
                    .cloned()
                    .unwrap_or_default();
                QueueEntry {
                    queue_id: text(&v, "queue_id"),
                    queue_name: text(&v, "queue_name"),
                    recipients: rcpts.iter().map(|r| text(r, "address")).collect(),
                    delay_reasons: rcpts.iter().map(|r| text(r, "delay_reason")).collect(),
                }
            })
            .collect();
        // The last listing of a queue ID is where the message went.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<QueueEntry> = entries
            .into_iter()
            .rev()
            .filter(|e| e.queue_id.is_empty() || seen.insert(e.queue_id.clone()))
            .collect();
        unique.reverse();
        unique
    }

    /// Waits until exactly `n` messages sit in `deferred` and nothing else is queued (each
    /// message's first delivery attempt has failed, and whatever was delivered has left);
    /// panics with the queue and log otherwise. `n` is what the test itself knows is held (what
    /// it queued and did not fetch), never a count read from the queue, which may be in motion.
    pub fn wait_deferred(&self, n: usize, timeout: Duration) {
        let mut last = Vec::new();
        let done = crate::poll_until(timeout, Duration::from_millis(50), || {
            last = self.queue_entries();
            let deferred = last.iter().filter(|e| e.queue_name == "deferred").count();
            (deferred == n && last.len() == n).then_some(())
        });
        if done.is_none() {
            panic!(
                "expected {n} deferred message(s) at the ISP within {timeout:?}, queue is {last:#?}\nmaillog:\n{}",
                self.log()
            );
        }
    }

    /// Waits until the ISP's queue is empty (everything delivered); panics with details if not.
    pub fn wait_queue_empty(&self, timeout: Duration) {
        let mut last = Vec::new();
        let done = crate::poll_until(timeout, Duration::from_millis(50), || {
            last = self.queue_entries();
            last.is_empty().then_some(())
        });
        if done.is_none() {
            panic!(
                "the ISP's queue is not empty after {timeout:?}: {last:#?}\nmaillog:\n{}",
                self.log()
            );
        }
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.root.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for PostfixIsp {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = run_with_timeout(
            self.postfix_cmd().arg("stop"),
            None,
            Duration::from_secs(20),
        );
        if let Some(pid) = pid {
            let gone =
                crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                    (!process_alive(pid)).then_some(())
                });
            if gone.is_none() {
                eprintln!("postfix master {pid} still alive after `postfix stop`: killing it");
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "ISP instance");
        }
    }
}

/// Alive = /proc/PID exists and is not a zombie (the master is not our child to reap).
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// A sasldb in `sasl` (the instance's `$config_directory/sasl`) with one user of [`REALM`], and
/// the smtpd.conf that points Cyrus SASL at it (PLAIN and LOGIN).
pub fn make_sasl(sasl: &Path, user: &str, password: &str) -> Result<(), String> {
    let db = sasl.join("sasldb2");
    run_checked(
        Command::new("saslpasswd2")
            .arg("-f")
            .arg(&db)
            .args(["-u", REALM, "-p", "-c", user]),
        Some(password.as_bytes()),
    )?;
    // smtpd runs as the postfix user and only reads the db.
    crate::tls::chmod(&db, 0o644)?;
    fs::write(
        sasl.join("smtpd.conf"),
        format!(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {}\nmech_list: PLAIN LOGIN\n",
            db.display()
        ),
    )
    .map_err(|e| format!("writing smtpd.conf: {e}"))
}
