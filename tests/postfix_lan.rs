//! A private Postfix per test as the LAN mail server behind an `smtp:` route: it accepts mail
//! for one domain's users on a loopback port and delivers it with virtual(8) into a Maildir per
//! user (`<dir>/vmail/<user>/`); optionally STARTTLS with a certificate from its own CA.
//!
//! Facts this relies on (Postfix 3.7, Debian 12, measured here): virtual(8) writes
//! `Delivered-To: <recipient>` (and `Return-Path:`) into each file; a recipient not in
//! `virtual_mailbox_maps` gets `550 5.1.1 <x@d>: Recipient address rejected: User unknown in
//! virtual mailbox table` at RCPT; `postfix start` takes about 2.5 s. The instance's dirs must
//! be traversable by the `postfix` user (see [`crate::test_dir`]).
//!
//! [`PostfixLan::smarthost`] makes the same server an ISP's submission server for outgoing mail:
//! STARTTLS with its own CA, Cyrus SASL (PLAIN, LOGIN) only after STARTTLS, and mail taken only
//! from a client that logged in (`554 5.7.1 ... Recipient address rejected: Access denied`
//! otherwise), each message delivered into the recipient's Maildir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run_checked, run_with_timeout};

/// Who checks the logins of a submission server.
#[derive(Clone, Copy)]
enum Sasl<'a> {
    /// Nobody: no AUTH (a LAN server).
    None,
    /// Cyrus SASL with this one user and password (sasldb).
    Cyrus((&'a str, &'a str)),
    /// A Dovecot auth service on this socket.
    Dovecot(&'a Path),
}

/// A running private Postfix delivering `domain`'s users into Maildirs.
pub struct PostfixLan {
    port: u16,
    /// With TLS: a second smtpd with TLS from the first byte (port 465's way, wrappermode).
    tls_port: u16,
    root: PathBuf,
    ca: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
}

impl PostfixLan {
    /// Starts it for `users`@`domain` on a free loopback port; with `tls`, STARTTLS is offered.
    pub fn start(domain: &str, users: &[&str], tls: bool) -> Self {
        Self::start_with(domain, users, tls, Sasl::None)
    }

    /// Starts it as a submission server (a smarthost) for `users`@`domain`: STARTTLS, and mail
    /// only after AUTH as `login` (user, password).
    pub fn smarthost(domain: &str, users: &[&str], login: (&str, &str)) -> Self {
        Self::start_with(domain, users, true, Sasl::Cyrus(login))
    }

    /// Starts it as a submission server whose logins a Dovecot auth service checks
    /// (`smtpd_sasl_type = dovecot` on `socket`, e.g. [`crate::OAuth2Auth::socket`]): STARTTLS,
    /// the mechanisms that service offers only after it, and mail only after AUTH.
    pub fn smarthost_with_dovecot_auth(domain: &str, users: &[&str], socket: &Path) -> Self {
        Self::start_with(domain, users, true, Sasl::Dovecot(socket))
    }

    fn start_with(domain: &str, users: &[&str], tls: bool, login: Sasl<'_>) -> Self {
        let dir = crate::test_dir("lan");
        let root = dir.path().to_path_buf();
        let mut lan = Self {
            port: crate::free_port(),
            tls_port: crate::free_port(),
            root,
            ca: None,
            dir: Some(dir),
        };
        if let Err(e) = lan.configure_and_start(domain, users, tls, login) {
            panic!(
                "starting the LAN Postfix failed: {e}\nmaillog:\n{}",
                crate::read_for_diagnostics(&lan.root.join("maillog"))
            );
        }
        lan
    }

    /// With TLS: its port on 127.0.0.1 that speaks TLS from the first byte (as 465 does).
    pub fn tls_port(&self) -> u16 {
        assert!(self.ca.is_some(), "a LAN Postfix started without TLS");
        self.tls_port
    }

