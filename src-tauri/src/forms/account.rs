//! The Accounts tab's side of the window: the account form as typed (its outgoing server
//! included), the account as shown (never a password), what Test connection found, and the form
//! field each [`AccountField`] is — the rules are [`Account::check`]'s, their problems come back
//! next to their fields.

use std::path::PathBuf;

use mailcall_core::account::outgoing::default_port;
use mailcall_core::account::{
    Account, AccountProblem, DomainSpec, EtrnForm, FetchMode, LinkSettings, OutgoingAuth,
    OutgoingServer, Secret, Security,
};
use mailcall_core::hint::AccountField;
use serde::{Deserialize, Serialize};

use super::{optional, UiError};

/// Each account field: its name in the form (and in [`UiError::fields`]) and its label in the
/// window (what hints tell the user to change).
pub const ACCOUNT_FIELDS: &[(AccountField, &str, &str)] = &[
    (AccountField::Name, "name", "Name"),
    (AccountField::Mode, "mode", "Mode"),
    (AccountField::Host, "host", "Server"),
    (AccountField::Port, "port", "Port"),
    (AccountField::Security, "security", "Security"),
    (AccountField::User, "username", "User name"),
    (AccountField::Password, "password", "Password"),
    // Set with `mailcall-cli account edit --password-command`; the window's password field
    // replaces it.
    (AccountField::PasswordCommand, "password", "Password"),
    (AccountField::CaFile, "ca_file", "CA file"),
    (AccountField::Helo, "helo", "HELO name"),
    (AccountField::Domains, "domains", "Domains"),
    (
        AccountField::ConnectCommand,
        "connect_command",
        "Connect command",
    ),
    (
        AccountField::DisconnectCommand,
        "disconnect_command",
        "Disconnect command",
    ),
    (
        AccountField::LinkTimeout,
        "link_timeout",
        "Link timeout (s)",
    ),
    (
        AccountField::OutgoingHost,
        "smarthost_host",
        "Outgoing server",
    ),
    (
        AccountField::OutgoingPort,
        "smarthost_port",
        "Outgoing port",
    ),
    (
        AccountField::OutgoingSecurity,
        "smarthost_security",
        "Outgoing security",
    ),
    (
        AccountField::OutgoingUser,
        "smarthost_username",
        "Outgoing user name",
    ),
    (
        AccountField::OutgoingPassword,
        "smarthost_password",
        "Outgoing password",
    ),
    (
        AccountField::OutgoingCaFile,
        "smarthost_ca_file",
        "Outgoing CA file",
    ),
];

/// The form field of the outgoing server's login method. No [`AccountField`] is it: XOAUTH2's
/// problem is the account's password command (which the window cannot set), so the window shows
/// that problem here, where XOAUTH2 was chosen.
pub const SMARTHOST_AUTH_FIELD: &str = "smarthost_auth";

/// Why an empty password field no longer keeps the saved password.
const PASSWORD_AGAIN: &str = "type the password again: the server or CA file changed, and a saved password is only ever sent to the server it was saved for";

/// The account form's field for `field`.
pub fn account_field_name(field: AccountField) -> &'static str {
    ACCOUNT_FIELDS
        .iter()
        .find(|(f, _, _)| *f == field)
        .map(|(_, name, _)| *name)
        .unwrap_or("name")
}

/// One domain row of the account form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRow {
    /// The domain or queue name, without `@`/`#`.
    pub name: String,
    /// `domain`, `subdomains` or `queue`.
    pub form: EtrnForm,
}

/// Whose login the outgoing server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostLogin {
    /// The account's user name and password (one keyring entry).
    #[default]
    Account,
    /// A user name and password of its own.
    Own,
}

