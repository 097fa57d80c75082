//! The tray's words for the core's hints: a setting to change becomes the place in the
//! Settings window where it is changed ("Settings → Accounts → isp → CA file"), never a
//! command-line flag.

use mailcall_core::config::ConfigKey;
use mailcall_core::hint::{Problem, Setting};

use crate::forms::{ACCOUNT_FIELDS, DELIVERY_FIELDS, ROUTES_LABEL, SETTINGS_FIELDS};

/// Where in the window `setting` is changed.
pub fn place(setting: &Setting) -> String {
    match setting {
        Setting::Account { account, field } => {
            let label = ACCOUNT_FIELDS
                .iter()
                .find(|(f, _, _)| f == field)
                .map(|(_, _, label)| *label)
                .unwrap_or("Edit");
            format!("Settings → Accounts → {account} → {label}")
        }
        Setting::Config {
            key: ConfigKey::Routes,
        } => {
            format!("Settings → Delivery → {ROUTES_LABEL}")
        }
        Setting::Config { key } => {
            let find = |fields: &[(ConfigKey, &'static str, &'static str)]| {
                fields
                    .iter()
                    .find(|(k, _, _)| k == key)
                    .map(|(_, _, label)| *label)
            };
            if let Some(label) = find(SETTINGS_FIELDS) {
                format!("Settings → Settings tab → {label}")
            } else if let Some(label) = find(DELIVERY_FIELDS) {
                format!("Settings → Delivery → {label}")
            } else {
                // Keys the window does not show (reply-timeout, hostname, tls-cert, ...).
                format!("the setting {key} in the config file")
            }
        }
    }
}

/// A problem for a notification, the status or the window: what happened, then where to fix it.
pub fn render(problem: &Problem) -> String {
    match &problem.fix {
        Some(fix) => format!("{problem}\nTo fix: {}", place(fix)),
        None => problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailcall_core::hint::AccountField;

    const WINDOW: &str = include_str!("../../ui/index.html");

    #[test]
    fn every_hint_names_a_field_the_window_has_and_no_flag() {
        for s in Setting::every("isp") {
            let words = place(&s);
            assert!(
                !words.contains("--") && !words.contains("mailcall-cli"),
                "{words}"
            );
            if let Some(label) = words
                .rsplit(" → ")
                .next()
                .filter(|_| words.starts_with("Settings"))
            {
                // Labels are written in the page as text (`&` would be escaped there).
                assert!(
                    WINDOW.contains(&format!(">{label}<")),
                    "no field {label:?} in the window for {s:?}"
                );
            }
        }
        let p = Problem::new("the certificate could not be verified")
            .for_account("isp")
            .fixed_by(Some(Setting::account("isp", AccountField::CaFile)));
        assert_eq!(
            render(&p),
            "isp: the certificate could not be verified\nTo fix: Settings → Accounts → isp → CA file"
        );
        assert_eq!(
            place(&Setting::config(ConfigKey::Listen)),
            "Settings → Settings tab → Listen on"
        );
        assert_eq!(
            place(&Setting::config(ConfigKey::ReplyTimeout)),
            "the setting reply-timeout in the config file"
        );
        assert_eq!(
            place(&Setting::config(ConfigKey::Routes)),
            "Settings → Delivery → Routes"
        );
        assert_eq!(
            place(&Setting::config(ConfigKey::RetryDelay)),
            "Settings → Delivery → First retry after (s)"
        );
        assert_eq!(
            place(&Setting::account("isp", AccountField::Mode)),
            "Settings → Accounts → isp → Mode"
        );
    }
}
