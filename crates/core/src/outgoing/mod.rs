//! The outgoing half of Mailcall: mail written while offline leaves through the ISP's
//! smarthost when the link is up, before the incoming mail is asked for.
//!
//! - [`local`]: a message from a local program (`mailcall-cli sendmail`), read as sendmail reads it.
//! - [`queue`]: which account a message leaves through, and the message made durable in the
//!   spool as a `smarthost:ACCOUNT` entry; the spool's runner sends it while the link is up.
//! - [`smarthost`]: the SMTP client of this leg (lettre), with one outcome per recipient.

pub mod local;
pub mod queue;
pub mod smarthost;