/// An account as the window shows it: everything but the passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account's name.
    pub name: String,
    /// How its mail is fetched (ETRN or ODMR).
    pub mode: FetchMode,
    /// The port the ISP usually offers for the mode and security (the form's placeholder).
    pub default_port: u16,
    /// The ISP's mail server.
    pub host: String,
    /// The ISP's port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// The AUTH user, empty for none.
    pub username: String,
    /// Whether a password is stored (the password itself never leaves the keyring).
    pub has_password: bool,
    /// The EHLO name, empty for the machine's.
    pub helo: String,
    /// The CA file, empty for none.
    pub ca_file: String,
    /// The domains to release.
    pub domains: Vec<DomainRow>,
    /// The connect command (dial-up), empty for none.
    pub connect_command: String,
    /// The disconnect command, empty for none.
    pub disconnect_command: String,
    /// Seconds to wait for the link, empty for the default.
    pub link_timeout: String,
    /// The outgoing server, empty for none (the account sends no mail).
    pub smarthost_host: String,
    /// Its port, empty without an outgoing server.
    pub smarthost_port: String,
    /// How the connection to it is secured.
    pub smarthost_security: Security,
    /// Whose login it takes.
    pub smarthost_login: SmarthostLogin,
    /// Its own user name, empty for the account's.
    pub smarthost_username: String,
    /// Whether its own login has a password stored (the password never leaves the keyring).
    pub smarthost_has_password: bool,
    /// Its own CA file, empty for the account's.
    pub smarthost_ca_file: String,
    /// How the secret is presented.
    pub smarthost_auth: OutgoingAuth,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        let out = a.outgoing.as_ref();
        AccountView {
            name: a.name.clone(),
            mode: a.mode,
            default_port: a.default_port(),
            host: a.host.clone(),
            port: a.port,
            security: a.security,
            username: a.username.clone().unwrap_or_default(),
            has_password: a.password.is_some(),
            helo: a.helo.clone().unwrap_or_default(),
            ca_file: a
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            domains: a
                .domains
                .iter()
                .map(|d| DomainRow {
                    name: d.name.clone(),
                    form: d.form,
                })
                .collect(),
            connect_command: a.link.connect_command.clone().unwrap_or_default(),
            disconnect_command: a.link.disconnect_command.clone().unwrap_or_default(),
            link_timeout: a
                .link
                .link_timeout
                .map(|t| t.to_string())
                .unwrap_or_default(),
            smarthost_host: out.map(|o| o.host.clone()).unwrap_or_default(),
            smarthost_port: out.map(|o| o.port.to_string()).unwrap_or_default(),
            smarthost_security: out.map(|o| o.security).unwrap_or_default(),
            smarthost_login: match out.and_then(|o| o.username.as_ref()) {
                Some(_) => SmarthostLogin::Own,
                None => SmarthostLogin::Account,
            },
            smarthost_username: out.and_then(|o| o.username.clone()).unwrap_or_default(),
            smarthost_has_password: out.is_some_and(|o| o.password.is_some()),
            smarthost_ca_file: out
                .and_then(|o| o.ca_file.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            smarthost_auth: out.map(|o| o.auth).unwrap_or_default(),
        }
    }
}

/// The account form as typed (strings, so that bad input gets a message, not a type error).
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountForm {
    /// The name it had before editing; empty for a new account.
    pub original: String,
    /// The account's name.
    pub name: String,
    /// How its mail is fetched; absent (an older window): the stored mode (ETRN for a new one).
    pub mode: Option<FetchMode>,
    /// The ISP's mail server.
    pub host: String,
    /// The ISP's port; empty for the default of the mode and security.
    pub port: String,
    /// How the connection is secured.
    pub security: Security,
    /// The AUTH user; empty for none.
    pub username: String,
    /// A new password; empty keeps the stored one (for the same user).
    pub password: String,
    /// The EHLO name; empty for the machine's.
    pub helo: String,
    /// The CA file; empty for none.
    pub ca_file: String,
    /// The domains to release.
    pub domains: Vec<DomainRow>,
    /// The connect command; empty for none. Absent (an older window): keep the stored one.
    pub connect_command: Option<String>,
    /// The disconnect command; empty for none. Absent: keep the stored one.
    pub disconnect_command: Option<String>,
    /// Seconds to wait for the link; empty for the default. Absent: keep the stored value.
    pub link_timeout: Option<String>,
    /// The outgoing server; empty: the account sends no mail. Absent (an older window): keep
    /// the stored outgoing server, and the window's other `smarthost_` fields count for nothing.
    pub smarthost_host: Option<String>,
    /// Its port; empty for the default of its security.
    pub smarthost_port: String,
    /// How the connection to it is secured.
    pub smarthost_security: Security,
    /// Whose login it takes.
    pub smarthost_login: SmarthostLogin,
    /// Its own user name (with [`SmarthostLogin::Own`]).
    pub smarthost_username: String,
    /// A new password for its own login; empty keeps the stored one (for the same user).
    pub smarthost_password: String,
    /// Its own CA file; empty for the account's.
    pub smarthost_ca_file: String,
    /// How the secret is presented.
    pub smarthost_auth: OutgoingAuth,
}

