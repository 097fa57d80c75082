//! Routes as data: a recipient pattern (`alice@example.com`, `@example.com`, `*`), a
//! destination (`maildir:PATH`, `lmtp:HOST:PORT`, `lmtp:unix:PATH`, `smtp:HOST:PORT`), and the
//! table that finds the route of one recipient. Parsing and matching only, no I/O.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::account::Security;
use crate::client::Address;

/// The port LMTP servers listen on when a route names none (IANA's `lmtp`).
pub const LMTP_PORT: u16 = 24;
/// The port SMTP servers listen on when a route names none.
pub const SMTP_PORT: u16 = 25;

/// How to write a destination, for messages about one that is wrong.
const DESTINATION_USAGE: &str =
    "write maildir:/full/path, lmtp:HOST:PORT, lmtp:unix:/full/path or smtp:HOST:PORT";

/// A route, or a part of one, that cannot be read. Every one is fixed in the routes (the config
/// reports it under its `routes` key, which front ends point at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The recipient pattern is not one.
    #[error("{text:?} is not a recipient pattern ({why}): write alice@example.com for one address, @example.com for the rest of a domain, or * for everything else")]
    Pattern {
        /// What was given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The destination has no `kind:`.
    #[error("{0:?} is not a destination: {DESTINATION_USAGE}")]
    NoKind(String),
    /// The destination's kind is not one Mailcall knows.
    #[error("{0:?} is not a kind of destination: {DESTINATION_USAGE}")]
    UnknownKind(String),
    /// A path that must be absolute is not.
    #[error("{path:?} is not a full path: give the {what} starting with {start}", start = crate::fsutil::FULL_PATH_START)]
    NotAbsolute {
        /// The path given.
        path: String,
        /// What it names ("Maildir", "LMTP socket").
        what: &'static str,
    },
    /// `[v6` without its `]`.
    #[error("{0:?}: a [ without its ]")]
    UnclosedBracket(String),
    /// Something other than `:PORT` after `[v6]`.
    #[error("{0:?}: write [ADDRESS]:PORT")]
    AfterBracket(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
    /// The host is not a host name or address.
    #[error("{0:?} is not a host name or address")]
    Host(String),
    /// A security mode or CA file on a destination that is not `smtp:`.
    #[error("the route for {pattern}: security and a CA file are for smtp: destinations only")]
    SecurityNotSmtp {
        /// The route's pattern.
        pattern: Pattern,
    },
    /// `smarthost:` given as a route's destination.
    #[error("the route for {pattern}: smarthost: is where outgoing mail leaves, not a destination for incoming mail; give the account an outgoing server instead (account edit --smarthost)")]
    SmarthostRoute {
        /// The route's pattern.
        pattern: Pattern,
    },
    /// The CA file is not an absolute path.
    #[error("the route for {pattern}: the CA file {} is not a full path", ca_file.display())]
    CaFileNotAbsolute {
        /// The route's pattern.
        pattern: Pattern,
        /// The path given.
        ca_file: PathBuf,
    },
}

impl RouteError {
    /// Whether the route's CA file is what is wrong (a form shows it next to that field).
    pub fn is_ca_file(&self) -> bool {
        matches!(self, RouteError::CaFileNotAbsolute { .. })
    }
}

/// Which recipients a route is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// One address (`alice@example.com`, lower-cased); also `alice+tag@example.com`.
    Address(String),
    /// The rest of one domain (`@example.com`): its addresses no address route names.
    Domain(String),
    /// Everything else (`*`).
    Any,
}

impl FromStr for Pattern {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &'static str| {
            Err(RouteError::Pattern {
                text: s.to_owned(),
                why,
            })
        };
        if s == "*" {
            return Ok(Pattern::Any);
        }
        if s.is_empty()
            || s.len() > 320
            || !s.bytes().all(|b| b.is_ascii_graphic())
            || s.contains(['"', '\\', '<', '>', ',', ';'])
        {
            return bad("letters, digits and punctuation of an address only");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return bad("no @");
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !domain_ok {
            return bad("the domain is not a domain name");
        }
        if local.is_empty() {
            return Ok(Pattern::Domain(domain));
        }
        if local.contains(['@', '%', '!']) {
            return bad("one @, and no % or ! in the local part");
        }
        Ok(Pattern::Address(format!(
            "{}@{domain}",
            local.to_ascii_lowercase()
        )))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Address(a) => f.write_str(a),
            Pattern::Domain(d) => write!(f, "@{d}"),
            Pattern::Any => f.write_str("*"),
        }
    }
}

