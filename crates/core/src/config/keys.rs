//! The config file's keys: [`ConfigKey`], each with its name, what it holds and the kind of
//! value (a number's range and unit included) — the one place a key is spelled — and
//! [`Config::set`] / [`Config::unset`], which change one key through the rules.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{invalid, AccountStoreKind, Config, ConfigError};

/// What a number counts; a value in seconds or minutes may carry the unit's letter (`30s`,
/// `15m`), so that it reads as it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (`30` or `30s`).
    Seconds,
    /// Minutes (`15` or `15m`).
    Minutes,
    /// Hours (`120` or `120h`).
    Hours,
    /// Bytes.
    Bytes,
    /// A plain count (recipients, connections, errors).
    Count,
}

impl Unit {
    /// The letter a value may end with.
    pub const fn suffix(self) -> Option<char> {
        match self {
            Unit::Seconds => Some('s'),
            Unit::Minutes => Some('m'),
            Unit::Hours => Some('h'),
            Unit::Bytes | Unit::Count => None,
        }
    }
}

/// The whole numbers a numeric key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The smallest allowed.
    pub min: u64,
    /// The largest allowed; `u64::MAX`: no upper bound.
    pub max: u64,
    /// What the number counts.
    pub unit: Unit,
}

impl Range {
    /// Whether `value` is allowed.
    pub const fn contains(&self, value: u64) -> bool {
        self.min <= value && value <= self.max
    }

    /// What is allowed, for messages: `from 1 to 3600`, or `1024 or more`.
    pub fn allowed(&self) -> String {
        if self.max == u64::MAX {
            format!("{} or more", self.min)
        } else {
            format!("from {} to {}", self.min, self.max)
        }
    }
}

/// The kind of value a key holds: how `config set` reads its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in a range.
    Number(Range),
    /// true or false (also yes/no, on/off, 1/0).
    Flag,
    /// ADDR:PORT.
    Address,
    /// A directory's full path; it cannot be empty (unset brings the default back).
    Directory,
    /// A file's path; empty for none.
    File,
    /// A host name.
    HostName,
    /// Words separated by commas or spaces.
    List,
    /// An account's name (empty for none).
    AccountName,
    /// One of a few words (the first is the default).
    Choice(&'static [&'static str]),
    /// Not a `config set` key: its own commands keep it (`account`, `route`).
    Managed,
}

impl Kind {
    const fn seconds(min: u64, max: u64) -> Kind {
        Kind::Number(Range {
            min,
            max,
            unit: Unit::Seconds,
        })
    }

    const fn minutes(min: u64, max: u64) -> Kind {
        Kind::Number(Range {
            min,
            max,
            unit: Unit::Minutes,
        })
    }

    const fn hours(min: u64, max: u64) -> Kind {
        Kind::Number(Range {
            min,
            max,
            unit: Unit::Hours,
        })
    }

    const fn bytes(min: u64, max: u64) -> Kind {
        Kind::Number(Range {
            min,
            max,
            unit: Unit::Bytes,
        })
    }

    const fn count(min: u64, max: u64) -> Kind {
        Kind::Number(Range {
            min,
            max,
            unit: Unit::Count,
        })
    }

    /// Whether the value is a path (which the CLI makes absolute before setting it).
    pub const fn is_path(self) -> bool {
        matches!(self, Kind::Directory | Kind::File)
    }
}

/// Declares [`ConfigKey`] from one row per key, so that a key's name, what it holds and its
/// kind are written once, next to each other, and [`ConfigKey::ALL`] cannot miss one.
macro_rules! config_keys {
    ($($variant:ident = $name:literal, $kind:expr, $about:literal;)*) => {
        /// A key of the config file, as `config set` / `config unset`, problems and hints name
        /// it. Its text form is the name in the file (`idle-timeout`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum ConfigKey {
            $(
                #[doc = $about]
                $variant,
            )*
        }

        impl ConfigKey {
            /// Every key, in the order `config keys` lists them.
            pub const ALL: &'static [ConfigKey] = &[$(ConfigKey::$variant),*];

            /// The key as spelled in the file.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ConfigKey::$variant => $name,)*
                }
            }

            /// What it holds, in a few words (`config keys`).
            pub const fn about(self) -> &'static str {
                match self {
                    $(ConfigKey::$variant => $about,)*
                }
            }

            /// The kind of value it holds (a number's range and unit included).
            pub const fn kind(self) -> Kind {
                match self {
                    $(ConfigKey::$variant => $kind,)*
                }
            }
        }
    };
}

