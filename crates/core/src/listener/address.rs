//! Envelope addresses in the form they are handed on (issue 21 item 3).
//!
//! The SMTP parser gives a quoted local part back without its quotes: `"john smith"@example.net`
//! arrives as `john smith@example.net`. Written back out like that it is another address (or,
//! with `>` and a space in it, text in MAIL FROM's parameters at the LAN server). Mailcall keeps
//! such senders, in wire form: the local part is quoted again per RFC 5321 §4.1.2 whenever it
//! is not a Dot-string, so the spool, `Return-Path` and the LAN server's `MAIL FROM` all carry
//! what the ISP sent. (Refusing them at MAIL with a 553 would bounce legitimate mail.)
//!
//! A recipient is handed on in the form the policy and the routes judged: its domain without
//! the trailing dots that a fully qualified `user@example.com.` may carry.

/// The sender as it is stored and written out again: `parsed` (the parser's unquoted address,
/// already free of control characters) with its local part quoted when it needs quoting. The
/// null sender stays empty.
pub(crate) fn wire_sender(parsed: &str) -> String {
    if parsed.is_empty() {
        return String::new();
    }
    match parsed.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", quote_local(local)),
        None => quote_local(parsed),
    }
}

/// The recipient as the policy and the routes judge it and as it is handed on: the domain
/// without trailing dots.
pub(crate) fn checked_recipient(parsed: &str) -> &str {
    match parsed.rsplit_once('@') {
        Some((local, domain)) => {
            let trimmed = domain.trim_end_matches('.');
            &parsed[..local.len() + 1 + trimmed.len()]
        }
        None => parsed,
    }
}

/// `local` as RFC 5321's Local-part: itself when it is a Dot-string, else a Quoted-string with
/// `"` and `\` escaped.
fn quote_local(local: &str) -> String {
    if is_dot_string(local) {
        return local.to_string();
    }
    let mut quoted = String::with_capacity(local.len() + 2);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Dot-string = Atom *("." Atom), Atom = 1*atext (RFC 5321 §4.1.2; non-ASCII counts as atext,
/// as RFC 6531 lets it).
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_quoted_again_when_their_local_part_needs_it() {
        assert_eq!(wire_sender(""), "");
        assert_eq!(
            wire_sender("john.smith@example.net"),
            "john.smith@example.net"
        );
        assert_eq!(wire_sender("o'hara+x@example.net"), "o'hara+x@example.net");
        assert_eq!(
            wire_sender("john smith@example.net"),
            "\"john smith\"@example.net"
        );
        // What would inject a parameter into MAIL FROM stays inside the quotes.
        assert_eq!(
            wire_sender("a> SIZE=1@example.net"),
            "\"a> SIZE=1\"@example.net"
        );
        assert_eq!(wire_sender("a\"b\\c@x.test"), "\"a\\\"b\\\\c\"@x.test");
        assert_eq!(wire_sender("a..b@x.test"), "\"a..b\"@x.test");
        assert_eq!(wire_sender(".a@x.test"), "\".a\"@x.test");
        assert_eq!(wire_sender("a@b@x.test"), "\"a@b\"@x.test");
        assert_eq!(wire_sender("jörg@x.test"), "jörg@x.test");
    }

    #[test]
    fn recipients_lose_their_trailing_dots() {
        assert_eq!(checked_recipient("alice@example.org."), "alice@example.org");
        assert_eq!(
            checked_recipient("alice@example.org..."),
            "alice@example.org"
        );
        assert_eq!(checked_recipient("alice@example.org"), "alice@example.org");
        assert_eq!(checked_recipient("a.@x.test"), "a.@x.test");
        assert_eq!(checked_recipient("postmaster"), "postmaster");
    }

    /// The parser this listener uses drops the quotes as this module expects.
    #[test]
    fn the_parser_unquotes_and_the_wire_form_quotes_back() {
        use smtp_proto::Request;
        let line = b"MAIL FROM:<\"john smith\"@example.net>\r\n";
        let Ok(Request::Mail { from }) = Request::parse(&mut line.iter()) else {
            panic!("MAIL not parsed");
        };
        assert_eq!(from.address, "john smith@example.net");
        assert_eq!(wire_sender(&from.address), "\"john smith\"@example.net");
    }
}
