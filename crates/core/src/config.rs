//! The TOML config file (account names and preferences, never a secret) and the platform paths.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::listener::PeerNet;

/// The environment variable that overrides the config file's path.
pub const CONFIG_ENV: &str = "MAILCALL_CONFIG";

/// Default listener address: port 25 on every interface, where ISPs deliver.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:25";
/// Default idle timeout in seconds.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 30;
/// Default maximum wait in seconds.
pub const DEFAULT_MAX_WAIT: u64 = 600;
/// Default maximum message size in bytes (50 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;
/// Default settle delay in seconds: a link back within this time is the same link-up.
pub const DEFAULT_SETTLE_DELAY: u64 = 2;

/// Reading or writing the config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read the config file {path}: {source}. Check its permissions, or pass another file with --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad value.
    #[error("the config file {path} is not valid: {message}. Fix the line it names, or remove the file to start with defaults")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write the config file {path}: {source}. Check that its directory is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No config/data directory is known for this platform.
    #[error("cannot find a {what} directory for this user (is HOME set?). Pass --config PATH or set {CONFIG_ENV}")]
    NoDirectory {
        /// Which directory.
        what: &'static str,
    },
    /// `config set` with an unknown key or a bad value.
    #[error("{0}")]
    BadSetting(String),
}

/// The preferences and the list of accounts; the same keys as `mailcall-cli config set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Where the SMTP listener listens (ADDR:PORT).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The Maildir messages are delivered into; default: `Maildir` in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maildir: Option<PathBuf>,
    /// Seconds without a connection or message before a fetch ends.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Upper bound in seconds on a whole fetch session.
    #[serde(default = "default_max_wait")]
    pub max_wait: u64,
    /// Largest message accepted, in bytes.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// The name the listener greets with; default: this machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Interfaces whose link-up fetches (globs such as `ppp*`); empty: any but loopback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Seconds a link must stay down before coming back counts as a new link-up.
    #[serde(default = "default_settle_delay")]
    pub settle_delay: u64,
    /// Fetch every this many minutes while a watched interface is up; 0: never.
    #[serde(default)]
    pub fetch_interval: u64,
    /// Fetch once when Mailcall starts and a watched interface is already up.
    #[serde(default = "default_fetch_at_start")]
    pub fetch_at_start: bool,
    /// The accounts' names; their settings live in the OS keyring.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Offer STARTTLS to delivering ISPs (self-signed certificate unless `tls-cert` is set).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// The listener's certificate chain (PEM); with `tls-key`. Default: a self-signed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The listener's private key (PEM), for `tls-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Peers (addresses or CIDR networks) allowed to deliver; empty: any peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_peers: Vec<String>,
    /// Recipients per message.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: u64,
    /// Longest SMTP command line, in bytes.
    #[serde(default = "default_max_line_length")]
    pub max_line_length: u64,
    /// 5xx replies after which a session is dropped.
    #[serde(default = "default_max_errors")]
    pub max_errors: u64,
    /// Connections at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Connections at once from one peer address.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: u64,
    /// Seconds to wait for an SMTP command.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: u64,
    /// Seconds to wait for each piece of message data.
    #[serde(default = "default_data_timeout")]
    pub data_timeout: u64,
}

fn yes() -> bool {
    true
}
fn default_max_recipients() -> u64 {
    100
}
fn default_max_line_length() -> u64 {
    4096
}
fn default_max_errors() -> u64 {
    20
}
fn default_max_connections() -> u64 {
    100
}
fn default_max_connections_per_peer() -> u64 {
    20
}
fn default_command_timeout() -> u64 {
    300
}
fn default_data_timeout() -> u64 {
    600
}

fn default_settle_delay() -> u64 {
    DEFAULT_SETTLE_DELAY
}
fn default_fetch_at_start() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("the default address parses")
}
fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT
}
fn default_max_wait() -> u64 {
    DEFAULT_MAX_WAIT
}
fn default_max_message_size() -> u64 {
    DEFAULT_MAX_MESSAGE_SIZE
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            maildir: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_wait: DEFAULT_MAX_WAIT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            hostname: None,
            interfaces: Vec::new(),
            settle_delay: DEFAULT_SETTLE_DELAY,
            fetch_interval: 0,
            fetch_at_start: true,
            accounts: Vec::new(),
            starttls: true,
            tls_cert: None,
            tls_key: None,
            allowed_peers: Vec::new(),
            max_recipients: default_max_recipients(),
            max_line_length: default_max_line_length(),
            max_errors: default_max_errors(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            command_timeout: default_command_timeout(),
            data_timeout: default_data_timeout(),
        }
    }
}

