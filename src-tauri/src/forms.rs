//! What the window sends and gets: the account and settings forms, and how their fields map to
//! an [`Account`] and to config keys. No rules live here: an account is checked by
//! [`Account::check`] and each preference by [`Config::set`]; their problems come back next to
//! the field they name. Views never carry a saved password.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailcall_core::account::{
    Account, AccountProblem, DomainSpec, EtrnForm, FetchMode, LinkSettings, Secret, Security,
};
use mailcall_core::config::{Config, ConfigError, RouteEntry, UnknownRecipients};
use mailcall_core::hint::AccountField;
use mailcall_core::routing::{Destination, Pattern, Route};
use serde::{Deserialize, Serialize};

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

/// The config keys the Delivery tab edits besides the routes: key, field name, label.
pub const DELIVERY_FIELDS: &[(&str, &str, &str)] = &[
    (
        "unknown-recipients",
        "unknown_recipients",
        "Unknown recipients",
    ),
    ("retry-delay", "retry_delay", "First retry after (s)"),
    (
        "max-retry-delay",
        "max_retry_delay",
        "Longest wait between retries (s)",
    ),
];

/// The routes table's label in the Delivery tab (what hints about `routes` point at).
pub const ROUTES_LABEL: &str = "Routes";

/// The account form's field for `field`.
pub fn account_field_name(field: AccountField) -> &'static str {
    ACCOUNT_FIELDS
        .iter()
        .find(|(f, _, _)| *f == field)
        .map(|(_, name, _)| *name)
        .unwrap_or("name")
}

/// The field for config `key` in the Settings or Delivery tab, when the window shows that key.
pub fn settings_field_name(key: &str) -> Option<&'static str> {
    SETTINGS_FIELDS
        .iter()
        .chain(DELIVERY_FIELDS)
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
            Err(self.marked())
        }
    }

    /// The field messages, with the message that points at them.
    fn marked(self) -> UiError {
        UiError {
            message: "Please correct the marked fields.".into(),
            ..self
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
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
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
        let mode = self.mode.or(stored.map(|s| s.mode)).unwrap_or_default();
        // Typing only: text that is not a number or a domain at all. The rules are the core's.
        let port = match self.port.trim() {
            "" => mode.default_port(self.security),
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

/// One route as the Delivery tab shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteView {
    /// Whose mail: `alice@example.com`, `@example.com` or `*`.
    pub recipient: String,
    /// Where it goes: `maildir:PATH`, `lmtp:HOST:PORT`, `lmtp:unix:PATH`, `smtp:HOST:PORT`.
    pub destination: String,
    /// `maildir`, `lmtp` or `smtp`.
    pub kind: &'static str,
    /// `smtp:` only: how the connection is secured.
    pub security: Option<Security>,
    /// `smtp:` only: the CA file, empty for the system's certificates.
    pub ca_file: String,
    /// Whether mail for it waits in Mailcall's queue until the server takes it.
    pub queued: bool,
}

impl From<&Route> for RouteView {
    fn from(r: &Route) -> Self {
        let smtp = matches!(r.target.destination, Destination::Smtp { .. });
        RouteView {
            recipient: r.pattern.to_string(),
            destination: r.target.destination.to_string(),
            kind: match r.target.destination {
                Destination::Maildir(_) => "maildir",
                Destination::Lmtp(_) => "lmtp",
                Destination::Smtp { .. } => "smtp",
            },
            security: smtp.then_some(r.target.security),
            ca_file: r
                .target
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            queued: r.target.destination.is_server(),
        }
    }
}

/// The Delivery tab: the routes, what recipients no route names get, and the retry delays.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The routes, most specific first (as they are looked up).
    pub routes: Vec<RouteView>,
    /// The delays and the answer for unknown recipients, as the form edits them.
    pub settings: DeliveryForm,
    /// What happens to a recipient no route names, in a sentence.
    pub everything_else: String,
}

impl DeliveryView {
    /// The view of `config`'s routes; `maildir` is where mail goes without a route.
    pub fn of(config: &Config, maildir: &std::path::Path) -> Result<Self, ConfigError> {
        let table = config.route_table()?;
        let mut routes: Vec<&Route> = table.routes().iter().collect();
        routes.sort_by_key(|r| match r.pattern {
            Pattern::Address(_) => 0,
            Pattern::Domain(_) => 1,
            Pattern::Any => 2,
        });
        let has_any = routes.iter().any(|r| r.pattern == Pattern::Any);
        let everything_else = match (has_any, config.unknown_recipients) {
            (true, _) => "Everything else goes where the * route says.".to_string(),
            (false, UnknownRecipients::CatchAll) => format!(
                "Recipients no route names go into {} (unknown recipients: catch-all).",
                maildir.display()
            ),
            (false, UnknownRecipients::Reject) => "Recipients no route names are refused with 550 5.1.1 (unknown recipients: reject): the ISP returns their mail to the sender.".to_string(),
        };
        Ok(DeliveryView {
            routes: routes.into_iter().map(RouteView::from).collect(),
            settings: DeliveryForm::from_config(config),
            everything_else,
        })
    }
}

/// A route as typed in the Delivery tab.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteForm {
    /// Whose mail.
    pub recipient: String,
    /// Where it goes.
    pub destination: String,
    /// `smtp:` only: none, starttls or tls; empty for none.
    pub security: String,
    /// `smtp:` only: a CA file; empty for none.
    pub ca_file: String,
}