/// How a [`Destination::Smarthost`] is written: `smarthost:ACCOUNT`.
pub const SMARTHOST_PREFIX: &str = "smarthost:";

/// Where a route's mail goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A Maildir, or a Maildir++ folder in one (`~/Maildir/.Example-org`), written directly.
    Maildir(PathBuf),
    /// An LMTP server (Dovecot), over TCP or a unix socket; through Mailcall's spool.
    Lmtp(Address),
    /// An SMTP server on the LAN (Postfix, Exchange); through Mailcall's spool.
    Smtp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Outgoing mail: the outgoing server (smarthost) of the named account, through the spool.
    /// Never a route's destination (routes are for incoming mail); the spool writes it as
    /// `smarthost:ACCOUNT`.
    Smarthost(String),
}

impl Destination {
    /// Whether mail for it goes through the spool (a server, not a directory).
    pub fn is_server(&self) -> bool {
        !matches!(self, Destination::Maildir(_))
    }
}

/// `HOST:PORT`, `HOST` (then `default`), `[v6]:PORT` or `[v6]`.
fn host_port(s: &str, default: u16) -> Result<(String, u16), RouteError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| RouteError::UnclosedBracket(s.to_owned()))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(RouteError::AfterBracket(s.to_owned())),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| RouteError::Port(p.to_owned()))?,
        None => default,
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    if !host_ok {
        return Err(RouteError::Host(host.to_owned()));
    }
    Ok((host.to_string(), port))
}

impl FromStr for Destination {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| RouteError::NoKind(s.to_owned()))?;
        let absolute = |p: &str, what: &'static str| {
            let path = PathBuf::from(p);
            if path.is_absolute() && !p.contains('\n') {
                Ok(path)
            } else {
                Err(RouteError::NotAbsolute {
                    path: p.to_owned(),
                    what,
                })
            }
        };
        match kind.to_ascii_lowercase().as_str() {
            "maildir" => Ok(Destination::Maildir(absolute(rest, "Maildir")?)),
            "lmtp" => match rest.strip_prefix("unix:") {
                Some(path) => Ok(Destination::Lmtp(Address::Unix(absolute(
                    path,
                    "LMTP socket",
                )?))),
                None => {
                    let (host, port) = host_port(rest, LMTP_PORT)?;
                    Ok(Destination::Lmtp(Address::Tcp { host, port }))
                }
            },
            "smtp" => {
                let (host, port) = host_port(rest, SMTP_PORT)?;
                Ok(Destination::Smtp { host, port })
            }
            "smarthost" => match crate::account::validate_name(rest) {
                Ok(()) => Ok(Destination::Smarthost(rest.to_owned())),
                Err(_) => Err(RouteError::UnknownKind(s.to_owned())),
            },
            other => Err(RouteError::UnknownKind(other.to_owned())),
        }
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Maildir(p) => write!(f, "maildir:{}", p.display()),
            Destination::Lmtp(Address::Unix(p)) => write!(f, "lmtp:unix:{}", p.display()),
            Destination::Lmtp(Address::Tcp { host, port }) => {
                f.write_str("lmtp:")?;
                write_host(f, host, *port)
            }
            Destination::Smtp { host, port } => {
                f.write_str("smtp:")?;
                write_host(f, host, *port)
            }
            Destination::Smarthost(account) => write!(f, "{SMARTHOST_PREFIX}{account}"),
        }
    }
}

/// Where one recipient's mail goes: the destination, and for `smtp:` how the connection is
/// secured. What the spool and the tray group hand-overs by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TargetRecord", into = "TargetRecord")]
pub struct Target {
    /// Where it goes.
    pub destination: Destination,
    /// `smtp:` only: none, starttls or tls (the certificate is always verified).
    pub security: Security,
    /// `smtp:` only: extra CA certificates to trust for the server.
    pub ca_file: Option<PathBuf>,
}

impl Target {
    /// A Maildir destination.
    pub fn maildir(path: PathBuf) -> Self {
        Target {
            destination: Destination::Maildir(path),
            security: Security::None,
            ca_file: None,
        }
    }

