//! The runner's workers: one connection to one LAN server (LMTP or SMTP) each, taking that
//! server's due messages one after another; for each message, one delivery attempt and what
//! the server's replies mean per recipient (delivered, refused for good, deferred — and, after
//! the whole message went out, "maybe delivered"), written to the spool before it is reported
//! to the [scheduler](super::scheduler).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Dispatch, Unit};
use super::RunnerOptions;
use crate::client::transfer::{self, Envelope};
use crate::client::{self, Address, Hello, IspError, Server};
use crate::config::ConfigKey;
use crate::hint::{AccountField, Problem, Setting};
use crate::history::{EndReason, RecordKind, SessionRecord, Trigger};
use crate::outgoing::smarthost::{self, Smarthost};
use crate::report::{HandOverOutcome, HandOverReport, RecipientOutcome, TranscriptLine};
use crate::routing::{Destination, Target};
use crate::spool::{Entry, Headline, RecipientState, Spool, State, Status};

/// Transcript lines kept in a hand-over record that had problems.
const TRANSCRIPT_LINES: usize = 300;
/// How long a worker keeps its connection open for more mail once its server's queue is empty
/// (a drain from the ISP arrives a message at a time; Postfix caches connections likewise).
const LINGER: Duration = Duration::from_secs(2);

/// What a worker tells the scheduler.
pub(super) enum Report {
    /// A unit is through: its new state is on disk (or the entry is gone).
    Done {
        name: String,
        state: State,
        removed: bool,
        report: HandOverReport,
        /// The recipients (envelope indices) this attempt deferred.
        deferred: Vec<usize>,
    },
    /// A worker reached its server.
    Reached(Target),
    /// A worker could not reach its server, or lost it.
    Unreachable(Target, String),
    /// A worker ended; its record goes to the history.
    Finished(Box<SessionRecord>),
}

/// What one recipient of a hand-over got.
enum Answer {
    /// The server's reply to it.
    Replied(client::reply::Reply),
    /// No reply, and why (the spool file unreadable, the connection lost), in words for the
    /// message's state.
    Unanswered(String),
}

/// What one attempt meant for one recipient, whatever the server (LAN or smarthost).
enum Verdict {
    /// The server took it.
    Delivered,
    /// Refused for good.
    Refused,
    /// Not this time.
    Deferred {
        /// The whole message went out before the answer was lost: it may have been taken.
        maybe_sent: bool,
        /// The server could not be reached (its coming back makes the recipient due).
        unreachable: bool,
    },
}

/// One connection to one server, taking that server's due messages one after another.
pub(super) struct Worker {
    pub(super) target: Target,
    pub(super) dispatch: Arc<Mutex<Dispatch>>,
    /// Wakes it while it lingers: units were pushed.
    pub(super) pushed: Arc<tokio::sync::Notify>,
    pub(super) spool: Spool,
    pub(super) options: Arc<RunnerOptions>,
    pub(super) reports: mpsc::UnboundedSender<Report>,
    pub(super) stop: CancellationToken,
}

/// The client side of a target: where, LMTP or SMTP, and how secured.
pub fn server_of(target: &Target, helo: &str) -> Server {
    let (address, hello) = match &target.destination {
        Destination::Lmtp(address) => (address.clone(), Hello::Lhlo),
        Destination::Smtp { host, port } => (
            Address::Tcp {
                host: host.clone(),
                port: *port,
            },
            Hello::Ehlo,
        ),
        // Maildir targets never reach the spool, and outgoing mail goes through lettre
        // ([`Worker::run`] never asks for it); an address that refuses is the safe answer.
        Destination::Maildir(p) => (Address::Unix(p.clone()), Hello::Lhlo),
        Destination::Smarthost(_) => (Address::Unix(std::path::PathBuf::new()), Hello::Ehlo),
    };
    Server {
        address,
        hello,
        security: target.security,
        ca_file: target.ca_file.clone(),
        helo: helo.to_owned(),
    }
}