config_keys! {
    Listen = "listen", Kind::Address, "ADDR:PORT the ISP delivers to";
    Maildir = "maildir", Kind::Directory, "the Maildir messages go into (a full path)";
    DataDir = "data-dir", Kind::Directory, "where the history and state are kept (a full path)";
    IdleTimeout = "idle-timeout", Kind::seconds(1, 86_400), "seconds without mail that end a fetch";
    MaxWait = "max-wait", Kind::seconds(1, 7 * 86_400), "seconds a whole fetch may take";
    ReplyTimeout = "reply-timeout", Kind::seconds(1, 3_600),
        "seconds to wait for each reply of the ISP";
    MaxMessageSize = "max-message-size", Kind::bytes(1024, u64::MAX), "largest message, in bytes";
    Hostname = "hostname", Kind::HostName, "the listener's name in its greeting";
    Starttls = "starttls", Kind::Flag, "offer STARTTLS to the delivering ISP (true/false)";
    TlsCert = "tls-cert", Kind::File, "the listener's certificate chain (PEM)";
    TlsKey = "tls-key", Kind::File, "the listener's private key (PEM)";
    AllowedPeers = "allowed-peers", Kind::List,
        "addresses/networks allowed to deliver (comma-separated)";
    MaxRecipients = "max-recipients", Kind::count(1, 100_000), "recipients per message";
    MaxLineLength = "max-line-length", Kind::bytes(512, 1 << 20),
        "longest SMTP command line, in bytes";
    MaxErrors = "max-errors", Kind::count(1, 100_000), "error replies before a session is dropped";
    MaxConnections = "max-connections", Kind::count(1, 100_000), "connections at once";
    MaxConnectionsPerPeer = "max-connections-per-peer", Kind::count(1, 100_000),
        "connections at once from one address or IPv6 /64 (not the ISP a fetch asked)";
    ReservedConnections = "reserved-connections", Kind::count(0, 100_000),
        "connections kept for allowed-peers and the ISP a fetch asked (at most half)";
    CommandTimeout = "command-timeout", Kind::seconds(1, 86_400),
        "seconds a peer has for one SMTP command";
    DataTimeout = "data-timeout", Kind::seconds(1, 86_400),
        "seconds to wait for each piece of message data";
    FirstCommandTimeout = "first-command-timeout", Kind::seconds(1, 86_400),
        "seconds a new connection has for its first SMTP command";
    MaxDataTime = "max-data-time", Kind::seconds(1, 7 * 86_400),
        "seconds one message's data may take in all";
    MaxSessionTime = "max-session-time", Kind::seconds(1, 7 * 86_400),
        "seconds one SMTP session may last";
    MaxJunkCommands = "max-junk-commands", Kind::count(1, 100_000),
        "NOOP, RSET, VRFY and the like a session may send between messages";
    UnknownRecipients = "unknown-recipients", Kind::Choice(&["catch-all", "reject"]),
        "recipients no route names: catch-all or reject (550 5.1.1)";
    RetryDelay = "retry-delay", Kind::seconds(1, 86_400),
        "seconds before a failed hand-over to a LAN server is retried";
    MaxRetryDelay = "max-retry-delay", Kind::seconds(1, 7 * 86_400),
        "longest wait between retries of a hand-over, seconds";
    HistoryMaxSize = "history-max-size", Kind::bytes(65_536, u64::MAX),
        "bytes of history before it is rotated (the previous file is kept)";
    HistoryMaxAge = "history-max-age", Kind::count(0, 36_500),
        "days of history before it is rotated (0: by size only)";
    SendRetryDelay = "send-retry-delay", Kind::seconds(1, 86_400),
        "seconds before outgoing mail the smarthost deferred is tried again (doubling, online time)";
    SendMaxRetryDelay = "send-max-retry-delay", Kind::seconds(1, 7 * 86_400),
        "longest wait between tries of outgoing mail, seconds";
    MaxQueueLifetime = "max-queue-lifetime", Kind::hours(0, 90 * 24),
        "hours before outgoing mail still deferred is returned to its sender";
    DelayWarning = "delay-warning", Kind::hours(0, 90 * 24),
        "hours before the sender of deferred outgoing mail is told once (0: never)";
    Interfaces = "interfaces", Kind::List,
        "interfaces whose link-up fetches (globs, comma-separated)";
    SettleDelay = "settle-delay", Kind::seconds(0, 3_600),
        "seconds a link must stay down to count as a new link-up";
    FetchInterval = "fetch-interval", Kind::minutes(0, 7 * 24 * 60),
        "fetch every N minutes while a link is up (0: never)";
    FetchAtStart = "fetch-at-start", Kind::Flag, "fetch once at start when a link is up (true/false)";
    AccountStore = "account-store", Kind::Choice(&["keyring", "file"]),
        "where accounts live: keyring, or file (no passwords: use a password command)";
    SubmitListen = "submit-listen", Kind::Address,
        "ADDR:PORT local programs submit outgoing mail to, or off";
    SubmitAllowedPeers = "submit-allowed-peers", Kind::List,
        "LAN addresses/networks that may submit without a login (comma-separated)";
    SubmitUser = "submit-user", Kind::HostName,
        "the submission login's user name (its password: config set-submit-password)";
    DefaultOutgoingAccount = "default-outgoing-account", Kind::AccountName,
        "the account whose outgoing server sends mail from senders no account's domains hold";
    Accounts = "accounts", Kind::Managed, "the accounts' names (`account set`, `account remove`)";
    Routes = "routes", Kind::Managed, "where each recipient's mail goes (`route add`, `route remove`)";
}

