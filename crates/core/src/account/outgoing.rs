//! An account's outgoing server (smarthost): where the office's mail leaves when the link is
//! up. By default it logs in with the account's own user name and password (one keyring entry);
//! it may have a login of its own, and trusts the account's CA file unless given its own.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Account, AccountProblem, Secret, Security};
use crate::hint::AccountField;

/// The submission port with STARTTLS (RFC 6409).
pub const SUBMISSION_PORT: u16 = 587;
/// The submission port with TLS from the first byte (RFC 8314).
pub const SUBMISSIONS_PORT: u16 = 465;

/// The ISP's submission server for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OutgoingServer {
    /// Host name or IP address.
    pub host: String,
    /// Port: 587 (STARTTLS) or 465 (TLS) as a rule.
    pub port: u16,
    /// How the connection is secured.
    #[serde(default)]
    pub security: Security,
    /// A login of its own; absent: the account's user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password of that login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A PEM file with CA certificates for this server; absent: the account's CA file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How the secret is presented.
    #[serde(default, skip_serializing_if = "OutgoingAuth::is_default")]
    pub auth: OutgoingAuth,
}

/// How the secret is presented to the outgoing server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutgoingAuth {
    /// AUTH PLAIN or LOGIN with a password.
    #[default]
    Password,
    /// AUTH XOAUTH2 with an access token printed by the account's password command (as
    /// msmtp's `passwordeval` serves OAuth providers).
    Xoauth2,
}

impl OutgoingAuth {
    fn is_default(&self) -> bool {
        *self == OutgoingAuth::default()
    }
}

impl fmt::Display for OutgoingAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutgoingAuth::Password => "password",
            OutgoingAuth::Xoauth2 => "xoauth2",
        })
    }
}

impl FromStr for OutgoingAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "password" | "plain" | "login" => Ok(OutgoingAuth::Password),
            "xoauth2" | "oauth2" | "oauth" => Ok(OutgoingAuth::Xoauth2),
            other => Err(format!(
                "unknown login method {other:?}: use password (AUTH PLAIN/LOGIN) or xoauth2 (a token from the password command)"
            )),
        }
    }
}

impl OutgoingServer {
    /// A server at `host` with the port its security usually has (587 STARTTLS, 465 TLS).
    pub fn new(host: impl Into<String>, security: Security) -> Self {
        OutgoingServer {
            host: host.into(),
            port: default_port(security),
            security,
            username: None,
            password: None,
            ca_file: None,
            auth: OutgoingAuth::default(),
        }
    }
}

impl OutgoingServer {
    /// Whether its own saved password may go along with changed settings: only to the same
    /// server, checked against the same CA file, for the same user.
    pub fn password_follows(
        &self,
        host: &str,
        ca_file: Option<&std::path::Path>,
        username: Option<&str>,
    ) -> bool {
        self.host.eq_ignore_ascii_case(host.trim())
            && self.ca_file.as_deref() == ca_file
            && self.username.as_deref() == username
    }
}

/// The port a submission server usually has for `security`.
pub fn default_port(security: Security) -> u16 {
    match security {
        Security::Tls => SUBMISSIONS_PORT,
        Security::Starttls => SUBMISSION_PORT,
        Security::None => 25,
    }
}

/// Who logs in at the outgoing server, and with what secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingLogin {
    /// Nobody (the server takes mail from this client without AUTH).
    None,
    /// The account's own user name, and its password or password command.
    Account,
    /// A login of the outgoing server's own.
    Own {
        /// The user name.
        user: String,
        /// Its password.
        password: Secret,
    },
}

impl Account {
    /// Who logs in at the outgoing server (`None` without one).
    pub fn outgoing_login(&self) -> Option<OutgoingLogin> {
        let out = self.outgoing.as_ref()?;
        Some(match (&out.username, &out.password) {
            (Some(user), Some(password)) => OutgoingLogin::Own {
                user: user.clone(),
                password: password.clone(),
            },
            _ if self.username.is_some() => OutgoingLogin::Account,
            _ => OutgoingLogin::None,
        })
    }

