//! The `ETRN <argument>` wire command (the connection adds the CRLF).

use std::fmt;

/// A domain that cannot follow `ETRN`: it would smuggle a second command, or is empty. The
/// account's domains are checked when it is saved, so this is a last line of defence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot follow ETRN: use a plain domain, @domain or #queue name")]
pub struct BadEtrnArgument(pub String);

/// One `ETRN` command (RFC 1985); the argument is a domain, `@domain` or `#queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etrn {
    argument: String,
}

impl Etrn {
    /// An ETRN for `argument`; refuses anything that could smuggle a second command.
    pub fn new(argument: &str) -> Result<Self, BadEtrnArgument> {
        if argument.is_empty()
            || argument
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(BadEtrnArgument(argument.to_owned()));
        }
        Ok(Etrn {
            argument: argument.to_owned(),
        })
    }

    /// The argument as sent.
    pub fn argument(&self) -> &str {
        &self.argument
    }
}

impl fmt::Display for Etrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETRN {}", self.argument)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_wire_form() {
        for arg in ["example.com", "@example.com", "#example.com"] {
            let cmd = Etrn::new(arg).expect("valid argument");
            assert_eq!(cmd.to_string(), format!("ETRN {arg}"));
            assert_eq!(cmd.argument(), arg);
        }
    }

    #[test]
    fn refuses_smuggling() {
        for bad in ["", "a b", "x\r\nQUIT", "x\n", "d\u{e9}.com", "\t"] {
            assert!(Etrn::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
