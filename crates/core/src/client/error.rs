//! Why a conversation with the ISP failed as a whole: one variant per cause, each message saying
//! what happened and what to do in words, [`IspError::fix`] naming the setting to change, and
//! [`IspError::is_transient`] deciding whether trying again later, unchanged, may help.

use serde::{Deserialize, Serialize};

use crate::config::ConfigKey;
use crate::hint::{AccountField, Setting};

/// Why a session with the ISP failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IspError {
    /// TCP connect failed or timed out (also a name that does not resolve).
    #[error("cannot connect to {host}:{port}: {reason}; check the account's server and port and that you are online")]
    Connect {
        /// The server, as the account names it.
        host: String,
        /// The port connected to.
        port: u16,
        /// What the system or the server said.
        reason: String,
    },
    /// The account's CA file could not be read or holds no usable certificate.
    #[error("cannot use the CA certificate file {path}: {reason}; give the account a readable PEM file with the ISP's CA certificate(s)")]
    CaFile {
        /// The file as configured.
        path: String,
        /// What the system or the server said.
        reason: String,
    },
    /// The server's certificate did not verify (unknown issuer, wrong name, expired).
    #[error("the TLS certificate of {host} could not be verified ({reason}); if the ISP uses its own CA, give the account that CA's certificate as its CA file, and check that the server name matches the certificate")]
    Certificate {
        /// The server, as the account names it.
        host: String,
        /// What the verifier said.
        reason: String,
    },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS handshake with {host} failed: {reason}; check the port and the security mode (TLS for implicit TLS, usually port 465; STARTTLS for ports 25/587)")]
    Tls {
        /// The server, as the account names it.
        host: String,
        /// What the system or the server said.
        reason: String,
    },
    /// security = starttls but the server does not offer STARTTLS; we never fall back.
    #[error("{host} does not offer STARTTLS, and Mailcall never falls back to plain text; choose security TLS if the ISP offers implicit TLS (usually port 465), or ask the ISP")]
    StarttlsNotOffered {
        /// The server, as the account names it.
        host: String,
    },
    /// The server answered STARTTLS with an error.
    #[error("{host} refused STARTTLS ({code} {text}); try again later, or choose security TLS if the ISP offers implicit TLS")]
    StarttlsRefused {
        /// The server, as the account names it.
        host: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// A user name is set but the connection would not be encrypted.
    #[error("refusing to send the password for account {account} over an unencrypted connection; set the account's security to STARTTLS or TLS")]
    PlaintextAuth {
        /// The account.
        account: String,
    },
    /// A user name is set but no password is known.
    #[error("account {account} has a user name but no password; set its password")]
    NoPassword {
        /// The account.
        account: String,
    },
    /// The account's password command failed or printed nothing.
    #[error("the password command of account {account} gave no password: {reason}; check that it works when run by hand (as the user Mailcall runs as) and prints the password on its first line")]
    PasswordCommand {
        /// The account.
        account: String,
        /// What went wrong.
        reason: String,
    },
    /// The server offers none of the AUTH mechanisms we speak.
    #[error("cannot authenticate to {host}: it offers no AUTH PLAIN, LOGIN or CRAM-MD5 (extensions: {offered}); ask the ISP which login method to use, or remove the account's user name if none is needed")]
    AuthUnsupported {
        /// The server, as the account names it.
        host: String,
        /// The EHLO keywords, for the user to see.
        offered: String,
    },
    /// The server rejected the credentials (535 and friends).
    #[error("authentication failed at {host} ({code} {text}); check the user name and password of account {account}")]
    AuthFailed {
        /// The server, as the account names it.
        host: String,
        /// The account.
        account: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// ETRN is not in the EHLO reply: nothing was sent.
    #[error("{host} does not advertise ETRN in its EHLO reply, so no ETRN was sent; check the server and port (the ISP may offer ETRN on another server), try security STARTTLS or TLS and a user name (some servers offer ETRN only then), use ODMR mode if the ISP offers ATRN, or ask the ISP to enable ETRN")]
    EtrnNotAdvertised {
        /// The server, as the account names it.
        host: String,
    },
    /// An ODMR account without a user name: RFC 2645 requires AUTH, so nothing was sent.
    #[error("account {account} uses ODMR, which requires authentication (RFC 2645), but has no user name: give it the ISP's user name and password, or use ETRN mode")]
    OdmrNeedsAuth {
        /// The account.
        account: String,
    },
    /// ATRN is not in the EHLO reply: nothing was sent.
    #[error("{host} does not advertise ATRN in its EHLO reply, so no ATRN was sent: this server and port offer no ODMR (RFC 2645's port is 366); check the server and port, or use ETRN mode if the ISP can connect to you")]
    AtrnNotAdvertised {
        /// Host.
        host: String,
    },
    /// The server answered ATRN with 500/501/502: it does not do ODMR after all.
    #[error("{host} does not support ATRN ({code} {text}); use ETRN mode, or ask the ISP how to fetch held mail")]
    AtrnUnsupported {
        /// Host.
        host: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// The server said 421: it is closing the connection.
    #[error("{host} is closing the connection (421 {text}); it is busy or shutting down, try again later")]
    ServiceClosing {
        /// The server, as the account names it.
        host: String,
        /// Reply text.
        text: String,
    },
    /// No reply within the reply timeout.
    #[error("timed out after {secs:.1} s waiting for {step} from {host}; check your connection and try again, or allow the server more time (reply timeout)")]
    Timeout {
        /// The server, as the account names it.
        host: String,
        /// What we waited for (`the greeting`, `the reply to ETRN example.com`).
        step: String,
        /// How long we waited, in seconds.
        secs: f64,
    },
    /// No reply to an ETRN within the reply timeout: the ISP is slow or overloaded (some slow
    /// their replies down on purpose after several ETRNs); a longer timeout only moves the
    /// limit.
    #[error("{host} did not answer ETRN {argument} within {secs:.1} s: the ISP may be overloaded; try again later")]
    EtrnTimeout {
        /// The server, as the account names it.
        host: String,
        /// The ETRN argument that got no reply.
        argument: String,
        /// How long we waited, in seconds.
        secs: f64,
    },
    /// The connection closed under us (the link dropped, or the server hung up) mid-session.
    #[error("the connection to {host} was closed during {step} ({reason}): the link dropped or the server hung up; check that you are online and try again")]
    ConnectionLost {
        /// The server, as the account names it.
        host: String,
        /// The step (`the reply to EHLO`, `the reply to ETRN example.com`).
        step: String,
        /// What the connection reported.
        reason: String,
    },
    /// The server answered something that is not SMTP, or not what the step allows.
    #[error("unexpected answer from {host} during {step}: {reason}; check that the account's server and port lead to an SMTP server, and try again")]
    Protocol {
        /// The server, as the account names it.
        host: String,
        /// The step (`EHLO`, `QUIT`).
        step: String,
        /// What happened.
        reason: String,
    },
}

impl IspError {
    /// Whether trying again later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            IspError::Connect { .. }
            | IspError::ServiceClosing { .. }
            | IspError::Timeout { .. }
            | IspError::EtrnTimeout { .. }
            | IspError::Protocol { .. }
            | IspError::ConnectionLost { .. } => true,
            IspError::StarttlsRefused { code, .. } | IspError::AuthFailed { code, .. } => {
                (400..500).contains(code)
            }
            IspError::CaFile { .. }
            | IspError::Certificate { .. }
            | IspError::Tls { .. }
            | IspError::StarttlsNotOffered { .. }
            | IspError::PlaintextAuth { .. }
            | IspError::NoPassword { .. }
            | IspError::PasswordCommand { .. }
            | IspError::AuthUnsupported { .. }
            | IspError::EtrnNotAdvertised { .. }
            | IspError::OdmrNeedsAuth { .. }
            | IspError::AtrnNotAdvertised { .. }
            | IspError::AtrnUnsupported { .. } => false,
        }
    }

    /// The setting of `account` (the account this error came from) that fixes it, if one does.
    pub fn fix(&self, account: &str) -> Option<Setting> {
        let field = match self {
            IspError::Connect { .. } | IspError::EtrnNotAdvertised { .. } => AccountField::Host,
            IspError::CaFile { .. } | IspError::Certificate { .. } => AccountField::CaFile,
            IspError::Tls { .. }
            | IspError::StarttlsNotOffered { .. }
            | IspError::StarttlsRefused { .. }
            | IspError::PlaintextAuth { .. } => AccountField::Security,
            IspError::NoPassword { .. } | IspError::AuthFailed { .. } => AccountField::Password,
            IspError::PasswordCommand { .. } => AccountField::PasswordCommand,
            IspError::AuthUnsupported { .. } | IspError::OdmrNeedsAuth { .. } => AccountField::User,
            IspError::AtrnNotAdvertised { .. } | IspError::AtrnUnsupported { .. } => {
                AccountField::Mode
            }
            IspError::Timeout { .. } => return Some(Setting::config(ConfigKey::ReplyTimeout)),
            IspError::ServiceClosing { .. }
            | IspError::EtrnTimeout { .. }
            | IspError::ConnectionLost { .. }
            | IspError::Protocol { .. } => return None,
        };
        Some(Setting::account(account, field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_promised_phrases() {
        let h = || "isp.test".to_owned();
        let cases = [
            (
                IspError::Connect {
                    host: h(),
                    port: 25,
                    reason: "refused".into(),
                },
                "cannot connect",
                true,
                Some(AccountField::Host),
            ),
            (
                IspError::Certificate {
                    host: h(),
                    reason: "UnknownIssuer".into(),
                },
                "certificate",
                false,
                Some(AccountField::CaFile),
            ),
            (
                IspError::AuthFailed {
                    host: h(),
                    account: "isp".into(),
                    code: 535,
                    text: "bad".into(),
                },
                "authentication failed",
                false,
                Some(AccountField::Password),
            ),
            (
                IspError::Timeout {
                    host: h(),
                    step: "the greeting".into(),
                    secs: 1.0,
                },
                "timed out",
                true,
                None,
            ),
            (
                IspError::EtrnNotAdvertised { host: h() },
                "does not advertise ETRN",
                false,
                Some(AccountField::Host),
            ),
            (
                IspError::AtrnNotAdvertised { host: h() },
                "does not advertise ATRN",
                false,
                Some(AccountField::Mode),
            ),
            (
                IspError::AtrnUnsupported {
                    host: h(),
                    code: 502,
                    text: "not here".into(),
                },
                "use ETRN mode",
                false,
                Some(AccountField::Mode),
            ),
            (
                IspError::OdmrNeedsAuth {
                    account: "isp".into(),
                },
                "requires authentication",
                false,
                Some(AccountField::User),
            ),
            (
                IspError::ServiceClosing {
                    host: h(),
                    text: "bye".into(),
                },
                "421",
                true,
                None,
            ),
            (
                IspError::ConnectionLost {
                    host: h(),
                    step: "the reply to EHLO".into(),
                    reason: "incomplete response".into(),
                },
                "connection to isp.test was closed",
                true,
                None,
            ),
        ];
        for (err, phrase, transient, field) in cases {
            let text = err.to_string();
            assert!(text.contains(phrase), "{err}");
            assert_eq!(err.is_transient(), transient, "{err}");
            // Core messages say what to change in words; the front ends say how.
            assert!(
                !text.contains("--") && !text.contains("mailcall-cli"),
                "{text}"
            );
            if let Some(field) = field {
                assert_eq!(
                    err.fix("isp"),
                    Some(Setting::account("isp", field)),
                    "{err}"
                );
            }
        }
        let timeout = IspError::Timeout {
            host: h(),
            step: "x".into(),
            secs: 1.0,
        };
        assert_eq!(
            timeout.fix("isp"),
            Some(Setting::config(ConfigKey::ReplyTimeout))
        );
        let auth = IspError::AuthFailed {
            host: h(),
            account: "isp".into(),
            code: 454,
            text: String::new(),
        };
        assert!(auth.is_transient());
    }

    #[test]
    fn round_trips_through_json() {
        let err = IspError::StarttlsNotOffered {
            host: "isp.test".into(),
        };
        let json = serde_json::to_string(&err).expect("serializable");
        let back: IspError = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, err);
    }
}
