//! The Delivery tab's side of the window: the routes as shown and as typed, and the settings
//! for recipients no route names and for retries — every value goes through the core's rules
//! ([`Config::add_route`], [`Config::set`]).

use std::path::PathBuf;

use mailcall_core::account::Security;
use mailcall_core::config::{Config, ConfigError, ConfigKey, RouteEntry, UnknownRecipients};
use mailcall_core::routing::{Destination, Pattern, Route};
use serde::{Deserialize, Serialize};

use super::{config_problem, optional, sentence, UiError};

/// The config keys the Delivery tab edits besides the routes: key, field name, label.
pub const DELIVERY_FIELDS: &[(ConfigKey, &str, &str)] = &[
    (
        ConfigKey::UnknownRecipients,
        "unknown_recipients",
        "Unknown recipients",
    ),
    (
        ConfigKey::RetryDelay,
        "retry_delay",
        "First retry after (s)",
    ),
    (
        ConfigKey::MaxRetryDelay,
        "max_retry_delay",
        "Longest wait between retries (s)",
    ),
];

/// The routes table's label in the Delivery tab (what hints about `routes` point at).
pub const ROUTES_LABEL: &str = "Routes";

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
                // Route::parse refuses it: routes are for incoming mail.
                Destination::Smarthost(_) => "smarthost",
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
            err.field("recipient", e.to_string());
        }
        let destination = match self.destination.trim().split_once(':') {
            Some((kind, rest)) if kind.eq_ignore_ascii_case("maildir") => {
                format!("maildir:{}", expand_home(rest.trim()))
            }
            _ => self.destination.trim().to_string(),
        };
        if let Err(e) = destination.parse::<Destination>() {
            err.field("destination", e.to_string());
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
            let field = if e.is_ca_file() {
                "ca_file"
            } else {
                "security"
            };
            err.field(field, e.to_string());
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

    fn value(&self, key: ConfigKey) -> &str {
        match key {
            ConfigKey::UnknownRecipients => &self.unknown_recipients,
            ConfigKey::RetryDelay => &self.retry_delay,
            // The last of DELIVERY_FIELDS, max-retry-delay.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        assert_eq!(err.key(), Some(ConfigKey::UnknownRecipients));
    }
}