/// A connection failure in words for a LAN server (the client's own words are the ISP's).
pub fn describe(e: &IspError) -> String {
    match e {
        IspError::Connect { host, port, reason } if *port == 0 => {
            format!("cannot connect to {host}: {reason}")
        }
        IspError::Connect { host, port, reason } => {
            format!("cannot connect to {host}:{port}: {reason}")
        }
        IspError::Timeout { host, step, secs } => {
            format!("no answer from {host} within {secs:.0} s, waiting for {step}")
        }
        IspError::ConnectionLost { host, step, reason } => {
            format!("the connection to {host} was lost during {step} ({reason})")
        }
        IspError::ServiceClosing { host, text } => {
            format!("{host} is closing the connection (421 {text})")
        }
        IspError::Protocol { host, step, reason } => {
            format!("unexpected answer from {host} during {step}: {reason}")
        }
        IspError::Certificate { host, reason } => format!(
            "the TLS certificate of {host} could not be verified ({reason}); give the route the CA file of the server's certificate issuer"
        ),
        IspError::StarttlsNotOffered { host } => {
            format!("{host} does not offer STARTTLS, and Mailcall never falls back to plain text; set the route's security to none, or enable TLS on the server")
        }
        other => other.to_string(),
    }
}

fn last_lines(lines: Vec<TranscriptLine>) -> Vec<TranscriptLine> {
    let skip = lines.len().saturating_sub(TRANSCRIPT_LINES);
    lines.into_iter().skip(skip).collect()
}

impl Worker {
    /// Signs this worker off its server (it takes no more units).
    fn sign_off(&self) {
        self.dispatch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leave(&self.target);
    }