impl std::fmt::Debug for AccountForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountForm")
            .field("original", &self.original)
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("domains", &self.domains)
            .field("connect_command", &self.connect_command)
            .field("disconnect_command", &self.disconnect_command)
            .field("link_timeout", &self.link_timeout)
            .field("smarthost_host", &self.smarthost_host)
            .field("smarthost_port", &self.smarthost_port)
            .field("smarthost_security", &self.smarthost_security)
            .field("smarthost_login", &self.smarthost_login)
            .field("smarthost_username", &self.smarthost_username)
            .field("smarthost_password", &"<redacted>")
            .field("smarthost_ca_file", &self.smarthost_ca_file)
            .field("smarthost_auth", &self.smarthost_auth)
            .finish_non_exhaustive()
    }
}

impl AccountForm {
    /// The account the form describes, checked by [`Account::check`]; `stored` is the saved
    /// version (an empty password field keeps its password when the user name is unchanged,
    /// and dial-up fields the window left out keep their values).
    pub fn to_account(&self, stored: Option<&Account>) -> Result<Account, UiError> {
        let mut err = UiError::default();
        let mode = self.mode.or(stored.map(|s| s.mode)).unwrap_or_default();
        // Typing only: text that is not a number or a domain at all. The rules are the core's.
        let port = match self.port.trim() {
            "" => mode.default_port(self.security),
            p => p.parse::<u16>().unwrap_or_else(|_| {
                err.field(
                    account_field_name(AccountField::Port),
                    format!("{p:?} is not a port: use a number from 1 to 65535"),
                );
                0
            }),
        };
        // A domain row's problem comes back as `domains.N`, next to that row.
        let row_field = |i: usize| format!("{}.{i}", account_field_name(AccountField::Domains));
        let mut domains: Vec<DomainSpec> = Vec::new();
        for (i, row) in self.domains.iter().enumerate() {
            let prefix = match row.form {
                EtrnForm::Domain => "",
                EtrnForm::Subdomains => "@",
                EtrnForm::Queue => "#",
            };
            let bare = row.name.trim().trim_start_matches(['@', '#']);
            if bare.is_empty() {
                continue;
            }
            match format!("{prefix}{bare}").parse::<DomainSpec>() {
                Ok(spec) => domains.push(spec),
                Err(e) => err.field(row_field(i), e),
            }
        }
        let username = optional(&self.username);
        let ca_file = optional(&self.ca_file).map(PathBuf::from);
        let password = if !self.password.is_empty() {
            Some(Secret::new(self.password.clone()))
        } else {
            // Kept for the same user, and only for the server and CA it was saved for (also
            // for Test connection on an unsaved form): a password never goes to another host.
            match stored.filter(|s| s.password.is_some() && s.username == username) {
                Some(s)
                    if s.password_follows(&self.host, ca_file.as_deref(), username.as_deref()) =>
                {
                    s.password.clone()
                }
                Some(_) => {
                    err.field(account_field_name(AccountField::Password), PASSWORD_AGAIN);
                    None
                }
                None => None,
            }
        };
        let old = stored.map(|s| s.link.clone()).unwrap_or_default();
        let keep = |given: &Option<String>, old: Option<String>| match given {
            Some(text) => optional(text),
            None => old,
        };
        let link_timeout = match self.link_timeout.as_deref().map(str::trim) {
            None => old.link_timeout,
            Some("") => None,
            Some(t) => t.parse::<u64>().map(Some).unwrap_or_else(|_| {
                err.field(
                    account_field_name(AccountField::LinkTimeout),
                    format!("{t:?} is not a number of seconds"),
                );
                None
            }),
        };
        let account = Account {
            mode,
            name: self.name.trim().to_string(),
            host: self.host.trim().to_string(),
            port,
            security: self.security,
            // The window has no field for it yet: a password command set with the CLI stays,
            // unless the window gives a password.
            password_command: stored
                .filter(|s| s.username == username && password.is_none())
                .and_then(|s| s.password_command.clone()),
            username,
            password,
            helo: optional(&self.helo),
            ca_file,
            domains,
            link: LinkSettings {
                connect_command: keep(&self.connect_command, old.connect_command),
                disconnect_command: keep(&self.disconnect_command, old.disconnect_command),
                link_timeout,
            },
            outgoing: match self.smarthost_host.as_deref().map(str::trim) {
                None => stored.and_then(|s| s.outgoing.clone()),
                Some("") => None,
                Some(host) => Some(self.outgoing_server(host, stored, &mut err)),
            },
        };
        let xoauth2 = account
            .outgoing
            .as_ref()
            .is_some_and(|o| o.auth == OutgoingAuth::Xoauth2);
        for AccountProblem { field, problem } in account.check() {
            let name = match field {
                // The window has no password command field; XOAUTH2 is what asks for one.
                AccountField::PasswordCommand if xoauth2 => SMARTHOST_AUTH_FIELD,
                field => account_field_name(field),
            };
            // A row that did not parse already says why; "add a domain" would only confuse.
            let row_error = (0..self.domains.len()).any(|i| err.fields.contains_key(&row_field(i)));
            if !(field == AccountField::Domains && row_error) {
                err.field(name, problem);
            }
        }
        err.into_result(account)
    }

