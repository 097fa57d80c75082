//! The outgoing-server (smarthost) flags of `account set` and `account edit`, and how they map
//! onto [`OutgoingServer`]. The rules are the core's ([`Account::check`]).

use std::path::PathBuf;

use clap::Args;
use mailcall_core::account::outgoing::default_port;
use mailcall_core::account::{Account, OutgoingAuth, OutgoingServer, Secret, Security};

use crate::failure::Failure;

/// `account set`: the outgoing server, replaced whole (none when `--smarthost` is not given).
#[derive(Debug, Args)]
pub struct SetSmarthost {
    /// The ISP's outgoing (submission) server, where mail written here leaves.
    #[arg(long, value_name = "HOST")]
    smarthost: Option<String>,
    /// Its port (default: 587, or 465 with --smarthost-security tls).
    #[arg(long, value_name = "PORT", requires = "smarthost")]
    smarthost_port: Option<u16>,
    /// starttls (default) or tls (implicit TLS); none only without a login.
    #[arg(long, value_name = "MODE", requires = "smarthost")]
    smarthost_security: Option<Security>,
    /// A login of its own (default: the account's --user and password); its password comes
    /// from --smarthost-password-stdin.
    #[arg(long, value_name = "USER", requires_all = ["smarthost", "smarthost_password_stdin"])]
    smarthost_user: Option<String>,
    /// Read that login's password from the first line of standard input.
    #[arg(long, requires = "smarthost_user", conflicts_with = "password_stdin")]
    smarthost_password_stdin: bool,
    /// A PEM file of CA certificates for it (default: the account's --ca-file).
    #[arg(long, value_name = "PATH", requires = "smarthost")]
    smarthost_ca_file: Option<PathBuf>,
    /// password (AUTH PLAIN/LOGIN, default) or xoauth2 (a token printed by --password-command).
    #[arg(long, value_name = "METHOD", requires = "smarthost")]
    smarthost_auth: Option<OutgoingAuth>,
}

impl SetSmarthost {
    /// The outgoing server these flags describe; the old one's own password is kept when its
    /// user stays the same.
    pub fn server(
        self,
        old: Option<&Account>,
        read_password: impl Fn() -> Result<Secret, Failure>,
    ) -> Result<Option<OutgoingServer>, Failure> {
        let Some(host) = self.smarthost else {
            return Ok(None);
        };
        let security = self.smarthost_security.unwrap_or(Security::Starttls);
        let mut out = OutgoingServer::new(host.trim(), security);
        out.port = self
            .smarthost_port
            .unwrap_or_else(|| default_port(security));
        out.ca_file = self.smarthost_ca_file.map(ca_path).transpose()?;
        out.auth = self.smarthost_auth.unwrap_or_default();
        if let Some(user) = self.smarthost_user {
            out.password = if self.smarthost_password_stdin {
                Some(read_password()?)
            } else {
                let kept = old
                    .and_then(|o| o.outgoing.as_ref())
                    .filter(|o| o.username.as_deref() == Some(user.as_str()))
                    .filter(|o| o.password.is_some());
                if let Some(o) = kept {
                    own_password_must_follow(o, &out.host, out.ca_file.as_deref())?;
                }
                kept.and_then(|o| o.password.clone())
            };
            out.username = Some(user);
        }
        Ok(Some(out))
    }
}

/// `account edit`: each flag changes that setting of the outgoing server only.
#[derive(Debug, Args)]
pub struct EditSmarthost {
    /// The outgoing (submission) server (adds one with port 587 and STARTTLS if there is none).
    #[arg(long, value_name = "HOST", conflicts_with = "no_smarthost")]
    smarthost: Option<String>,
    /// Send no mail through this account any more.
    #[arg(long)]
    no_smarthost: bool,
    /// Its port.
    #[arg(long, value_name = "PORT")]
    smarthost_port: Option<u16>,
    /// starttls or tls; the port follows when it was the old security's default.
    #[arg(long, value_name = "MODE")]
    smarthost_security: Option<Security>,
    /// A login of its own (a new user needs --smarthost-password-stdin).
    #[arg(long, value_name = "USER", conflicts_with = "no_smarthost_user")]
    smarthost_user: Option<String>,
    /// Log in with the account's own user name and password again.
    #[arg(long)]
    no_smarthost_user: bool,
    /// Read its own login's password from the first line of standard input.
    #[arg(long, conflicts_with_all = ["no_smarthost_user", "password_stdin"])]
    smarthost_password_stdin: bool,
    /// A PEM file of CA certificates for it.
    #[arg(long, value_name = "PATH", conflicts_with = "no_smarthost_ca_file")]
    smarthost_ca_file: Option<PathBuf>,
    /// Trust the account's CA file for it again.
    #[arg(long)]
    no_smarthost_ca_file: bool,
    /// password or xoauth2.
    #[arg(long, value_name = "METHOD")]
    smarthost_auth: Option<OutgoingAuth>,
}

