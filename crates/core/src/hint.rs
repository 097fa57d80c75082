//! Hints as data: which setting a user can change to fix a problem. The core says *what* to
//! change; each front end says *how* in its own words (the CLI as a command line to type, the
//! tray as the field in its Settings window), so core messages never name a CLI flag.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::ConfigKey;

/// One field of an account, as every front end knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountField {
    /// The account's name.
    Name,
    /// How mail is fetched: ETRN (the ISP connects back) or ODMR (ATRN on Mailcall's connection).
    Mode,
    /// The ISP's host name or address.
    Host,
    /// The ISP's port.
    Port,
    /// How the connection is secured (none, STARTTLS, TLS).
    Security,
    /// The SMTP AUTH user name.
    User,
    /// The SMTP AUTH password.
    Password,
    /// A command that prints the password (instead of a stored one).
    PasswordCommand,
    /// A CA certificate file to trust for this ISP.
    CaFile,
    /// The name given in EHLO.
    Helo,
    /// The domains to release.
    Domains,
    /// The command that brings a dial-up link up.
    ConnectCommand,
    /// The command that brings it down again.
    DisconnectCommand,
    /// How long to wait for the link.
    LinkTimeout,
    /// The outgoing (submission) server.
    OutgoingHost,
    /// Its port.
    OutgoingPort,
    /// How the connection to it is secured.
    OutgoingSecurity,
    /// Its own user name (instead of the account's).
    OutgoingUser,
    /// Its own password.
    OutgoingPassword,
    /// Its own CA certificate file.
    OutgoingCaFile,
}

impl AccountField {
    /// Every field, in the order forms show them.
    pub const ALL: [AccountField; 20] = [
        AccountField::Name,
        AccountField::Mode,
        AccountField::Host,
        AccountField::Port,
        AccountField::Security,
        AccountField::User,
        AccountField::Password,
        AccountField::PasswordCommand,
        AccountField::CaFile,
        AccountField::Helo,
        AccountField::Domains,
        AccountField::ConnectCommand,
        AccountField::DisconnectCommand,
        AccountField::LinkTimeout,
        AccountField::OutgoingHost,
        AccountField::OutgoingPort,
        AccountField::OutgoingSecurity,
        AccountField::OutgoingUser,
        AccountField::OutgoingPassword,
        AccountField::OutgoingCaFile,
    ];

    /// The field's name in words, for messages ("the CA file").
    pub fn label(self) -> &'static str {
        match self {
            AccountField::Name => "name",
            AccountField::Mode => "mode (ETRN or ODMR)",
            AccountField::Host => "server",
            AccountField::Port => "port",
            AccountField::Security => "security",
            AccountField::User => "user name",
            AccountField::Password => "password",
            AccountField::PasswordCommand => "password command",
            AccountField::CaFile => "CA file",
            AccountField::Helo => "EHLO name",
            AccountField::Domains => "domains",
            AccountField::ConnectCommand => "connect command",
            AccountField::DisconnectCommand => "disconnect command",
            AccountField::LinkTimeout => "link timeout",
            AccountField::OutgoingHost => "outgoing server",
            AccountField::OutgoingPort => "outgoing server's port",
            AccountField::OutgoingSecurity => "outgoing server's security",
            AccountField::OutgoingUser => "outgoing server's user name",
            AccountField::OutgoingPassword => "outgoing server's password",
            AccountField::OutgoingCaFile => "outgoing server's CA file",
        }
    }
}

impl fmt::Display for AccountField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A setting to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Setting {
    /// A field of one account.
    Account {
        /// The account's name.
        account: String,
        /// The field.
        field: AccountField,
    },
    /// A preference in the config file, by its key (`listen`, `maildir`, `reply-timeout`), or
    /// the routes.
    Config {
        /// The key.
        key: ConfigKey,
    },
}

impl Setting {
    /// A field of `account`.
    pub fn account(account: impl Into<String>, field: AccountField) -> Self {
        Setting::Account {
            account: account.into(),
            field,
        }
    }

    /// The config key `key`.
    pub fn config(key: ConfigKey) -> Self {
        Setting::Config { key }
    }

    /// Every setting a hint can name: each field of `account`, each key of `config set`, and
    /// the routes (what the spool's problems point at). For front ends' tests that each one is
    /// rendered as something their user can act on.
    pub fn every(account: &str) -> Vec<Setting> {
        let fields = AccountField::ALL
            .iter()
            .map(|f| Setting::account(account, *f));
        let keys = ConfigKey::settable().chain([ConfigKey::Routes]);
        fields.chain(keys.map(Setting::config)).collect()
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Account { account, field } => write!(f, "the {field} of account {account}"),
            Setting::Config { key } => write!(f, "the setting {key}"),
        }
    }
}

/// Something that went wrong, for people: what happened and what to do (`message`), and the
/// setting that fixes it when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The account concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// What happened and what the user can do, in words (no command syntax).
    pub message: String,
    /// The setting to change, when one fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Setting>,
}

impl Problem {
    /// A problem with no setting to point at.
    pub fn new(message: impl Into<String>) -> Self {
        Problem {
            account: None,
            message: message.into(),
            fix: None,
        }
    }

    /// The same problem, concerning `account`.
    pub fn for_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// The same problem, fixed by changing `fix`.
    pub fn fixed_by(mut self, fix: Option<Setting>) -> Self {
        self.fix = fix;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Some(a) => write!(f, "{a}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// History files written before problems had a shape hold plain strings: both read.
impl<'de> Deserialize<'de> for Problem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Shaped {
            #[serde(default)]
            account: Option<String>,
            message: String,
            #[serde(default)]
            fix: Option<Fix>,
        }
        // A record written by a version with a setting this one lacks keeps its message.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Fix {
            Known(Setting),
            Unknown(serde::de::IgnoredAny),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Shaped(Shaped),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(message) => Problem::new(message),
            Either::Shaped(s) => Problem {
                account: s.account,
                message: s.message,
                fix: match s.fix {
                    Some(Fix::Known(setting)) => Some(setting),
                    Some(Fix::Unknown(_)) | None => None,
                },
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_from_old_strings_and_round_trip() {
        let old: Vec<Problem> = serde_json::from_str(r#"["isp: cannot connect"]"#).unwrap();
        assert_eq!(old, [Problem::new("isp: cannot connect")]);
        let p = Problem::new("the certificate could not be verified")
            .for_account("isp")
            .fixed_by(Some(Setting::account("isp", AccountField::CaFile)));
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""field":"ca-file""#), "{text}");
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap(), p);
        assert_eq!(p.to_string(), "isp: the certificate could not be verified");
        let c = Setting::config(ConfigKey::ReplyTimeout);
        assert_eq!(c.to_string(), "the setting reply-timeout");
        let text = serde_json::to_string(&Problem::new("slow").fixed_by(Some(c.clone()))).unwrap();
        assert_eq!(
            text,
            r#"{"message":"slow","fix":{"kind":"config","key":"reply-timeout"}}"#
        );
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap().fix, Some(c));
    }

    #[test]
    fn a_record_naming_a_setting_this_version_lacks_keeps_its_message() {
        let old = r#"{"message":"too slow","fix":{"kind":"config","key":"max-patience"}}"#;
        assert_eq!(
            serde_json::from_str::<Problem>(old).unwrap(),
            Problem::new("too slow")
        );
    }
}