impl ConfigKey {
    /// Whether `config set` and `config unset` take it (all but the accounts and the routes).
    pub const fn is_settable(self) -> bool {
        !matches!(self.kind(), Kind::Managed)
    }

    /// The keys `config set` and `config unset` take, in the order `config keys` lists them.
    pub fn settable() -> impl Iterator<Item = ConfigKey> {
        ConfigKey::ALL.iter().copied().filter(|k| k.is_settable())
    }

    /// A number's range, for the numeric keys.
    pub const fn range(self) -> Option<Range> {
        match self.kind() {
            Kind::Number(range) => Some(range),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConfigKey {
    type Err = ConfigError;

    /// The key named `name` exactly as in the file.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ConfigKey::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| ConfigError::UnknownKey {
                key: name.to_owned(),
            })
    }
}

impl From<ConfigKey> for &'static str {
    fn from(key: ConfigKey) -> Self {
        key.name()
    }
}

impl TryFrom<String> for ConfigKey {
    type Error = ConfigError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

/// A key as [`Config::set`] and [`Config::unset`] take it: a [`ConfigKey`], or its name as the
/// user typed it (`config set KEY VALUE`), which may name no key.
pub trait AsConfigKey {
    /// The key, or [`ConfigError::UnknownKey`].
    fn as_config_key(&self) -> Result<ConfigKey, ConfigError>;
}

impl AsConfigKey for ConfigKey {
    fn as_config_key(&self) -> Result<ConfigKey, ConfigError> {
        Ok(*self)
    }
}

impl AsConfigKey for &str {
    fn as_config_key(&self) -> Result<ConfigKey, ConfigError> {
        self.parse()
    }
}

impl AsConfigKey for &String {
    fn as_config_key(&self) -> Result<ConfigKey, ConfigError> {
        self.parse()
    }
}

/// The key `config set` / `config unset` change: the accounts and the routes are no settings
/// of theirs (the same answer as a name that is no key at all).
fn settable(key: impl AsConfigKey) -> Result<ConfigKey, ConfigError> {
    let key = key.as_config_key()?;
    if key.is_settable() {
        Ok(key)
    } else {
        Err(ConfigError::UnknownKey {
            key: key.name().to_owned(),
        })
    }
}

fn parse_bool(key: ConfigKey, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(invalid(key, format!("{value:?} is not true or false"))),
    }
}