    /// Its SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed its certificate (with TLS).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> crate::Maildir {
        crate::Maildir::new(self.root.join("vmail").join(user))
    }

    /// The maillog, for failure messages.
    pub fn log(&self) -> String {
        crate::read_for_diagnostics(&self.root.join("maillog"))
    }

    fn conf(&self) -> PathBuf {
        self.root.join("conf")
    }

    /// Sets the password of its login `user` (as an ISP's password change, or a typo fixed at
    /// the server's end); the next AUTH is checked against it.
    pub fn set_password(&self, user: &str, password: &str) {
        crate::postfix::make_sasl(&self.conf().join("sasl"), user, password)
            .unwrap_or_else(|e| panic!("setting the smarthost's password failed: {e}"));
    }

    /// Makes it answer what it would refuse with a 4xx instead (Postfix's `soft_bounce`): a
    /// recipient it does not know gets `450 4.1.1`, as from a smarthost that keeps saying "try
    /// later". Returns once the reloaded setting is in force.
    pub fn soft_bounce(&self) {
        let before = self.log().matches("reload -- version").count();
        run_checked(
            Command::new("postconf")
                .arg("-c")
                .arg(self.conf())
                .args(["-e", "soft_bounce = yes"]),
            None,
        )
        .unwrap_or_else(|e| panic!("postconf on the LAN Postfix failed: {e}"));
        run_checked(
            Command::new("postfix")
                .arg("-c")
                .arg(self.conf())
                .arg("reload"),
            None,
        )
        .unwrap_or_else(|e| panic!("reloading the LAN Postfix failed: {e}"));
        crate::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            (self.log().matches("reload -- version").count() > before).then_some(())
        })
        .unwrap_or_else(|| panic!("the LAN Postfix did not reload\n{}", self.log()));
    }

    /// Stops it (its queue, Maildirs and log stay) and waits until its master has exited:
    /// nothing listens on its port until [`Self::start_again`] or [`Self::move_into`].
    pub fn stop(&self) {
        let pid = fs::read_to_string(self.root.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        run_checked(
            Command::new("postfix")
                .arg("-c")
                .arg(self.conf())
                .arg("stop"),
            None,
        )
        .unwrap_or_else(|e| panic!("stopping the LAN Postfix failed: {e}"));
        if let Some(pid) = pid {
            let gone =
                crate::poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
                    (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
                });
            assert!(
                gone.is_some(),
                "the LAN Postfix's master {pid} did not stop"
            );
        }
    }

    /// Starts it again after [`Self::stop`], on the same port; returns once it accepts
    /// connections.
    pub fn start_again(&self) {
        run_checked(
            Command::new("postfix")
                .arg("-c")
                .arg(self.conf())
                .arg("start"),
            None,
        )
        .unwrap_or_else(|e| panic!("starting the LAN Postfix again failed: {e}\n{}", self.log()));
        let port = self.port;
        let up = crate::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "the LAN Postfix does not listen on port {port} again\n{}",
            self.log()
        );
    }

    /// Stops it and starts it again inside `ns` (its queue, Maildirs and log stay), on the same
    /// loopback port there; returns once it accepts connections inside. For a Mailcall that
    /// runs in the namespace: TCP does not cross namespaces.
    pub fn move_into(&self, ns: &crate::Netns) {
        self.stop();
        let mut start = ns.command("postfix");
        start.arg("-c").arg(self.conf()).arg("start");
        run_checked(&mut start, None).unwrap_or_else(|e| {
            panic!(
                "starting the LAN Postfix inside {} failed: {e}\n{}",
                ns.name(),
                self.log()
            )
        });
        let up = crate::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            ns.tcp_open(self.port).then_some(())
        });
        assert!(
            up.is_some(),
            "the LAN Postfix does not listen inside {} on port {}\n{}",
            ns.name(),
            self.port,
            self.log()
        );
    }

    fn configure_and_start(
        &mut self,
        domain: &str,
        users: &[&str],
        tls: bool,
        login: Sasl<'_>,
    ) -> Result<(), String> {
        let root = self.root.display().to_string();
        for d in ["conf", "conf/sasl", "queue", "vmail"] {
            fs::create_dir_all(self.root.join(d)).map_err(|e| format!("creating {d}: {e}"))?;
        }
        let owner = run_checked(Command::new("id").args(["-u", "postfix"]), None)?;
        let group = run_checked(Command::new("id").args(["-g", "postfix"]), None)?;
        let (uid, gid) = (
            owner.stdout.trim().to_string(),
            group.stdout.trim().to_string(),
        );
        run_checked(
            Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(self.root.join("vmail")),
            None,
        )?;
        let maps: Vec<String> = users.iter().map(|u| format!("{u}@{domain}={u}/")).collect();
        let mut main = format!(
            "# A LAN mail server for one test, written by mailcall-e2e (tests/postfix_lan.rs).
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = mailcall-lan-{port}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = lan.test
mydomain = lan.test
myorigin = lan.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/vmail
virtual_mailbox_maps = inline:{{ {maps} }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_mailbox_limit = 0
smtp_dns_support_level = disabled
",
            port = self.port,
            maps = maps.join(", "),
        );
        if tls {
            let made =
                crate::tls::make_ca_and_server_cert(&self.root.join("tls"), "Mailcall e2e LAN CA")?;
            main.push_str(&format!(
                "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_security_level = may\nsmtpd_tls_session_cache_database =\n",
                made.cert_pem.display(),
                made.key_pem.display()
            ));
            self.ca = Some(made.ca_pem);
        }
        if let Sasl::Dovecot(socket) = login {
            main.push_str(&format!(
                "smtpd_sasl_auth_enable = yes\n\
                 smtpd_sasl_type = dovecot\n\
                 smtpd_sasl_path = {}\n\
                 smtpd_tls_auth_only = yes\n\
                 smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n",
                socket.display(),
            ));
        }
        if let Sasl::Cyrus((user, password)) = login {
            let sasl = self.conf().join("sasl");
            crate::postfix::make_sasl(&sasl, user, password)?;
            main.push_str(&format!(
                "smtpd_sasl_auth_enable = yes\n\
                 smtpd_sasl_type = cyrus\n\
                 smtpd_sasl_path = smtpd\n\
                 cyrus_sasl_config_path = {}\n\
                 smtpd_sasl_local_domain = {}\n\
                 smtpd_tls_auth_only = yes\n\
                 smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n",
                sasl.display(),
                crate::postfix::REALM,
            ));
        }
        fs::write(self.conf().join("main.cf"), main).map_err(|e| format!("main.cf: {e}"))?;
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
            "proxymap  unix  -       -       n       -       -       proxymap",
            "smtp      unix  -       -       n       -       -       smtp",
            "showq     unix  n       -       n       -       -       showq",
            "error     unix  -       -       n       -       -       error",
            "retry     unix  -       -       n       -       -       error",
            "discard   unix  -       -       n       -       -       discard",
            "virtual   unix  -       n       n       -       -       virtual",
            "anvil     unix  -       -       n       -       1       anvil",
            "scache    unix  -       -       n       -       1       scache",
            "postlog   unix-dgram n  -       n       -       1       postlogd",
        ];
        fs::write(
            self.conf().join("master.cf"),
            format!(
                "127.0.0.1:{} inet n - n - - smtpd\n{}{}\n",
                self.port,
                match tls {
                    true => format!(
                        "127.0.0.1:{} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n",
                        self.tls_port
                    ),
                    false => String::new(),
                },
                services.join("\n")
            ),
        )
        .map_err(|e| format!("master.cf: {e}"))?;
        let mut cmd = Command::new("postfix");
        cmd.arg("-c").arg(self.conf());
        run_checked(cmd.arg("start"), None)?;
        let port = self.port;
        crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .map(|_| ())
        .ok_or_else(|| format!("nothing listens on 127.0.0.1:{port} 10 s after postfix start"))
    }
}

impl Drop for PostfixLan {
    fn drop(&mut self) {
        let pid = fs::read_to_string(self.root.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let mut cmd = Command::new("postfix");
        cmd.arg("-c").arg(self.conf()).arg("stop");
        let _ = run_with_timeout(&mut cmd, None, Duration::from_secs(20));
        if let Some(pid) = pid {
            let gone =
                crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                    (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
                });
            if gone.is_none() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "LAN Postfix instance");
        }
    }
}
