//! The ODMR client (RFC 2645): open the connection to the ISP ([`crate::client::open`]: EHLO,
//! TLS, AUTH — which ODMR requires), check that ATRN is offered, send one `ATRN` naming all of
//! the account's domains, and on `250` serve the ISP's deliveries on that same connection with
//! the listener's own session ([`turn`]). No listener, no inbound port.
//!
//! A turn may deliver only part of what is held — Exim 4.99.1 over TLS delivers one message
//! per turn (see tests/exim.rs), a provider may cap messages per connection — so while a turn
//! stores mail that is new to this fetch, ATRN is sent again on a new connection (bounded by
//! [`MAX_ATRN`] and the fetch's stop token). A 451 is asked again with backoff, on a new
//! connection too: Exim refuses a second ATRN in one session.

pub mod command;
pub mod reply;
pub mod turn;

use std::collections::HashSet;
use std::time::Duration;

pub use command::{Atrn, MAX_ATRN_LINE};
pub use turn::{TurnEnd, TurnReport, Turnaround};

use crate::account::{Account, FetchMode};
use crate::client::transcript::Transcript;
use crate::client::{self, ClientSettings, Connection, IspError, Refused, ServerInfo};
use crate::event::{Event, EventSink};
use crate::report::{AccountResult, DomainOutcome, DomainReport, TranscriptLine};
use reply::Answer;

/// The most ATRN commands one fetch sends for one account (turns and retries together).
pub const MAX_ATRN: u32 = 1000;
/// The longest pause between two ATRN after 4xx replies, however the delay doubles.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Runs one account's ODMR session(s), publishing each ATRN reply on `events`; what the ISP
/// delivers goes to the service's reception like the listener's deliveries.
///
/// Never fails as a whole: a session-level failure is in `error` (and published as
/// `Event::Error`); domains not asked are reported `NotSent`.
pub async fn fetch_account(
    account: &Account,
    settings: &ClientSettings,
    turn: &Turnaround,
    events: &EventSink,
) -> AccountResult {
    let mut session = Session {
        account,
        settings,
        turn,
        events,
        domains: account
            .domains
            .iter()
            .map(|d| {
                DomainReport::not_sent(&account.name, FetchMode::Odmr, d.argument(FetchMode::Odmr))
            })
            .collect(),
        transcript: Vec::new(),
        server: None,
        seen: HashSet::new(),
        turns: 0,
        unsettled: None,
    };
    let error = session.run().await;
    let Session {
        domains,
        transcript,
        server,
        ..
    } = session;
    AccountResult {
        account: account.name.clone(),
        domains,
        error,
        server: server.unwrap_or_default(),
        transcript: Vec::new(),
    }
    .finish(transcript, events)
}

/// Connects, secures, authenticates and reports what the server offers, without sending ATRN.
///
/// An account without a user name is refused before connecting (`IspError::OdmrNeedsAuth`); a
/// server that does not advertise ATRN is `IspError::AtrnNotAdvertised`.
pub async fn check_account(
    account: &Account,
    settings: &ClientSettings,
) -> (ServerInfo, Option<IspError>, Vec<TranscriptLine>) {
    client::check_report(open(account, settings).await).await
}

/// The connection, secured and authenticated, to a server that offers ATRN.
async fn open(
    account: &Account,
    settings: &ClientSettings,
) -> Result<(Connection, ServerInfo), Refused> {
    if account.username.is_none() {
        // RFC 2645 requires AUTH: without it, ATRN would be refused (530) after connecting.
        return Err((
            IspError::OdmrNeedsAuth {
                account: account.name.clone(),
            },
            ServerInfo::default(),
            Transcript::default(),
        ));
    }
    client::open_offering(account, settings, "ATRN", || IspError::AtrnNotAdvertised {
        host: account.host.clone(),
    })
    .await
}

