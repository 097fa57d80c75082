//! The outgoing half of Mailcall: mail written while offline leaves through the ISP's
//! smarthost when the link is up, before the incoming mail is asked for.
//!
//! - [`local`]: a message from a local program (`mailcall-cli sendmail`), read as sendmail reads it.
//! - [`queue`]: which account a message leaves through, and the message made durable in the
//!   spool as a `smarthost:ACCOUNT` entry; the spool's runner sends it while the link is up.
//! - [`submission`]: the submission listener (`submit-listen`, port 587) as the service runs it,
//!   bound while an account has an outgoing server; its SMTP side is the listener's.
//! - [`smarthost`]: the SMTP client of this leg (lettre), with one outcome per recipient.

pub mod local;
pub mod queue;
pub mod smarthost;
pub mod submission;
