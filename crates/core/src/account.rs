//! An ISP account: how its mail is fetched (ETRN or ODMR), where to connect, how to secure and
//! authenticate, and for which domains.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hint::AccountField;

pub mod outgoing;

pub use outgoing::{OutgoingAuth, OutgoingServer};

/// How the connection to the ISP is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain text; credentials are refused on such a connection.
    None,
    /// Plain connect, then `STARTTLS` (required: no fallback to plain text).
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, "SMTPS").
    Tls,
}

impl Security {
    /// The port an ISP usually listens on for this security mode.
    pub fn default_port(self) -> u16 {
        match self {
            Security::None | Security::Starttls => 25,
            Security::Tls => 465,
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::None => "none",
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        })
    }
}

impl FromStr for Security {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "plain" => Ok(Security::None),
            "starttls" => Ok(Security::Starttls),
            "tls" | "smtps" | "implicit" => Ok(Security::Tls),
            other => Err(format!(
                "unknown security mode {other:?}: use none, starttls or tls"
            )),
        }
    }
}

/// RFC 2645's port for On-Demand Mail Relay (ATRN).
pub const ODMR_PORT: u16 = 366;

/// How an account's mail is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FetchMode {
    /// ETRN (RFC 1985): the ISP is asked to start its queue and opens new connections to
    /// Mailcall's listener to deliver (it must be able to reach that listener, usually port 25).
    #[default]
    Etrn,
    /// ODMR (RFC 2645): Mailcall connects, authenticates and says `ATRN`; the ISP then delivers
    /// on that same connection. No listener and no inbound port: works behind NAT.
    Odmr,
}

impl FetchMode {
    /// The port an ISP usually offers this mode on, with `security`.
    pub fn default_port(self, security: Security) -> u16 {
        match self {
            FetchMode::Etrn => security.default_port(),
            FetchMode::Odmr => ODMR_PORT,
        }
    }

    /// Whether this mode needs Mailcall's own SMTP listener (the ISP connects to it).
    pub fn needs_listener(self) -> bool {
        self == FetchMode::Etrn
    }

    /// The word, as in the keyring entry and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchMode::Etrn => "etrn",
            FetchMode::Odmr => "odmr",
        }
    }

    /// The SMTP command this mode sends (`ETRN`, `ATRN`).
    pub fn command(self) -> &'static str {
        match self {
            FetchMode::Etrn => "ETRN",
            FetchMode::Odmr => "ATRN",
        }
    }
}

impl fmt::Display for FetchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FetchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "etrn" => Ok(FetchMode::Etrn),
            "odmr" | "atrn" => Ok(FetchMode::Odmr),
            other => Err(format!(
                "unknown mode {other:?}: use etrn (the ISP connects to Mailcall) or odmr (ATRN: Mailcall connects and the ISP delivers on that connection)"
            )),
        }
    }
}

/// Which ETRN argument form (RFC 1985) names a domain to the ISP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EtrnForm {
    /// `ETRN example.com`: that host/domain.
    #[default]
    Domain,
    /// `ETRN @example.com`: the domain and its subdomains.
    Subdomains,
    /// `ETRN #queue`: a server-specific queue name (Exim wants this form).
    Queue,
}

/// A domain the ISP holds mail for, with the ETRN form to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DomainSpec {
    /// The domain (or queue name) without any `@`/`#` prefix, lower-cased.
    pub name: String,
    /// How it is written after `ETRN`.
    pub form: EtrnForm,
}

impl DomainSpec {
    /// The argument sent after `ETRN `.
    pub fn etrn_argument(&self) -> String {
        self.to_string()
    }

    /// How the domain is named to the ISP in `mode`: the ETRN argument, or the bare name that
    /// goes into ATRN's comma-separated list. Per-domain reports are keyed by it.
    pub fn argument(&self, mode: FetchMode) -> String {
        match mode {
            FetchMode::Etrn => self.etrn_argument(),
            FetchMode::Odmr => self.name.clone(),
        }
    }

    /// Whether mail for `domain` (the part after `@` of a recipient) belongs to this spec.
    ///
    /// `#x` and plain `x` accept exactly `x`; `@x` accepts `x` and its subdomains.
    pub fn accepts(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        if domain.eq_ignore_ascii_case(&self.name) {
            return true;
        }
        self.form == EtrnForm::Subdomains
            && domain.len() > self.name.len()
            && domain.as_bytes()[domain.len() - self.name.len() - 1] == b'.'
            && domain[domain.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
    }
}

impl fmt::Display for DomainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.form {
            EtrnForm::Domain => write!(f, "{}", self.name),
            EtrnForm::Subdomains => write!(f, "@{}", self.name),
            EtrnForm::Queue => write!(f, "#{}", self.name),
        }
    }
}