fn parse_number(key: ConfigKey, value: &str) -> Result<u64, ConfigError> {
    let unit = key.range().and_then(|r| r.unit.suffix());
    let text = value.trim();
    let digits = unit.and_then(|u| text.strip_suffix(u)).unwrap_or(text);
    digits.parse().map_err(|_| {
        // Say what is allowed: "-1" is a whole number, just not one this key takes.
        let allowed = key
            .range()
            .map(|r| format!(": enter a whole number, {}", r.allowed()))
            .unwrap_or_else(|| ": enter a whole number".into());
        invalid(key, format!("{value:?} is not allowed{allowed}"))
    })
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
    /// The value of numeric `key`; `None` for the others.
    pub(super) fn number(&self, key: ConfigKey) -> Option<u64> {
        Some(match key {
            ConfigKey::IdleTimeout => self.idle_timeout,
            ConfigKey::MaxWait => self.max_wait,
            ConfigKey::ReplyTimeout => self.reply_timeout,
            ConfigKey::MaxMessageSize => self.max_message_size,
            ConfigKey::MaxRecipients => self.max_recipients,
            ConfigKey::MaxLineLength => self.max_line_length,
            ConfigKey::MaxErrors => self.max_errors,
            ConfigKey::MaxConnections => self.max_connections,
            ConfigKey::MaxConnectionsPerPeer => self.max_connections_per_peer,
            ConfigKey::ReservedConnections => self.reserved_connections,
            ConfigKey::CommandTimeout => self.command_timeout,
            ConfigKey::DataTimeout => self.data_timeout,
            ConfigKey::FirstCommandTimeout => self.first_command_timeout,
            ConfigKey::MaxDataTime => self.max_data_time,
            ConfigKey::MaxSessionTime => self.max_session_time,
            ConfigKey::MaxJunkCommands => self.max_junk_commands,
            ConfigKey::SettleDelay => self.settle_delay,
            ConfigKey::FetchInterval => self.fetch_interval,
            ConfigKey::RetryDelay => self.retry_delay,
            ConfigKey::MaxRetryDelay => self.max_retry_delay,
            ConfigKey::HistoryMaxSize => self.history_max_size,
            ConfigKey::HistoryMaxAge => self.history_max_age,
            ConfigKey::SendRetryDelay => self.send_retry_delay,
            ConfigKey::SendMaxRetryDelay => self.send_max_retry_delay,
            ConfigKey::MaxQueueLifetime => self.max_queue_lifetime,
            ConfigKey::DelayWarning => self.delay_warning,
            // A test holds these two matches to the keys whose kind is a number.
            _ => return None,
        })
    }

    /// The field of numeric `key`; `None` for the others. Every key is named, so that a new
    /// one must be placed here.
    fn number_mut(&mut self, key: ConfigKey) -> Option<&mut u64> {
        Some(match key {
            ConfigKey::IdleTimeout => &mut self.idle_timeout,
            ConfigKey::MaxWait => &mut self.max_wait,
            ConfigKey::ReplyTimeout => &mut self.reply_timeout,
            ConfigKey::MaxMessageSize => &mut self.max_message_size,
            ConfigKey::MaxRecipients => &mut self.max_recipients,
            ConfigKey::MaxLineLength => &mut self.max_line_length,
            ConfigKey::MaxErrors => &mut self.max_errors,
            ConfigKey::MaxConnections => &mut self.max_connections,
            ConfigKey::MaxConnectionsPerPeer => &mut self.max_connections_per_peer,
            ConfigKey::ReservedConnections => &mut self.reserved_connections,
            ConfigKey::CommandTimeout => &mut self.command_timeout,
            ConfigKey::DataTimeout => &mut self.data_timeout,
            ConfigKey::FirstCommandTimeout => &mut self.first_command_timeout,
            ConfigKey::MaxDataTime => &mut self.max_data_time,
            ConfigKey::MaxSessionTime => &mut self.max_session_time,
            ConfigKey::MaxJunkCommands => &mut self.max_junk_commands,
            ConfigKey::SettleDelay => &mut self.settle_delay,
            ConfigKey::FetchInterval => &mut self.fetch_interval,
            ConfigKey::RetryDelay => &mut self.retry_delay,
            ConfigKey::MaxRetryDelay => &mut self.max_retry_delay,
            ConfigKey::HistoryMaxSize => &mut self.history_max_size,
            ConfigKey::HistoryMaxAge => &mut self.history_max_age,
            ConfigKey::SendRetryDelay => &mut self.send_retry_delay,
            ConfigKey::SendMaxRetryDelay => &mut self.send_max_retry_delay,
            ConfigKey::MaxQueueLifetime => &mut self.max_queue_lifetime,
            ConfigKey::DelayWarning => &mut self.delay_warning,
            ConfigKey::Listen
            | ConfigKey::Maildir
            | ConfigKey::DataDir
            | ConfigKey::Hostname
            | ConfigKey::Starttls
            | ConfigKey::TlsCert
            | ConfigKey::TlsKey
            | ConfigKey::AllowedPeers
            | ConfigKey::UnknownRecipients
            | ConfigKey::Interfaces
            | ConfigKey::FetchAtStart
            | ConfigKey::AccountStore
            | ConfigKey::SubmitListen
            | ConfigKey::SubmitAllowedPeers
            | ConfigKey::SubmitUser
            | ConfigKey::DefaultOutgoingAccount
            | ConfigKey::Accounts
            | ConfigKey::Routes => return None,
        })
    }

    /// Sets one preference from its text form (`config set KEY VALUE`); the config is left as it
    /// was when the value breaks the key's rule.
    pub fn set(&mut self, key: impl AsConfigKey, value: &str) -> Result<(), ConfigError> {
        let key = settable(key)?;
        let mut next = self.clone();
        let path = |v: &str| (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
        match key {
            ConfigKey::Listen => {
                next.listen = value.trim().parse().map_err(|_| {
                    invalid(
                        key,
                        format!("{value:?} is not ADDR:PORT, e.g. 0.0.0.0:25 or 127.0.0.1:2525"),
                    )
                })?
            }
            ConfigKey::Maildir => {
                next.maildir =
                    Some(path(value).ok_or_else(|| invalid(key, "give the Maildir's full path"))?)
            }
            ConfigKey::DataDir => {
                next.data_dir = Some(
                    path(value).ok_or_else(|| invalid(key, "give the directory's full path"))?,
                )
            }
            ConfigKey::Hostname => next.hostname = Some(value.trim().to_string()),
            ConfigKey::Starttls => next.starttls = parse_bool(key, value)?,
            ConfigKey::AccountStore => {
                next.account_store = match value.trim().to_ascii_lowercase().as_str() {
                    "keyring" => AccountStoreKind::Keyring,
                    "file" => AccountStoreKind::File,
                    _ => return Err(invalid(key, format!("{value:?} is not keyring or file"))),
                }
            }
            ConfigKey::FetchAtStart => next.fetch_at_start = parse_bool(key, value)?,
            ConfigKey::TlsCert => next.tls_cert = path(value),
            ConfigKey::TlsKey => next.tls_key = path(value),
            ConfigKey::AllowedPeers => next.allowed_peers = list(value),
            ConfigKey::SubmitListen => next.submit_listen = value.trim().to_ascii_lowercase(),
            ConfigKey::SubmitAllowedPeers => next.submit_allowed_peers = list(value),
            ConfigKey::SubmitUser => {
                next.submit_user = (!value.trim().is_empty()).then(|| value.trim().to_string())
            }
            ConfigKey::DefaultOutgoingAccount => {
                next.default_outgoing_account =
                    (!value.trim().is_empty()).then(|| value.trim().to_string())
            }
            ConfigKey::Interfaces => next.interfaces = list(value),
            ConfigKey::UnknownRecipients => {
                next.unknown_recipients = value.parse().map_err(|e: String| invalid(key, e))?
            }
            numeric => {
                let n = parse_number(numeric, value)?;
                *next
                    .number_mut(numeric)
                    .ok_or_else(|| ConfigError::UnknownKey {
                        key: numeric.name().into(),
                    })? = n;
            }
        }
        // Only this key's rule decides; tls-cert and tls-key are judged as a pair, by `check`
        // when the config is used (either may be set first).
        let pair = matches!(key, ConfigKey::TlsCert | ConfigKey::TlsKey);
        // The retry delays are judged together: a first delay above the longest is either's.
        let related: &[ConfigKey] = match key {
            ConfigKey::RetryDelay | ConfigKey::MaxRetryDelay => {
                &[ConfigKey::RetryDelay, ConfigKey::MaxRetryDelay]
            }
            ConfigKey::SendRetryDelay | ConfigKey::SendMaxRetryDelay => {
                &[ConfigKey::SendRetryDelay, ConfigKey::SendMaxRetryDelay]
            }
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
    pub fn unset(&mut self, key: impl AsConfigKey) -> Result<(), ConfigError> {
        let key = settable(key)?;
        let d = Config::default();
        match key {
            ConfigKey::Listen => self.listen = d.listen,
            ConfigKey::Maildir => self.maildir = d.maildir,
            ConfigKey::DataDir => self.data_dir = d.data_dir,
            ConfigKey::Hostname => self.hostname = d.hostname,
            ConfigKey::Starttls => self.starttls = d.starttls,
            ConfigKey::AccountStore => self.account_store = d.account_store,
            ConfigKey::FetchAtStart => self.fetch_at_start = d.fetch_at_start,
            ConfigKey::TlsCert => self.tls_cert = d.tls_cert,
            ConfigKey::TlsKey => self.tls_key = d.tls_key,
            ConfigKey::AllowedPeers => self.allowed_peers = d.allowed_peers,
            ConfigKey::SubmitListen => self.submit_listen = d.submit_listen,
            ConfigKey::SubmitAllowedPeers => self.submit_allowed_peers = d.submit_allowed_peers,
            ConfigKey::SubmitUser => self.submit_user = d.submit_user,
            ConfigKey::DefaultOutgoingAccount => {
                self.default_outgoing_account = d.default_outgoing_account
            }
            ConfigKey::Interfaces => self.interfaces = d.interfaces,
            ConfigKey::UnknownRecipients => self.unknown_recipients = d.unknown_recipients,
            numeric => {
                if let (Some(n), Some(default)) = (self.number_mut(numeric), d.number(numeric)) {
                    *n = default;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_name_that_reads_back() {
        let mut names = std::collections::HashSet::new();
        for &key in ConfigKey::ALL {
            assert!(names.insert(key.name()), "{key} twice");
            assert_eq!(key.name().parse::<ConfigKey>().unwrap(), key);
            assert_eq!(key.to_string(), key.name());
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(json, format!("\"{}\"", key.name()));
            assert_eq!(serde_json::from_str::<ConfigKey>(&json).unwrap(), key);
            assert!(!key.about().is_empty());
        }
        assert!("colour".parse::<ConfigKey>().is_err());
        assert!(serde_json::from_str::<ConfigKey>("\"colour\"").is_err());
    }

    #[test]
    fn the_numeric_keys_are_the_numbers_of_the_config_and_their_defaults_are_in_range() {
        let d = Config::default();
        for &key in ConfigKey::ALL {
            match (key.range(), d.number(key)) {
                (Some(range), Some(value)) => {
                    assert!(range.contains(value), "{key}: default {value} out of range")
                }
                (None, None) => {}
                (range, value) => panic!("{key}: range {range:?} but value {value:?}"),
            }
        }
    }

    #[test]
    fn every_settable_key_is_set_from_text_and_unset() {
        let example = |key: ConfigKey| match key.kind() {
            Kind::List
                if matches!(key, ConfigKey::AllowedPeers | ConfigKey::SubmitAllowedPeers) =>
            {
                "192.0.2.0/24".into()
            }
            // Not below send-retry-delay's default (300).
            Kind::Number(_) if key == ConfigKey::SendMaxRetryDelay => "3600".into(),
            Kind::Number(range) => range.min.max(range.max.min(60)).to_string(),
            Kind::Flag => "false".into(),
            Kind::Address => "127.0.0.1:2525".into(),
            Kind::Directory | Kind::File => crate::fsutil::abs("/srv/mailcall"),
            Kind::HostName => "mail.example.com".into(),
            Kind::List => "ppp0".into(),
            Kind::AccountName => "isp".into(),
            Kind::Choice(words) => words[0].into(),
            Kind::Managed => unreachable!("not settable"),
        };
        for key in ConfigKey::settable() {
            let mut c = Config::default();
            // `set` judges tls-cert without tls-key (they are a pair only for `check`), and the
            // first word of a choice is its default, which stands on its own (reject needs a
            // route).
            c.set(key, &example(key))
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            c.set(key.name(), &example(key)).unwrap();
            c.unset(key).unwrap();
            assert_eq!(c, Config::default(), "{key} unset is its default again");
            if let Kind::Choice(words) = key.kind() {
                for word in words.iter().filter(|w| **w != "reject") {
                    c.set(key, word)
                        .unwrap_or_else(|e| panic!("{key} {word}: {e}"));
                }
            }
        }
        for managed in [ConfigKey::Accounts, ConfigKey::Routes] {
            let e = Config::default().set(managed, "x").unwrap_err();
            assert!(
                matches!(&e, ConfigError::UnknownKey { key } if key == managed.name()),
                "{e}"
            );
            assert!(Config::default().unset(managed).is_err());
        }
    }

    #[test]
    fn numbers_in_seconds_and_minutes_may_carry_their_unit() {
        let mut c = Config::default();
        c.set(ConfigKey::ReplyTimeout, "20s").unwrap();
        c.set(ConfigKey::FetchInterval, "15m").unwrap();
        c.set(ConfigKey::SettleDelay, "5s").unwrap();
        assert_eq!(
            (c.reply_timeout, c.fetch_interval, c.settle_delay),
            (20, 15, 5)
        );
        assert!(c.set(ConfigKey::FetchInterval, "15s").is_err());
        assert!(c.set(ConfigKey::MaxRecipients, "10s").is_err());
        c.set(ConfigKey::MaxQueueLifetime, "48h").unwrap();
        assert_eq!(c.max_queue_lifetime, 48);
        assert!(c.set(ConfigKey::DelayWarning, "4m").is_err());
        let e = c.set(ConfigKey::IdleTimeout, "0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "idle-timeout: 0 is out of range: use from 1 to 86400"
        );
    }

    #[test]
    fn the_account_store_is_a_keyring_or_a_file() {
        let mut c = Config::default();
        assert_eq!(c.account_store, AccountStoreKind::Keyring);
        c.set(ConfigKey::AccountStore, "file").unwrap();
        assert_eq!(c.account_store, AccountStoreKind::File);
        let text = toml::to_string_pretty(&c).unwrap();
        assert!(text.contains("account-store = \"file\""), "{text}");
        assert_eq!(
            c.set(ConfigKey::AccountStore, "usb-stick")
                .unwrap_err()
                .key(),
            Some(ConfigKey::AccountStore)
        );
        c.unset(ConfigKey::AccountStore).unwrap();
        assert_eq!(c.account_store, AccountStoreKind::Keyring);
    }
}
