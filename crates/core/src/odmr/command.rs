//! The `ATRN d1,d2,...` wire command (RFC 2645 5.2.1; the connection adds the CRLF).

use std::fmt;

/// The longest ATRN line we send, without its CRLF (RFC 5321 4.5.3.1.4: 512 octets with it).
pub const MAX_ATRN_LINE: usize = 510;

/// An account's domains that cannot go into one `ATRN`. The account's domains are checked when
/// it is saved, so this is a last line of defence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAtrnDomains {
    /// No domain at all.
    #[error("no domain to ask for: add one to the account")]
    None,
    /// A domain that could smuggle a second command or split the list.
    #[error("{0:?} cannot go into ATRN: use plain domain names such as example.com")]
    Domain(String),
    /// The line would be longer than SMTP allows.
    #[error("the ATRN line would be {0} characters, more than SMTP's {MAX_ATRN_LINE}: split the domains over two accounts")]
    TooLong(usize),
}

/// One `ATRN` naming every domain of an account, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atrn {
    domains: Vec<String>,
}

impl Atrn {
    /// An ATRN for `domains` (bare names); refuses an empty list, anything that could smuggle
    /// a second command or split the list, and a line longer than [`MAX_ATRN_LINE`].
    pub fn new(domains: &[String]) -> Result<Self, BadAtrnDomains> {
        if domains.is_empty() {
            return Err(BadAtrnDomains::None);
        }
        for d in domains {
            if d.is_empty()
                || d.chars().any(|c| {
                    c.is_whitespace()
                        || c.is_control()
                        || !c.is_ascii()
                        || matches!(c, ',' | '@' | '#')
                })
            {
                return Err(BadAtrnDomains::Domain(d.clone()));
            }
        }
        let atrn = Atrn {
            domains: domains.to_vec(),
        };
        let len = atrn.to_string().len();
        if len > MAX_ATRN_LINE {
            return Err(BadAtrnDomains::TooLong(len));
        }
        Ok(atrn)
    }

    /// The domains, as sent.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }
}

impl fmt::Display for Atrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ATRN {}", self.domains.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prints_the_comma_separated_wire_form() {
        let one = Atrn::new(&names(&["customer.test"])).unwrap();
        assert_eq!(one.to_string(), "ATRN customer.test");
        let two = Atrn::new(&names(&["a.test", "b.test"])).unwrap();
        assert_eq!(two.to_string(), "ATRN a.test,b.test");
        assert_eq!(two.domains(), ["a.test", "b.test"]);
    }

    #[test]
    fn refuses_smuggling_lists_and_forms() {
        assert!(Atrn::new(&[]).is_err());
        for bad in [
            "",
            "a b",
            "x\r\nQUIT",
            "a,b",
            "@sub.test",
            "#queue",
            "d\u{e9}.com",
        ] {
            assert!(Atrn::new(&names(&[bad])).is_err(), "{bad:?} accepted");
        }
        let long: Vec<String> = (0..40).map(|i| format!("domain-{i:02}.example")).collect();
        assert!(Atrn::new(&long).is_err());
    }
}
