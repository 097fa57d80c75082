//! What the window sends and gets: the account and settings forms, and how their fields map to
//! an [`Account`] and to config keys. No rules live here: an account is checked by
//! [`Account::check`] and each preference by [`Config::set`]; their problems come back next to
//! the field they name. Views never carry a saved password.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailcall_core::account::{
    Account, AccountProblem, DomainSpec, EtrnForm, LinkSettings, Secret, Security,
};
use mailcall_core::config::{Config, ConfigError};
use mailcall_core::hint::AccountField;
use serde::{Deserialize, Serialize};

/// Each account field: its name in the form (and in [`UiError::fields`]) and its label in the
/// window (what hints tell the user to change).
pub const ACCOUNT_FIELDS: &[(AccountField, &str, &str)] = &[
    (AccountField::Name, "name", "Name"),
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
];

/// The config keys the Settings tab edits: key, the form's field name, and its label.
pub const SETTINGS_FIELDS: &[(&str, &str, &str)] = &[
    ("listen", "listen", "Listen on"),
    ("maildir", "maildir", "Maildir"),
    ("idle-timeout", "idle_timeout", "Idle timeout (s)"),
    ("max-message-size", "max_size_mib", "Largest message (MiB)"),
    ("interfaces", "interfaces", "Interfaces"),
    ("settle-delay", "settle_delay", "Settle delay (s)"),
    ("fetch-interval", "fetch_interval", "Fetch every (min)"),
    ("fetch-at-start", "fetch_at_start", "At start"),
];

/// The account form's field for `field`.
pub fn account_field_name(field: AccountField) -> &'static str {
    ACCOUNT_FIELDS
        .iter()
        .find(|(f, _, _)| *f == field)
        .map(|(_, name, _)| *name)
        .unwrap_or("name")
}

/// The Settings tab's field for config `key`, when the window shows that key.
pub fn settings_field_name(key: &str) -> Option<&'static str> {
    SETTINGS_FIELDS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, name, _)| *name)
}

/// An error for the window: a message, and per-field messages shown next to the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UiError {
    /// What went wrong and what to do.
    pub message: String,
    /// Field name → what is wrong with it.
    pub fields: BTreeMap<String, String>,
}

impl UiError {
    /// An error not tied to a field.
    pub fn new(message: impl Into<String>) -> Self {
        UiError {
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a message next to the field `name` (the first one given for a field stays).
    pub fn field(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.fields
            .entry(name.into())
            .or_insert_with(|| sentence(&message.into()));
    }

    fn into_result<T>(self, ok: T) -> Result<T, UiError> {
        if self.fields.is_empty() {
            Ok(ok)
        } else {
            Err(UiError {
                message: "Please correct the marked fields.".into(),
                ..self
            })
        }
    }
}

impl<E: std::fmt::Display> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError::new(e.to_string())
    }
}

/// The core's rule texts start in lower case (they follow a field's name in the CLI); next to
/// a field in the window they read as a sentence.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One domain row of the account form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRow {
    /// The domain or queue name, without `@`/`#`.
    pub name: String,
    /// `domain`, `subdomains` or `queue`.
    pub form: EtrnForm,
}

/// An account as the window shows it: everything but the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account's name.
    pub name: String,
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
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            name: a.name.clone(),
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
    /// The ISP's mail server.
    pub host: String,
    /// The ISP's port; empty for the security mode's default.
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
}

impl std::fmt::Debug for AccountForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountForm")
            .field("original", &self.original)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("domains", &self.domains)
            .field("connect_command", &self.connect_command)
            .field("disconnect_command", &self.disconnect_command)
            .field("link_timeout", &self.link_timeout)
            .finish_non_exhaustive()
    }
}

/// Text to a value; an empty field is `None`.
fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

