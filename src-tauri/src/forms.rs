//! What the window sends and gets: account and settings forms with their validation (field by
//! field, each message saying what is wrong), and views that never carry a saved password.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use mailcall_core::account::{
    self, Account, DomainSpec, EtrnForm, LinkSettings, Secret, Security, DEFAULT_LINK_TIMEOUT,
};
use mailcall_core::config::Config;
use serde::{Deserialize, Serialize};

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

    fn field(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.fields.entry(name.into()).or_insert(message.into());
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
    /// Name.
    pub name: String,
    /// ISP host.
    pub host: String,
    /// ISP port.
    pub port: u16,
    /// Security mode.
    pub security: Security,
    /// AUTH user, empty for none.
    pub username: String,
    /// Whether a password is stored (the password itself never leaves the keyring).
    pub has_password: bool,
    /// EHLO name, empty for the machine's.
    pub helo: String,
    /// CA file, empty for none.
    pub ca_file: String,
    /// Domains.
    pub domains: Vec<DomainRow>,
    /// Connect command (dial-up), empty for none.
    pub connect_command: String,
    /// Disconnect command, empty for none.
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
    /// Name.
    pub name: String,
    /// ISP host.
    pub host: String,
    /// ISP port; empty for the security mode's default.
    pub port: String,
    /// Security mode.
    pub security: Security,
    /// AUTH user; empty for none.
    pub username: String,
    /// New password; empty keeps the stored one (for the same user).
    pub password: String,
    /// EHLO name; empty for the machine's.
    pub helo: String,
    /// CA file; empty for none.
    pub ca_file: String,
    /// Domains.
    pub domains: Vec<DomainRow>,
    /// Connect command; empty for none. Absent (an older window): keep the stored one.
    pub connect_command: Option<String>,
    /// Disconnect command; empty for none. Absent: keep the stored one.
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

impl AccountForm {
    /// Checks every field and builds the account; `stored` is the saved version (for the
    /// password: an empty field keeps it when the user name is unchanged).
    pub fn validate(&self, stored: Option<&Account>) -> Result<Account, UiError> {
        let mut err = UiError::default();
        let name = self.name.trim();
        if let Err(e) = account::validate_name(name) {
            err.field("name", e);
        }
        let host = self.host.trim();
        if host.is_empty() {
            err.field("host", "Enter the ISP's mail server, e.g. mail.example.net");
        } else if host.contains(char::is_whitespace) || host.contains('/') {
            err.field("host", format!("{host:?} is not a host name or IP address"));
        }
        let port = match self.port.trim() {
            "" => self.security.default_port(),
            p => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    err.field(
                        "port",
                        format!("{p:?} is not a port: use a number from 1 to 65535"),
                    );
                    0
                }
            },
        };
        let username = Some(self.username.trim().to_string()).filter(|u| !u.is_empty());
        let password = if !self.password.is_empty() {
            Some(Secret::new(self.password.clone()))
        } else {
            stored
                .filter(|s| s.username == username)
                .and_then(|s| s.password.clone())
        };
        if username.is_some() && password.is_none() {
            err.field("password", "Enter the password for this user name");
        }
        if username.is_some() && self.security == Security::None {
            err.field(
                "security",
                "A password is never sent unencrypted: choose STARTTLS or TLS, or remove the user name",
            );
        }
        let helo = Some(self.helo.trim().to_string()).filter(|h| !h.is_empty());
        if let Some(h) = &helo {
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            {
                err.field(
                    "helo",
                    format!("{h:?} is not a host name: use e.g. mail.example.com"),
                );
            }
        }
        let ca_file = Some(self.ca_file.trim())
            .filter(|c| !c.is_empty())
            .map(PathBuf::from);
        if let Some(p) = &ca_file {
            if !p.is_absolute() {
                err.field(
                    "ca_file",
                    "Give the full path of the CA file (starting with /)",
                );
            } else if !p.is_file() {
                err.field("ca_file", format!("There is no file {}", p.display()));
            }
        }
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
                Ok(spec) if !domains.contains(&spec) => domains.push(spec),
                Ok(_) => err.field(format!("domains.{i}"), "This domain is listed twice"),
                Err(e) => err.field(format!("domains.{i}"), e),
            }
        }
        if domains.is_empty() && !err.fields.keys().any(|k| k.starts_with("domains.")) {
            err.field("domains", "Add at least one domain the ISP holds mail for");
        }
        let link = self.link(stored, &mut err);
        err.into_result(Account {
            name: name.to_string(),
            host: host.to_string(),
            port,
            security: self.security,
            username,
            password,
            helo,
            ca_file,
            domains,
            link,
        })
    }

    /// The dial-up settings: each field the window left out keeps the stored value, so a window
    /// that does not know them cannot wipe what `mailcall-cli account set` put there.
    fn link(&self, stored: Option<&Account>, err: &mut UiError) -> LinkSettings {
        let old = stored.map(|s| s.link.clone()).unwrap_or_default();
        let mut command = |field: &str, given: &Option<String>, old: Option<String>| {
            let Some(given) = given else { return old };
            let line = given.trim();
            if line.is_empty() {
                return None;
            }
            match mailcall_core::trigger::split_command(line) {
                Ok(words) if !words.is_empty() => Some(line.to_string()),
                Ok(_) => None,
                Err(e) => {
                    err.field(
                        field,
                        format!("{e}. Commands run without a shell; quote words with ' or \""),
                    );
                    None
                }
            }
        };
        let connect_command = command(
            "connect_command",
            &self.connect_command,
            old.connect_command,
        );
        let disconnect_command = command(
            "disconnect_command",
            &self.disconnect_command,
            old.disconnect_command,
        );
        let link_timeout = match self.link_timeout.as_deref().map(str::trim) {
            None => old.link_timeout,
            Some("") => None,
            Some(t) => match t.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => Some(n),
                _ => {
                    err.field(
                        "link_timeout",
                        format!(
                            "{t:?} is not a wait: enter seconds from 1 to 3600, or leave it empty for {DEFAULT_LINK_TIMEOUT}"
                        ),
                    );
                    None
                }
            },
        };
        LinkSettings {
            connect_command,
            disconnect_command,
            link_timeout,
        }
    }
}

