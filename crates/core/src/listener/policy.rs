//! Which recipients the listener accepts: only addresses in the configured domains, never a relay
//! (the submission role takes any domain, but judges the form the same way).

use crate::account::DomainSpec;

/// Which recipients the listener accepts: only those in the configured domains.
/// The domains can be replaced while the listener runs (accounts edited in the tray).
#[derive(Debug, Default)]
pub struct RecipientPolicy {
    domains: std::sync::RwLock<Vec<DomainSpec>>,
}

/// What the policy says about one `RCPT TO` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Ours: accept.
    Accept,
    /// Empty or not `local@domain`: 501 5.1.3.
    Malformed,
    /// A routing trick: 550 5.7.1.
    RelayDenied,
    /// A plain address in a domain no account takes: 550 5.7.1 (relay access denied), except
    /// from the ISP a running fetch asked, which gets a 4xx and keeps the mail.
    Foreign,
}

impl RecipientPolicy {
    /// Accept recipients in these domains (per their ETRN form), nothing else.
    pub fn new(domains: Vec<DomainSpec>) -> Self {
        RecipientPolicy {
            domains: std::sync::RwLock::new(domains),
        }
    }

    /// Replaces the accepted domains; sessions judge every later `RCPT TO` by the new list.
    pub fn replace(&self, domains: Vec<DomainSpec>) {
        *self.domains.write().unwrap_or_else(|p| p.into_inner()) = domains;
    }

    /// Whether `address` (a bare `local@domain`) is one we accept.
    pub fn accepts(&self, address: &str) -> bool {
        self.judge(address) == Verdict::Accept
    }

    /// Judges a recipient as the SMTP parser returned it (source route already stripped, so the
    /// final address alone decides; `<@ours:user@theirs>` is judged as `user@theirs`).
    pub(crate) fn judge(&self, address: &str) -> Verdict {
        match judge_form(address) {
            Verdict::Accept => {}
            other => return other,
        }
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let domains = self.domains.read().unwrap_or_else(|p| p.into_inner());
        if domains.iter().any(|spec| spec.accepts(domain)) {
            Verdict::Accept
        } else {
            Verdict::Foreign
        }
    }
}

/// Judges a recipient's form alone, wherever its domain (the submission listener's recipients
/// may be anywhere): `local@domain`, and none of the old routing tricks.
pub(crate) fn judge_form(address: &str) -> Verdict {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Verdict::Malformed;
    };
    if local.is_empty() || domain.is_empty() {
        return Verdict::Malformed;
    }
    // `user%theirs@ours`, `theirs!user@ours` and `"user@theirs"@ours` (the parser drops the
    // quotes, leaving a second `@`) are old ways to make a host relay: never for us.
    if local.contains(['%', '!', '@']) {
        return Verdict::RelayDenied;
    }
    Verdict::Accept
}

/// Whether the address in a raw `RCPT TO:<...>` line uses a quoted string. The parser removes the
/// quotes, so `"a%b"@ours` and `a%b@ours` look alike afterwards; we refuse quoting outright —
/// mail for the user's own domains has no need for it.
pub(crate) fn uses_quoting(raw_line: &[u8]) -> bool {
    raw_line.contains(&b'"')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(specs: &[&str]) -> RecipientPolicy {
        RecipientPolicy::new(specs.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn plain_and_queue_forms_accept_exactly_the_domain() {
        let p = policy(&["example.com", "#queue.org"]);
        assert!(p.accepts("joe@example.com"));
        assert!(p.accepts("joe@EXAMPLE.com"));
        assert!(p.accepts("joe@example.com."));
        assert!(p.accepts("joe@queue.org"));
        assert!(!p.accepts("joe@sub.example.com"));
        assert!(!p.accepts("joe@sub.queue.org"));
        assert!(!p.accepts("joe@badexample.com"));
        assert!(!p.accepts("joe@example.com.evil"));
    }

    #[test]
    fn subdomain_form_accepts_subdomains() {
        let p = policy(&["@example.com"]);
        assert!(p.accepts("joe@example.com"));
        assert!(p.accepts("joe@a.b.example.com"));
        assert!(!p.accepts("joe@badexample.com"));
        assert!(!p.accepts("joe@example.org"));
    }

    #[test]
    fn relay_tricks_and_malformed() {
        let p = policy(&["example.com"]);
        assert_eq!(p.judge("a%b.org@example.com"), Verdict::RelayDenied);
        assert_eq!(p.judge("b.org!a@example.com"), Verdict::RelayDenied);
        assert_eq!(p.judge("a@b.org@example.com"), Verdict::RelayDenied);
        assert_eq!(p.judge("a@foreign.org"), Verdict::Foreign);
        assert_eq!(p.judge(""), Verdict::Malformed);
        assert_eq!(p.judge("nodomain"), Verdict::Malformed);
        assert_eq!(p.judge("@example.com"), Verdict::Malformed);
        assert!(!RecipientPolicy::default().accepts("a@example.com"));
        assert!(uses_quoting(b"RCPT TO:<\"a@b\"@example.com>\r\n"));
        assert!(!uses_quoting(b"RCPT TO:<a@example.com>\r\n"));
    }
}
