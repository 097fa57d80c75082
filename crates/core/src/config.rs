//! The TOML config file (account names and preferences, never a secret), the platform paths,
//! and the one set of rules for every preference: [`Config::default`] holds every default,
//! [`Config::check`] every rule, and [`Config::set`] / [`Config::unset`] change one key through
//! them — the CLI and the tray only map their fields to keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::listener::PeerNet;
use crate::routing::{Pattern, Route, RouteTable};

/// The environment variable that overrides the config file's path.
pub const CONFIG_ENV: &str = "MAILCALL_CONFIG";

/// Reading, writing or changing the config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read the config file {path}: {source}. Check its permissions, or use another config file")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or holds a bad value.
    #[error("the config file {path} is not valid: {message}. Fix the line it names, or remove the file to start with defaults")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key whose value is bad, when one is.
        key: Option<&'static str>,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write the config file {path}: {source}. Check that its directory is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// No config/data directory is known for this platform.
    #[error("cannot find a {what} directory for this user (is HOME set?); give the config file's path explicitly ({CONFIG_ENV})")]
    NoDirectory {
        /// Which directory.
        what: &'static str,
    },
    /// A value breaks its key's rule.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, as spelled in the file.
        key: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// No such key.
    #[error("unknown setting {key:?}: the settings are {}", KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))]
    UnknownKey {
        /// What was given.
        key: String,
    },
}

impl ConfigError {
    /// The key whose value is wrong, for front ends that show it next to the field.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Parse { key, .. } => *key,
            _ => None,
        }
    }
}

/// Where the accounts' settings live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStoreKind {
    /// The OS keyring (Secret Service, Keychain, Credential Manager), passwords included.
    #[default]
    Keyring,
    /// `accounts.toml` beside the config, for machines without a keyring: no passwords, so an
    /// account with AUTH uses a password command.
    File,
}

/// The preferences and the list of accounts; the keys of `mailcall-cli config set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the SMTP listener listens (ADDR:PORT).
    pub listen: SocketAddr,
    /// The Maildir messages are delivered into; default: `Maildir` in the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maildir: Option<PathBuf>,
    /// Where the history, the pause switch and the generated certificate live; default: the
    /// platform data directory (`~/.local/share/mailcall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Seconds without a connection or message before a fetch ends.
    pub idle_timeout: u64,
    /// Upper bound in seconds on a whole fetch session (and on retrying an automatic one).
    pub max_wait: u64,
    /// Seconds to wait for each reply of the ISP's server.
    pub reply_timeout: u64,
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// The name the listener greets with; default: this machine's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Interfaces whose link-up fetches (globs such as `ppp*`); empty: any but loopback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Seconds a link must stay down before coming back counts as a new link-up.
    pub settle_delay: u64,
    /// Fetch every this many minutes while a watched interface is up; 0: never.
    pub fetch_interval: u64,
    /// Fetch once when Mailcall starts and a watched interface is already up.
    pub fetch_at_start: bool,
    /// The accounts' names; their settings live in the account store.
    pub accounts: Vec<String>,
    /// Where the accounts' settings live: the OS keyring, or a file beside the config.
    pub account_store: AccountStoreKind,
    /// Offer STARTTLS to delivering ISPs (self-signed certificate unless `tls-cert` is set).
    pub starttls: bool,
    /// The listener's certificate chain (PEM); with `tls-key`. Default: a self-signed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The listener's private key (PEM), for `tls-cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Peers (addresses or CIDR networks) allowed to deliver; empty: any peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_peers: Vec<String>,
    /// Recipients per message.
    pub max_recipients: u64,
    /// Longest SMTP command line, in bytes.
    pub max_line_length: u64,
    /// 5xx replies after which a session is dropped.
    pub max_errors: u64,
    /// Connections at once.
    pub max_connections: u64,
    /// Connections at once from one peer address.
    pub max_connections_per_peer: u64,
    /// Seconds a peer has to send one SMTP command.
    pub command_timeout: u64,
    /// Seconds to wait for each piece of message data.
    pub data_timeout: u64,
    /// What a recipient in our domains that no route names gets: the catch-all, or `550 5.1.1`.
    pub unknown_recipients: UnknownRecipients,
    /// Seconds before the first retry of a hand-over to a LAN server that failed; doubles with
    /// each failure.
    pub retry_delay: u64,
    /// The longest wait between two retries of a hand-over, in seconds.
    pub max_retry_delay: u64,
    /// Where each recipient's mail goes (`mailcall-cli route`); none: all into `maildir`.
    /// Last: TOML writes tables after the plain keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteEntry>,
}