/// The preferences as the window shows and sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsForm {
    /// Listener address (ADDR:PORT).
    pub listen: String,
    /// Maildir; empty for the default.
    pub maildir: String,
    /// The default Maildir (shown as a placeholder).
    #[serde(default)]
    pub default_maildir: String,
    /// Idle timeout in seconds.
    pub idle_timeout: String,
    /// Largest message in MiB.
    pub max_size_mib: String,
    /// Desktop notifications on.
    pub notifications: bool,
    /// Start at login.
    pub start_at_login: bool,
    /// Automatic fetching paused.
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
/// The longest fetch interval the window offers: a week.
const MAX_INTERVAL_MINUTES: u64 = 7 * 24 * 60;

impl SettingsForm {
    /// The form for a config and the tray preferences.
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

    /// Applies the form to `config`, checking each field.
    pub fn apply(&self, config: &mut Config) -> Result<(), UiError> {
        let mut err = UiError::default();
        match self.listen.trim().parse::<SocketAddr>() {
            Ok(a) => config.listen = a,
            Err(_) => err.field(
                "listen",
                "Write ADDRESS:PORT, e.g. 0.0.0.0:25 (every interface) or 127.0.0.1:2525",
            ),
        }
        let maildir = self.maildir.trim();
        if maildir.is_empty() {
            config.maildir = None;
        } else if !PathBuf::from(maildir).is_absolute() {
            err.field(
                "maildir",
                "Give the full path of the Maildir (starting with /)",
            );
        } else {
            config.maildir = Some(PathBuf::from(maildir));
        }
        match self.idle_timeout.trim().parse::<u64>() {
            Ok(n) if (1..=3600).contains(&n) => config.idle_timeout = n,
            _ => err.field("idle_timeout", "Enter seconds from 1 to 3600"),
        }
        match self.max_size_mib.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && (0.01..=10_240.0).contains(&n) => {
                config.max_message_size = (n * MIB as f64).round() as u64
            }
            _ => err.field("max_size_mib", "Enter a size in MiB from 0.01 to 10240"),
        }
        // The same check as `mailcall-cli config set interfaces`, so both accept the same.
        if let Err(e) = config.set("interfaces", self.interfaces.trim()) {
            err.field("interfaces", e.to_string());
        }
        match self.settle_delay.trim().parse::<u64>() {
            Ok(n) if n <= 3600 => config.settle_delay = n,
            _ => err.field(
                "settle_delay",
                "Enter seconds from 0 to 3600 (2 rides out a link that flaps while dialing)",
            ),
        }
        match self.fetch_interval.trim().parse::<u64>() {
            Ok(n) if n <= MAX_INTERVAL_MINUTES => config.fetch_interval = n,
            _ => err.field(
                "fetch_interval",
                "Enter minutes from 0 (never) to 10080 (a week)",
            ),
        }
        config.fetch_at_start = self.fetch_at_start;
        err.into_result(())
    }
}