    /// The outgoing server at `host` the `smarthost_` fields describe, as `mailcall-cli account
    /// set --smarthost` maps its flags: an empty port is its security's default, and an empty
    /// password keeps the stored one of the same own user name (whatever else changed).
    fn outgoing_server(
        &self,
        host: &str,
        stored: Option<&Account>,
        err: &mut UiError,
    ) -> OutgoingServer {
        let security = self.smarthost_security;
        let mut out = OutgoingServer::new(host, security);
        // Typing only, as for the ISP's port; 0 and the rest are the core's to refuse.
        out.port = match self.smarthost_port.trim() {
            "" => default_port(security),
            p => p.parse::<u16>().unwrap_or_else(|_| {
                err.field(
                    account_field_name(AccountField::OutgoingPort),
                    format!("{p:?} is not a port: use a number from 1 to 65535"),
                );
                0
            }),
        };
        out.ca_file = optional(&self.smarthost_ca_file).map(PathBuf::from);
        out.auth = self.smarthost_auth;
        if self.smarthost_login == SmarthostLogin::Own {
            let user = optional(&self.smarthost_username);
            out.password = if !self.smarthost_password.is_empty() {
                Some(Secret::new(self.smarthost_password.clone()))
            } else {
                match stored
                    .and_then(|s| s.outgoing.as_ref())
                    .filter(|o| o.password.is_some() && user.is_some() && o.username == user)
                {
                    Some(o)
                        if o.password_follows(host, out.ca_file.as_deref(), user.as_deref()) =>
                    {
                        o.password.clone()
                    }
                    Some(_) => {
                        err.field(
                            account_field_name(AccountField::OutgoingPassword),
                            PASSWORD_AGAIN,
                        );
                        None
                    }
                    None => None,
                }
            };
            // Without either half the core would read the account's login: the window asked
            // for one of its own, so it says what is missing.
            if user.is_none() && out.password.is_none() {
                err.field(
                    account_field_name(AccountField::OutgoingUser),
                    "give the outgoing server's user name and password, or log in with the account's",
                );
            }
            out.username = user;
        }
        out
    }
}