impl FromStr for DomainSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (form, name) = match s.as_bytes().first() {
            Some(b'@') => (EtrnForm::Subdomains, &s[1..]),
            Some(b'#') => (EtrnForm::Queue, &s[1..]),
            _ => (EtrnForm::Domain, s),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63)
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(format!(
                "{s:?} is not a domain: write it as example.com, @example.com (with subdomains) or #example.com (queue name)"
            ));
        }
        Ok(DomainSpec { name, form })
    }
}

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The password itself; call only where it is sent to the ISP or stored in the keyring.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One ISP account, stored whole (password included) as one keyring entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account's name, as the user calls it (`account set NAME`).
    pub name: String,
    /// How its mail is fetched; entries written before modes existed read as ETRN.
    #[serde(default)]
    pub mode: FetchMode,
    /// The ISP's mail server host name or IP address.
    pub host: String,
    /// The ISP's SMTP port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// The user name for SMTP AUTH; no AUTH when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password for SMTP AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Instead of a stored password: a command that prints it on its first line (`pass show
    /// isp`, like msmtp's `passwordeval`), run without a shell each time Mailcall connects — for
    /// a machine without a keyring. Never both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    /// The name we give in EHLO; the machine's host name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// A PEM file with extra CA certificates to trust for this ISP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The domains to release, in order.
    pub domains: Vec<DomainSpec>,
    /// How to bring a dial-up link up and down for this account (all optional).
    #[serde(default, flatten)]
    pub link: LinkSettings,
    /// Where this account's outgoing mail leaves (none: mail from its domains is not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<OutgoingServer>,
}

/// Default seconds to wait for the link after the connect command.
pub const DEFAULT_LINK_TIMEOUT: u64 = 60;

/// Connect/disconnect commands for a dial-up account, e.g. `pon isp` / `poff isp`. Commands run
/// without a shell (write `sh -c '...'` for one); their output goes to the history.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LinkSettings {
    /// Run before a manual fetch when no watched interface is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_command: Option<String>,
    /// Run after the fetch ended, only when the connect command brought the link up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_command: Option<String>,
    /// Seconds to wait for the link (and for each command); default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_timeout: Option<u64>,
}

impl LinkSettings {
    /// How long to wait for the link after the connect command.
    pub fn link_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.link_timeout.unwrap_or(DEFAULT_LINK_TIMEOUT))
    }
}

/// The longest wait for a link a connect command may ask for, in seconds.
pub const MAX_LINK_TIMEOUT: u64 = 3600;

/// A rule an account's value breaks: which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProblem {
    /// The field.
    pub field: AccountField,
    /// What is wrong, and what is allowed.
    pub problem: String,
}

impl fmt::Display for AccountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl Account {
    /// The port the ISP usually offers for this account's mode and security.
    pub fn default_port(&self) -> u16 {
        self.mode.default_port(self.security)
    }

    /// Whether this account's saved password may go along with changed settings: only to the
    /// same server, checked against the same CA file, for the same user. A password is never
    /// sent to a host the user did not save it for.
    pub fn password_follows(
        &self,
        host: &str,
        ca_file: Option<&std::path::Path>,
        username: Option<&str>,
    ) -> bool {
        self.host.eq_ignore_ascii_case(host.trim())
            && self.ca_file.as_deref() == ca_file
            && self.username.as_deref() == username
    }