/// What a recipient in one of our domains gets when no route names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownRecipients {
    /// Delivered to the catch-all: the `*` route, else the `maildir` setting.
    #[default]
    CatchAll,
    /// Refused at RCPT with `550 5.1.1` (the ISP bounces it to the sender).
    Reject,
}

impl std::str::FromStr for UnknownRecipients {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "catch-all" | "catchall" | "deliver" => Ok(UnknownRecipients::CatchAll),
            "reject" | "refuse" => Ok(UnknownRecipients::Reject),
            _ => Err(format!(
                "{s:?} is not an answer for unknown recipients: use catch-all or reject"
            )),
        }
    }
}

impl fmt::Display for UnknownRecipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnknownRecipients::CatchAll => "catch-all",
            UnknownRecipients::Reject => "reject",
        })
    }
}

/// One route as the config file holds it (`[[routes]]`); see [`crate::routing::Route`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RouteEntry {
    /// `alice@example.com`, `@example.com` or `*`.
    pub recipient: String,
    /// `maildir:PATH`, `lmtp:HOST:PORT`, `lmtp:unix:PATH` or `smtp:HOST:PORT`.
    pub destination: String,
    /// `smtp:` only: none (default), starttls or tls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<crate::account::Security>,
    /// `smtp:` only: a PEM file of CA certificates to trust for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl RouteEntry {
    /// The route it describes, or what is wrong with it.
    pub fn route(&self) -> Result<Route, String> {
        Route::parse(
            &self.recipient,
            &self.destination,
            self.security,
            self.ca_file.clone(),
        )
    }
}

impl Default for Config {
    /// Every default, and the only place they are written down.
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 25)),
            maildir: None,
            data_dir: None,
            idle_timeout: 30,
            max_wait: 600,
            reply_timeout: 60,
            max_message_size: 50 * 1024 * 1024,
            hostname: None,
            interfaces: Vec::new(),
            settle_delay: 2,
            fetch_interval: 0,
            fetch_at_start: true,
            accounts: Vec::new(),
            account_store: AccountStoreKind::Keyring,
            starttls: true,
            tls_cert: None,
            tls_key: None,
            allowed_peers: Vec::new(),
            max_recipients: 100,
            max_line_length: 4096,
            max_errors: 20,
            max_connections: 100,
            max_connections_per_peer: 20,
            command_timeout: 300,
            data_timeout: 600,
            unknown_recipients: UnknownRecipients::CatchAll,
            retry_delay: 60,
            max_retry_delay: 3600,
            routes: Vec::new(),
        }
    }
}

/// One settable key: its name in the file, and what it holds (for `config set --help`).
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as spelled in the file.
    pub name: &'static str,
    /// What it holds, in a few words.
    pub about: &'static str,
}

/// Every key `set` and `unset` take, in the order `config show` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        about: "ADDR:PORT the ISP delivers to",
    },
    Key {
        name: "maildir",
        about: "the Maildir messages go into (a full path)",
    },
    Key {
        name: "data-dir",
        about: "where the history and state are kept (a full path)",
    },
    Key {
        name: "idle-timeout",
        about: "seconds without mail that end a fetch",
    },
    Key {
        name: "max-wait",
        about: "seconds a whole fetch may take",
    },
    Key {
        name: "reply-timeout",
        about: "seconds to wait for each reply of the ISP",
    },
    Key {
        name: "max-message-size",
        about: "largest message, in bytes",
    },
    Key {
        name: "hostname",
        about: "the listener's name in its greeting",
    },
    Key {
        name: "starttls",
        about: "offer STARTTLS to the delivering ISP (true/false)",
    },
    Key {
        name: "tls-cert",
        about: "the listener's certificate chain (PEM)",
    },
    Key {
        name: "tls-key",
        about: "the listener's private key (PEM)",
    },
    Key {
        name: "allowed-peers",
        about: "addresses/networks allowed to deliver (comma-separated)",
    },
    Key {
        name: "max-recipients",
        about: "recipients per message",
    },
    Key {
        name: "max-line-length",
        about: "longest SMTP command line, in bytes",
    },
    Key {
        name: "max-errors",
        about: "error replies before a session is dropped",
    },
    Key {
        name: "max-connections",
        about: "connections at once",
    },
    Key {
        name: "max-connections-per-peer",
        about: "connections at once from one address (not the ISP a fetch asked)",
    },
    Key {
        name: "command-timeout",
        about: "seconds a peer has for one SMTP command",
    },
    Key {
        name: "data-timeout",
        about: "seconds to wait for each piece of message data",
    },
    Key {
        name: "unknown-recipients",
        about: "recipients no route names: catch-all or reject (550 5.1.1)",
    },
    Key {
        name: "retry-delay",
        about: "seconds before a failed hand-over to a LAN server is retried",
    },
    Key {
        name: "max-retry-delay",
        about: "longest wait between retries of a hand-over, seconds",
    },
    Key {
        name: "interfaces",
        about: "interfaces whose link-up fetches (globs, comma-separated)",
    },
    Key {
        name: "settle-delay",
        about: "seconds a link must stay down to count as a new link-up",
    },
    Key {
        name: "fetch-interval",
        about: "fetch every N minutes while a link is up (0: never)",
    },
    Key {
        name: "fetch-at-start",
        about: "fetch once at start when a link is up (true/false)",
    },
    Key {
        name: "account-store",
        about: "where accounts live: keyring, or file (no passwords: use a password command)",
    },
];

