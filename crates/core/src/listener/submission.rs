//! The submission role of the listener: local programs and LAN hosts hand outgoing mail here
//! (`submit-listen`, port 587). It owns who may submit (loopback always; LAN hosts listed in
//! `submit-allowed-peers`; anyone else only after AUTH PLAIN/LOGIN over TLS with the submission
//! login), which account a sender's mail leaves through, and where it is queued (the spool, as
//! a `smarthost:ACCOUNT` entry, see [`crate::outgoing::queue`]). The SMTP session itself is the
//! listener's (`session`): its limits, smuggling checks, sizes and STARTTLS apply unchanged.

use std::fmt;
use std::net::IpAddr;
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::PeerNet;
use crate::account::Account;
use crate::outgoing::queue::{account_for, SubmitError};
use crate::spool::Spool;

/// The submission login: a user name and its password (never shown, never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct SubmitLogin {
    user: String,
    password: String,
}

impl SubmitLogin {
    /// The login `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        SubmitLogin {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Whether `user` and `password` are this login's; the password is compared in constant
    /// time.
    fn matches(&self, user: &str, password: &str) -> bool {
        let (a, b) = (self.password.as_bytes(), password.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same && self.user == user
    }
}

impl fmt::Debug for SubmitLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitLogin")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What a submission session needs beyond the listener's settings: the queue, the accounts
/// (senders pick theirs by domain), the trusted LAN networks and the login.
#[derive(Debug)]
pub struct Submission {
    spool: Spool,
    accounts: RwLock<Vec<Account>>,
    /// `default-outgoing-account`: sends what no account's domains claim.
    default_account: RwLock<Option<String>>,
    allowed_peers: Vec<PeerNet>,
    login: RwLock<Option<SubmitLogin>>,
}

impl Submission {
    /// Submission into `spool` for `accounts`; besides loopback, peers in `allowed_peers` may
    /// submit without a login.
    pub fn new(spool: Spool, accounts: Vec<Account>, allowed_peers: Vec<PeerNet>) -> Self {
        Submission {
            spool,
            accounts: RwLock::new(accounts),
            default_account: RwLock::new(None),
            allowed_peers,
            login: RwLock::new(None),
        }
    }

    /// The same, with a login other peers may authenticate with (over TLS only).
    pub fn with_login(self, login: Option<SubmitLogin>) -> Self {
        *self.login.write().unwrap_or_else(|p| p.into_inner()) = login;
        self
    }

    /// Replaces the accounts; later `MAIL FROM`s are judged by the new list.
    pub fn replace_accounts(&self, accounts: Vec<Account>) {
        *self.accounts.write().unwrap_or_else(|p| p.into_inner()) = accounts;
    }

    /// Replaces the default sending account (`default-outgoing-account`).
    pub fn replace_default_account(&self, name: Option<String>) {
        *self
            .default_account
            .write()
            .unwrap_or_else(|p| p.into_inner()) = name;
    }

    /// Replaces the login (`None`: nobody may authenticate).
    pub fn replace_login(&self, login: Option<SubmitLogin>) {
        *self.login.write().unwrap_or_else(|p| p.into_inner()) = login;
    }

    /// The queue messages go into.
    pub(crate) fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Whether `ip` may submit without authenticating: loopback, or a listed network.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        ip.to_canonical().is_loopback() || self.allowed_peers.iter().any(|n| n.contains(ip))
    }

    /// Whether a login is configured (AUTH is offered over TLS only then).
    pub(crate) fn has_login(&self) -> bool {
        self.login
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether `user`/`password` is the submission login.
    pub(crate) fn check(&self, user: &str, password: &str) -> bool {
        self.login
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| l.matches(user, password))
    }

    /// The account a message from `sender` leaves through (its name).
    pub(crate) fn account_for(&self, sender: &str) -> Result<String, SubmitError> {
        let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
        let default = self
            .default_account
            .read()
            .unwrap_or_else(|p| p.into_inner());
        account_for(&accounts, default.as_deref(), sender).map(|a| a.name.clone())
    }
}