    /// Whether `domain` (a recipient's domain) is one this account fetches.
    pub fn accepts(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.accepts(domain))
    }

    /// Every rule the account breaks, field by field; empty when it can be saved. The one set
    /// of account rules: the CLI and the tray only map their input to an [`Account`].
    pub fn check(&self) -> Vec<AccountProblem> {
        let mut problems = Vec::new();
        let mut bad = |field, problem: String| problems.push(AccountProblem { field, problem });
        if let Err(e) = validate_name(&self.name) {
            bad(e.field(), e.to_string());
        }
        if let Some(problem) =
            host_problem(&self.host, "the ISP's mail server, e.g. mail.example.net")
        {
            bad(AccountField::Host, problem);
        }
        if self.port == 0 {
            bad(
                AccountField::Port,
                "0 is not a port: use a number from 1 to 65535".into(),
            );
        }
        let has_secret = self.password.is_some() || self.password_command.is_some();
        match (&self.username, has_secret) {
            (Some(_), _) if self.security == Security::None => bad(
                AccountField::Security,
                "a password is never sent unencrypted: choose STARTTLS or TLS, or remove the user name".into(),
            ),
            (Some(_), false) => bad(
                AccountField::Password,
                "the user name needs a password (or a password command)".into(),
            ),
            (None, true) => bad(AccountField::User, "a password needs a user name".into()),
            _ => {}
        }
        if let Some(cmd) = &self.password_command {
            if self.password.is_some() {
                bad(
                    AccountField::PasswordCommand,
                    "give a password or a password command, not both".into(),
                );
            }
            if let Err(e) = crate::user_command::split_command(cmd) {
                bad(
                    AccountField::PasswordCommand,
                    format!("{e}; commands run without a shell, quote words with ' or \""),
                );
            }
        }
        if self.mode == FetchMode::Odmr && self.username.is_none() {
            bad(
                AccountField::User,
                "ODMR (ATRN) requires authentication (RFC 2645): give the ISP's user name and password, or use ETRN mode".into(),
            );
            if self.security == Security::None {
                bad(
                    AccountField::Security,
                    "ODMR sends a password, which is never sent unencrypted: choose STARTTLS or TLS".into(),
                );
            }
        }
        if let Some(u) = &self.username {
            if u.is_empty() || u.contains(['\r', '\n', '\0']) {
                bad(AccountField::User, format!("{u:?} is not a user name"));
            }
        }
        if let Some(h) = &self.helo {
            let valid = !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
            if !valid {
                bad(
                    AccountField::Helo,
                    format!("{h:?} is not a host name: use e.g. mail.example.com"),
                );
            }
        }
        if let Some(p) = &self.ca_file {
            if !p.is_absolute() {
                bad(
                    AccountField::CaFile,
                    format!(
                        "{} is not a full path: give it starting with {}",
                        p.display(),
                        crate::fsutil::FULL_PATH_START
                    ),
                );
            } else if !p.is_file() {
                bad(
                    AccountField::CaFile,
                    format!("there is no file {}", p.display()),
                );
            }
        }
        if self.domains.is_empty() {
            bad(
                AccountField::Domains,
                "add at least one domain the ISP holds mail for".into(),
            );
        }
        for (i, d) in self.domains.iter().enumerate() {
            if self.domains[..i].contains(d) {
                bad(AccountField::Domains, format!("{d} is listed twice"));
            }
        }
        if self.mode == FetchMode::Odmr {
            for d in self.domains.iter().filter(|d| d.form != EtrnForm::Domain) {
                bad(
                    AccountField::Domains,
                    format!(
                        "{d}: ATRN asks for plain domain names (the @ and # forms are ETRN's): write {}",
                        d.name
                    ),
                );
            }
            let line = self.domains.iter().map(|d| d.name.len() + 1).sum::<usize>() + 4;
            if line > crate::odmr::MAX_ATRN_LINE {
                bad(
                    AccountField::Domains,
                    format!(
                        "the domains do not fit into one ATRN command ({line} of {} characters): split them over two accounts",
                        crate::odmr::MAX_ATRN_LINE
                    ),
                );
            }
        }
        for (field, cmd) in [
            (AccountField::ConnectCommand, &self.link.connect_command),
            (
                AccountField::DisconnectCommand,
                &self.link.disconnect_command,
            ),
        ] {
            if let Some(cmd) = cmd {
                if let Err(e) = crate::user_command::split_command(cmd) {
                    bad(
                        field,
                        format!("{e}; commands run without a shell, quote words with ' or \""),
                    );
                }
            }
        }
        if let Some(t) = self.link.link_timeout {
            if !(1..=MAX_LINK_TIMEOUT).contains(&t) {
                bad(
                    AccountField::LinkTimeout,
                    format!("{t} is out of range: use seconds from 1 to {MAX_LINK_TIMEOUT} (default {DEFAULT_LINK_TIMEOUT})"),
                );
            }
        }
        self.check_outgoing(&mut problems);
        problems
    }
}

/// An account name that cannot be used: it names a keyring entry and a config line, so it is
/// kept simple.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid account name: use 1-64 letters, digits, '-', '_' or '.'")]
pub struct BadAccountName(pub String);

