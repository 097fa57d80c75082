//! Why a session with the ISP failed as a whole, each message saying what to do next.

use serde::{Deserialize, Serialize};

/// Why a session with the ISP failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EtrnError {
    /// TCP connect failed or timed out (also DNS failures).
    #[error("cannot connect to {host}:{port}: {reason}; check the host and port of the account and that you are online")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// The account's CA file could not be read or holds no usable certificate.
    #[error("cannot use the CA certificate file {path}: {reason}; give a readable PEM file with the ISP's CA certificate(s) (--ca-file)")]
    CaFile {
        /// The file as configured.
        path: String,
        /// Why.
        reason: String,
    },
    /// The server's certificate did not verify (unknown issuer, wrong name, expired).
    #[error("the TLS certificate of {host} could not be verified ({reason}); if the ISP uses its own CA, pass its CA certificate with --ca-file <PEM file>, and check that the host name matches the certificate")]
    Certificate {
        /// Host.
        host: String,
        /// What the verifier said.
        reason: String,
    },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS handshake with {host} failed: {reason}; check the port and the security mode (tls for implicit TLS, usually port 465; starttls for ports 25/587)")]
    Tls {
        /// Host.
        host: String,
        /// Why.
        reason: String,
    },
    /// security = starttls but the server does not offer STARTTLS; we never fall back.
    #[error("{host} does not offer STARTTLS, and Mailcall never falls back to plain text; use security tls if the ISP offers implicit TLS (usually port 465), or ask the ISP")]
    StarttlsNotOffered {
        /// Host.
        host: String,
    },
    /// The server answered STARTTLS with an error.
    #[error("{host} refused STARTTLS ({code} {text}); try again later, or use security tls if the ISP offers implicit TLS")]
    StarttlsRefused {
        /// Host.
        host: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// A user name is set but the connection would not be encrypted.
    #[error("refusing to send the password for account {account} over an unencrypted connection; set its security to starttls or tls (mailcall-cli account set {account} --security starttls)")]
    PlaintextAuth {
        /// The account.
        account: String,
    },
    /// A user name is set but no password is known.
    #[error("account {account} has a user name but no password; set it with mailcall-cli account set {account} --password-stdin")]
    NoPassword {
        /// The account.
        account: String,
    },
    /// The server offers neither AUTH PLAIN nor AUTH LOGIN.
    #[error("cannot authenticate to {host}: it offers no AUTH PLAIN or LOGIN (extensions: {offered}); ask the ISP which login method to use, or remove the user name if none is needed")]
    AuthUnsupported {
        /// Host.
        host: String,
        /// The EHLO keywords, for the user to see.
        offered: String,
    },
    /// The server rejected the credentials (535 and friends).
    #[error("authentication failed at {host} ({code} {text}); check the user name and password (mailcall-cli account set {account} --user NAME --password-stdin)")]
    AuthFailed {
        /// Host.
        host: String,
        /// The account.
        account: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// ETRN is not in the EHLO reply: nothing was sent.
    #[error("{host} does not advertise ETRN in its EHLO reply, so no ETRN was sent; check the host and port (the ISP may offer ETRN on another server), try security starttls/tls and a user name (some servers offer ETRN only then), or ask the ISP to enable ETRN")]
    EtrnNotAdvertised {
        /// Host.
        host: String,
    },
    /// The server said 421: it is closing the connection.
    #[error("{host} is closing the connection (421 {text}); it is busy or shutting down, try again later")]
    ServiceClosing {
        /// Host.
        host: String,
        /// Reply text.
        text: String,
    },
    /// No reply within the reply timeout.
    #[error("timed out after {secs:.1} s waiting for {step} from {host}; check your connection and try again, or raise the reply timeout")]
    Timeout {
        /// Host.
        host: String,
        /// What we waited for (`the greeting`, `the reply to ETRN example.com`).
        step: String,
        /// How long we waited, in seconds.
        secs: f64,
    },
    /// The connection closed under us (the link dropped, or the server hung up) mid-session.
    #[error("the connection to {host} was closed during {step} ({reason}): the link dropped or the server hung up; check that you are online and try again")]
    ConnectionLost {
        /// Host.
        host: String,
        /// The step (`the reply to EHLO`, `the reply to ETRN example.com`).
        step: String,
        /// What the connection reported.
        reason: String,
    },
    /// The server answered something unexpected.
    #[error("unexpected answer from {host} during {step}: {reason}; check that the account's host and port lead to an SMTP server, and try again")]
    Protocol {
        /// Host.
        host: String,
        /// The step (`EHLO`, `QUIT`).
        step: String,
        /// What happened.
        reason: String,
    },
}

impl EtrnError {
    /// Whether trying again later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            EtrnError::Connect { .. }
            | EtrnError::ServiceClosing { .. }
            | EtrnError::Timeout { .. }
            | EtrnError::Protocol { .. }
            | EtrnError::ConnectionLost { .. } => true,
            EtrnError::StarttlsRefused { code, .. } | EtrnError::AuthFailed { code, .. } => {
                (400..500).contains(code)
            }
            EtrnError::CaFile { .. }
            | EtrnError::Certificate { .. }
            | EtrnError::Tls { .. }
            | EtrnError::StarttlsNotOffered { .. }
            | EtrnError::PlaintextAuth { .. }
            | EtrnError::NoPassword { .. }
            | EtrnError::AuthUnsupported { .. }
            | EtrnError::EtrnNotAdvertised { .. } => false,
        }
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
                EtrnError::Connect {
                    host: h(),
                    port: 25,
                    reason: "refused".into(),
                },
                "cannot connect",
                true,
            ),
            (
                EtrnError::Certificate {
                    host: h(),
                    reason: "UnknownIssuer".into(),
                },
                "certificate",
                false,
            ),
            (
                EtrnError::AuthFailed {
                    host: h(),
                    account: "isp".into(),
                    code: 535,
                    text: "bad".into(),
                },
                "authentication failed",
                false,
            ),
            (
                EtrnError::Timeout {
                    host: h(),
                    step: "the greeting".into(),
                    secs: 1.0,
                },
                "timed out",
                true,
            ),
            (
                EtrnError::EtrnNotAdvertised { host: h() },
                "does not advertise ETRN",
                false,
            ),
            (
                EtrnError::ServiceClosing {
                    host: h(),
                    text: "bye".into(),
                },
                "421",
                true,
            ),
            (
                EtrnError::ConnectionLost {
                    host: h(),
                    step: "the reply to EHLO".into(),
                    reason: "incomplete response".into(),
                },
                "connection to isp.test was closed",
                true,
            ),
        ];
        for (err, phrase, transient) in cases {
            assert!(err.to_string().contains(phrase), "{err}");
            assert_eq!(err.is_transient(), transient, "{err}");
        }
        let auth = EtrnError::AuthFailed {
            host: h(),
            account: "isp".into(),
            code: 454,
            text: String::new(),
        };
        assert!(auth.is_transient());
        assert!(auth.to_string().contains("--password-stdin"));
    }

    #[test]
    fn round_trips_through_json() {
        let err = EtrnError::StarttlsNotOffered {
            host: "isp.test".into(),
        };
        let json = serde_json::to_string(&err).expect("serializable");
        let back: EtrnError = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, err);
    }
}
