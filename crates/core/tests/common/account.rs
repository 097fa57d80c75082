//! The one test account: an ETRN account named `isp` on 127.0.0.1, plain text, no user, HELO
//! `client.test`. Tests change the fields they are about (`Account { .., ..account(port, d) }`).

use mailcall_core::account::{Account, FetchMode, Security};

/// The account `isp` asking for `domains` (each an ETRN argument form) at 127.0.0.1:`port`.
pub fn account(port: u16, domains: &[&str]) -> Account {
    Account {
        name: "isp".into(),
        mode: FetchMode::Etrn,
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        password: None,
        password_command: None,
        helo: Some("client.test".into()),
        ca_file: None,
        domains: domains.iter().map(|d| d.parse().unwrap()).collect(),
        link: Default::default(),
        outgoing: None,
    }
}