/// The keys `config set` understands, as spelled in the TOML file.
pub const SETTING_KEYS: &[&str] = &[
    "listen",
    "maildir",
    "idle-timeout",
    "max-wait",
    "max-message-size",
    "hostname",
    "starttls",
    "tls-cert",
    "tls-key",
    "allowed-peers",
    "max-recipients",
    "max-line-length",
    "max-errors",
    "max-connections",
    "max-connections-per-peer",
    "command-timeout",
    "data-timeout",
    "interfaces",
    "settle-delay",
    "fetch-interval",
    "fetch-at-start",
];

impl Config {
    /// Parses a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate().map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
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

    /// Writes the config to `path` atomically (temp file, fsync, rename), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "config.toml".into()),
            std::process::id()
        ));
        let result = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut file = opts.open(&tmp)?;
            file.write_all(
                b"# Mailcall settings. Passwords live in the OS keyring, never here.\n",
            )?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    /// Checks values that TOML types alone cannot.
    fn validate(&self) -> Result<(), String> {
        if self.idle_timeout == 0 {
            return Err("idle-timeout must be at least 1 second".into());
        }
        if self.max_wait == 0 {
            return Err("max-wait must be at least 1 second".into());
        }
        if self.max_message_size < 1024 {
            return Err("max-message-size must be at least 1024 bytes".into());
        }
        for name in &self.accounts {
            crate::account::validate_name(name)?;
        }
        for peer in &self.allowed_peers {
            peer.parse::<PeerNet>()
                .map_err(|e| format!("allowed-peers: {e}"))?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls-cert and tls-key go together: set both, or neither for a self-signed certificate".into());
        }
        for (key, value, min) in self.numeric_limits() {
            if value < min {
                return Err(format!("{key} must be at least {min}"));
            }
        }
        Ok(())
    }

    /// Sets one preference from its text form (`config set KEY VALUE`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |what: &str| {
            ConfigError::BadSetting(format!("{key} = {value:?} is not valid: expected {what}"))
        };
        match key {
            "listen" => {
                self.listen = value
                    .parse()
                    .map_err(|_| bad("ADDR:PORT, e.g. 0.0.0.0:25 or 127.0.0.1:2525"))?
            }
            "maildir" => {
                if value.is_empty() {
                    return Err(bad("a directory path"));
                }
                self.maildir = Some(PathBuf::from(value))
            }
            "idle-timeout" => {
                self.idle_timeout =
                    parse_seconds(value).ok_or_else(|| bad("seconds (1 or more)"))?
            }
            "max-wait" => {
                self.max_wait = parse_seconds(value).ok_or_else(|| bad("seconds (1 or more)"))?
            }
            "max-message-size" => {
                self.max_message_size = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1024)
                    .ok_or_else(|| bad("a size in bytes (1024 or more)"))?
            }
            "hostname" => {
                let valid = !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !valid {
                    return Err(bad("a host name such as mail.example.com"));
                }
                self.hostname = Some(value.to_string())
            }
            "starttls" => {
                self.starttls = match value {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            "tls-cert" | "tls-key" => {
                let path = (!value.is_empty()).then(|| PathBuf::from(value));
                if key == "tls-cert" {
                    self.tls_cert = path
                } else {
                    self.tls_key = path
                }
            }
            "allowed-peers" => {
                let peers: Vec<String> = value
                    .split([',', ' '])
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                for p in &peers {
                    p.parse::<PeerNet>()
                        .map_err(|e| ConfigError::BadSetting(format!("allowed-peers: {e}")))?;
                }
                self.allowed_peers = peers
            }
            _ if self.numeric_limits().iter().any(|(k, _, _)| *k == key) => {
                let min = self
                    .numeric_limits()
                    .into_iter()
                    .find_map(|(k, _, m)| (k == key).then_some(m))
                    .unwrap_or(1);
                let n: u64 = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| bad(&format!("a whole number, at least {min}")))?;
                match key {
                    "max-recipients" => self.max_recipients = n,
                    "max-line-length" => self.max_line_length = n,
                    "max-errors" => self.max_errors = n,
                    "max-connections" => self.max_connections = n,
                    "max-connections-per-peer" => self.max_connections_per_peer = n,
                    "command-timeout" => self.command_timeout = n,
                    _ => self.data_timeout = n,
                }
            }
            "interfaces" => {
                let globs: Vec<String> = value
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect();
                let valid = globs
                    .iter()
                    .all(|g| g.len() <= 64 && g.bytes().all(|b| b.is_ascii_graphic() && b != b'/'));
                if !valid {
                    return Err(bad("interface names or globs separated by commas, e.g. ppp*,wlan0 (empty: any but loopback)"));
                }
                self.interfaces = globs
            }
            "settle-delay" => {
                self.settle_delay = value
                    .trim_end_matches('s')
                    .parse()
                    .ok()
                    .filter(|n| *n <= 3600)
                    .ok_or_else(|| bad("seconds (0 to 3600)"))?
            }
            "fetch-interval" => {
                self.fetch_interval = value
                    .trim_end_matches('m')
                    .parse()
                    .map_err(|_| bad("minutes (0 turns it off)"))?
            }
            "fetch-at-start" => {
                self.fetch_at_start = match value {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            _ => {
                return Err(ConfigError::BadSetting(format!(
                    "unknown setting {key:?}: the settings are {}",
                    SETTING_KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// The listener limits with their smallest sane values, for validation.
    fn numeric_limits(&self) -> [(&'static str, u64, u64); 7] {
        [
            ("max-recipients", self.max_recipients, 1),
            ("max-line-length", self.max_line_length, 512),
            ("max-errors", self.max_errors, 1),
            ("max-connections", self.max_connections, 1),
            ("max-connections-per-peer", self.max_connections_per_peer, 1),
            ("command-timeout", self.command_timeout, 1),
            ("data-timeout", self.data_timeout, 1),
        ]
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
            None => Ok(data_dir()?.join("Maildir")),
        }
    }

    /// The listener's host name: configured, or this machine's.
    pub fn hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(machine_hostname)
    }

    /// The settings with defaults filled in, as TOML (for `config show`).
    pub fn effective_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        shown.maildir = Some(self.maildir_path()?);
        shown.hostname = Some(self.hostname());
        toml::to_string_pretty(&shown).map_err(|e| ConfigError::BadSetting(e.to_string()))
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

fn parse_seconds(value: &str) -> Option<u64> {
    value.trim_end_matches('s').parse().ok().filter(|n| *n >= 1)
}

/// This machine's host name, for EHLO and the listener's greeting.
pub fn machine_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Where the config file is: `--config`, then `MAILCALL_CONFIG`, then the platform config dir.
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

/// Mailcall's data directory (history, default Maildir): the platform data dir + `mailcall`.
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
        assert_eq!(c.accounts, vec!["isp".to_string()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_file() {
        let e = Config::parse("colour = 1\n", Path::new("/x/c.toml")).unwrap_err();
        assert!(e.to_string().contains("/x/c.toml"), "{e}");
        let e = Config::parse("idle-timeout = 0\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("idle-timeout"), "{e}");
    }

    #[test]
    fn set_uses_the_file_keys_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut c = Config::default();
        c.set("listen", "127.0.0.1:2525").unwrap();
        c.set("maildir", "/tmp/md").unwrap();
        c.set("idle-timeout", "5").unwrap();
        c.set("max-wait", "60").unwrap();
        c.set("max-message-size", "100000").unwrap();
        assert!(c.set("listen", "nonsense").is_err());
        assert!(c
            .set("colour", "red")
            .unwrap_err()
            .to_string()
            .contains("idle-timeout"));
        c.add_account("isp");
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "listen",
            "maildir",
            "idle-timeout",
            "max-wait",
            "max-message-size",
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
    }

    #[test]
    fn trigger_keys_have_defaults_and_parse() {
        let c = Config::default();
        assert_eq!(
            (c.settle_delay, c.fetch_interval, c.fetch_at_start),
            (2, 0, true)
        );
        assert!(c.interfaces.is_empty());
        let mut c = Config::default();
        c.set("interfaces", "ppp*, wlan0").unwrap();
        c.set("settle-delay", "0").unwrap();
        c.set("fetch-interval", "15").unwrap();
        c.set("fetch-at-start", "false").unwrap();
        assert_eq!(c.interfaces, ["ppp*", "wlan0"]);
        assert!(c.set("fetch-at-start", "maybe").is_err());
        assert!(c.set("settle-delay", "-1").is_err());
        assert!(c.set("interfaces", "a/b").is_err());
        let text = toml::to_string_pretty(&c).unwrap();
        for key in [
            "interfaces",
            "settle-delay",
            "fetch-interval",
            "fetch-at-start",
        ] {
            assert!(
                text.contains(&format!("{key} = ")),
                "{key} missing in {text}"
            );
        }
        assert_eq!(Config::parse(&text, Path::new("c.toml")).unwrap(), c);
        c.set("interfaces", "").unwrap();
        assert!(c.interfaces.is_empty());
    }

    #[test]
    fn missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }
}