/// What Test connection found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// The server's greeting.
    pub greeting: String,
    /// Whether the connection was encrypted.
    pub tls: bool,
    /// `yes`, `no` or `not configured`.
    pub auth: String,
    /// The mode the check was made for (which command the account needs).
    pub mode: FetchMode,
    /// Whether an EHLO reply came (else whether ETRN/ATRN is offered is not known).
    pub ehlo_seen: bool,
    /// Whether ETRN is in the EHLO reply.
    pub etrn_advertised: bool,
    /// Whether ATRN (ODMR) is in the EHLO reply.
    pub atrn_advertised: bool,
    /// The EHLO keywords.
    pub extensions: Vec<String>,
    /// What failed, with what to do (in the window's words).
    pub error: Option<String>,
    /// The form field the failure points at, when one does (shown next to it).
    pub field: Option<String>,
    /// The conversation, AUTH redacted.
    pub transcript: Vec<String>,
    /// The listener an ETRN account needs, checked here (`None` for ODMR, which needs none).
    pub listener: Option<ListenerCheck>,
    /// Advice that is no failure: a server offering STARTTLS to an account set to None.
    pub suggestions: Vec<String>,
    /// What the check did not test, said so (the domains: only a real ETRN or ATRN asks).
    pub unchecked: Vec<String>,
}