/// One account's ODMR work in one fetch: every connection, ATRN and turn.
struct Session<'a> {
    account: &'a Account,
    settings: &'a ClientSettings,
    turn: &'a Turnaround,
    events: &'a EventSink,
    domains: Vec<DomainReport>,
    transcript: Vec<TranscriptLine>,
    /// What the first connection learned of the server.
    server: Option<ServerInfo>,
    /// The Message-IDs stored by this fetch's turns so far.
    seen: HashSet<String>,
    turns: u32,
    /// A turn that ended without the ISP's QUIT and brought nothing new: mail may be left at
    /// the ISP, or (Exim 4.99.1 over TLS) the turn only repeated a message whose 250 was lost.
    /// One more ATRN settles it: `453` (nothing held) or a turn with new mail clears it;
    /// otherwise it is the session's error.
    unsettled: Option<IspError>,
}

impl Session<'_> {
    async fn run(&mut self) -> Option<IspError> {
        let error = self.ask().await;
        self.unsettled.take().or(error)
    }

    async fn ask(&mut self) -> Option<IspError> {
        let names: Vec<String> = self.domains.iter().map(|d| d.domain.clone()).collect();
        let command = match Atrn::new(&names) {
            Ok(c) => c,
            Err(why) => {
                let why = why.to_string();
                for d in &mut self.domains {
                    d.text = why.clone();
                }
                return None;
            }
        };
        let host = self.account.host.clone();
        let mut delay = self.settings.retry_delay;
        let mut deferrals = 0;
        for asked in 0..MAX_ATRN {
            if self.turn.stop.is_cancelled() {
                self.note("the fetch is ending: no more ATRN");
                return None;
            }
            if asked > 0 {
                // A new connection: Exim 4.99.1 refuses a second ATRN in one session.
                self.note("connecting again for another ATRN");
            }
            let mut conn = match open(self.account, self.settings).await {
                Ok((conn, info)) => {
                    self.server.get_or_insert(info);
                    conn
                }
                Err((error, info, transcript)) => {
                    self.server.get_or_insert(info);
                    self.transcript.extend(transcript.into_lines());
                    return Some(error);
                }
            };
            for d in &mut self.domains {
                d.attempts += 1;
            }
            let step = format!("the reply to {command}");
            let reply = match conn.command(&command.to_string(), &step).await {
                Ok(reply) => reply,
                Err(error) => {
                    self.keep(conn);
                    return Some(error);
                }
            };
            let text = reply.text();
            match reply::classify(reply.code) {
                Answer::Turn => {
                    self.record(
                        reply.code,
                        &text,
                        DomainOutcome::Started { expected: None },
                        false,
                    );
                    let (fresh, end) = self.serve(conn).await;
                    if self.turn.stop.is_cancelled() {
                        return None;
                    }
                    if fresh == 0 {
                        // A turn that brought nothing new ends the asking; if it also did not
                        // end with the ISP's QUIT, mail may be left there: say so (transient,
                        // so an automatic fetch tries again) unless one more ATRN settles it.
                        let error = match end {
                            TurnEnd::Quit => return None,
                            TurnEnd::Closed => IspError::Timeout {
                                host: host.clone(),
                                step: "the ISP's deliveries on the turned line".into(),
                                secs: self.turn.idle_timeout.as_secs_f64(),
                            },
                            TurnEnd::Cut => IspError::ConnectionLost {
                                host: host.clone(),
                                step: "the ISP's deliveries on the turned line".into(),
                                reason: "it ended without the ISP's QUIT".into(),
                            },
                        };
                        if self.unsettled.is_some() {
                            return Some(error);
                        }
                        self.note(
                            "the turn ended without QUIT and brought nothing new: asking once more whether the ISP still holds mail",
                        );
                        self.unsettled = Some(error);
                        continue;
                    }
                    self.unsettled = None;
                    self.note(&format!(
                        "the turn brought {fresh} new message(s): asking again, the ISP may hold more"
                    ));
                    delay = self.settings.retry_delay;
                    deferrals = 0;
                }
                Answer::NoMail => {
                    // After a turn, "no more mail" is the end of a good fetch: the turn's
                    // result stays what the domains report, and a turn cut short before is
                    // settled (the ISP holds nothing more).
                    self.unsettled = None;
                    if self.turns == 0 {
                        self.set(reply.code, &text, DomainOutcome::NoMail);
                    }
                    self.publish(reply.code, &text, DomainOutcome::NoMail, false);
                    conn.quit().await;
                    self.keep(conn);
                    return None;
                }
                Answer::Retry => {
                    let will_retry = deferrals < self.settings.retries;
                    self.record(reply.code, &text, DomainOutcome::Deferred, will_retry);
                    conn.quit().await;
                    self.keep(conn);
                    if !will_retry {
                        return None;
                    }
                    self.note(&format!(
                        "asking again with ATRN in {:.1} s, on a new connection",
                        delay.as_secs_f64()
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.turn.stop.cancelled() => return None,
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    deferrals += 1;
                }
                Answer::Closing => {
                    self.record(reply.code, &text, DomainOutcome::Deferred, false);
                    self.keep(conn);
                    return Some(IspError::ServiceClosing { host, text });
                }
                Answer::Refused(outcome) => {
                    self.record(reply.code, &text, outcome, false);
                    conn.quit().await;
                    self.keep(conn);
                    return (outcome == DomainOutcome::Unsupported).then_some(
                        IspError::AtrnUnsupported {
                            host,
                            code: reply.code,
                            text,
                        },
                    );
                }
                Answer::Unexpected => {
                    // The line may or may not have turned: say nothing more on it.
                    self.record(reply.code, &text, DomainOutcome::Rejected, false);
                    self.keep(conn);
                    return Some(IspError::Protocol {
                        host,
                        step: "ATRN".into(),
                        reason: format!("{} is not a reply ATRN may get", reply),
                    });
                }
            }
        }
        self.note(&format!(
            "stopped after {MAX_ATRN} ATRN commands in one fetch; fetch again for the rest"
        ));
        None
    }

    /// After `250`: the line is turned; serves the ISP's deliveries on it. Returns how many
    /// of the stored messages this fetch had not seen before (a message without a Message-ID
    /// counts as new), and how the turn ended.
    async fn serve(&mut self, conn: Connection) -> (usize, TurnEnd) {
        self.turns += 1;
        let Some((stream, leftover, transcript)) = conn.into_parts() else {
            return (0, TurnEnd::Cut);
        };
        self.transcript.extend(transcript.into_lines());
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(e) => {
                self.note(&format!("the connection is gone at the turn: {e}"));
                return (0, TurnEnd::Cut);
            }
        };
        self.note(&format!(
            "line turned around ({}): serving the ISP's deliveries as the SMTP server",
            if stream.is_tls() {
                "inside TLS"
            } else {
                "plain"
            }
        ));
        let report = self.turn.serve(stream, leftover, peer).await;
        let mut fresh = 0;
        for id in &report.stored {
            match id {
                Some(id) if !self.seen.insert(id.clone()) => {}
                _ => fresh += 1,
            }
        }
        self.note(&format!(
            "the turn ended ({}): {} message(s) stored, {fresh} new to this fetch",
            match report.end {
                TurnEnd::Quit => "the ISP said QUIT",
                TurnEnd::Closed => "closed by Mailcall with 421",
                TurnEnd::Cut => "the connection ended without QUIT",
            },
            report.stored.len()
        ));
        (fresh, report.end)
    }

    /// Sets every domain's reply and outcome, and publishes the reply.
    fn record(&mut self, code: u16, text: &str, outcome: DomainOutcome, will_retry: bool) {
        self.set(code, text, outcome);
        self.publish(code, text, outcome, will_retry);
    }

    /// Sets every domain's reply and outcome.
    fn set(&mut self, code: u16, text: &str, outcome: DomainOutcome) {
        for d in &mut self.domains {
            d.code = Some(code);
            d.text = text.to_owned();
            d.outcome = outcome;
        }
    }

    /// Publishes one ATRN reply.
    fn publish(&self, code: u16, text: &str, outcome: DomainOutcome, will_retry: bool) {
        self.events.emit(Event::AtrnReply {
            account: self.account.name.clone(),
            domains: self.domains.iter().map(|d| d.domain.clone()).collect(),
            code,
            text: text.to_owned(),
            outcome,
            will_retry,
        });
    }

    /// Takes the connection's transcript into the account's.
    fn keep(&mut self, conn: Connection) {
        if let Some((_, _, t)) = conn.into_parts() {
            self.transcript.extend(t.into_lines());
        }
    }

    fn note(&mut self, text: &str) {
        let mut t = Transcript::default();
        t.note(text);
        self.transcript.extend(t.into_lines());
    }
}