    /// The outgoing server of `account` (its security and CA file are the account's).
    pub fn smarthost(account: impl Into<String>) -> Self {
        Target {
            destination: Destination::Smarthost(account.into()),
            security: Security::None,
            ca_file: None,
        }
    }

    /// The account whose outgoing server this is, for outgoing mail.
    pub fn outgoing_account(&self) -> Option<&str> {
        match &self.destination {
            Destination::Smarthost(account) => Some(account),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        let plain = self.security == Security::None && self.ca_file.is_none();
        if matches!(self.destination, Destination::Smtp { .. }) && !plain {
            write!(f, " ({}", self.security)?;
            if let Some(ca) = &self.ca_file {
                write!(f, ", CA {}", ca.display())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// How a [`Target`] is written in the spool: as the config writes a route's destination.
#[derive(Serialize, Deserialize)]
struct TargetRecord {
    destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    security: Option<Security>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

impl TryFrom<TargetRecord> for Target {
    type Error = RouteError;
    fn try_from(r: TargetRecord) -> Result<Self, RouteError> {
        Ok(Target {
            destination: r.destination.parse()?,
            security: r.security.unwrap_or(Security::None),
            ca_file: r.ca_file,
        })
    }
}

impl From<Target> for TargetRecord {
    fn from(t: Target) -> Self {
        TargetRecord {
            destination: t.destination.to_string(),
            security: (t.security != Security::None).then_some(t.security),
            ca_file: t.ca_file,
        }
    }
}

/// One route: whose mail, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Whose mail.
    pub pattern: Pattern,
    /// Where it goes.
    pub target: Target,
}

impl Route {
    /// A route from its text forms; `security` and `ca_file` only for `smtp:` destinations.
    pub fn parse(
        pattern: &str,
        destination: &str,
        security: Option<Security>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, RouteError> {
        let pattern: Pattern = pattern.parse()?;
        let destination: Destination = destination.parse()?;
        if matches!(destination, Destination::Smarthost(_)) {
            return Err(RouteError::SmarthostRoute { pattern });
        }
        let smtp = matches!(destination, Destination::Smtp { .. });
        if !smtp && (security.is_some_and(|s| s != Security::None) || ca_file.is_some()) {
            return Err(RouteError::SecurityNotSmtp { pattern });
        }
        if let Some(ca) = &ca_file {
            if !ca.is_absolute() {
                return Err(RouteError::CaFileNotAbsolute {
                    pattern,
                    ca_file: ca.clone(),
                });
            }
        }
        Ok(Route {
            pattern,
            target: Target {
                destination,
                security: security.unwrap_or(Security::None),
                ca_file,
            },
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.pattern, self.target)
    }
}

/// The routes, found most specific first: the address, the address without its `+tag`, the
/// domain (`@example.com`), then `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table of `routes` (their order does not matter: specificity decides).
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// Whether there are no routes (then everything goes to the default Maildir).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes, as configured.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of `address` (`local@domain`, as the RCPT gave it); `None` when no route
    /// matches — an unknown recipient.
    pub fn lookup(&self, address: &str) -> Option<&Route> {
        let lower = address.to_ascii_lowercase();
        let (local, domain) = lower.rsplit_once('@')?;
        let domain = domain.trim_end_matches('.');
        let exact = format!("{local}@{domain}");
        let find = |p: &Pattern| self.routes.iter().find(|r| &r.pattern == p);
        find(&Pattern::Address(exact))
            .or_else(|| {
                // Subaddressing: alice+lists@example.com is alice's unless it has its own route.
                let (base, _) = local.split_once('+')?;
                (!base.is_empty())
                    .then(|| find(&Pattern::Address(format!("{base}@{domain}"))))
                    .flatten()
            })
            .or_else(|| find(&Pattern::Domain(domain.to_string())))
            .or_else(|| find(&Pattern::Any))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::fsutil::{abs, unabs};

    fn route(p: &str, d: &str) -> Route {
        Route::parse(p, &abs(d), None, None).unwrap()
    }

    #[test]
    fn patterns_parse_and_print() {
        for (text, shown) in [
            ("Alice@Example.COM", "alice@example.com"),
            ("@Example.com.", "@example.com"),
            ("*", "*"),
            (" bob+lists@x.test ", "bob+lists@x.test"),
        ] {
            assert_eq!(text.parse::<Pattern>().unwrap().to_string(), shown);
        }
        for bad in [
            "",
            "alice",
            "a@",
            "a b@x.test",
            "a@b@x.test",
            "a%b@x.test",
            "@",
            "@x..test",
            "<a@x.test>",
            "**",
        ] {
            let e = bad.parse::<Pattern>().unwrap_err().to_string();
            assert!(e.contains("@example.com"), "{bad}: {e}");
        }
    }

    #[test]
    fn destinations_parse_and_print() {
        for (text, shown) in [
            (
                "maildir:/home/a/Maildir/.Lists",
                "maildir:/home/a/Maildir/.Lists",
            ),
            ("lmtp:127.0.0.1:24", "lmtp:127.0.0.1:24"),
            ("lmtp:mail.lan", "lmtp:mail.lan:24"),
            ("LMTP:unix:/run/dovecot/lmtp", "lmtp:unix:/run/dovecot/lmtp"),
            ("smtp:[::1]:2525", "smtp:[::1]:2525"),
            ("smtp:10.0.0.2", "smtp:10.0.0.2:25"),
        ] {
            assert_eq!(
                abs(text).parse::<Destination>().unwrap().to_string(),
                abs(shown),
                "{text}"
            );
        }
        for bad in [
            "maildir:relative/path",
            "lmtp:unix:rel",
            "smtp:host:0",
            "smtp:host:99999",
            "smtp:",
            "smtp:[::1",
            "pop3:host",
            "/home/a/Maildir",
        ] {
            assert!(abs(bad).parse::<Destination>().is_err(), "{bad}");
        }
        assert!(!abs("maildir:/m")
            .parse::<Destination>()
            .unwrap()
            .is_server());
        assert!("lmtp:h".parse::<Destination>().unwrap().is_server());
    }

    #[test]
    fn security_and_ca_only_for_smtp() {
        let r = Route::parse(
            "*",
            "smtp:lan:25",
            Some(Security::Starttls),
            Some(abs("/ca.pem").into()),
        )
        .unwrap();
        assert_eq!(
            unabs(&r.to_string()),
            "* -> smtp:lan:25 (starttls, CA /ca.pem)"
        );
        assert!(Route::parse("*", "lmtp:lan", Some(Security::Starttls), None).is_err());
        let (m, ca) = (abs("maildir:/m"), abs("/ca.pem"));
        assert!(Route::parse("*", &m, None, Some(ca.into())).is_err());
        assert!(Route::parse("*", "smtp:lan", None, Some("ca.pem".into())).is_err());
    }

    #[test]
    fn the_most_specific_route_wins() {
        let table = RouteTable::new(vec![
            route("*", "maildir:/any"),
            route("@example.com", "maildir:/domain"),
            route("alice@example.com", "lmtp:127.0.0.1:24"),
            route("alice+private@example.com", "maildir:/private"),
        ]);
        let dest = |a: &str| {
            let r = table.lookup(a);
            r.map(|r| unabs(&r.target.destination.to_string()))
        };
        assert_eq!(dest("alice@example.com").unwrap(), "lmtp:127.0.0.1:24");
        assert_eq!(dest("ALICE@Example.Com.").unwrap(), "lmtp:127.0.0.1:24");
        assert_eq!(
            dest("alice+lists@example.com").unwrap(),
            "lmtp:127.0.0.1:24"
        );
        assert_eq!(
            dest("alice+private@example.com").unwrap(),
            "maildir:/private"
        );
        assert_eq!(dest("bob@example.com").unwrap(), "maildir:/domain");
        assert_eq!(dest("+x@example.com").unwrap(), "maildir:/domain");
        assert_eq!(dest("alice@sub.example.com").unwrap(), "maildir:/any");
        assert_eq!(dest("carol@other.test").unwrap(), "maildir:/any");
        assert_eq!(dest("not-an-address"), None);

        let no_catch_all = RouteTable::new(vec![route("@example.com", "maildir:/d")]);
        assert!(no_catch_all.lookup("x@other.test").is_none());
        assert!(RouteTable::default().lookup("a@b.test").is_none());
    }
}