impl AccountForm {
    /// The account the form describes, checked by [`Account::check`]; `stored` is the saved
    /// version (an empty password field keeps its password when the user name is unchanged,
    /// and dial-up fields the window left out keep their values).
    pub fn to_account(&self, stored: Option<&Account>) -> Result<Account, UiError> {
        let mut err = UiError::default();
        // Typing only: text that is not a number or a domain at all. The rules are the core's.
        let port = match self.port.trim() {
            "" => self.security.default_port(),
            p => p.parse::<u16>().unwrap_or_else(|_| {
                err.field(
                    "port",
                    format!("{p:?} is not a port: use a number from 1 to 65535"),
                );
                0
            }),
        };
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
                Err(e) => err.field(format!("domains.{i}"), e),
            }
        }
        let username = optional(&self.username);
        let password = if !self.password.is_empty() {
            Some(Secret::new(self.password.clone()))
        } else {
            stored
                .filter(|s| s.username == username)
                .and_then(|s| s.password.clone())
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
                err.field("link_timeout", format!("{t:?} is not a number of seconds"));
                None
            }),
        };
        let account = Account {
            // The window has no mode selector yet: an account keeps the mode it has.
            mode: stored.map(|s| s.mode).unwrap_or_default(),
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
            ca_file: optional(&self.ca_file).map(PathBuf::from),
            domains,
            link: LinkSettings {
                connect_command: keep(&self.connect_command, old.connect_command),
                disconnect_command: keep(&self.disconnect_command, old.disconnect_command),
                link_timeout,
            },
        };
        for AccountProblem { field, problem } in account.check() {
            let name = account_field_name(field);
            // A row that did not parse already says why; "add a domain" would only confuse.
            let row_error = err.fields.keys().any(|k| k.starts_with("domains."));
            if !(field == AccountField::Domains && row_error) {
                err.field(name, problem);
            }
        }
        err.into_result(account)
    }
}

/// The preferences as the window shows and sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsForm {
    /// The listener's address (ADDR:PORT).
    pub listen: String,
    /// The Maildir; empty for the default.
    pub maildir: String,
    /// The default Maildir (shown as a placeholder).
    #[serde(default)]
    pub default_maildir: String,
    /// The idle timeout in seconds.
    pub idle_timeout: String,
    /// The largest message in MiB.
    pub max_size_mib: String,
    /// Desktop notifications on.
    pub notifications: bool,
    /// Start at login.
    pub start_at_login: bool,
    /// Automatic fetching paused (the one remembered switch, shared with the daemon).
    pub paused: bool,
    /// Interfaces whose link-up fetches: globs separated by commas; empty for any but loopback.
    pub interfaces: String,
    /// Seconds a link must stay down before coming back is a new link-up.
    pub settle_delay: String,
    /// Minutes between fetches while a link is up; 0 for never.
    pub fetch_interval: String,
    /// Fetch once at start when a link is up.
    pub fetch_at_start: bool,
}

const MIB: u64 = 1024 * 1024;

impl SettingsForm {
    /// The form for a config, the tray preferences and the pause switch.
    pub fn from_config(
        config: &Config,
        default_maildir: String,
        notifications: bool,
        start_at_login: bool,
        paused: bool,
    ) -> Self {
        SettingsForm {
            listen: config.listen.to_string(),
            maildir: config
                .maildir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            default_maildir,
            idle_timeout: config.idle_timeout.to_string(),
            max_size_mib: format_mib(config.max_message_size),
            notifications,
            start_at_login,
            paused,
            interfaces: config.interfaces.join(", "),
            settle_delay: config.settle_delay.to_string(),
            fetch_interval: config.fetch_interval.to_string(),
            fetch_at_start: config.fetch_at_start,
        }
    }