    /// The next unit for this worker's server, waiting up to [`LINGER`] for one; `None`
    /// (signed off) when none came or the runner stops.
    async fn next_unit(&self) -> Option<Unit> {
        let lock = || self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = tokio::time::Instant::now() + LINGER;
        loop {
            let notified = self.pushed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push between the look and the wait is not missed.
            notified.as_mut().enable();
            if let Some(unit) = lock().take(&self.target, false) {
                return Some(unit);
            }
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut notified => {}
            }
        }
        lock().take(&self.target, true)
    }

    /// Connects, hands over until its server's queue stays empty (or it stops, or the
    /// connection breaks), and reports a record of it.
    pub(super) async fn run(self) {
        if let Some(account) = self.target.outgoing_account() {
            let account = account.to_owned();
            return self.run_outgoing(&account).await;
        }
        let started = Utc::now();
        let server = server_of(&self.target, &self.options.host);
        let target_text = self.target.to_string();
        let mut record = SessionRecord::new(
            RecordKind::HandOver,
            Trigger::Queue,
            started,
            EndReason::HandedOver,
        );
        let (mut conn, info) = match client::open_server(&server, &self.options.client).await {
            Ok(opened) => opened,
            Err(e) => {
                self.sign_off();
                let why = describe(&e.error);
                let _ = self
                    .reports
                    .send(Report::Unreachable(self.target.clone(), why.clone()));
                record.ended_because = EndReason::ServerUnreachable;
                record.errors.push(
                    Problem::new(format!("cannot hand mail on to {target_text}: {why}"))
                        .fixed_by(Some(Setting::config(ConfigKey::Routes))),
                );
                record.transcripts = vec![(target_text, e.transcript.into_lines())];
                record.finished_at = Utc::now();
                let _ = self.reports.send(Report::Finished(Box::new(record)));
                return;
            }
        };
        let _ = self.reports.send(Report::Reached(self.target.clone()));
        let mut broken = None;
        let mut troubled = false;
        loop {
            if self.stop.is_cancelled() {
                self.sign_off();
                record.ended_because = EndReason::Cancelled;
                break;
            }
            let Some(unit) = self.next_unit().await else {
                break;
            };
            let (done, error) = self.hand_over(&mut conn, &info, server.hello, unit).await;
            if let Report::Done { report, .. } = &done {
                troubled |= report
                    .recipients
                    .iter()
                    .any(|r| r.outcome != HandOverOutcome::Delivered);
                record.handovers.push(report.clone());
            }
            let _ = self.reports.send(done);
            if let Some(e) = error {
                self.sign_off();
                broken = Some(e);
                break;
            }
        }
        match &broken {
            Some(why) => {
                let _ = self
                    .reports
                    .send(Report::Unreachable(self.target.clone(), why.clone()));
                record.ended_because = EndReason::ServerUnreachable;
                record.errors.push(
                    Problem::new(format!("the hand-over to {target_text} broke off: {why}"))
                        .fixed_by(Some(Setting::config(ConfigKey::Routes))),
                );
            }
            None => conn.quit().await,
        }
        if broken.is_some() || troubled {
            let lines = conn
                .into_parts()
                .map(|(_, _, t)| t.into_lines())
                .unwrap_or_default();
            record.transcripts = vec![(target_text, last_lines(lines))];
        }
        record.finished_at = Utc::now();
        let _ = self.reports.send(Report::Finished(Box::new(record)));
    }

    /// Hands one message over (LMTP: a transaction per recipient, so the server writes
    /// `Delivered-To` into each copy; SMTP: one for all), writes the outcome to the spool, and
    /// says what happened; the error is set when the connection is unusable afterwards.
    async fn hand_over(
        &self,
        conn: &mut client::Connection,
        info: &client::ServerInfo,
        hello: Hello,
        unit: Unit,
    ) -> (Report, Option<String>) {
        let Unit {
            mut entry,
            recipients,
        } = unit;
        // Read now: the file is gone once every recipient is delivered.
        let headline = self.spool.headline(&entry);
        let addresses: Vec<String> = recipients
            .iter()
            .map(|&i| entry.envelope.recipients[i].address.clone())
            .collect();
        let batches: Vec<Vec<usize>> = match hello {
            Hello::Lhlo => recipients.iter().map(|&i| vec![i]).collect(),
            Hello::Ehlo => vec![recipients.clone()],
        };
        let mut replies: HashMap<usize, Answer> = HashMap::new();
        let mut sent_whole: Vec<usize> = Vec::new();
        let mut broken = None;
        for batch in batches {
            if broken.is_some() {
                break;
            }
            let list: Vec<String> = batch
                .iter()
                .map(|&i| entry.envelope.recipients[i].address.clone())
                .collect();
            let mut data = match self.spool.data(&entry).await {
                Ok(d) => d,
                Err(e) => {
                    // The spool file is unreadable: nothing can be sent; keep it queued.
                    let why = format!("cannot read the message from the spool: {e}");
                    for &i in &batch {
                        replies.insert(i, Answer::Unanswered(why.clone()));
                    }
                    continue;
                }
            };
            let envelope = Envelope {
                sender: &entry.envelope.sender,
                recipients: &list,
                size: entry.size,
            };
            let t = transfer::send(conn, hello, info, &envelope, &mut data).await;
            if t.data_sent {
                sent_whole.extend(&batch);
            }
            let why = t.error.as_ref().map(describe);
            for (&i, reply) in batch.iter().zip(t.replies) {
                match reply {
                    Some(r) => replies.insert(i, Answer::Replied(r)),
                    None => replies.insert(
                        i,
                        Answer::Unanswered(why.clone().unwrap_or_else(|| "no reply".to_string())),
                    ),
                };
            }
            broken = why;
        }
        let now = Utc::now();
        let mut outcomes = Vec::new();
        let mut durable = false;
        for (&i, address) in recipients.iter().zip(&addresses) {
            let (verdict, text) = match replies.remove(&i) {
                Some(Answer::Replied(r)) if r.is_positive() => (Verdict::Delivered, r.to_string()),
                Some(Answer::Replied(r)) if r.code >= 500 => (Verdict::Refused, r.to_string()),
                other => {
                    // A 4xx other than 421 says "not stored"; a 421 or silence does not: after
                    // the whole message went out, tried again it may be a second copy, never
                    // a lost one.
                    let unsure = !matches!(&other, Some(Answer::Replied(r)) if r.code != 421);
                    let maybe_sent = unsure && sent_whole.contains(&i);
                    match other {
                        Some(Answer::Replied(r)) => (
                            Verdict::Deferred {
                                maybe_sent,
                                unreachable: false,
                            },
                            r.to_string(),
                        ),
                        Some(Answer::Unanswered(why)) => (
                            Verdict::Deferred {
                                maybe_sent,
                                unreachable: true,
                            },
                            why,
                        ),
                        None => (
                            Verdict::Deferred {
                                maybe_sent,
                                unreachable: false,
                            },
                            "not sent".to_string(),
                        ),
                    }
                }
            };
            let s = &mut entry.state.recipients[i];
            let (outcome, reply, must_last) = self.settle(s, verdict, text, now);
            durable |= must_last;
            outcomes.push(RecipientOutcome {
                address: address.clone(),
                outcome,
                reply,
            });
        }
        (
            self.record(entry, &recipients, headline, outcomes, durable, now),
            broken,
        )
    }

    /// Applies one attempt's `verdict` (and the server's words) to a recipient's state: the
    /// outcome to report, the words kept, and whether the state must be written durably.
    fn settle(
        &self,
        s: &mut RecipientState,
        verdict: Verdict,
        mut text: String,
        now: chrono::DateTime<Utc>,
    ) -> (HandOverOutcome, String, bool) {
        s.last_attempt = Some(now);
        s.attempts += 1;
        s.unreachable = false;
        let (outcome, durable) = match verdict {
            Verdict::Delivered => {
                s.status = Status::Delivered;
                s.next_attempt = None;
                (HandOverOutcome::Delivered, true)
            }
            Verdict::Refused => {
                s.status = Status::Failed;
                s.next_attempt = None;
                (HandOverOutcome::Failed, true)
            }
            Verdict::Deferred {
                maybe_sent,
                unreachable,
            } => {
                s.unreachable = unreachable;
                if maybe_sent {
                    s.maybe_delivered = true;
                    text.push_str(
                        " (after the whole message was sent: the server may have stored it)",
                    );
                }
                let next = now + self.options.backoff(&self.target, s.attempts);
                s.next_attempt = Some(next);
                (
                    HandOverOutcome::Deferred {
                        attempts: s.attempts,
                        next_attempt: next,
                    },
                    false,
                )
            }
        };
        s.reply = Some(text.clone());
        (outcome, text, durable)
    }

    /// Writes a unit's outcome to the spool (the entry removed once every recipient is done;
    /// `durable` for outcomes that must not be repeated) and says it for the scheduler.
    fn record(
        &self,
        entry: Entry,
        tried: &[usize],
        headline: Headline,
        recipients: Vec<RecipientOutcome>,
        durable: bool,
        at: chrono::DateTime<Utc>,
    ) -> Report {
        let removed = entry.state.is_done();
        let saved = if removed {
            self.spool.remove(&entry.name)
        } else {
            self.spool.save_state(&entry.name, &entry.state, durable)
        };
        if let Err(e) = saved {
            tracing::error!("spool: cannot record the outcome for {}: {e}", entry.id);
        }
        let report = HandOverReport {
            id: entry.id.clone(),
            target: self.target.to_string(),
            sender: entry.envelope.sender.clone(),
            message_id: headline.message_id,
            subject: headline.subject,
            recipients,
            at,
        };
        let deferred = tried
            .iter()
            .copied()
            .filter(|&i| entry.state.recipients.get(i).map(|s| s.status) == Some(Status::Queued))
            .collect();
        Report::Done {
            name: entry.name,
            state: entry.state,
            removed,
            report,
            deferred,
        }
    }

    /// The outgoing server of `account`, ready to send (lettre connects at the first message).
    async fn smarthost(&self, account: &str) -> Result<Smarthost, String> {
        let accounts = self.options.accounts.as_ref().map(|rx| rx.borrow().clone());
        let Some(found) =
            accounts.and_then(|list| list.iter().find(|a| a.name == account).cloned())
        else {
            return Err(format!(
                "there is no account {account} (or its keyring entry cannot be read); add it again with its outgoing server, or delete the message from the queue"
            ));
        };
        let settings = smarthost::Settings::of(&found, &self.options.client)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("account {account} has no outgoing server: give it one, or delete the message from the queue")
            })?;
        Smarthost::new(&settings).map_err(|e| e.to_string())
    }

    /// Sends the outgoing messages queued for one account's outgoing server, one after another
    /// (as [`Self::run`] hands over to a LAN server), and reports a record of it.
    async fn run_outgoing(self, account: &str) {
        let started = Utc::now();
        let target_text = self.target.to_string();
        let mut record = SessionRecord::new(
            RecordKind::HandOver,
            Trigger::Queue,
            started,
            EndReason::HandedOver,
        );
        let fix = Setting::account(account, AccountField::OutgoingHost);
        let host = match self.smarthost(account).await {
            Ok(host) => host,
            Err(why) => {
                self.sign_off();
                let _ = self
                    .reports
                    .send(Report::Unreachable(self.target.clone(), why.clone()));
                record.ended_because = EndReason::ServerUnreachable;
                record.errors.push(
                    Problem::new(format!("cannot send through {target_text}: {why}"))
                        .fixed_by(Some(fix)),
                );
                record.finished_at = Utc::now();
                let _ = self.reports.send(Report::Finished(Box::new(record)));
                return;
            }
        };
        let mut reached = false;
        let mut broken = None;
        loop {
            if self.stop.is_cancelled() {
                self.sign_off();
                record.ended_because = EndReason::Cancelled;
                break;
            }
            let Some(unit) = self.next_unit().await else {
                break;
            };
            let (done, unreachable) = self.send_one(&host, unit).await;
            if let Report::Done { report, .. } = &done {
                record.handovers.push(report.clone());
            }
            let _ = self.reports.send(done);
            if let Some(why) = unreachable {
                self.sign_off();
                broken = Some(why);
                break;
            }
            if !reached {
                reached = true;
                let _ = self.reports.send(Report::Reached(self.target.clone()));
            }
        }
        host.close().await;
        // The history shows the conversation (the login redacted, the last lines of a long
        // flush), whatever became of the mail.
        let transcript = host.transcript();
        if !transcript.is_empty() {
            record.transcripts = vec![(target_text.clone(), transcript)];
        }
        if let Some(why) = broken {
            let _ = self
                .reports
                .send(Report::Unreachable(self.target.clone(), why.clone()));
            record.ended_because = EndReason::ServerUnreachable;
            record.errors.push(
                Problem::new(format!("cannot send through {target_text}: {why}"))
                    .fixed_by(Some(fix)),
            );
        }
        record.finished_at = Utc::now();
        let _ = self.reports.send(Report::Finished(Box::new(record)));
    }

    /// Sends one message, writes each recipient's outcome to the spool (durably for sent and
    /// refused) and says what happened; the error is set when the server could not be reached.
    async fn send_one(&self, host: &Smarthost, unit: Unit) -> (Report, Option<String>) {
        let Unit {
            mut entry,
            recipients,
        } = unit;
        let headline = self.spool.headline(&entry);
        let addresses: Vec<String> = recipients
            .iter()
            .map(|&i| entry.envelope.recipients[i].address.clone())
            .collect();
        let message = self.spool.read_message(&entry);
        let outcomes = match &message {
            Ok(data) => host.send(&entry.envelope.sender, &addresses, data).await,
            Err(e) => {
                let reply = format!("cannot read the message from the spool: {e}");
                vec![
                    smarthost::Outcome::Deferred {
                        reply,
                        maybe_sent: false,
                        reached: true,
                    };
                    addresses.len()
                ]
            }
        };
        let unreachable = outcomes.iter().find_map(|o| match o {
            smarthost::Outcome::Deferred {
                reply,
                reached: false,
                ..
            } => Some(reply.clone()),
            _ => None,
        });
        let now = Utc::now();
        let mut durable = false;
        let mut results = Vec::new();
        for ((&i, address), outcome) in recipients.iter().zip(&addresses).zip(outcomes) {
            let (verdict, text) = match outcome {
                smarthost::Outcome::Sent { reply } => (Verdict::Delivered, reply),
                smarthost::Outcome::Refused { reply } => (Verdict::Refused, reply),
                smarthost::Outcome::Deferred {
                    reply,
                    maybe_sent,
                    reached,
                } => (
                    Verdict::Deferred {
                        maybe_sent,
                        unreachable: !reached,
                    },
                    reply,
                ),
            };
            let s = &mut entry.state.recipients[i];
            let (outcome, reply, must_last) = self.settle(s, verdict, text, now);
            durable |= must_last;
            results.push(RecipientOutcome {
                address: address.clone(),
                outcome,
                reply,
            });
        }
        if let Ok(data) = &message {
            self.report_refusals(&mut entry, &headline, &mut results, data, host)
                .await;
        }
        (
            self.record(entry, &recipients, headline, results, durable, now),
            unreachable,
        )
    }

    /// A recipient the outgoing server refused for good: the sender (a local user) gets one
    /// delivery report, through the routes of incoming mail, and the recipient is done. A
    /// message from the null sender gets none (a report on a report would loop); a report that
    /// cannot be stored leaves the recipient held in the queue, so nothing is lost.
    async fn report_refusals(
        &self,
        entry: &mut Entry,
        headline: &Headline,
        results: &mut [RecipientOutcome],
        message: &[u8],
        host: &Smarthost,
    ) {
        let refused: Vec<usize> = (0..entry.envelope.recipients.len())
            .filter(|&i| {
                let address = &entry.envelope.recipients[i].address;
                entry.state.recipients[i].status == Status::Failed
                    && results
                        .iter()
                        .any(|o| &o.address == address && o.outcome == HandOverOutcome::Failed)
            })
            .collect();
        if refused.is_empty() {
            return;
        }
        let sender = entry.envelope.sender.clone();
        let note = if sender.is_empty() {
            Some(" (no report: the message has the null sender)".to_string())
        } else if let Some(router) = &self.options.router {
            let report = crate::spool::dsn::build(
                &crate::spool::dsn::Bounce {
                    host: &self.options.host,
                    entry,
                    headline,
                    recipients: &refused,
                    reason: &format!("The outgoing server {} refused them.", host.address()),
                    at: Utc::now(),
                    notice: crate::spool::dsn::Notice::Failed,
                },
                message,
            );
            match crate::spool::dsn::deliver_to_sender(router, &self.options.host, &sender, &report)
                .await
            {
                Ok(()) => Some(format!(" (a delivery report went to {sender})")),
                Err(e) => {
                    tracing::error!(
                        "cannot store the delivery report for {} to {sender}: {e}; the refused recipients stay held in the queue",
                        entry.id
                    );
                    None
                }
            }
        } else {
            None
        };
        let Some(note) = note else {
            return;
        };
        for &i in &refused {
            let address = entry.envelope.recipients[i].address.clone();
            let state = &mut entry.state.recipients[i];
            state.status = Status::Bounced;
            if let Some(r) = state.reply.as_mut() {
                r.push_str(&note);
            }
            if let Some(o) = results.iter_mut().find(|o| o.address == address) {
                o.reply.push_str(&note);
            }
        }
    }
}
