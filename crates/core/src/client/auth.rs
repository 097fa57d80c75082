//! SMTP AUTH (RFC 4954) as the client speaks it: which mechanism to use, and what to send for
//! PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195). Pure functions; the connection sends them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

/// An AUTH mechanism Mailcall speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `AUTH PLAIN <base64(\0user\0password)>`: one round trip.
    Plain,
    /// `AUTH LOGIN`, then user and password each after a 334.
    Login,
    /// `AUTH CRAM-MD5`: the server's challenge is answered with an HMAC-MD5 keyed by the
    /// password, so the password itself never crosses the wire. fetchmail's only mechanism for
    /// ODMR; Exim offers it.
    CramMd5,
}

impl Mechanism {
    /// The name after `AUTH`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// The mechanism to use: the first one the server lists (its preference, as its AUTH lines
/// give them) that we speak. `auth_lines` are the EHLO lines starting with `AUTH`.
pub fn choose<'a>(auth_lines: impl IntoIterator<Item = &'a str>) -> Option<Mechanism> {
    auth_lines
        .into_iter()
        .flat_map(|line| {
            // `AUTH PLAIN LOGIN` and the old `AUTH=LOGIN` form.
            let rest = line.get(4..).unwrap_or("");
            rest.trim_start_matches(['=', ' '])
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .find_map(Mechanism::from_name)
}

/// The `AUTH PLAIN` initial response.
pub fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

/// One base64 line (a LOGIN user or password).
pub fn encode(text: &str) -> String {
    STANDARD.encode(text)
}

/// The answer to a CRAM-MD5 challenge (the text after `334 `): base64 of
/// `user SP hex(HMAC-MD5(password, challenge))`. `None` when the challenge is not base64.
pub fn cram_md5(user: &str, password: &str, challenge_b64: &str) -> Option<String> {
    let challenge = STANDARD.decode(challenge_b64.trim()).ok()?;
    let mut mac = Hmac::<md5::Md5>::new_from_slice(password.as_bytes()).ok()?;
    mac.update(&challenge);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(STANDARD.encode(format!("{user} {hex}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_order_decides() {
        assert_eq!(choose(["AUTH PLAIN LOGIN"]), Some(Mechanism::Plain));
        assert_eq!(choose(["AUTH CRAM-MD5 PLAIN"]), Some(Mechanism::CramMd5));
        assert_eq!(
            choose(["AUTH DIGEST-MD5 login", "AUTH=PLAIN"]),
            Some(Mechanism::Login)
        );
        assert_eq!(choose(["AUTH=LOGIN"]), Some(Mechanism::Login));
        assert_eq!(choose(["AUTH GSSAPI XOAUTH2"]), None);
        assert_eq!(choose([]), None);
    }

    #[test]
    fn plain_and_login_encodings() {
        assert_eq!(
            plain("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(encode("user"), "dXNlcg==");
    }

    #[test]
    fn cram_md5_matches_rfc_2195() {
        // RFC 2195's example: challenge <1896.697170952@postoffice.reston.mci.net>, user tim,
        // secret tanstaaftanstaaf, response "tim b913a602c7eda7a495b4e6e7334d3890".
        let challenge = STANDARD.encode("<1896.697170952@postoffice.reston.mci.net>");
        let answer = cram_md5("tim", "tanstaaftanstaaf", &challenge).unwrap();
        let decoded = String::from_utf8(STANDARD.decode(answer).unwrap()).unwrap();
        assert_eq!(decoded, "tim b913a602c7eda7a495b4e6e7334d3890");
        assert!(cram_md5("tim", "x", "not base64!").is_none());
    }
}