/// The numeric keys: (key, smallest, largest) — the rules `check` applies to them.
const RANGES: &[(&str, u64, u64)] = &[
    ("idle-timeout", 1, 86_400),
    ("max-wait", 1, 7 * 86_400),
    ("reply-timeout", 1, 3_600),
    ("max-message-size", 1024, u64::MAX),
    ("max-recipients", 1, 100_000),
    ("max-line-length", 512, 1 << 20),
    ("max-errors", 1, 100_000),
    ("max-connections", 1, 100_000),
    ("max-connections-per-peer", 1, 100_000),
    ("command-timeout", 1, 86_400),
    ("data-timeout", 1, 86_400),
    ("settle-delay", 0, 3_600),
    ("fetch-interval", 0, 7 * 24 * 60),
    ("retry-delay", 1, 86_400),
    ("max-retry-delay", 1, 7 * 86_400),
];

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

fn key_named(name: &str) -> Result<&'static str, ConfigError> {
    KEYS.iter()
        .find(|k| k.name == name)
        .map(|k| k.name)
        .ok_or_else(|| ConfigError::UnknownKey {
            key: name.to_owned(),
        })
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(invalid(key, format!("{value:?} is not true or false"))),
    }
}

fn parse_number(key: &'static str, value: &str) -> Result<u64, ConfigError> {
    // `30s` for the keys in seconds and `15m` for the one in minutes read as they look.
    let unit = match key {
        "fetch-interval" => Some('m'),
        k if k.ends_with("-timeout") || k == "max-wait" || k.ends_with("-delay") => Some('s'),
        _ => None,
    };
    let text = value.trim();
    let digits = unit.and_then(|u| text.strip_suffix(u)).unwrap_or(text);
    digits
        .parse()
        .map_err(|_| invalid(key, format!("{value:?} is not a whole number")))
}

fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Parses a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            key: None,
            message: e.to_string().trim().replace('\n', " "),
        })?;
        if let Some(ConfigError::Invalid { key, problem }) = config.check().into_iter().next() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                key: Some(key),
                message: format!("{key}: {problem}"),
            });
        }
        Ok(config)
    }

    /// Loads `path`, or the defaults when it does not exist yet.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Loads `path` to change `key` (`config set` / `config unset`): as [`Config::load`], but a
    /// file whose values break only `key`'s rule loads anyway, so that changing that key can
    /// repair it (`tls-cert` and `tls-key` count as one: either repairs their pairing). Any
    /// other fault is the error [`Config::load`] gives.
    pub fn load_to_change(path: &Path, key: &str) -> Result<Self, ConfigError> {
        let error = match Config::load(path) {
            Err(e @ ConfigError::Parse { key: Some(_), .. }) => e,
            other => return other,
        };
        let tls = |k: &str| matches!(k, "tls-cert" | "tls-key");
        let ours = |k: Option<&str>| k == Some(key) || (tls(key) && k.is_some_and(tls));
        if !ours(error.key()) {
            return Err(error);
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match toml::from_str::<Config>(&text) {
            Ok(config) if config.check().iter().all(|e| ours(e.key())) => Ok(config),
            _ => Err(error),
        }
    }

    /// Writes the config to `path` atomically and durably, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let body =
            format!("# Mailcall settings. Passwords live in the OS keyring, never here.\n{text}");
        fsutil::write_atomic(path, body.as_bytes(), 0o600).map_err(err)
    }

    /// Every rule a value breaks, as [`ConfigError::Invalid`] naming its key; empty when all is
    /// well. The one place the rules live: parsing a file and `set` both come here.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for &(key, min, max) in RANGES {
            let value = self.number(key);
            if value < min || value > max {
                let allowed = if max == u64::MAX {
                    format!("at least {min}")
                } else {
                    format!("from {min} to {max}")
                };
                problems.push(invalid(
                    key,
                    format!("{value} is out of range: use {allowed}"),
                ));
            }
        }
        for (key, dir) in [("maildir", &self.maildir), ("data-dir", &self.data_dir)] {
            if let Some(d) = dir {
                if !d.is_absolute() {
                    problems.push(invalid(
                        key,
                        format!(
                            "{} is not a full path: give it starting with /",
                            d.display()
                        ),
                    ));
                }
            }
        }
        if let Some(h) = &self.hostname {
            let valid = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                problems.push(invalid(
                    "hostname",
                    format!("{h:?} is not a host name: use letters, digits, '-' and '.', e.g. mail.example.com"),
                ));
            }
        }
        for name in &self.accounts {
            if let Err(e) = crate::account::validate_name(name) {
                problems.push(ConfigError::Invalid {
                    key: "accounts",
                    problem: e,
                });
            }
        }
        if let Err(e) = self.peer_networks() {
            problems.push(e);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(invalid(
                if self.tls_cert.is_some() { "tls-key" } else { "tls-cert" },
                "tls-cert and tls-key go together: set both, or neither for a self-signed certificate",
            ));
        }
        let bad_glob = |g: &String| {
            g.is_empty() || g.len() > 64 || !g.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        };
        if let Some(g) = self.interfaces.iter().find(|g| bad_glob(g)) {
            problems.push(invalid(
                "interfaces",
                format!("{g:?} is not an interface name or glob: write names such as ppp0 or ppp*, wlan0"),
            ));
        }
        problems.extend(self.route_problems());
        if self.max_retry_delay < self.retry_delay {
            problems.push(invalid(
                "max-retry-delay",
                format!(
                    "{} is shorter than retry-delay ({}): give at least that",
                    self.max_retry_delay, self.retry_delay
                ),
            ));
        }
        problems
    }

    fn route_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in &self.routes {
            match entry.route() {
                Ok(route) => {
                    if !seen.insert(route.pattern.clone()) {
                        problems.push(invalid(
                            "routes",
                            format!("two routes for {}: remove one of them", route.pattern),
                        ));
                    }
                }
                Err(e) => problems.push(invalid("routes", e)),
            }
        }
        if self.unknown_recipients == UnknownRecipients::Reject && self.routes.is_empty() {
            problems.push(invalid(
                "unknown-recipients",
                "reject refuses every recipient no route names, and there are no routes: add                  routes first, or use catch-all",
            ));
        }
        problems
    }

    /// The routes, checked.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let routes = self
            .routes
            .iter()
            .map(|e| e.route().map_err(|p| invalid("routes", p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable::new(routes))
    }

    /// Adds a route, replacing the one with the same pattern; the config is left as it was
    /// when the route (or the table with it) breaks a rule.
    pub fn add_route(&mut self, entry: RouteEntry) -> Result<Route, ConfigError> {
        let route = entry.route().map_err(|p| invalid("routes", p))?;
        let mut next = self.clone();
        next.routes.retain(|e| {
            e.route()
                .map(|r| r.pattern != route.pattern)
                .unwrap_or(true)
        });
        next.routes.push(entry);
        if let Some(e) = next.route_problems().into_iter().next() {
            return Err(e);
        }
        *self = next;
        Ok(route)
    }

    /// Removes the route for `pattern`; returns whether there was one. Refused (the config
    /// unchanged) when the table without it would break a rule.
    pub fn remove_route(&mut self, pattern: &str) -> Result<bool, ConfigError> {
        let wanted: Pattern = pattern.parse().map_err(|p| invalid("routes", p))?;
        let mut next = self.clone();
        next.routes
            .retain(|e| e.route().map(|r| r.pattern != wanted).unwrap_or(true));
        if next.routes.len() == self.routes.len() {
            return Ok(false);
        }
        if let Some(e) = next.route_problems().into_iter().next() {
            return Err(e);
        }
        *self = next;
        Ok(true)
    }

    /// The first rule broken, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.check().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn number(&self, key: &str) -> u64 {
        match key {
            "idle-timeout" => self.idle_timeout,
            "max-wait" => self.max_wait,
            "reply-timeout" => self.reply_timeout,
            "max-message-size" => self.max_message_size,
            "max-recipients" => self.max_recipients,
            "max-line-length" => self.max_line_length,
            "max-errors" => self.max_errors,
            "max-connections" => self.max_connections,
            "max-connections-per-peer" => self.max_connections_per_peer,
            "command-timeout" => self.command_timeout,
            "data-timeout" => self.data_timeout,
            "settle-delay" => self.settle_delay,
            "fetch-interval" => self.fetch_interval,
            "retry-delay" => self.retry_delay,
            "max-retry-delay" => self.max_retry_delay,
            _ => 0,
        }
    }

    fn number_mut(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "idle-timeout" => &mut self.idle_timeout,
            "max-wait" => &mut self.max_wait,
            "reply-timeout" => &mut self.reply_timeout,
            "max-message-size" => &mut self.max_message_size,
            "max-recipients" => &mut self.max_recipients,
            "max-line-length" => &mut self.max_line_length,
            "max-errors" => &mut self.max_errors,
            "max-connections" => &mut self.max_connections,
            "max-connections-per-peer" => &mut self.max_connections_per_peer,
            "command-timeout" => &mut self.command_timeout,
            "data-timeout" => &mut self.data_timeout,
            "settle-delay" => &mut self.settle_delay,
            "fetch-interval" => &mut self.fetch_interval,
            "retry-delay" => &mut self.retry_delay,
            "max-retry-delay" => &mut self.max_retry_delay,
            _ => return None,
        })
    }

    /// Sets one preference from its text form (`config set KEY VALUE`); the config is left as it
    /// was when the value breaks the key's rule.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key_named(key)?;
        let mut next = self.clone();
        let path = |v: &str| (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
        match key {
            "listen" => {
                next.listen = value.trim().parse().map_err(|_| {
                    invalid(
                        key,
                        format!("{value:?} is not ADDR:PORT, e.g. 0.0.0.0:25 or 127.0.0.1:2525"),
                    )
                })?
            }
            "maildir" => {
                next.maildir =
                    Some(path(value).ok_or_else(|| invalid(key, "give the Maildir's full path"))?)
            }
            "data-dir" => {
                next.data_dir = Some(
                    path(value).ok_or_else(|| invalid(key, "give the directory's full path"))?,
                )
            }
            "hostname" => next.hostname = Some(value.trim().to_string()),
            "starttls" => next.starttls = parse_bool(key, value)?,
            "account-store" => {
                next.account_store = match value.trim().to_ascii_lowercase().as_str() {
                    "keyring" => AccountStoreKind::Keyring,
                    "file" => AccountStoreKind::File,
                    _ => return Err(invalid(key, format!("{value:?} is not keyring or file"))),
                }
            }
            "fetch-at-start" => next.fetch_at_start = parse_bool(key, value)?,
            "tls-cert" => next.tls_cert = path(value),
            "tls-key" => next.tls_key = path(value),
            "allowed-peers" => next.allowed_peers = list(value),
            "interfaces" => next.interfaces = list(value),
            "unknown-recipients" => {
                next.unknown_recipients = value.parse().map_err(|e: String| invalid(key, e))?
            }
            _ => {
                let n = parse_number(key, value)?;
                *next
                    .number_mut(key)
                    .ok_or_else(|| ConfigError::UnknownKey { key: key.into() })? = n;
            }
        }
        // Only this key's rule (and the pairing of tls-cert/tls-key) decides.
        let pair = matches!(key, "tls-cert" | "tls-key");
        // The retry delays are judged together: a first delay above the longest is either's.
        let related: &[&str] = match key {
            "retry-delay" | "max-retry-delay" => &["retry-delay", "max-retry-delay"],
            _ => &[key],
        };
        if let Some(e) = next
            .check()
            .into_iter()
            .find(|e| e.key().is_some_and(|k| related.contains(&k)) && !pair)
        {
            return Err(e);
        }
        *self = next;
        Ok(())
    }

    /// Brings one preference back to its default (`config unset KEY`).
    pub fn unset(&mut self, key: &str) -> Result<(), ConfigError> {
        let key = key_named(key)?;
        let d = Config::default();
        match key {
            "listen" => self.listen = d.listen,
            "maildir" => self.maildir = d.maildir,
            "data-dir" => self.data_dir = d.data_dir,
            "hostname" => self.hostname = d.hostname,
            "starttls" => self.starttls = d.starttls,
            "account-store" => self.account_store = d.account_store,
            "fetch-at-start" => self.fetch_at_start = d.fetch_at_start,
            "tls-cert" => self.tls_cert = d.tls_cert,
            "tls-key" => self.tls_key = d.tls_key,
            "allowed-peers" => self.allowed_peers = d.allowed_peers,
            "interfaces" => self.interfaces = d.interfaces,
            "unknown-recipients" => self.unknown_recipients = d.unknown_recipients,
            _ => {
                let default = d.number(key);
                if let Some(n) = self.number_mut(key) {
                    *n = default;
                }
            }
        }
        Ok(())
    }

    /// The `allowed-peers` networks; `None` when any peer may deliver.
    pub fn peer_networks(&self) -> Result<Option<Vec<PeerNet>>, ConfigError> {
        if self.allowed_peers.is_empty() {
            return Ok(None);
        }
        self.allowed_peers
            .iter()
            .map(|p| {
                p.parse().map_err(|e: crate::listener::PeerNetError| {
                    invalid("allowed-peers", e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }

    /// The maximum wait as a duration.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait)
    }

    /// The Maildir to deliver into: the configured one, or `Maildir` in the data directory.
    pub fn maildir_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.maildir {
            Some(p) => Ok(p.clone()),
            None => Ok(self.data_path()?.join("Maildir")),
        }
    }

    /// The data directory: the configured one, or the platform's (see [`data_dir`]).
    pub fn data_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.data_dir {
            Some(p) => Ok(p.clone()),
            None => data_dir(),
        }
    }

    /// The history file in the data directory.
    pub fn history(&self) -> Result<crate::history::History, ConfigError> {
        Ok(crate::history::History::new(
            self.data_path()?.join(crate::history::HISTORY_FILE),
        ))
    }

    /// The listener's host name: configured, or this machine's.
    pub fn hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(machine_hostname)
    }

    /// The settings with defaults filled in, as TOML (for `config show`).
    pub fn effective_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        shown.maildir = Some(self.maildir_path()?);
        shown.data_dir = Some(self.data_path()?);
        shown.hostname = Some(self.hostname());
        toml::to_string_pretty(&shown).map_err(|e| invalid("accounts", e.to_string()))
    }

    /// Adds an account name if missing; returns whether it was added.
    pub fn add_account(&mut self, name: &str) -> bool {
        if self.accounts.iter().any(|a| a == name) {
            return false;
        }
        self.accounts.push(name.to_string());
        true
    }

    /// Removes an account name; returns whether it was there.
    pub fn remove_account(&mut self, name: &str) -> bool {
        let before = self.accounts.len();
        self.accounts.retain(|a| a != name);
        self.accounts.len() != before
    }
}