/// Where an AUTH exchange stands while we wait for the client's next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthStep {
    /// `AUTH PLAIN` without an initial response: the response comes next.
    Plain,
    /// `AUTH LOGIN`: the user name comes next.
    LoginUser,
    /// `AUTH LOGIN`: the password comes next.
    LoginPassword { user: String },
}

/// What one client line of an AUTH exchange brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthTurn {
    /// Ask for the next line with this (already base64) challenge.
    Ask(AuthStep, &'static str),
    /// The credentials are complete: user and password.
    Done(String, String),
    /// `*`: the client gave up (RFC 4954 4).
    Cancelled,
    /// Not base64, or not a PLAIN response.
    Malformed,
}

/// The challenge `AUTH LOGIN` sends for the user name and the password (`Username:`, `Password:`).
pub(crate) const LOGIN_USER: &str = "VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// Takes one base64 line of an AUTH exchange at `step` (I/O-free).
pub(crate) fn auth_turn(step: AuthStep, line: &[u8]) -> AuthTurn {
    let text = line.trim_ascii();
    if text == b"*" {
        return AuthTurn::Cancelled;
    }
    let Ok(bytes) = STANDARD.decode(text) else {
        return AuthTurn::Malformed;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return AuthTurn::Malformed;
    };
    match step {
        AuthStep::Plain => plain(&text),
        AuthStep::LoginUser => {
            AuthTurn::Ask(AuthStep::LoginPassword { user: text }, LOGIN_PASSWORD)
        }
        AuthStep::LoginPassword { user } => AuthTurn::Done(user, text),
    }
}

/// A decoded PLAIN response: `authzid NUL authcid NUL password` (RFC 4616); an authzid other
/// than empty or the user itself is refused.
fn plain(text: &str) -> AuthTurn {
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authz), Some(user), Some(password), None) if authz.is_empty() || authz == user => {
            AuthTurn::Done(user.to_owned(), password.to_owned())
        }
        _ => AuthTurn::Malformed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        STANDARD.encode(s).into_bytes()
    }

    #[test]
    fn plain_and_login_exchanges_yield_the_credentials() {
        assert_eq!(
            auth_turn(AuthStep::Plain, &b64("\0me\0secret")),
            AuthTurn::Done("me".into(), "secret".into())
        );
        assert_eq!(
            auth_turn(AuthStep::Plain, &b64("me\0me\0secret")),
            AuthTurn::Done("me".into(), "secret".into())
        );
        assert_eq!(
            auth_turn(AuthStep::Plain, &b64("other\0me\0secret")),
            AuthTurn::Malformed
        );
        assert_eq!(auth_turn(AuthStep::Plain, b"!!"), AuthTurn::Malformed);
        assert_eq!(auth_turn(AuthStep::Plain, b"*"), AuthTurn::Cancelled);
        let AuthTurn::Ask(next, challenge) = auth_turn(AuthStep::LoginUser, &b64("me")) else {
            panic!("LOGIN asks for the password");
        };
        assert_eq!(challenge, LOGIN_PASSWORD);
        assert_eq!(
            auth_turn(next, &b64("secret")),
            AuthTurn::Done("me".into(), "secret".into())
        );
    }

    #[test]
    fn loopback_and_listed_peers_are_trusted_others_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let nets = vec!["192.168.1.0/24".parse().unwrap()];
        let s = Submission::new(spool, Vec::new(), nets)
            .with_login(Some(SubmitLogin::new("me", "secret")));
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "192.168.1.20"] {
            assert!(s.trusts(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.2.1", "10.0.0.1", "2001:db8::1"] {
            assert!(!s.trusts(ip.parse().unwrap()), "{ip}");
        }
        assert!(s.check("me", "secret"));
        assert!(!s.check("me", "secreT") && !s.check("you", "secret") && !s.check("me", ""));
        assert!(!format!("{s:?}").contains("secret"));
        s.replace_login(None);
        assert!(!s.has_login() && !s.check("me", "secret"));
    }
}
