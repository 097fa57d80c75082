//! The rules every preference follows, in one place: [`Config::check`] judges a whole config
//! (a file when it is read, and the config after each `set`), naming the key each fault is in.

use std::net::SocketAddr;

use super::{invalid, Config, ConfigError, ConfigKey, UnknownRecipients};
use crate::listener::PeerNet;

impl Config {
    /// Every rule a value breaks, as [`ConfigError::Invalid`] naming its key; empty when all is
    /// well. The one place the rules live: parsing a file and `set` both come here.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for &key in ConfigKey::ALL {
            if let (Some(range), Some(value)) = (key.range(), self.number(key)) {
                if !range.contains(value) {
                    problems.push(invalid(
                        key,
                        format!("{value} is out of range: use {}", range.allowed()),
                    ));
                }
            }
        }
        for (key, dir) in [
            (ConfigKey::Maildir, &self.maildir),
            (ConfigKey::DataDir, &self.data_dir),
        ] {
            if let Some(d) = dir {
                if !d.is_absolute() {
                    problems.push(invalid(
                        key,
                        format!(
                            "{} is not a full path: give it starting with {}",
                            d.display(),
                            crate::fsutil::FULL_PATH_START
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
                    ConfigKey::Hostname,
                    format!("{h:?} is not a host name: use letters, digits, '-' and '.', e.g. mail.example.com"),
                ));
            }
        }
        for name in &self.accounts {
            if let Err(e) = crate::account::validate_name(name) {
                problems.push(ConfigError::Invalid {
                    key: ConfigKey::Accounts,
                    problem: e.to_string(),
                });
            }
        }
        if let Err(e) = self.peer_networks() {
            problems.push(e);
        }
        if let Err(e) = self.submit_networks() {
            problems.push(e);
        }
        if let Err(e) = self.submit_address() {
            problems.push(e);
        }
        if let Some(user) = &self.submit_user {
            if user.is_empty() || user.len() > 256 || user.chars().any(|c| c.is_control()) {
                problems.push(invalid(
                    ConfigKey::SubmitUser,
                    "give a user name without control characters, e.g. me",
                ));
            }
        }
        if let Some(name) = &self.default_outgoing_account {
            // Only its form: an account removed later leaves the setting standing, and the
            // submission that needs it says so (the config stays loadable).
            if let Err(e) = crate::account::validate_name(name) {
                problems.push(invalid(ConfigKey::DefaultOutgoingAccount, e.to_string()));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(invalid(
                if self.tls_cert.is_some() {
                    ConfigKey::TlsKey
                } else {
                    ConfigKey::TlsCert
                },
                "tls-cert and tls-key go together: set both, or neither for a self-signed certificate",
            ));
        }
        let bad_glob = |g: &String| {
            g.is_empty() || g.len() > 64 || !g.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        };
        if let Some(g) = self.interfaces.iter().find(|g| bad_glob(g)) {
            problems.push(invalid(
                ConfigKey::Interfaces,
                format!("{g:?} is not an interface name or glob: write names such as ppp0 or ppp*, wlan0"),
            ));
        }
        problems.extend(self.route_problems());
        if self.max_retry_delay < self.retry_delay {
            problems.push(invalid(
                ConfigKey::MaxRetryDelay,
                format!(
                    "{} is shorter than retry-delay ({}): give at least that",
                    self.max_retry_delay, self.retry_delay
                ),
            ));
        }
        if self.send_max_retry_delay < self.send_retry_delay {
            problems.push(invalid(
                ConfigKey::SendMaxRetryDelay,
                format!(
                    "{} is shorter than send-retry-delay ({}): give at least that",
                    self.send_max_retry_delay, self.send_retry_delay
                ),
            ));
        }
        problems
    }

    pub(super) fn route_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in &self.routes {
            match entry.route() {
                Ok(route) => {
                    if !seen.insert(route.pattern.clone()) {
                        problems.push(invalid(
                            ConfigKey::Routes,
                            format!("two routes for {}: remove one of them", route.pattern),
                        ));
                    }
                }
                Err(e) => problems.push(invalid(ConfigKey::Routes, e.to_string())),
            }
        }
        if self.unknown_recipients == UnknownRecipients::Reject && self.routes.is_empty() {
            problems.push(invalid(
                ConfigKey::UnknownRecipients,
                "reject refuses every recipient no route names, and there are no routes: add                  routes first, or use catch-all",
            ));
        }
        problems
    }

    /// The first rule broken, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.check().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Where the submission listener listens; `None` when `submit-listen` is `off`.
    pub fn submit_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.submit_listen.trim();
        if text.eq_ignore_ascii_case("off") || text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            invalid(
                ConfigKey::SubmitListen,
                format!("{text:?} is not ADDR:PORT or off, e.g. 127.0.0.1:587 or 0.0.0.0:587"),
            )
        })
    }

    /// The `submit-allowed-peers` networks (besides loopback, which may always submit).
    pub fn submit_networks(&self) -> Result<Vec<PeerNet>, ConfigError> {
        self.submit_allowed_peers
            .iter()
            .map(|p| {
                p.parse().map_err(|e: crate::listener::PeerNetError| {
                    invalid(ConfigKey::SubmitAllowedPeers, e.to_string())
                })
            })
            .collect()
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
                    invalid(ConfigKey::AllowedPeers, e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::RouteEntry;
    use super::*;
    use std::path::Path;
    use ConfigKey as K;

    fn entry(recipient: &str, destination: &str) -> RouteEntry {
        RouteEntry {
            recipient: recipient.into(),
            destination: destination.into(),
            security: None,
            ca_file: None,
        }
    }

    #[test]
    fn set_and_file_parsing_share_the_rules() {
        // Every value `set` refuses is refused in a file too, naming the same key.
        for (key, bad, file_value) in [
            (K::IdleTimeout, "0", "0"),
            (K::MaxMessageSize, "100", "100"),
            (K::SettleDelay, "3601", "3601"),
            (K::MaxLineLength, "100", "100"),
            (K::ReplyTimeout, "0", "0"),
            (K::FetchInterval, "20000", "20000"),
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
            (K::Hostname, "bad host"),
            (K::Maildir, "relative/md"),
            (K::Interfaces, "a/b"),
            (K::AllowedPeers, "not-a-net"),
            (K::Listen, "nonsense"),
            (K::Starttls, "maybe"),
            (K::SubmitListen, "587"),
            (K::SubmitAllowedPeers, "lan"),
        ] {
            let e = Config::default().set(key, bad).unwrap_err();
            assert_eq!(e.key(), Some(key), "{key}: {e}");
        }
        let e = Config::default().set("colour", "red").unwrap_err();
        assert!(e.to_string().contains("idle-timeout"), "{e}");
    }

    #[test]
    fn the_submission_listener_is_an_address_or_off() {
        let mut c = Config::default();
        assert_eq!(
            c.submit_address().unwrap(),
            Some("127.0.0.1:587".parse().unwrap())
        );
        c.set(K::SubmitListen, "OFF").unwrap();
        assert_eq!(c.submit_address().unwrap(), None);
        c.set(K::SubmitListen, "0.0.0.0:2587").unwrap();
        assert_eq!(c.submit_address().unwrap().unwrap().port(), 2587);
        c.set(K::SubmitAllowedPeers, "192.168.1.0/24, 10.0.0.7")
            .unwrap();
        assert_eq!(c.submit_networks().unwrap().len(), 2);
        c.set(K::SubmitUser, "me").unwrap();
        assert_eq!(c.submit_user.as_deref(), Some("me"));
        c.set(K::SubmitUser, "").unwrap();
        assert_eq!(c.submit_user, None);
    }

    #[test]
    fn tls_files_go_together() {
        let mut c = Config::default();
        c.set(K::TlsCert, "/etc/c.pem").unwrap();
        assert_eq!(c.validate().unwrap_err().key(), Some(K::TlsKey));
        c.set(K::TlsKey, "/etc/k.pem").unwrap();
        assert!(c.validate().is_ok());
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
            assert_eq!(e.key(), Some(K::Routes), "{r} {d}: {e}");
        }
        let mut tls_on_lmtp = entry("*", "lmtp:h");
        tls_on_lmtp.security = Some(crate::account::Security::Tls);
        assert_eq!(c.add_route(tls_on_lmtp).unwrap_err().key(), Some(K::Routes));
        assert_eq!(c, Config::default(), "a refused route changes nothing");
        // In a file: two routes for one pattern, or a bad one, stop the load naming the key.
        let text = "[[routes]]\nrecipient = \"@x.test\"\ndestination = \"maildir:/a\"\n[[routes]]\nrecipient = \"@X.test\"\ndestination = \"maildir:/b\"\n";
        let e = Config::parse(text, Path::new("c.toml")).unwrap_err();
        assert_eq!(e.key(), Some(K::Routes), "{e}");
        let e = Config::parse(
            "[[routes]]\nrecipient = \"*\"\ndestination = \"nowhere\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
        // The retry delays are judged together.
        let e = Config::default().set(K::RetryDelay, "7200").unwrap_err();
        assert_eq!(e.key(), Some(K::MaxRetryDelay), "{e}");
        assert!(Config::default().set(K::MaxRetryDelay, "10").is_err());
        assert!(Config::default().set(K::MaxRetryDelay, "60").is_ok());
    }
}