fn format_mib(bytes: u64) -> String {
    if bytes % MIB == 0 {
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
    /// What failed, with what to do.
    pub error: Option<String>,
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
        let a = form().validate(None).unwrap();
        assert_eq!(a.port, 25);
        assert_eq!(a.domains[0].etrn_argument(), "example.com");
        let mut f = form();
        f.security = Security::Tls;
        f.domains.push(DomainRow {
            name: "example.org".into(),
            form: EtrnForm::Subdomains,
        });
        let a = f.validate(None).unwrap();
        assert_eq!(a.port, 465);
        assert_eq!(a.domains[1].etrn_argument(), "@example.org");
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
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
            ..AccountForm::default()
        };
        let e = f.validate(None).unwrap_err();
        for field in [
            "name",
            "host",
            "port",
            "password",
            "security",
            "helo",
            "ca_file",
            "domains.0",
        ] {
            assert!(e.fields.contains_key(field), "{field} missing in {e:?}");
        }
        let mut f = form();
        f.domains.clear();
        assert!(f.validate(None).unwrap_err().fields["domains"].contains("at least one"));
    }

    #[test]
    fn an_empty_password_keeps_the_stored_one_for_the_same_user_only() {
        let mut f = form();
        f.username = "alice".into();
        f.password = "s3cret".into();
        let stored = f.validate(None).unwrap();
        f.password.clear();
        let kept = f.validate(Some(&stored)).unwrap();
        assert_eq!(kept.password.unwrap().expose(), "s3cret");
        f.username = "bob".into();
        assert!(f
            .validate(Some(&stored))
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
        let view = AccountView::from(&f.validate(None).unwrap());
        assert!(view.has_password);
        assert!(!serde_json::to_string(&view).unwrap().contains("s3cret"));
    }

    #[test]
    fn settings_round_trip_and_complain() {
        let mut c = Config::default();
        let mut s = SettingsForm::from_config(&c, "/d/Maildir".into(), true, false, false);
        assert_eq!(s.max_size_mib, "50");
        s.listen = "127.0.0.1:2525".into();
        s.maildir = "/srv/mail".into();
        s.idle_timeout = "5".into();
        s.max_size_mib = "1.5".into();
        s.apply(&mut c).unwrap();
        assert_eq!(c.listen.port(), 2525);
        assert_eq!(c.max_message_size, 1_572_864);
        s.listen = "localhost".into();
        s.maildir = "mail".into();
        s.idle_timeout = "0".into();
        s.max_size_mib = "lots".into();
        let e = s.apply(&mut c).unwrap_err();
        assert_eq!(e.fields.len(), 4, "{e:?}");
    }
}
