//! The TOML config file (account names and preferences, never a secret) and the one set of
//! rules for every preference: [`Config::default`] holds every default, [`ConfigKey`] names each
//! key with what it holds and its range (`keys`), [`Config::check`] holds every rule (`check`),
//! and [`Config::set`] / [`Config::unset`] change one key through them — the CLI and the tray
//! only map their fields to keys. Where the files live is `paths`.

mod check;
mod keys;
mod paths;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::routing::{Pattern, Route, RouteError, RouteTable};

pub use keys::{AsConfigKey, ConfigKey, Kind, Range, Unit};
pub use paths::{config_path, data_dir, CONFIG_ENV};

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
        key: Option<ConfigKey>,
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
    /// Another writer's lock could not be waited for (the lock file cannot be made).
    #[error("cannot lock the config file {path} for a change: {source}. Check that its directory is writable")]
    Lock {
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
        /// The key.
        key: ConfigKey,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// No such key.
    #[error("unknown setting {key:?}: the settings are {}", ConfigKey::settable().map(ConfigKey::name).collect::<Vec<_>>().join(", "))]
    UnknownKey {
        /// What was given.
        key: String,
    },
}

impl ConfigError {
    /// The key whose value is wrong, for front ends that show it next to the field.
    pub fn key(&self) -> Option<ConfigKey> {
        match self {
            ConfigError::Invalid { key, .. } => Some(*key),
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
    /// Where the submission listener listens (ADDR:PORT), or `off`: local programs and LAN
    /// hosts hand outgoing mail there. Bound only while an account has an outgoing server.
    pub submit_listen: String,
    /// LAN peers (addresses or CIDR networks) that may submit without a login; loopback always
    /// may.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub submit_allowed_peers: Vec<String>,
    /// The submission login's user name (AUTH over TLS); its password is in the keyring or the
    /// headless store. None: no login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit_user: Option<String>,
    /// The account whose outgoing server sends mail whose sender's domain no account holds
    /// (and mail from the null sender). None: such mail is refused at `MAIL FROM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_outgoing_account: Option<String>,
    /// Recipients per message.
    pub max_recipients: u64,
    /// Longest SMTP command line, in bytes.
    pub max_line_length: u64,
    /// 5xx replies after which a session is dropped.
    pub max_errors: u64,
    /// Connections at once.
    pub max_connections: u64,
    /// Connections at once from one peer address (an IPv6 /64 counts as one).
    pub max_connections_per_peer: u64,
    /// Connections strangers never get (at most half of `max_connections`): kept for
    /// `allowed_peers` and the ISP a fetch asked.
    pub reserved_connections: u64,
    /// Seconds a peer has to send one SMTP command.
    pub command_timeout: u64,
    /// Seconds to wait for each piece of message data.
    pub data_timeout: u64,
    /// Seconds a new connection has for its first command.
    pub first_command_timeout: u64,
    /// Seconds one message's data may take in all.
    pub max_data_time: u64,
    /// Seconds one SMTP session may last.
    pub max_session_time: u64,
    /// Commands that move no transaction forward (NOOP, RSET, VRFY ...) between messages.
    pub max_junk_commands: u64,
    /// What a recipient in our domains that no route names gets: the catch-all, or `550 5.1.1`.
    pub unknown_recipients: UnknownRecipients,
    /// Seconds before the first retry of a hand-over to a LAN server that failed; doubles with
    /// each failure.
    pub retry_delay: u64,
    /// The longest wait between two retries of a hand-over, in seconds.
    pub max_retry_delay: u64,
    /// The history file is rotated (the previous one kept as `history.1.jsonl`) once it holds
    /// this many bytes.
    pub history_max_size: u64,
    /// ... or once its oldest record is this many days old; 0: by size only.
    pub history_max_age: u64,
    /// Seconds before outgoing mail the smarthost deferred (4xx, or not reachable) is tried
    /// again while the link is up; doubles with each failure.
    pub send_retry_delay: u64,
    /// The longest wait between two tries of outgoing mail, in seconds.
    pub send_max_retry_delay: u64,
    /// Hours outgoing mail may wait: a recipient still deferred at a failed try past this age
    /// is given up, and its sender gets a delivery report (0: at the first failed try).
    pub max_queue_lifetime: u64,
    /// Hours after which the sender of outgoing mail still deferred is told once (a "delayed"
    /// report); 0: never.
    pub delay_warning: u64,
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
    pub fn route(&self) -> Result<Route, RouteError> {
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
            submit_listen: "127.0.0.1:587".into(),
            submit_allowed_peers: Vec::new(),
            submit_user: None,
            default_outgoing_account: None,
            max_recipients: 100,
            max_line_length: 4096,
            max_errors: 20,
            max_connections: 100,
            max_connections_per_peer: 20,
            reserved_connections: 20,
            command_timeout: 300,
            data_timeout: 600,
            first_command_timeout: 30,
            max_data_time: 1800,
            max_session_time: 3600,
            max_junk_commands: 100,
            unknown_recipients: UnknownRecipients::CatchAll,
            retry_delay: 60,
            max_retry_delay: 3600,
            history_max_size: 16 * 1024 * 1024,
            history_max_age: 365,
            send_retry_delay: 300,
            send_max_retry_delay: 3600,
            max_queue_lifetime: 5 * 24,
            delay_warning: 0,
            routes: Vec::new(),
        }
    }
}

fn invalid(key: ConfigKey, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
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
    pub fn load_to_change(path: &Path, key: ConfigKey) -> Result<Self, ConfigError> {
        let error = match Config::load(path) {
            Err(e @ ConfigError::Parse { key: Some(_), .. }) => e,
            other => return other,
        };
        let tls = |k: ConfigKey| matches!(k, ConfigKey::TlsCert | ConfigKey::TlsKey);
        let ours = |k: Option<ConfigKey>| k == Some(key) || (tls(key) && k.is_some_and(tls));
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

    /// Takes the one lock every read-modify-write of the config at `path` holds (in this
    /// process and across processes: the tray, the daemon, `config set`, `account`, `route`):
    /// load after taking it, save before dropping it, and no change is lost to another writer.
    pub fn lock(path: &Path) -> Result<fsutil::FileLock, ConfigError> {
        fsutil::FileLock::take(path).map_err(|source| ConfigError::Lock {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads `path` under its lock, applies `change`, and saves it when it changed: one
    /// read-modify-write that no other writer can interleave with.
    pub fn update<T, E: From<ConfigError>>(
        path: &Path,
        change: impl FnOnce(&mut Config) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = Config::lock(path)?;
        let mut config = Config::load(path)?;
        let before = config.clone();
        let answer = change(&mut config)?;
        if config != before {
            config.save(path)?;
        }
        Ok(answer)
    }

    /// The routes, checked.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let routes = self
            .routes
            .iter()
            .map(|e| {
                e.route()
                    .map_err(|p| invalid(ConfigKey::Routes, p.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable::new(routes))
    }

    /// Adds a route, replacing the one with the same pattern; the config is left as it was
    /// when the route (or the table with it) breaks a rule.
    pub fn add_route(&mut self, entry: RouteEntry) -> Result<Route, ConfigError> {
        let route = entry
            .route()
            .map_err(|p| invalid(ConfigKey::Routes, p.to_string()))?;
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
        let wanted: Pattern = pattern
            .parse()
            .map_err(|p: RouteError| invalid(ConfigKey::Routes, p.to_string()))?;
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

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }

    /// The maximum wait as a duration.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait)
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
        toml::to_string_pretty(&shown).map_err(|e| invalid(ConfigKey::Accounts, e.to_string()))
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
    use ConfigKey as K;

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
        assert_eq!(e.key(), Some(K::IdleTimeout));
    }

    #[test]
    fn set_unset_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut c = Config::default();
        c.set(K::Listen, "127.0.0.1:2525").unwrap();
        c.set(K::Maildir, &crate::fsutil::abs("/tmp/md")).unwrap();
        c.set(K::IdleTimeout, "5").unwrap();
        c.set(K::MaxWait, "60").unwrap();
        c.set(K::ReplyTimeout, "20s").unwrap();
        c.set(K::MaxMessageSize, "100000").unwrap();
        c.set(K::Interfaces, "ppp*, wlan0").unwrap();
        c.set(K::FetchInterval, "15m").unwrap();
        c.set(K::FetchAtStart, "off").unwrap();
        assert_eq!(c.interfaces, ["ppp*", "wlan0"]);
        assert_eq!((c.reply_timeout, c.fetch_interval), (20, 15));
        c.add_account("isp");
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            K::Listen,
            K::Maildir,
            K::IdleTimeout,
            K::MaxWait,
            K::ReplyTimeout,
            K::Interfaces,
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
        for key in ConfigKey::settable() {
            c.unset(key).unwrap();
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
        assert_eq!(Config::load(&path).unwrap_err().key(), Some(K::IdleTimeout));
        let other = Config::load_to_change(&path, K::MaxWait).unwrap_err();
        assert_eq!(
            other.key(),
            Some(K::IdleTimeout),
            "another key repairs nothing"
        );
        let mut c = Config::load_to_change(&path, K::IdleTimeout).unwrap();
        assert_eq!((c.idle_timeout, c.max_wait), (0, 90));
        c.unset(K::IdleTimeout).unwrap();
        assert!(c.validate().is_ok());
        // Two keys broken: changing one of them does not load it.
        std::fs::write(&path, "idle-timeout = 0\nmax-wait = 0\n").unwrap();
        assert!(Config::load_to_change(&path, K::IdleTimeout).is_err());
        // Half a TLS pair: either half repairs it.
        std::fs::write(&path, "tls-key = \"/etc/k.pem\"\n").unwrap();
        let mut c = Config::load_to_change(&path, K::TlsKey).unwrap();
        c.unset(K::TlsKey).unwrap();
        assert!(c.validate().is_ok());
        assert!(Config::load_to_change(&path, K::TlsCert).is_ok());
        // Not TOML at all: no key to blame.
        std::fs::write(&path, "idle-timeout = [\n").unwrap();
        assert!(Config::load_to_change(&path, K::IdleTimeout).is_err());
    }

    #[test]
    fn two_writers_at_once_each_keep_their_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        Config::default().save(&path).unwrap();
        let rounds = 40;
        std::thread::scope(|s| {
            for writer in ["a", "b"] {
                let path = &path;
                s.spawn(move || {
                    for i in 0..rounds {
                        Config::update(path, |c| {
                            c.add_account(&format!("{writer}{i}"));
                            Ok::<_, ConfigError>(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let saved = Config::load(&path).unwrap();
        assert_eq!(saved.accounts.len(), 2 * rounds, "{:?}", saved.accounts);
        // Nothing but the file and its lock is left beside it.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".config.toml.lock", "config.toml"]);
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
        use crate::fsutil::{abs, unabs};
        c.add_route(entry("@example.com", &abs("maildir:/srv/mail/example")))
            .unwrap();
        // The same pattern again replaces the route (however it is spelled).
        let lmtp = abs("lmtp:unix:/run/dovecot/lmtp");
        c.add_route(entry("Alice@Example.com", &lmtp)).unwrap();
        let mut smtp = entry("*", "smtp:mail.lan:25");
        smtp.security = Some(crate::account::Security::Starttls);
        smtp.ca_file = Some(abs("/etc/ssl/lan-ca.pem").into());
        c.add_route(smtp).unwrap();
        c.set(K::UnknownRecipients, "reject").unwrap();
        c.set(K::RetryDelay, "30s").unwrap();
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
        let dest = |a: &str| unabs(&table.lookup(a).unwrap().target.to_string());
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
        assert_eq!(e.key(), Some(K::UnknownRecipients), "{e}");
        c.set(K::UnknownRecipients, "catch-all").unwrap();
        assert!(c.remove_route("alice@example.com").unwrap());
        assert_eq!(
            Config::default()
                .set(K::UnknownRecipients, "reject")
                .unwrap_err()
                .key(),
            Some(K::UnknownRecipients)
        );
    }
}
