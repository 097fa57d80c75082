//! Typed events a fetch session publishes; any front end may subscribe.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::account::FetchMode;
use crate::hint::Problem;
use crate::history::{SessionRecord, Trigger};
use crate::report::{DomainOutcome, HandOverReport, MessageInfo};

/// Something that happened in a fetch session, in the order it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// The listener is up (when an ETRN account needs it) and ETRN/ATRN is about to be sent.
    SessionStarted {
        /// Session id (also in the history).
        id: String,
        /// What started it.
        trigger: Trigger,
        /// The accounts asked.
        accounts: Vec<String>,
        /// Where the listener listens; `None` when no listener runs (ODMR accounts only).
        #[serde(default)]
        listen: Option<SocketAddr>,
    },
    /// The ISP answered one ETRN (each retry too).
    EtrnReply {
        /// The account.
        account: String,
        /// The ETRN argument.
        domain: String,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
        /// What it means.
        outcome: DomainOutcome,
        /// Whether another attempt follows (4xx with retries left).
        will_retry: bool,
    },
    /// The ISP answered one ATRN (ODMR, RFC 2645), which names all of an account's domains.
    AtrnReply {
        /// The account.
        account: String,
        /// The domains in the ATRN list.
        domains: Vec<String>,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
        /// What it means for each of the domains.
        outcome: DomainOutcome,
        /// Whether another ATRN follows, on a new connection (a 4xx with retries left).
        will_retry: bool,
    },
    /// The listener had turned away the ISP a fetch asked (a 4xx at connect or in a session), so
    /// mail it tried to deliver stayed there: now that its connections have closed, the fetch
    /// asks these accounts again (ETRN).
    AskingAgain {
        /// The accounts asked again.
        accounts: Vec<String>,
        /// How many times the listener turned the ISP away since it was last asked.
        turned_away: u32,
        /// The last of those replies.
        reply: String,
    },
    /// The ISP connected to the listener to deliver.
    Connected {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A message was stored durably and acknowledged.
    MessageStored(Box<MessageInfo>),
    /// Something went wrong: what, what to do, and the setting that fixes it.
    Error(Problem),
    /// The session ended; the record is what went into the history.
    SessionFinished(Box<SessionRecord>),
    /// The spool handed a message to a LAN server, or tried to: per recipient, delivered,
    /// deferred (retried by itself) or refused (held in the queue).
    HandOver(Box<HandOverReport>),
    /// A record went into the history outside a fetch session: a LAN server's hand-overs, once
    /// the spool's worker for it is done (a History view reloads on it).
    Recorded(Box<SessionRecord>),
    /// How much waits in the spool now (for a tray badge); sent when it changes.
    QueueChanged {
        /// Recipients waiting to be handed over (retried by themselves).
        queued: usize,
        /// Recipients a server refused, held until retried, bounced or deleted.
        failed: usize,
    },
}

impl Event {
    /// One line for people (what the CLI prints as it happens and the daemon logs); `None` for
    /// the end of a session, which front ends report with [`SessionRecord::summary`], and for a
    /// record of hand-overs, whose every step had its own line.
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Event::SessionStarted {
                trigger, accounts, ..
            } => format!("fetch started ({trigger}): {}", accounts.join(", ")),
            Event::EtrnReply {
                account,
                domain,
                code,
                text,
                outcome,
                will_retry,
            } => format!(
                "ETRN {domain} ({account}): {code} {text} - {}{}",
                outcome.describe(domain),
                if *will_retry { " (will retry)" } else { "" }
            ),
            Event::AtrnReply {
                account,
                domains,
                code,
                text,
                outcome,
                will_retry,
            } => format!(
                "ATRN {} ({account}): {code} {text} - {}{}",
                domains.join(","),
                outcome.describe_for(FetchMode::Odmr, &domains.join(", ")),
                if *will_retry { " (will ask again)" } else { "" }
            ),
            Event::AskingAgain {
                accounts,
                turned_away,
                reply,
            } => format!(
                "the listener turned the ISP away {turned_away} time(s) (last: {reply}), so it \
                 still holds that mail: asking {} again now that its connections have closed",
                accounts.join(", ")
            ),
            Event::Connected { peer } => format!("connection from {peer}"),
            Event::MessageStored(m) => format!("stored: {m}"),
            Event::Error(p) => format!("error: {p}"),
            Event::HandOver(h) if h.is_outgoing() => format!("sent: {h}"),
            Event::HandOver(h) => format!("handed on: {h}"),
            Event::QueueChanged { queued, failed } => {
                format!("queue: {queued} waiting, {failed} refused")
            }
            Event::SessionFinished(_) | Event::Recorded(_) => return None,
        })
    }
}

/// The next event on `rx`, or `None` once `stop` is cancelled or the channel is closed. What a
/// slow receiver missed is skipped: a missed progress event only makes a count lag, and the
/// session's record (`SessionFinished`) sets it right.
pub async fn next_until(
    rx: &mut broadcast::Receiver<Event>,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<Event> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            ev = rx.recv() => match ev {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        }
    }
}

/// The sending side of the event channel; cheap to clone, never blocks, fine with no subscriber.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: broadcast::Sender<Event>,
}

impl EventSink {
    /// A new channel keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        EventSink { tx }
    }

    /// Publishes an event to whoever listens right now.
    pub fn emit(&self, event: Event) {
        // No subscriber is fine: the core never depends on who listens.
        let _ = self.tx.send(event);
    }

    /// A new subscription, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventSink {
    fn default() -> Self {
        EventSink::new(1024)
    }
}