/// `~/x` as a full path (the window has no current directory to be relative to).
fn expand_home(text: &str) -> String {
    match (text.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest).display().to_string(),
        _ => text.to_string(),
    }
}

impl RouteForm {
    /// Adds the route to `config` (replacing the one for the same recipients) by the core's
    /// rules ([`Config::add_route`]); what is wrong comes back next to its field.
    pub fn apply(&self, config: &mut Config) -> Result<Route, UiError> {
        let mut err = UiError::default();
        let recipient = self.recipient.trim().to_string();
        if let Err(e) = recipient.parse::<Pattern>() {
            err.field("recipient", e);
        }
        let destination = match self.destination.trim().split_once(':') {
            Some((kind, rest)) if kind.eq_ignore_ascii_case("maildir") => {
                format!("maildir:{}", expand_home(rest.trim()))
            }
            _ => self.destination.trim().to_string(),
        };
        if let Err(e) = destination.parse::<Destination>() {
            err.field("destination", e);
        }
        let security = match self.security.trim() {
            "" => None,
            s => match s.parse::<Security>() {
                Ok(s) => Some(s),
                Err(e) => {
                    err.field("security", e);
                    None
                }
            },
        };
        let ca_file = optional(&self.ca_file).map(|p| PathBuf::from(expand_home(&p)));
        if !err.fields.is_empty() {
            return Err(err.marked());
        }
        // What is left for the route itself: security and a CA file where they belong.
        if let Err(e) = Route::parse(&recipient, &destination, security, ca_file.clone()) {
            let field = match &ca_file {
                Some(p) if !p.is_absolute() => "ca_file",
                _ => "security",
            };
            err.field(field, e);
            return Err(err.marked());
        }
        config
            .add_route(RouteEntry {
                recipient,
                destination,
                security,
                ca_file,
            })
            .map_err(|e| UiError::new(sentence(&config_problem(&e))))
    }
}

/// The Delivery tab's settings as the window shows and sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryForm {
    /// `catch-all` or `reject`.
    pub unknown_recipients: String,
    /// Seconds before the first retry of a failed hand-over.
    pub retry_delay: String,
    /// The longest wait between two retries, in seconds.
    pub max_retry_delay: String,
}

impl DeliveryForm {
    /// The form for `config`.
    pub fn from_config(config: &Config) -> Self {
        DeliveryForm {
            unknown_recipients: config.unknown_recipients.to_string(),
            retry_delay: config.retry_delay.to_string(),
            max_retry_delay: config.max_retry_delay.to_string(),
        }
    }

    fn value(&self, key: &str) -> &str {
        match key {
            "unknown-recipients" => &self.unknown_recipients,
            "retry-delay" => &self.retry_delay,
            _ => &self.max_retry_delay,
        }
    }

