//! What the ISP's reply to one `ETRN` means: a pure (code, text) → outcome table (RFC 1985).

use crate::report::DomainOutcome;

/// Maps one ETRN reply to what it means for the domain.
///
/// A 4xx maps to `Deferred`; whether it is retried first is [`is_retryable`]'s business.
pub fn classify(code: u16, text: &str) -> DomainOutcome {
    match code {
        250 | 252 => DomainOutcome::Started { expected: None },
        253 => DomainOutcome::Started {
            expected: pending_count(text),
        },
        251 => DomainOutcome::NoMail,
        // Exim answers 458 while a run for the domain is going on: mail may still come.
        458 if is_already_processing(text) => DomainOutcome::AlreadyRunning,
        459 => DomainOutcome::NotAllowed,
        500..=502 => DomainOutcome::Unsupported,
        503 => DomainOutcome::BadSequence,
        530 => DomainOutcome::AuthRequired,
        400..=499 => DomainOutcome::Deferred,
        // 554 and every other 5xx: refused by policy. Codes outside 2xx/4xx/5xx are a broken
        // server; treating them as a refusal keeps the user from waiting for mail.
        _ => DomainOutcome::Rejected,
    }
}

/// Whether the same ETRN is worth sending again within this session.
///
/// 421 means the server is closing the connection, so nothing more can be sent; 459 is
/// permanent for the domain; "458 Already processing" means the run is going on already.
pub fn is_retryable(code: u16, text: &str) -> bool {
    (400..=499).contains(&code) && code != 421 && classify(code, text) == DomainOutcome::Deferred
}

/// Whether the server said it is closing the connection (421).
pub fn is_closing(code: u16) -> bool {
    code == 421
}

/// The `n` of `253 <n> pending messages started`, when the text starts with a number.
pub fn pending_count(text: &str) -> Option<u32> {
    let first = text.split_whitespace().next()?;
    // Some servers put an enhanced status code (2.0.0) first: skip it.
    let word = if first.contains('.') {
        text.split_whitespace().nth(1)?
    } else {
        first
    };
    word.parse().ok()
}

fn is_already_processing(text: &str) -> bool {
    text.to_ascii_lowercase().contains("already")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_of_the_table() {
        use DomainOutcome::*;
        let table: &[(u16, &str, DomainOutcome, bool)] = &[
            (250, "Queuing started", Started { expected: None }, false),
            (251, "OK no messages waiting", NoMail, false),
            (
                252,
                "OK pending messages started",
                Started { expected: None },
                false,
            ),
            (
                253,
                "7 pending messages started",
                Started { expected: Some(7) },
                false,
            ),
            (
                253,
                "2.0.0 12 pending messages started",
                Started { expected: Some(12) },
                false,
            ),
            (
                253,
                "pending messages started",
                Started { expected: None },
                false,
            ),
            (253, "", Started { expected: None }, false),
            (458, "Unable to queue messages", Deferred, true),
            (458, "Already processing example.com", AlreadyRunning, false),
            (458, "ALREADY PROCESSING", AlreadyRunning, false),
            (459, "example.com: service unavailable", NotAllowed, false),
            (500, "Syntax: ETRN domain", Unsupported, false),
            (501, "argument must begin with #", Unsupported, false),
            (502, "Command not implemented", Unsupported, false),
            (503, "Error: send HELO/EHLO first", BadSequence, false),
            (
                530,
                "5.7.0 Must issue a STARTTLS command first",
                AuthRequired,
                false,
            ),
            (554, "5.7.1 Etrn command rejected", Rejected, false),
            (550, "no", Rejected, false),
            (421, "closing transmission channel", Deferred, false),
            (450, "try later", Deferred, true),
            (451, "local error", Deferred, true),
        ];
        for &(code, text, outcome, retry) in table {
            assert_eq!(classify(code, text), outcome, "{code} {text}");
            assert_eq!(is_retryable(code, text), retry, "{code} {text}");
        }
        assert!(is_closing(421));
        assert!(!is_closing(451));
    }

    #[test]
    fn accepted_outcomes_match_the_report_predicates() {
        assert!(classify(251, "").is_accepted());
        assert!(!classify(251, "").expects_delivery());
        assert!(classify(458, "Already processing").expects_delivery());
        assert!(classify(451, "").is_transient());
        assert!(!classify(459, "").is_transient());
    }
}