    /// Every rule the outgoing server breaks (part of [`Account::check`]).
    pub(super) fn check_outgoing(&self, problems: &mut Vec<AccountProblem>) {
        let Some(out) = &self.outgoing else {
            return;
        };
        let mut bad = |field, problem: String| problems.push(AccountProblem { field, problem });
        if let Some(problem) = super::host_problem(
            &out.host,
            "the ISP's outgoing (submission) server, e.g. smtp.example.net",
        ) {
            bad(AccountField::OutgoingHost, problem);
        }
        if out.port == 0 {
            bad(
                AccountField::OutgoingPort,
                "0 is not a port: use 587 (STARTTLS) or 465 (TLS)".into(),
            );
        }
        match (&out.username, &out.password) {
            (Some(_), None) => bad(
                AccountField::OutgoingPassword,
                "the outgoing server's user name needs a password".into(),
            ),
            (None, Some(_)) => bad(
                AccountField::OutgoingUser,
                "the outgoing server's password needs a user name".into(),
            ),
            (Some(u), _) if u.is_empty() || u.contains(['\r', '\n', '\0']) => bad(
                AccountField::OutgoingUser,
                format!("{u:?} is not a user name"),
            ),
            _ => {}
        }
        let logs_in = !matches!(self.outgoing_login(), Some(OutgoingLogin::None) | None);
        if logs_in && out.security == Security::None {
            bad(
                AccountField::OutgoingSecurity,
                "a password is never sent unencrypted: choose STARTTLS (port 587) or TLS (port 465)"
                    .into(),
            );
        }
        if out.auth == OutgoingAuth::Xoauth2
            && !(out.username.is_none() && self.password_command.is_some())
        {
            bad(
                AccountField::PasswordCommand,
                "XOAUTH2 takes its token from the account's password command (e.g. a script that prints a fresh access token), with the account's own user name".into(),
            );
        }
        if let Some(p) = &out.ca_file {
            if !p.is_absolute() {
                bad(
                    AccountField::OutgoingCaFile,
                    format!(
                        "{} is not a full path: give it starting with {}",
                        p.display(),
                        crate::fsutil::FULL_PATH_START
                    ),
                );
            } else if !p.is_file() {
                bad(
                    AccountField::OutgoingCaFile,
                    format!("there is no file {}", p.display()),
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::account::{DomainSpec, LinkSettings};

    fn account(outgoing: OutgoingServer) -> Account {
        Account {
            name: "isp".into(),
            mode: Default::default(),
            host: "mail.isp.test".into(),
            port: 25,
            security: Security::Starttls,
            username: Some("office".into()),
            password: Some(Secret::new("pw")),
            password_command: None,
            helo: None,
            ca_file: None,
            domains: vec![DomainSpec::from_str("office.test").unwrap()],
            link: LinkSettings::default(),
            outgoing: Some(outgoing),
        }
    }

    fn fields(a: &Account) -> Vec<AccountField> {
        a.check().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn the_default_is_the_accounts_own_login_on_587() {
        let a = account(OutgoingServer::new("smtp.isp.test", Security::Starttls));
        assert_eq!(a.outgoing.as_ref().unwrap().port, 587);
        assert_eq!(a.outgoing_login(), Some(OutgoingLogin::Account));
        assert!(a.check().is_empty(), "{:?}", a.check());
        let tls = OutgoingServer::new("smtp.isp.test", Security::Tls);
        assert_eq!(tls.port, 465);
    }

    #[test]
    fn a_password_never_goes_out_unencrypted() {
        let a = account(OutgoingServer::new("smtp.isp.test", Security::None));
        assert_eq!(fields(&a), [AccountField::OutgoingSecurity]);
        let mut anonymous = a.clone();
        anonymous.username = None;
        anonymous.password = None;
        assert_eq!(anonymous.outgoing_login(), Some(OutgoingLogin::None));
        assert!(anonymous.check().is_empty(), "{:?}", anonymous.check());
    }

    #[test]
    fn an_own_login_needs_both_halves() {
        let mut out = OutgoingServer::new("smtp.isp.test", Security::Starttls);
        out.username = Some("sender".into());
        assert_eq!(
            fields(&account(out.clone())),
            [AccountField::OutgoingPassword]
        );
        out.password = Some(Secret::new("s"));
        let a = account(out.clone());
        assert!(a.check().is_empty());
        assert!(matches!(
            a.outgoing_login(),
            Some(OutgoingLogin::Own { .. })
        ));
        out.username = None;
        assert_eq!(fields(&account(out)), [AccountField::OutgoingUser]);
    }

    #[test]
    fn xoauth2_needs_the_password_command_for_its_token() {
        let mut out = OutgoingServer::new("smtp.isp.test", Security::Tls);
        out.auth = OutgoingAuth::Xoauth2;
        assert_eq!(
            fields(&account(out.clone())),
            [AccountField::PasswordCommand]
        );
        let mut a = account(out);
        a.password = None;
        a.password_command = Some("oauth2-token office".into());
        assert!(a.check().is_empty(), "{:?}", a.check());
    }

    #[test]
    fn bad_host_port_and_ca_file_are_named() {
        let mut out = OutgoingServer::new("smtp isp", Security::Starttls);
        out.port = 0;
        out.ca_file = Some("relative.pem".into());
        assert_eq!(
            fields(&account(out)),
            [
                AccountField::OutgoingHost,
                AccountField::OutgoingPort,
                AccountField::OutgoingCaFile
            ]
        );
    }

    #[test]
    fn stored_without_an_outgoing_server_it_reads_as_none() {
        let mut a = account(OutgoingServer::new("smtp.isp.test", Security::Starttls));
        a.outgoing = None;
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("outgoing"), "{json}");
        let back: Account = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.outgoing_login(), None);
    }
}
