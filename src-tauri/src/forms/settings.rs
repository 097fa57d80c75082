//! The Settings tab's side of the window: the preferences as the form shows and sends them,
//! and the config key behind each field — every value goes through [`Config::set`].

use mailcall_core::config::{Config, ConfigKey};
use serde::{Deserialize, Serialize};

use super::{config_problem, UiError};

/// The config keys the Settings tab edits: key, the form's field name, and its label.
pub const SETTINGS_FIELDS: &[(ConfigKey, &str, &str)] = &[
    (ConfigKey::Listen, "listen", "Listen on"),
    (ConfigKey::Maildir, "maildir", "Maildir"),
    (ConfigKey::IdleTimeout, "idle_timeout", "Idle timeout (s)"),
    (
        ConfigKey::MaxMessageSize,
        "max_size_mib",
        "Largest message (MiB)",
    ),
    (ConfigKey::Interfaces, "interfaces", "Interfaces"),
    (ConfigKey::SettleDelay, "settle_delay", "Settle delay (s)"),
    (
        ConfigKey::FetchInterval,
        "fetch_interval",
        "Fetch every (min)",
    ),
    (ConfigKey::FetchAtStart, "fetch_at_start", "At start"),
    (
        ConfigKey::SubmitListen,
        "submit_listen",
        "Submission listener",
    ),
    (
        ConfigKey::SubmitAllowedPeers,
        "submit_allowed_peers",
        "LAN hosts without login",
    ),
    (ConfigKey::SubmitUser, "submit_user", "Submission user name"),
    (
        ConfigKey::DefaultOutgoingAccount,
        "default_outgoing_account",
        "Default sending account",
    ),
    (
        ConfigKey::SendRetryDelay,
        "send_retry_delay",
        "Retry sending after (s)",
    ),
    (
        ConfigKey::SendMaxRetryDelay,
        "send_max_retry_delay",
        "Longest wait (s)",
    ),
    (
        ConfigKey::MaxQueueLifetime,
        "max_queue_lifetime",
        "Give up after (h)",
    ),
    (
        ConfigKey::DelayWarning,
        "delay_warning",
        "Warn sender after (h)",
    ),
];

/// The form field of the submission login's password (kept in the keyring, not the config).
pub const SUBMIT_PASSWORD_FIELD: &str = "submit_password";

/// The preferences as the window shows and sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsForm {
    /// The listener's address (ADDR:PORT).
    pub listen: String,
    /// The Maildir; empty for the default.
    pub maildir: String,
    /// The default Maildir (shown as a placeholder; the window does not send it back).
    #[serde(default, skip_deserializing)]
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
    /// Where local programs and the LAN submit outgoing mail (ADDR:PORT), or `off`.
    #[serde(default)]
    pub submit_listen: String,
    /// LAN addresses or networks that may submit without a login, separated by commas.
    #[serde(default)]
    pub submit_allowed_peers: String,
    /// The submission login's user name; empty for none.
    #[serde(default)]
    pub submit_user: String,
    /// The account that sends mail from senders no account's domains hold; empty for none.
    #[serde(default)]
    pub default_outgoing_account: String,
    /// Seconds before outgoing mail the smarthost deferred is tried again (doubling).
    #[serde(default)]
    pub send_retry_delay: String,
    /// The longest wait between two tries of outgoing mail, seconds.
    #[serde(default)]
    pub send_max_retry_delay: String,
    /// Hours before deferred outgoing mail is given up (its sender gets a report).
    #[serde(default)]
    pub max_queue_lifetime: String,
    /// Hours before the sender of deferred outgoing mail is told once; 0 for never.
    #[serde(default)]
    pub delay_warning: String,
    /// A new submission password (write-only: never sent to the window); empty keeps it.
    #[serde(default, skip_serializing)]
    pub submit_password: String,
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
            submit_listen: config.submit_listen.clone(),
            submit_allowed_peers: config.submit_allowed_peers.join(", "),
            submit_user: config.submit_user.clone().unwrap_or_default(),
            submit_password: String::new(),
            default_outgoing_account: config.default_outgoing_account.clone().unwrap_or_default(),
            send_retry_delay: config.send_retry_delay.to_string(),
            send_max_retry_delay: config.send_max_retry_delay.to_string(),
            max_queue_lifetime: config.max_queue_lifetime.to_string(),
            delay_warning: config.delay_warning.to_string(),
        }
    }

    /// The form's value for config `key`, as `config set` takes it.
    fn value(&self, key: ConfigKey) -> Result<String, String> {
        Ok(match key {
            ConfigKey::Listen => self.listen.clone(),
            ConfigKey::Maildir => self.maildir.clone(),
            ConfigKey::IdleTimeout => self.idle_timeout.clone(),
            ConfigKey::MaxMessageSize => {
                let text = self.max_size_mib.trim();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() && n >= 0.0 => {
                        ((n * MIB as f64).round() as u64).to_string()
                    }
                    _ => return Err(format!("{text:?} is not a size: enter MiB, e.g. 50 or 1.5")),
                }
            }
            ConfigKey::Interfaces => self.interfaces.clone(),
            ConfigKey::SettleDelay => self.settle_delay.clone(),
            ConfigKey::FetchInterval => self.fetch_interval.clone(),
            ConfigKey::FetchAtStart => self.fetch_at_start.to_string(),
            ConfigKey::SubmitListen => self.submit_listen.clone(),
            ConfigKey::SubmitAllowedPeers => self.submit_allowed_peers.clone(),
            ConfigKey::SubmitUser => self.submit_user.clone(),
            ConfigKey::DefaultOutgoingAccount => self.default_outgoing_account.clone(),
            ConfigKey::SendRetryDelay => self.send_retry_delay.clone(),
            ConfigKey::SendMaxRetryDelay => self.send_max_retry_delay.clone(),
            ConfigKey::MaxQueueLifetime => self.max_queue_lifetime.clone(),
            ConfigKey::DelayWarning => self.delay_warning.clone(),
            // Not in the tab (SETTINGS_FIELDS): nothing to set.
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
            let empty_is_default = matches!(
                key,
                ConfigKey::Maildir | ConfigKey::SubmitUser | ConfigKey::DefaultOutgoingAccount
            );
            let result = if empty_is_default && value.trim().is_empty() {
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

fn format_mib(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        (bytes / MIB).to_string()
    } else {
        format!("{:.2}", bytes as f64 / MIB as f64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        s.default_outgoing_account = "isp".into();
        s.send_retry_delay = "600".into();
        s.max_queue_lifetime = "48".into();
        s.delay_warning = "4".into();
        s.apply(&mut c).unwrap();
        assert_eq!(c.default_outgoing_account.as_deref(), Some("isp"));
        assert_eq!(
            (c.send_retry_delay, c.max_queue_lifetime, c.delay_warning),
            (600, 48, 4)
        );
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
        assert!(e.fields["max_size_mib"].contains("1024 or more"), "{e:?}");
        // A negative number is told what is allowed, not that it is no whole number.
        s = SettingsForm::from_config(&Config::default(), String::new(), true, false, false);
        s.idle_timeout = "-1".into();
        let e = s.apply(&mut c).unwrap_err();
        let said = &e.fields["idle_timeout"];
        assert!(
            said.contains("is not allowed: enter a whole number, from 1 to"),
            "{e:?}"
        );
        assert!(!said.contains("is not a whole number"), "{e:?}");
    }
}