/// This machine's host name, for EHLO and the listener's greeting.
pub fn machine_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Where the config file is: the explicit path, then `MAILCALL_CONFIG`, then the platform
/// config dir.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("mailcall").join("config.toml"))
        .ok_or(ConfigError::NoDirectory { what: "config" })
}

/// The platform's data directory for Mailcall (history, state, default Maildir): the platform
/// data dir + `mailcall`. A config's `data-dir` overrides it ([`Config::data_path`]).
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    dirs::data_dir()
        .map(|d| d.join("mailcall"))
        .ok_or(ConfigError::NoDirectory { what: "data" })
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match toml::to_string_pretty(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys() {
        let c = Config::parse("accounts = [\"isp\"]\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.listen, "0.0.0.0:25".parse().unwrap());
        assert_eq!(c.idle_timeout, 30);
        assert_eq!(c.reply_timeout, 60);
        assert_eq!(c.accounts, vec!["isp".to_string()]);
        assert_eq!(
            Config::parse("", Path::new("c.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_file_and_key() {
        let e = Config::parse("colour = 1\n", Path::new("/x/c.toml")).unwrap_err();
        assert!(e.to_string().contains("/x/c.toml"), "{e}");
        let e = Config::parse("idle-timeout = 0\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("idle-timeout"), "{e}");
        assert_eq!(e.key(), Some("idle-timeout"));
    }

    #[test]
    fn set_and_file_parsing_share_the_rules() {
        // Every value `set` refuses is refused in a file too, naming the same key.
        for (key, bad, file_value) in [
            ("idle-timeout", "0", "0"),
            ("max-message-size", "100", "100"),
            ("settle-delay", "3601", "3601"),
            ("max-line-length", "100", "100"),
            ("reply-timeout", "0", "0"),
            ("fetch-interval", "20000", "20000"),
        ] {
            let mut c = Config::default();
            let e = c.set(key, bad).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
            assert_eq!(c, Config::default(), "a refused set changes nothing");
            let text = format!("{key} = {file_value}\n");
            let e = Config::parse(&text, Path::new("c.toml")).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
        for (key, bad) in [
            ("hostname", "bad host"),
            ("maildir", "relative/md"),
            ("interfaces", "a/b"),
            ("allowed-peers", "not-a-net"),
            ("listen", "nonsense"),
            ("starttls", "maybe"),
        ] {
            let e = Config::default().set(key, bad).unwrap_err();
            assert_eq!(e.key(), Some(key), "{key}: {e}");
        }
        let e = Config::default().set("colour", "red").unwrap_err();
        assert!(e.to_string().contains("idle-timeout"), "{e}");
    }

    #[test]
    fn set_unset_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut c = Config::default();
        c.set("listen", "127.0.0.1:2525").unwrap();
        c.set("maildir", "/tmp/md").unwrap();
        c.set("idle-timeout", "5").unwrap();
        c.set("max-wait", "60").unwrap();
        c.set("reply-timeout", "20s").unwrap();
        c.set("max-message-size", "100000").unwrap();
        c.set("interfaces", "ppp*, wlan0").unwrap();
        c.set("fetch-interval", "15m").unwrap();
        c.set("fetch-at-start", "off").unwrap();
        assert_eq!(c.interfaces, ["ppp*", "wlan0"]);
        assert_eq!((c.reply_timeout, c.fetch_interval), (20, 15));
        c.add_account("isp");
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "listen",
            "maildir",
            "idle-timeout",
            "max-wait",
            "reply-timeout",
            "interfaces",
        ] {
            assert!(
                text.contains(&format!("{key} = ")),
                "{key} missing in {text}"
            );
        }
        assert_eq!(Config::load(&path).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        for key in KEYS {
            c.unset(key.name).unwrap();
        }
        let mut expected = Config::default();
        expected.add_account("isp");
        assert_eq!(c, expected, "every key unset is its default again");
        assert!(c.unset("colour").is_err());
    }

    #[test]
    fn a_file_broken_only_in_one_key_loads_to_change_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "idle-timeout = 0\nmax-wait = 90\n").unwrap();
        assert_eq!(Config::load(&path).unwrap_err().key(), Some("idle-timeout"));
        let other = Config::load_to_change(&path, "max-wait").unwrap_err();
        assert_eq!(
            other.key(),
            Some("idle-timeout"),
            "another key repairs nothing"
        );
        let mut c = Config::load_to_change(&path, "idle-timeout").unwrap();
        assert_eq!((c.idle_timeout, c.max_wait), (0, 90));
        c.unset("idle-timeout").unwrap();
        assert!(c.validate().is_ok());
        // Two keys broken: changing one of them does not load it.
        std::fs::write(&path, "idle-timeout = 0\nmax-wait = 0\n").unwrap();
        assert!(Config::load_to_change(&path, "idle-timeout").is_err());
        // Half a TLS pair: either half repairs it.
        std::fs::write(&path, "tls-key = \"/etc/k.pem\"\n").unwrap();
        let mut c = Config::load_to_change(&path, "tls-key").unwrap();
        c.unset("tls-key").unwrap();
        assert!(c.validate().is_ok());
        assert!(Config::load_to_change(&path, "tls-cert").is_ok());
        // Not TOML at all: no key to blame.
        std::fs::write(&path, "idle-timeout = [\n").unwrap();
        assert!(Config::load_to_change(&path, "idle-timeout").is_err());
    }

    #[test]
    fn the_account_store_is_a_keyring_or_a_file() {
        let mut c = Config::default();
        assert_eq!(c.account_store, AccountStoreKind::Keyring);
        c.set("account-store", "file").unwrap();
        assert_eq!(c.account_store, AccountStoreKind::File);
        let text = toml::to_string_pretty(&c).unwrap();
        assert!(text.contains("account-store = \"file\""), "{text}");
        assert_eq!(
            c.set("account-store", "usb-stick").unwrap_err().key(),
            Some("account-store")
        );
        c.unset("account-store").unwrap();
        assert_eq!(c.account_store, AccountStoreKind::Keyring);
    }

    #[test]
    fn tls_files_go_together() {
        let mut c = Config::default();
        c.set("tls-cert", "/etc/c.pem").unwrap();
        assert_eq!(c.validate().unwrap_err().key(), Some("tls-key"));
        c.set("tls-key", "/etc/k.pem").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }

    fn entry(recipient: &str, destination: &str) -> RouteEntry {
        RouteEntry {
            recipient: recipient.into(),
            destination: destination.into(),
            security: None,
            ca_file: None,
        }
    }

    #[test]
    fn routes_are_added_replaced_removed_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut c = Config::default();
        c.add_route(entry("alice@example.com", "lmtp:127.0.0.1:24"))
            .unwrap();
        c.add_route(entry("@example.com", "maildir:/srv/mail/example"))
            .unwrap();
        // The same pattern again replaces the route (however it is spelled).
        c.add_route(entry("Alice@Example.com", "lmtp:unix:/run/dovecot/lmtp"))
            .unwrap();
        let mut smtp = entry("*", "smtp:mail.lan:25");
        smtp.security = Some(crate::account::Security::Starttls);
        smtp.ca_file = Some("/etc/ssl/lan-ca.pem".into());
        c.add_route(smtp).unwrap();
        c.set("unknown-recipients", "reject").unwrap();
        c.set("retry-delay", "30s").unwrap();
        assert_eq!(c.routes.len(), 3);
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[[routes]]") && text.contains("unknown-recipients = \"reject\""),
            "{text}"
        );
        let back = Config::load(&path).unwrap();
        assert_eq!(back, c);
        let table = back.route_table().unwrap();
        let dest = |a: &str| table.lookup(a).unwrap().target.to_string();
        assert_eq!(dest("alice@example.com"), "lmtp:unix:/run/dovecot/lmtp");
        assert_eq!(
            dest("x@other.test"),
            "smtp:mail.lan:25 (starttls, CA /etc/ssl/lan-ca.pem)"
        );
        assert!(c.effective_toml().unwrap().contains("[[routes]]"));

        assert!(c.remove_route("@example.com").unwrap());
        assert!(!c.remove_route("@example.com").unwrap());
        assert!(c.remove_route("*").unwrap());
        // The last route cannot go while unknown recipients are refused: nothing would be let in.
        let e = c.remove_route("alice@example.com").unwrap_err();
        assert_eq!(e.key(), Some("unknown-recipients"), "{e}");
        c.set("unknown-recipients", "catch-all").unwrap();
        assert!(c.remove_route("alice@example.com").unwrap());
        assert_eq!(
            Config::default()
                .set("unknown-recipients", "reject")
                .unwrap_err()
                .key(),
            Some("unknown-recipients")
        );
    }

    #[test]
    fn bad_routes_are_config_problems_naming_routes() {
        let mut c = Config::default();
        for (r, d) in [
            ("alice", "maildir:/m"),
            ("*", "maildir:relative"),
            ("*", "pop3:host"),
            ("*", "smtp:host:0"),
        ] {
            let e = c.add_route(entry(r, d)).unwrap_err();
            assert_eq!(e.key(), Some("routes"), "{r} {d}: {e}");
        }
        let mut tls_on_lmtp = entry("*", "lmtp:h");
        tls_on_lmtp.security = Some(crate::account::Security::Tls);
        assert_eq!(c.add_route(tls_on_lmtp).unwrap_err().key(), Some("routes"));
        assert_eq!(c, Config::default(), "a refused route changes nothing");
        // In a file: two routes for one pattern, or a bad one, stop the load naming the key.
        let text = "[[routes]]\nrecipient = \"@x.test\"\ndestination = \"maildir:/a\"\n[[routes]]\nrecipient = \"@X.test\"\ndestination = \"maildir:/b\"\n";
        let e = Config::parse(text, Path::new("c.toml")).unwrap_err();
        assert_eq!(e.key(), Some("routes"), "{e}");
        let e = Config::parse(
            "[[routes]]\nrecipient = \"*\"\ndestination = \"nowhere\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
        // The retry delays are judged together.
        let e = Config::default().set("retry-delay", "7200").unwrap_err();
        assert_eq!(e.key(), Some("max-retry-delay"), "{e}");
        assert!(Config::default().set("max-retry-delay", "10").is_err());
        assert!(Config::default().set("max-retry-delay", "60").is_ok());
    }
}