    /// Applies the form to `config` key by key through [`Config::set`]; every refused value
    /// comes back next to its field. The two delays are judged together by the core, so both
    /// orders are tried (raising both at once must not fail on the first one).
    pub fn apply(&self, config: &mut Config) -> Result<(), UiError> {
        let attempt = |order: &[usize]| {
            let mut next = config.clone();
            let mut err = UiError::default();
            for &i in order {
                let (key, field, _) = DELIVERY_FIELDS[i];
                if let Err(e) = next.set(key, self.value(key)) {
                    let at = e
                        .key()
                        .and_then(|k| DELIVERY_FIELDS.iter().find(|(dk, _, _)| *dk == k))
                        .map(|(_, f, _)| *f)
                        .unwrap_or(field);
                    err.field(at, config_problem(&e));
                }
            }
            (next, err)
        };
        let (next, err) = attempt(&[0, 1, 2]);
        let (next, err) = if err.fields.is_empty() {
            (next, err)
        } else {
            match attempt(&[0, 2, 1]) {
                (other, e) if e.fields.is_empty() => (other, e),
                _ => (next, err),
            }
        };
        if err.fields.is_empty() {
            *config = next;
        }
        err.into_result(())
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
        for (key, _, _) in SETTINGS_FIELDS.iter().chain(DELIVERY_FIELDS) {
            assert!(
                mailcall_core::config::KEYS.iter().any(|k| k.name == *key),
                "{key} is no config key"
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

    fn route(recipient: &str, destination: &str) -> RouteForm {
        RouteForm {
            recipient: recipient.into(),
            destination: destination.into(),
            ..RouteForm::default()
        }
    }

    #[test]
    fn routes_go_through_the_core_rules_with_each_fault_at_its_field() {
        let mut c = Config::default();
        route("alice@example.com", "lmtp:127.0.0.1:24")
            .apply(&mut c)
            .unwrap();
        let mut smtp = route("@example.org", "smtp:mail.lan:25");
        smtp.security = "starttls".into();
        smtp.ca_file = "/etc/ssl/lan-ca.pem".into();
        smtp.apply(&mut c).unwrap();
        route("*", "maildir:/srv/mail/other").apply(&mut c).unwrap();
        let view = DeliveryView::of(&c, std::path::Path::new("/m")).unwrap();
        let rows: Vec<(&str, &str)> = view
            .routes
            .iter()
            .map(|r| (r.recipient.as_str(), r.kind))
            .collect();
        assert_eq!(
            rows,
            [
                ("alice@example.com", "lmtp"),
                ("@example.org", "smtp"),
                ("*", "maildir")
            ]
        );
        assert_eq!(view.routes[1].security, Some(Security::Starttls));
        assert_eq!(view.routes[1].ca_file, "/etc/ssl/lan-ca.pem");
        assert!(view.routes[0].queued && !view.routes[2].queued);
        assert_eq!(view.routes[0].security, None, "security is smtp's only");
        assert!(view.everything_else.contains("* route"), "{view:?}");
        // The same pattern again replaces the route.
        route("Alice@Example.com", "lmtp:127.0.0.1:2424")
            .apply(&mut c)
            .unwrap();
        assert_eq!(c.routes.len(), 3);
        // Each fault next to its field, and nothing changes.
        let before = c.clone();
        let e = route("alice", "pop3:mail.lan").apply(&mut c).unwrap_err();
        assert!(
            e.fields["recipient"].contains("is not a recipient pattern"),
            "{e:?}"
        );
        assert!(e.fields["destination"].contains("maildir:"), "{e:?}");
        let e = route("bob@example.com", "maildir:relative/path")
            .apply(&mut c)
            .unwrap_err();
        assert!(e.fields["destination"].contains("not a full path"), "{e:?}");
        let mut bad = route("bob@example.com", "lmtp:127.0.0.1:24");
        bad.security = "tls".into();
        let e = bad.apply(&mut c).unwrap_err();
        assert!(
            e.fields["security"].contains("smtp: destinations only"),
            "{e:?}"
        );
        let mut bad = route("bob@example.com", "smtp:mail.lan");
        bad.ca_file = "lan-ca.pem".into();
        let e = bad.apply(&mut c).unwrap_err();
        assert!(e.fields["ca_file"].contains("not a full path"), "{e:?}");
        assert_eq!(c, before, "nothing saved");
        // ~/ is the user's home.
        route("carol@example.com", "maildir:~/Maildir/.Carol")
            .apply(&mut c)
            .unwrap();
        let home = dirs::home_dir().unwrap();
        assert!(
            c.routes
                .iter()
                .any(|r| r.destination
                    == format!("maildir:{}", home.join("Maildir/.Carol").display()))
        );
    }

    #[test]
    fn delivery_settings_are_config_keys_and_the_delays_are_judged_together() {
        let mut c = Config::default();
        let mut f = DeliveryForm::from_config(&c);
        assert_eq!(
            (
                f.unknown_recipients.as_str(),
                f.retry_delay.as_str(),
                f.max_retry_delay.as_str()
            ),
            ("catch-all", "60", "3600")
        );
        // Both raised above the old longest wait: fine in one save.
        f.retry_delay = "7200".into();
        f.max_retry_delay = "86400".into();
        f.apply(&mut c).unwrap();
        assert_eq!((c.retry_delay, c.max_retry_delay), (7200, 86400));
        f.max_retry_delay = "60".into();
        let e = f.apply(&mut c).unwrap_err();
        assert!(
            e.fields["max_retry_delay"].contains("shorter than retry-delay"),
            "{e:?}"
        );
        // Reject needs routes: the core says so next to the selector.
        let mut f = DeliveryForm::from_config(&c);
        f.unknown_recipients = "reject".into();
        let e = f.apply(&mut c).unwrap_err();
        assert!(e.fields["unknown_recipients"].contains("add"), "{e:?}");
        route("alice@example.com", "lmtp:127.0.0.1:24")
            .apply(&mut c)
            .unwrap();
        f.apply(&mut c).unwrap();
        assert_eq!(c.unknown_recipients, UnknownRecipients::Reject);
        let view = DeliveryView::of(&c, std::path::Path::new("/m")).unwrap();
        assert!(
            view.everything_else.contains("refused with 550 5.1.1"),
            "{view:?}"
        );
        // The last route cannot go while reject needs one.
        let err = c.remove_route("alice@example.com").unwrap_err();
        assert_eq!(err.key(), Some("unknown-recipients"));
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