    /// The form's value for config `key`, as `config set` takes it.
    fn value(&self, key: &str) -> Result<String, String> {
        Ok(match key {
            "listen" => self.listen.clone(),
            "maildir" => self.maildir.clone(),
            "idle-timeout" => self.idle_timeout.clone(),
            "max-message-size" => {
                let text = self.max_size_mib.trim();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() && n >= 0.0 => {
                        ((n * MIB as f64).round() as u64).to_string()
                    }
                    _ => return Err(format!("{text:?} is not a size: enter MiB, e.g. 50 or 1.5")),
                }
            }
            "interfaces" => self.interfaces.clone(),
            "settle-delay" => self.settle_delay.clone(),
            "fetch-interval" => self.fetch_interval.clone(),
            "fetch-at-start" => self.fetch_at_start.to_string(),
            _ => String::new(),
        })
    }

    /// Applies the form to `config` key by key through [`Config::set`] (an empty Maildir is
    /// the default again); every refused value comes back next to its field.
    pub fn apply(&self, config: &mut Config) -> Result<(), UiError> {
        let mut err = UiError::default();
        for &(key, field, _) in SETTINGS_FIELDS {
            let value = match self.value(key) {
                Ok(v) => v,
                Err(e) => {
                    err.field(field, e);
                    continue;
                }
            };
            let result = if key == "maildir" && value.trim().is_empty() {
                config.unset(key)
            } else {
                config.set(key, &value)
            };
            if let Err(e) = result {
                err.field(field, config_problem(&e));
            }
        }
        err.into_result(())
    }
}

/// What is wrong with a value, without the key in front (the field says which).
pub fn config_problem(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid { problem, .. } => problem.clone(),
        e => e.to_string(),
    }
}

fn format_mib(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        (bytes / MIB).to_string()
    } else {
        format!("{:.2}", bytes as f64 / MIB as f64)
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
    /// Whether ETRN is in the EHLO reply.
    pub etrn_advertised: bool,
    /// The EHLO keywords.
    pub extensions: Vec<String>,
    /// What failed, with what to do (in the window's words).
    pub error: Option<String>,
    /// The form field the failure points at, when one does (shown next to it).
    pub field: Option<String>,
    /// The conversation, AUTH redacted.
    pub transcript: Vec<String>,
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
        for (key, _, _) in SETTINGS_FIELDS {
            assert!(
                mailcall_core::config::KEYS.iter().any(|k| k.name == *key),
                "{key} is no config key"
            );
        }
    }

    #[test]
    fn an_empty_password_keeps_the_stored_one_for_the_same_user_only() {
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

    #[test]
    fn settings_round_trip_and_complain_through_config_set() {
        let mut c = Config::default();
        let mut s = SettingsForm::from_config(&c, "/d/Maildir".into(), true, false, false);
        assert_eq!(s.max_size_mib, "50");
        s.listen = "127.0.0.1:2525".into();
        s.maildir = "/srv/mail".into();
        s.idle_timeout = "5".into();
        s.max_size_mib = "1.5".into();
        s.interfaces = "ppp*, wlan0".into();
        s.fetch_interval = "15".into();
        s.apply(&mut c).unwrap();
        assert_eq!(c.listen.port(), 2525);
        assert_eq!(c.max_message_size, 1_572_864);
        assert_eq!(c.interfaces, ["ppp*", "wlan0"]);
        assert_eq!(c.fetch_interval, 15);
        s.maildir.clear();
        s.apply(&mut c).unwrap();
        assert_eq!(c.maildir, None, "an empty Maildir is the default again");
        s.listen = "localhost".into();
        s.maildir = "mail".into();
        s.idle_timeout = "0".into();
        s.max_size_mib = "lots".into();
        s.settle_delay = "3601".into();
        let e = s.apply(&mut c).unwrap_err();
        assert_eq!(e.fields.len(), 5, "{e:?}");
        assert!(e.fields["idle_timeout"].contains("out of range"), "{e:?}");
        assert!(e.fields["listen"].contains("ADDR:PORT"), "{e:?}");
        // Too small for the core's rule, though a number.
        s = SettingsForm::from_config(&Config::default(), String::new(), true, false, false);
        s.max_size_mib = "0".into();
        let e = s.apply(&mut c).unwrap_err();
        assert!(e.fields["max_size_mib"].contains("at least 1024"), "{e:?}");
    }
}
