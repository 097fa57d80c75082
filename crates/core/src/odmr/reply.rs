//! What the ISP's reply to `ATRN` means (RFC 2645 5.2.1): a pure code → answer table.

use crate::report::DomainOutcome;

/// What to do after the reply to ATRN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 250: the ISP turns the line around and delivers on this connection.
    Turn,
    /// 453: nothing held for these domains.
    NoMail,
    /// 451 (and any other 4xx but 421, 450 and 453): cannot do it now; ask again later, on a
    /// new connection (a second ATRN in the same session is refused by Exim 4.99).
    Retry,
    /// 421: the ISP is closing the connection.
    Closing,
    /// A refusal that asking again will not change: 450 (request refused), 530 (authentication
    /// required), 500-504 (ATRN not supported), other 5xx.
    Refused(DomainOutcome),
    /// Not a reply ATRN may get (another 2xx, a 3xx): the state of the line is unknown.
    Unexpected,
}

/// Maps the reply code to ATRN to what it means.
pub fn classify(code: u16) -> Answer {
    match code {
        250 => Answer::Turn,
        453 => Answer::NoMail,
        421 => Answer::Closing,
        450 => Answer::Refused(DomainOutcome::NotAllowed),
        400..=499 => Answer::Retry,
        530 => Answer::Refused(DomainOutcome::AuthRequired),
        503 => Answer::Refused(DomainOutcome::BadSequence),
        500..=504 => Answer::Refused(DomainOutcome::Unsupported),
        505..=599 => Answer::Refused(DomainOutcome::Rejected),
        _ => Answer::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DomainOutcome::*;

    #[test]
    fn every_code_of_rfc_2645_and_the_rest() {
        let table: &[(u16, Answer)] = &[
            (250, Answer::Turn),
            (453, Answer::NoMail),
            (450, Answer::Refused(NotAllowed)),
            (451, Answer::Retry),
            (452, Answer::Retry),
            (454, Answer::Retry),
            (421, Answer::Closing),
            (530, Answer::Refused(AuthRequired)),
            (500, Answer::Refused(Unsupported)),
            (501, Answer::Refused(Unsupported)),
            (502, Answer::Refused(Unsupported)),
            (504, Answer::Refused(Unsupported)),
            (503, Answer::Refused(BadSequence)),
            (554, Answer::Refused(Rejected)),
            (550, Answer::Refused(Rejected)),
            (251, Answer::Unexpected),
            (354, Answer::Unexpected),
        ];
        for &(code, answer) in table {
            assert_eq!(classify(code), answer, "{code}");
        }
    }
}