impl EditSmarthost {
    /// Applies the flags to `account`.
    pub fn apply(
        self,
        account: &mut Account,
        read_password: impl Fn() -> Result<Secret, Failure>,
    ) -> Result<(), Failure> {
        if self.no_smarthost {
            account.outgoing = None;
            return Ok(());
        }
        let touched = self.smarthost.is_some()
            || self.smarthost_port.is_some()
            || self.smarthost_security.is_some()
            || self.smarthost_user.is_some()
            || self.no_smarthost_user
            || self.smarthost_password_stdin
            || self.smarthost_ca_file.is_some()
            || self.no_smarthost_ca_file
            || self.smarthost_auth.is_some();
        if !touched {
            return Ok(());
        }
        let out = match (&mut account.outgoing, &self.smarthost) {
            (Some(out), _) => out,
            (None, Some(host)) => account
                .outgoing
                .insert(OutgoingServer::new(host.trim(), Security::Starttls)),
            (None, None) => {
                return Err(Failure::setup(format!(
                    "account {} has no outgoing server yet: add one with --smarthost HOST",
                    account.name
                )))
            }
        };
        let before = out.clone();
        if let Some(host) = self.smarthost {
            out.host = host.trim().to_string();
        }
        let was_default = out.port == default_port(out.security);
        if let Some(security) = self.smarthost_security {
            out.security = security;
        }
        match self.smarthost_port {
            Some(port) => out.port = port,
            None if was_default => out.port = default_port(out.security),
            None => {}
        }
        if self.no_smarthost_user {
            out.username = None;
            out.password = None;
        }
        if let Some(user) = self.smarthost_user {
            if out.username.as_deref() != Some(&user) {
                out.password = None;
            }
            out.username = Some(user);
        }
        if self.no_smarthost_ca_file {
            out.ca_file = None;
        }
        if let Some(p) = self.smarthost_ca_file {
            out.ca_file = Some(ca_path(p)?);
        }
        if self.smarthost_password_stdin {
            out.password = Some(read_password()?);
        } else if out.password.is_some() {
            own_password_must_follow(&before, &out.host, out.ca_file.as_deref())?;
        }
        if let Some(auth) = self.smarthost_auth {
            out.auth = auth;
        }
        Ok(())
    }
}

/// Issue 21 §7 for the outgoing server's own login: its saved password goes only to the server,
/// and over a connection checked against the CA file, it was saved for.
fn own_password_must_follow(
    before: &OutgoingServer,
    host: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<(), Failure> {
    if before.password_follows(host, ca_file, before.username.as_deref()) {
        return Ok(());
    }
    Err(Failure::setup(format!(
        "the outgoing server's own password was saved for {}{}; Mailcall never sends a saved password to another server, or over a connection checked against other CAs. Nothing was changed. Give the password again with the change\n  to fix: {}",
        before.host,
        match &before.ca_file {
            Some(ca) => format!(" (checked against the CA file {})", ca.display()),
            None => " (checked against the system's CAs)".to_string(),
        },
        crate::account::again_with("--smarthost-password-stdin")
    )))
}

fn ca_path(p: PathBuf) -> Result<PathBuf, Failure> {
    std::fs::canonicalize(&p).map_err(|e| {
        Failure::setup(format!(
            "--smarthost-ca-file: cannot read {}: {e}. Give the path of the outgoing server's CA certificate (PEM)",
            p.display()
        ))
    })
}