impl BadAccountName {
    /// The field that fixes it: the account's name.
    pub fn field(&self) -> AccountField {
        AccountField::Name
    }
}

/// What is wrong with a server's host name, if anything; `what` says what to give when empty.
pub(crate) fn host_problem(host: &str, what: &str) -> Option<String> {
    if host.is_empty() {
        Some(format!("give {what}"))
    } else if host.len() > 253 || host.contains(|c: char| c.is_whitespace() || c == '/') {
        Some(format!("{host:?} is not a host name or IP address"))
    } else {
        None
    }
}

/// Checks an account name: 1-64 ASCII letters, digits, `-`, `_` or `.`.
pub fn validate_name(name: &str) -> Result<(), BadAccountName> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(BadAccountName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_forms_parse_and_print() {
        for (input, form, arg) in [
            ("Example.COM", EtrnForm::Domain, "example.com"),
            ("@example.com", EtrnForm::Subdomains, "@example.com"),
            ("#example.com", EtrnForm::Queue, "#example.com"),
            ("example.com.", EtrnForm::Domain, "example.com"),
        ] {
            let spec: DomainSpec = input.parse().expect(input);
            assert_eq!(spec.form, form, "{input}");
            assert_eq!(spec.etrn_argument(), arg, "{input}");
        }
        for bad in ["", "@", "#", "a..b", "exa mple.com", "a@b.com", "x\r\nQUIT"] {
            assert!(bad.parse::<DomainSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn accepts_follows_the_form() {
        let plain: DomainSpec = "example.com".parse().unwrap();
        let sub: DomainSpec = "@example.com".parse().unwrap();
        let queue: DomainSpec = "#example.com".parse().unwrap();
        for spec in [&plain, &sub, &queue] {
            assert!(spec.accepts("example.com"));
            assert!(spec.accepts("EXAMPLE.com."));
            assert!(!spec.accepts("badexample.com"));
            assert!(!spec.accepts("example.com.evil"));
        }
        assert!(sub.accepts("mx.example.com"));
        assert!(!plain.accepts("mx.example.com"));
        assert!(!queue.accepts("mx.example.com"));
    }

    #[test]
    fn link_settings_are_optional_and_kebab_case() {
        let old = r#"{"name":"isp","host":"h","port":25,"security":"starttls","domains":[]}"#;
        let a: Account = serde_json::from_str(old).expect("an account without link settings");
        assert_eq!(a.link, LinkSettings::default());
        let mut a = a;
        a.link.connect_command = Some("pon isp".into());
        a.link.link_timeout = Some(5);
        let text = serde_json::to_string(&a).expect("serialises");
        assert!(text.contains(r#""connect-command":"pon isp""#), "{text}");
        let back: Account = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, a);
        assert_eq!(back.link.link_timeout(), std::time::Duration::from_secs(5));
    }

    #[test]
    fn one_set_of_account_rules() {
        let good = Account {
            name: "isp".into(),
            mode: FetchMode::Etrn,
            host: "mail.isp.test".into(),
            port: 25,
            security: Security::Starttls,
            username: Some("u".into()),
            password: Some(Secret::new("p")),
            password_command: None,
            helo: None,
            ca_file: None,
            domains: vec!["example.com".parse().unwrap()],
            link: LinkSettings::default(),
            outgoing: None,
        };
        assert!(good.check().is_empty(), "{:?}", good.check());
        let fields = |a: Account| a.check().into_iter().map(|p| p.field).collect::<Vec<_>>();
        let with = |f: &dyn Fn(&mut Account)| {
            let mut a = good.clone();
            f(&mut a);
            a
        };
        assert_eq!(
            fields(with(&|a| a.name = "a b".into())),
            [AccountField::Name]
        );
        assert_eq!(
            fields(with(&|a| a.host = "a host".into())),
            [AccountField::Host]
        );
        assert_eq!(fields(with(&|a| a.port = 0)), [AccountField::Port]);
        assert_eq!(
            fields(with(&|a| a.security = Security::None)),
            [AccountField::Security]
        );
        assert_eq!(
            fields(with(&|a| a.password = None)),
            [AccountField::Password]
        );
        // A password command instead of a password: fine; both, or a broken command, not.
        let by_command = with(&|a| {
            a.password = None;
            a.password_command = Some("pass show isp".into());
        });
        assert!(by_command.check().is_empty(), "{:?}", by_command.check());
        assert_eq!(
            fields(with(&|a| a.password_command = Some("pass show isp".into()))),
            [AccountField::PasswordCommand]
        );
        assert_eq!(
            fields(with(&|a| {
                a.password = None;
                a.password_command = Some("pass 'isp".into());
            })),
            [AccountField::PasswordCommand]
        );
        assert_eq!(
            fields(with(&|a| a.helo = Some("bad helo".into()))),
            [AccountField::Helo]
        );
        assert_eq!(
            fields(with(&|a| a.ca_file = Some("rel.pem".into()))),
            [AccountField::CaFile]
        );
        assert_eq!(
            fields(with(&|a| a.ca_file = Some("/no/such.pem".into()))),
            [AccountField::CaFile]
        );
        assert_eq!(
            fields(with(&|a| a.domains.clear())),
            [AccountField::Domains]
        );
        assert_eq!(
            fields(with(&|a| a.domains.push("example.com".parse().unwrap()))),
            [AccountField::Domains]
        );
        assert_eq!(
            fields(with(&|a| a.link.connect_command = Some("pon 'isp".into()))),
            [AccountField::ConnectCommand]
        );
        assert_eq!(
            fields(with(&|a| a.link.link_timeout = Some(0))),
            [AccountField::LinkTimeout]
        );
        // ODMR: AUTH is required, and ATRN takes plain domain names only.
        let odmr = |f: &dyn Fn(&mut Account)| {
            with(&|a| {
                a.mode = FetchMode::Odmr;
                a.port = ODMR_PORT;
                f(a)
            })
        };
        assert!(
            odmr(&|_| {}).check().is_empty(),
            "{:?}",
            odmr(&|_| {}).check()
        );
        assert_eq!(
            fields(odmr(&|a| {
                a.username = None;
                a.password = None;
            })),
            [AccountField::User]
        );
        assert_eq!(
            fields(odmr(&|a| {
                a.username = None;
                a.password = None;
                a.security = Security::None;
            })),
            [AccountField::User, AccountField::Security]
        );
        assert_eq!(
            fields(odmr(
                &|a| a.domains = vec!["@example.com".parse().unwrap(), "#q".parse().unwrap()]
            )),
            [AccountField::Domains, AccountField::Domains]
        );
        assert_eq!(
            fields(odmr(&|a| {
                a.domains = (0..60)
                    .map(|i| format!("domain-number-{i}.example").parse().unwrap())
                    .collect()
            })),
            [AccountField::Domains]
        );
    }

    #[test]
    fn modes_parse_print_and_old_entries_are_etrn() {
        assert_eq!("ODMR".parse::<FetchMode>(), Ok(FetchMode::Odmr));
        assert_eq!("atrn".parse::<FetchMode>(), Ok(FetchMode::Odmr));
        assert_eq!("etrn".parse::<FetchMode>(), Ok(FetchMode::Etrn));
        assert!("turn".parse::<FetchMode>().is_err());
        assert_eq!(FetchMode::Odmr.to_string(), "odmr");
        assert_eq!(FetchMode::Odmr.default_port(Security::Starttls), 366);
        assert_eq!(FetchMode::Etrn.default_port(Security::Tls), 465);
        let old =
            r#"{"name":"isp","host":"h","port":25,"security":"starttls","domains":["a.test"]}"#;
        let old = old.replace(r#"["a.test"]"#, r#"[{"name":"a.test","form":"domain"}]"#);
        let a: Account = serde_json::from_str(&old).expect("an entry without a mode");
        assert_eq!(a.mode, FetchMode::Etrn);
        let mut a = a;
        a.mode = FetchMode::Odmr;
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#""mode":"odmr""#), "{text}");
        assert_eq!(serde_json::from_str::<Account>(&text).unwrap(), a);
        let spec: DomainSpec = "@sub.test".parse().unwrap();
        assert_eq!(spec.argument(FetchMode::Etrn), "@sub.test");
        assert_eq!(spec.argument(FetchMode::Odmr), "sub.test");
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let a = Account {
            name: "isp".into(),
            mode: FetchMode::Etrn,
            host: "h".into(),
            port: 25,
            security: Security::Starttls,
            username: Some("u".into()),
            password: Some(Secret::new("hunter2")),
            password_command: None,
            helo: None,
            ca_file: None,
            domains: vec![],
            link: LinkSettings::default(),
            outgoing: None,
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