/// Whether Mailcall's listener is up where the settings say, and answers.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerCheck {
    /// Up, on the saved address, and it greeted with 220.
    pub ok: bool,
    /// What was found, with what to do when not ok.
    pub text: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn form() -> AccountForm {
        AccountForm {
            name: "isp".into(),
            host: "mail.isp.test".into(),
            security: Security::Starttls,
            domains: vec![DomainRow {
                name: "example.com".into(),
                form: EtrnForm::Domain,
            }],
            ..AccountForm::default()
        }
    }

    #[test]
    fn a_good_form_builds_the_account_with_default_port() {
        let a = form().to_account(None).unwrap();
        assert_eq!(a.port, 25);
        assert_eq!(a.domains[0].etrn_argument(), "example.com");
        let mut f = form();
        f.security = Security::Tls;
        f.domains.push(DomainRow {
            name: "example.org".into(),
            form: EtrnForm::Subdomains,
        });
        let a = f.to_account(None).unwrap();
        assert_eq!(a.port, 465);
        assert_eq!(a.domains[1].etrn_argument(), "@example.org");
    }

    #[test]
    fn each_bad_field_gets_its_own_message_from_the_core_rules() {
        let f = AccountForm {
            name: "my isp".into(),
            host: "".into(),
            port: "70000".into(),
            security: Security::None,
            username: "alice".into(),
            helo: "bad helo".into(),
            ca_file: "relative.pem".into(),
            domains: vec![DomainRow {
                name: "exa mple.com".into(),
                form: EtrnForm::Domain,
            }],
            link_timeout: Some("0".into()),
            connect_command: Some("pon 'isp".into()),
            ..AccountForm::default()
        };
        let e = f.to_account(None).unwrap_err();
        for field in [
            "name",
            "host",
            "port",
            "security",
            "helo",
            "ca_file",
            "domains.0",
            "link_timeout",
            "connect_command",
        ] {
            assert!(e.fields.contains_key(field), "{field} missing in {e:?}");
        }
        assert!(!e.fields.contains_key("domains"), "{e:?}");
        assert!(
            e.fields["helo"].starts_with("\"bad helo\" is not a host name"),
            "{e:?}"
        );
        let mut f = form();
        f.domains.clear();
        assert!(f.to_account(None).unwrap_err().fields["domains"].contains("at least one"));
        f.domains = vec![form().domains[0].clone(), form().domains[0].clone()];
        assert!(f.to_account(None).unwrap_err().fields["domains"].contains("twice"));
        // A password without its user name, and the other way round.
        let mut f = form();
        f.username = "alice".into();
        assert!(f
            .to_account(None)
            .unwrap_err()
            .fields
            .contains_key("password"));
    }

    #[test]
    fn every_account_field_maps_to_a_form_field() {
        for field in AccountField::ALL {
            assert!(
                ACCOUNT_FIELDS.iter().any(|(f, _, _)| *f == field),
                "{field:?} has no form field"
            );
        }
    }

    #[test]
    fn the_mode_sets_the_default_port_needs_auth_for_odmr_and_is_kept_when_absent() {
        let mut f = form();
        f.mode = Some(FetchMode::Odmr);
        f.username = "customer".into();
        f.password = "pw".into();
        let a = f.to_account(None).unwrap();
        assert_eq!((a.mode, a.port), (FetchMode::Odmr, 366));
        f.security = Security::Tls;
        assert_eq!(
            f.to_account(None).unwrap().port,
            366,
            "ODMR's port either way"
        );
        // ODMR without a login: the core's rule, next to the user name field.
        let mut f = form();
        f.mode = Some(FetchMode::Odmr);
        let e = f.to_account(None).unwrap_err();
        assert!(
            e.fields["username"].starts_with("ODMR (ATRN) requires authentication"),
            "{e:?}"
        );
        f.security = Security::None;
        let e = f.to_account(None).unwrap_err();
        assert!(e.fields.contains_key("security"), "{e:?}");
        // @ and # are ETRN's forms: the domains field says so.
        let mut f = form();
        f.mode = Some(FetchMode::Odmr);
        f.username = "customer".into();
        f.password = "pw".into();
        f.domains[0].form = EtrnForm::Subdomains;
        let e = f.to_account(None).unwrap_err();
        assert!(
            e.fields["domains"].contains("ATRN asks for plain domain names"),
            "{e:?}"
        );
        // A window that sends no mode keeps the stored one; a new account is ETRN.
        f.domains[0].form = EtrnForm::Domain;
        let stored = f.to_account(None).unwrap();
        let mut older = f.clone();
        older.mode = None;
        older.port = "366".into();
        assert_eq!(
            older.to_account(Some(&stored)).unwrap().mode,
            FetchMode::Odmr
        );
        assert_eq!(older.to_account(None).unwrap().mode, FetchMode::Etrn);
        let view = AccountView::from(&stored);
        assert_eq!((view.mode, view.default_port), (FetchMode::Odmr, 366));
        assert!(serde_json::to_string(&view)
            .unwrap()
            .contains(r#""mode":"odmr""#));
    }

    #[test]
    fn an_empty_password_keeps_the_stored_one_for_the_same_user_and_server_only() {
        let mut f = form();
        f.username = "alice".into();
        f.password = "s3cret".into();
        let stored = f.to_account(None).unwrap();
        f.password.clear();
        let kept = f.to_account(Some(&stored)).unwrap();
        assert_eq!(kept.password.unwrap().expose(), "s3cret");
        f.username = "bob".into();
        assert!(f
            .to_account(Some(&stored))
            .unwrap_err()
            .fields
            .contains_key("password"));
        assert!(!format!("{f:?}").contains("s3cret"));
        // Another server, or another CA file, for the same user: the password is asked again.
        f.username = "alice".into();
        f.host = "elsewhere.example".into();
        let e = f.to_account(Some(&stored)).unwrap_err();
        assert!(e.fields["password"].contains("only ever sent"), "{e:?}");
        f.host = stored.host.clone();
        f.ca_file = "/etc/ssl/certs/ca-certificates.crt".into();
        assert!(f
            .to_account(Some(&stored))
            .unwrap_err()
            .fields
            .contains_key("password"));
    }

    #[test]
    fn the_view_never_holds_the_password() {
        let mut f = form();
        f.username = "alice".into();
        f.password = "s3cret".into();
        let view = AccountView::from(&f.to_account(None).unwrap());
        assert!(view.has_password);
        assert!(!serde_json::to_string(&view).unwrap().contains("s3cret"));
    }

    /// The test form with the login `alice`/`s3cret` and an outgoing server at `host`.
    fn sending(host: &str) -> AccountForm {
        AccountForm {
            username: "alice".into(),
            password: "s3cret".into(),
            smarthost_host: Some(host.into()),
            ..form()
        }
    }

    #[test]
    fn the_outgoing_server_is_built_as_the_cli_builds_it() {
        // The account's login on the default port of STARTTLS.
        let a = sending(" smtp.isp.test ").to_account(None).unwrap();
        assert_eq!(
            a.outgoing,
            Some(OutgoingServer::new("smtp.isp.test", Security::Starttls))
        );
        assert_eq!(a.outgoing.as_ref().unwrap().port, 587);
        // TLS's port when the port is empty; a login and a CA file of its own; XOAUTH2 is not
        // asked for, so the password method.
        let ca = std::env::temp_dir();
        let ca_file = ca.join("mailcall-trayform-smarthost-ca.pem");
        std::fs::write(&ca_file, "not checked here").unwrap();
        let f = AccountForm {
            smarthost_security: Security::Tls,
            smarthost_login: SmarthostLogin::Own,
            smarthost_username: "sender".into(),
            smarthost_password: "out-pw".into(),
            smarthost_ca_file: ca_file.display().to_string(),
            ..sending("smtp.isp.test")
        };
        let a = f.to_account(None).unwrap();
        let out = a.outgoing.clone().unwrap();
        assert_eq!((out.port, out.security), (465, Security::Tls));
        assert_eq!(out.username.as_deref(), Some("sender"));
        assert_eq!(out.password.as_ref().unwrap().expose(), "out-pw");
        assert_eq!(out.ca_file.as_deref(), Some(ca_file.as_path()));
        assert_eq!(out.auth, OutgoingAuth::Password);
        assert!(!format!("{f:?}").contains("out-pw"));
        // A port typed in stays; an empty server field means no outgoing server.
        let mut f2 = f.clone();
        f2.smarthost_port = "2525".into();
        assert_eq!(f2.to_account(None).unwrap().outgoing.unwrap().port, 2525);
        f2.smarthost_host = Some("  ".into());
        assert_eq!(f2.to_account(Some(&a)).unwrap().outgoing, None);
        // A window that sends no smarthost field keeps the stored outgoing server.
        let mut older = f.clone();
        older.smarthost_host = None;
        older.smarthost_password.clear();
        assert_eq!(older.to_account(Some(&a)).unwrap().outgoing, a.outgoing);
        // The account's login again: the own one is dropped.
        let mut f3 = f.clone();
        f3.smarthost_login = SmarthostLogin::Account;
        let out = f3.to_account(Some(&a)).unwrap().outgoing.unwrap();
        assert_eq!((out.username, out.password), (None, None));
        std::fs::remove_file(&ca_file).unwrap();
    }

    #[test]
    fn an_empty_outgoing_password_keeps_the_stored_one_for_the_same_user_and_server_only() {
        let f = AccountForm {
            smarthost_login: SmarthostLogin::Own,
            smarthost_username: "sender".into(),
            smarthost_password: "out-pw".into(),
            ..sending("smtp.isp.test")
        };
        let stored = f.to_account(None).unwrap();
        let mut f = f;
        f.smarthost_password.clear();
        // Another security, the same server and user: the password stays.
        f.smarthost_security = Security::Tls;
        let kept = f.to_account(Some(&stored)).unwrap().outgoing.unwrap();
        assert_eq!(kept.password.unwrap().expose(), "out-pw");
        // Another server: it is asked for again (a password never goes to another host).
        f.smarthost_host = Some("smtp2.isp.test".into());
        let e = f.to_account(Some(&stored)).unwrap_err();
        assert!(
            e.fields["smarthost_password"].contains("only ever sent"),
            "{e:?}"
        );
        f.smarthost_host = Some("smtp.isp.test".into());
        // Another user: no password, and the core's rule says so at its field.
        f.smarthost_username = "other".into();
        let e = f.to_account(Some(&stored)).unwrap_err();
        assert!(
            e.fields["smarthost_password"].contains("needs a password"),
            "{e:?}"
        );
        // An own login with neither half is asked for, not read as the account's.
        f.smarthost_username.clear();
        let e = f.to_account(Some(&stored)).unwrap_err();
        assert!(e.fields.contains_key("smarthost_username"), "{e:?}");
        // The account's own password is not touched by any of it.
        f.smarthost_username = "sender".into();
        let a = f.to_account(Some(&stored)).unwrap();
        assert_eq!(a.password.unwrap().expose(), "s3cret");
    }

    #[test]
    fn each_bad_outgoing_value_comes_back_at_its_field() {
        let f = AccountForm {
            smarthost_port: "0".into(),
            smarthost_ca_file: "relative.pem".into(),
            smarthost_login: SmarthostLogin::Own,
            smarthost_username: "sender".into(),
            ..sending("smtp isp")
        };
        let e = f.to_account(None).unwrap_err();
        for field in [
            "smarthost_host",
            "smarthost_port",
            "smarthost_ca_file",
            "smarthost_password",
        ] {
            assert!(e.fields.contains_key(field), "{field} missing in {e:?}");
        }
        assert!(e.fields["smarthost_port"].starts_with("0 is not a port"));
        assert!(e.fields["smarthost_ca_file"].contains("not a full path"));
        assert!(!e.fields.contains_key("password"), "{e:?}");
        // Text that is no number at all is refused before the core sees it.
        let mut f = sending("smtp.isp.test");
        f.smarthost_port = "smtp".into();
        assert!(f.to_account(None).unwrap_err().fields["smarthost_port"]
            .starts_with("\"smtp\" is not a port"));
        // No encryption with a login (the account's): the core's rule, at the security field.
        f.smarthost_port.clear();
        f.smarthost_security = Security::None;
        let e = f.to_account(None).unwrap_err();
        assert!(
            e.fields["smarthost_security"].contains("never sent unencrypted"),
            "{e:?}"
        );
        // ...which is fine for an account without a login.
        let mut anonymous = f.clone();
        anonymous.username.clear();
        anonymous.password.clear();
        assert_eq!(
            anonymous.to_account(None).unwrap().outgoing.unwrap().port,
            25
        );
    }

    #[test]
    fn xoauth2_without_the_password_command_is_refused_at_the_login_method() {
        let mut f = sending("smtp.isp.test");
        f.smarthost_auth = OutgoingAuth::Xoauth2;
        let e = f.to_account(None).unwrap_err();
        assert!(
            e.fields[SMARTHOST_AUTH_FIELD].contains("password command"),
            "{e:?}"
        );
        assert!(!e.fields.contains_key("password"), "{e:?}");
        // With a password command (set with the CLI) and the field left empty, it is taken.
        let mut stored = sending("smtp.isp.test").to_account(None).unwrap();
        stored.password = None;
        stored.password_command = Some("oauth2-token alice".into());
        f.password.clear();
        let a = f.to_account(Some(&stored)).unwrap();
        assert_eq!(a.outgoing.unwrap().auth, OutgoingAuth::Xoauth2);
        // The field is one the form has (the contract's tests hold the page to the form's).
        assert!(
            serde_aux::serde_introspection::serde_introspect::<AccountForm>()
                .contains(&SMARTHOST_AUTH_FIELD)
        );
    }

    #[test]
    fn the_view_shows_the_outgoing_server_but_never_its_password() {
        let f = AccountForm {
            smarthost_security: Security::Tls,
            smarthost_login: SmarthostLogin::Own,
            smarthost_username: "sender".into(),
            smarthost_password: "out-pw".into(),
            ..sending("smtp.isp.test")
        };
        let view = AccountView::from(&f.to_account(None).unwrap());
        assert_eq!(view.smarthost_host, "smtp.isp.test");
        assert_eq!(view.smarthost_port, "465");
        assert_eq!(view.smarthost_login, SmarthostLogin::Own);
        assert_eq!(view.smarthost_username, "sender");
        assert!(view.smarthost_has_password && view.has_password);
        let json = serde_json::to_string(&view).unwrap();
        assert!(
            !json.contains("out-pw") && !json.contains("s3cret"),
            "{json}"
        );
        assert!(json.contains(r#""smarthost_security":"tls""#), "{json}");
        // Without an outgoing server the fields are empty, the login the account's.
        let view = AccountView::from(&form().to_account(None).unwrap());
        assert_eq!(view.smarthost_host, "");
        assert_eq!(view.smarthost_port, "");
        assert_eq!(view.smarthost_login, SmarthostLogin::Account);
        assert!(!view.smarthost_has_password);
    }
}
