//! The fetch session: listener up (when an ETRN account needs it) → ETRN or ATRN to each
//! account → receive until idle (ETRN) or until the turned connections end (ODMR) → ETRN once
//! more if the listener turned the asked ISP away meanwhile → summary + history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::account::{Account, EtrnForm, FetchMode};
use crate::client::ClientSettings;
use crate::config::ConfigKey;
use crate::etrn;
use crate::event::{Event, EventSink};
use crate::hint::{Problem, Setting};
use crate::history::{EndReason, History, RecordKind, SessionRecord, Trigger};
use crate::listener::{AskScope, ListenerEvent, Reception};
use crate::odmr::{self, Turnaround};
use crate::report::{AccountResult, DomainOutcome, MessageInfo, TranscriptLine, Unclaimed};

/// How long ODMR turns may take to wind down when a fetch ends early (max wait, shutdown): a
/// message in DATA finishes, an idle turn gets 421 at once. As the listener's drain at shutdown.
const TURN_DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// How many times a fetch sends the ETRN again after the listener turned the asked ISP away:
/// once. A second refusal is the fetch's (transient) failure, not a loop.
const ASK_AGAIN_LIMIT: u32 = 1;
/// How long after the ISP delivered and closed its last connection a fetch still waits for a
/// new one before it ends (shorter than the idle timeout, which stays the upper bound).
pub const FINISHED_GRACE: Duration = Duration::from_secs(5);
/// How many of a fetch's stored messages its record lists one by one (sender, recipients,
/// headers, file): the first this many. Every count covers them all, so a drain of 20 000 keeps
/// no more in memory, nor in its history line, than one of 500.
pub const LISTED_MESSAGES: usize = 500;

/// Where a fetch's deliveries arrive.
pub struct Receiving<'a> {
    /// Where the listener listens; `None` when none runs (the service needs one only for ETRN
    /// accounts).
    pub listen: Option<SocketAddr>,
    /// What the listener's sessions share; ODMR's turned connections are served with it too.
    pub reception: Arc<Reception>,
    /// What the listener's sessions and the ODMR turns report (forwarded by the service).
    pub deliveries: &'a mut mpsc::UnboundedReceiver<ListenerEvent>,
}

/// How a fetch session waits and asks.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// What started it, for the history.
    pub trigger: Trigger,
    /// Quiet time after the last ETRN reply / connection / message that ends the session.
    pub idle_timeout: Duration,
    /// Upper bound on the whole session.
    pub max_wait: Duration,
    /// The ETRN client's timeouts and retries.
    pub client: ClientSettings,
    /// Where to append the session record; `None` keeps no history.
    pub history: Option<History>,
}

/// Runs one fetch session: asks `accounts` for their mail — ETRN for ETRN accounts (the ISP then
/// delivers to the listener, which must be up before this runs), ATRN for ODMR accounts (the ISP
/// delivers on the same connection, served with the same reception) — and counts what is
/// reported on `receiving.deliveries` until the ODMR turns ended and the listener has been idle
/// long enough. Both belong to the caller (see [`crate::service`]). Cancelling `shutdown` ends
/// the session early, keeping what was stored.
pub async fn run(
    accounts: Vec<Account>,
    receiving: Receiving<'_>,
    options: &FetchOptions,
    attempt: u32,
    events: &EventSink,
    shutdown: CancellationToken,
) -> SessionRecord {
    let Receiving {
        listen,
        reception,
        deliveries,
    } = receiving;
    let started_at = Utc::now();
    let id = SessionRecord::new_id(started_at);
    let mut errors = Vec::new();

    events.emit(Event::SessionStarted {
        id: id.clone(),
        trigger: options.trigger,
        accounts: accounts.iter().map(|a| a.name.clone()).collect(),
        listen,
    });

    // The turns stop with the service (its reception's token) or when this session ends early.
    let turns_stop = reception.shutdown.child_token();
    // The addresses our ETRN clients connect to: the listener lets them past the per-peer limit
    // until this session ends (the scope is dropped with it).
    let asked = Arc::new(reception.asked().scope());
    let turnaround = Turnaround {
        reception,
        idle_timeout: options.idle_timeout,
        stop: turns_stop.clone(),
    };
    let mut tasks = JoinSet::new();
    let mut etrn_aborts = Vec::new();
    for account in &accounts {
        match account.mode {
            FetchMode::Etrn if listen.is_none() => errors.push(
                Problem::new(
                    "this account uses ETRN, but no listener runs, so the ISP could not deliver; nothing was asked. Fix the listen setting and start Mailcall again",
                )
                .for_account(&account.name)
                .fixed_by(Some(Setting::config(ConfigKey::Listen))),
            ),
            FetchMode::Etrn => etrn_aborts.push(ask_etrn(&mut tasks, account, options, events, &asked)),
            FetchMode::Odmr => {
                let account = account.clone();
                let client = options.client.clone();
                let events = events.clone();
                let turnaround = turnaround.clone();
                tasks.spawn(async move {
                    odmr::fetch_account(&account, &client, &turnaround, &events).await
                });
            }
        }
    }

    let deadline = Instant::now() + options.max_wait;
    let mut results: Vec<AccountResult> = Vec::new();
    // Transcripts of ETRN sessions a later one (asking again) replaced in `results`.
    let mut earlier_transcripts = Vec::new();
    let mut arrivals = Arrivals::new(&accounts);
    let mut active = Connections::default();
    let mut last_activity = Instant::now();
    let mut asked_all = tasks.is_empty();
    // The listener turning away the ISP asked, since it was last asked and in all.
    let mut refused = Refusals::default();
    // Recipients the asked ISP offered in domains no account takes (put off), by domain.
    let mut unclaimed = UnclaimedCounts::default();
    let mut asked_again = 0u32;

    let ended_because = loop {
        let mut ending = None;
        if asked_all && !active.busy(&asked) {
            ending = match expectation(&results) {
                Expectation::Nothing if turned(&results) => Some(EndReason::DeliveriesEnded),
                Expectation::Nothing => Some(EndReason::NothingToWaitFor),
                Expectation::Count(n) if arrivals.round_etrn >= n => {
                    Some(EndReason::ExpectedArrived)
                }
                _ => None,
            };
        }
        let idle_armed = asked_all && !active.busy(&asked);
        // The ISP plainly finished: the ISP asked delivered since it was last asked (a stranger's
        // message is no sign of it) and every delivering connection closed. A short grace for a
        // straggler, then the fetch ends; the idle timeout stays the upper bound.
        let finished =
            idle_armed && FINISHED_GRACE < options.idle_timeout && arrivals.round_from_asked;
        let (idle_at, idle_reason) = if finished {
            (last_activity + FINISHED_GRACE, EndReason::IspFinished)
        } else {
            (last_activity + options.idle_timeout, EndReason::Idle)
        };
        if ending.is_none() {
            ending = tokio::select! {
                _ = shutdown.cancelled() => Some(EndReason::Cancelled),
                _ = tokio::time::sleep_until(deadline) => Some(EndReason::MaxWait),
                _ = tokio::time::sleep_until(idle_at), if idle_armed => Some(idle_reason),
                joined = tasks.join_next(), if !asked_all => {
                    match joined {
                        Some(Ok(result)) => {
                            errors.extend(result.problem());
                            keep(&mut results, &mut earlier_transcripts, result);
                        }
                        Some(Err(e)) => errors.push(Problem::new(format!(
                            "an ETRN or ODMR session ended unexpectedly ({e}); please report this bug"
                        ))),
                        None => {}
                    }
                    asked_all = tasks.is_empty();
                    // The idle clock starts at the last ETRN reply, when the ISP's run begins.
                    last_activity = Instant::now();
                    None
                }
                ev = deliveries.recv() => match ev {
                    Some(ev) => {
                        // Strangers coming and going are no sign of the delivery asked for:
                        // they must not keep the session from ending.
                        if on_listener_event(ev, &mut active, &mut arrivals, (&mut refused, &mut unclaimed, &asked), events) {
                            last_activity = Instant::now();
                        }
                        None
                    }
                    None => {
                        errors.push(Problem::new("the SMTP listener stopped unexpectedly; mail may stay at the ISP — fetch again"));
                        Some(EndReason::ListenerStopped)
                    }
                },
            };
        }
        let Some(reason) = ending else { continue };
        // The ISP's connections have all closed and the session would end: if the listener
        // turned the ISP away meanwhile, that mail is back in its queue — ask for it again.
        let settled = matches!(
            reason,
            EndReason::Idle | EndReason::IspFinished | EndReason::ExpectedArrived
        );
        if settled && refused.since_asked > 0 && asked_again < ASK_AGAIN_LIMIT {
            let names = refused.accounts(&asked);
            let again: Vec<&Account> = accounts
                .iter()
                .filter(|a| a.mode == FetchMode::Etrn && names.contains(&a.name))
                .collect();
            if !again.is_empty() {
                events.emit(Event::AskingAgain {
                    accounts: names,
                    turned_away: refused.since_asked,
                    reply: refused.last.clone(),
                });
                for account in again {
                    etrn_aborts.push(ask_etrn(&mut tasks, account, options, events, &asked));
                }
                refused.asked_again();
                asked_again += 1;
                arrivals.asked_again();
                asked_all = false;
                last_activity = Instant::now();
                continue;
            }
        }
        break reason;
    };

    // ETRN sessions still running (max wait, cancel) are abandoned; their domains count as not
    // sent. ODMR turns still running wind down as the listener's sessions do at shutdown.
    for task in &etrn_aborts {
        task.abort();
    }
    turns_stop.cancel();
    let drained = tokio::time::timeout(TURN_DRAIN_LIMIT, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(result) = joined {
                errors.extend(result.problem());
                keep(&mut results, &mut earlier_transcripts, result);
            }
        }
    })
    .await;
    if drained.is_err() {
        errors.push(Problem::new(
            "an ODMR delivery did not finish in time and was cut; any message without a 250 stays at the ISP",
        ));
        tasks.abort_all();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(result) = joined {
                keep(&mut results, &mut earlier_transcripts, result);
            }
        }
    }

    // Messages acknowledged while we were deciding to stop still belong to this session.
    while let Ok(ev) = deliveries.try_recv() {
        on_listener_event(
            ev,
            &mut active,
            &mut arrivals,
            (&mut refused, &mut unclaimed, &asked),
            events,
        );
    }
    // Mail for domains no account takes stays at the ISP: the user must hear of it, with the fix.
    let unclaimed: Vec<Unclaimed> = unclaimed
        .domains
        .into_iter()
        .map(|(domain, (recipients, peers))| {
            let mut accounts: Vec<String> = Vec::new();
            for name in peers.iter().flat_map(|ip| asked.accounts_at(*ip)) {
                if !accounts.contains(&name) {
                    accounts.push(name);
                }
            }
            Unclaimed {
                domain,
                recipients,
                accounts,
            }
        })
        .collect();
    if let Some(problem) = Unclaimed::problem(&unclaimed) {
        events.emit(Event::Error(problem.clone()));
        errors.push(problem);
    }
    // Turned away since the ISP was last asked: that mail stays there until the next fetch.
    let still_refused = refused.accounts(&asked);
    if refused.since_asked > 0 {
        let problem = refused.problem(asked_again > 0);
        let problem = match still_refused.first() {
            Some(account) => problem.for_account(account),
            None => problem,
        };
        events.emit(Event::Error(problem.clone()));
        errors.push(problem);
    }

    let transcripts = earlier_transcripts
        .into_iter()
        .chain(
            results
                .iter()
                .map(|r| (r.account.clone(), r.transcript.clone())),
        )
        .collect();
    let mut record = finish(
        id,
        options,
        started_at,
        &accounts,
        results,
        arrivals,
        errors,
        ended_because,
    );
    record.unclaimed = unclaimed;
    record.transcripts = transcripts;
    record.attempt = attempt;
    record.turned_away = refused.total;
    record.asked_again = asked_again;
    for account in still_refused {
        if !record.retryable.contains(&account) {
            record.retryable.push(account);
        }
    }
    if let Some(history) = &options.history {
        // Written on a blocking thread: the async loop never waits for the disk.
        if let Err(e) = history.append_async(record.clone()).await {
            let problem = Problem::new(e.to_string());
            events.emit(Event::Error(problem.clone()));
            record.errors.push(problem);
        }
    }
    events.emit(Event::SessionFinished(Box::new(record.clone())));
    record
}

/// Keeps an account's result; one from asking again replaces the earlier one, whose transcript
/// goes to `earlier`.
fn keep(
    results: &mut Vec<AccountResult>,
    earlier: &mut Vec<(String, Vec<TranscriptLine>)>,
    result: AccountResult,
) {
    match results.iter_mut().find(|r| r.account == result.account) {
        Some(slot) => {
            let before = std::mem::replace(slot, result);
            for domain in &mut slot.domains {
                if let Some(d) = before.domains.iter().find(|d| d.domain == domain.domain) {
                    domain.attempts += d.attempts;
                }
            }
            earlier.push((before.account, before.transcript));
        }
        None => results.push(result),
    }
}

/// The listener's open connections during a fetch, and which peers deliver: the ISP addresses
/// the fetch asked, and any peer that stored a message (an ISP may deliver from another address
/// than the one asked). Only theirs keep the session waiting: strangers holding connections
/// must not keep a fetch from ending.
#[derive(Debug, Default)]
struct Connections {
    active: HashMap<SocketAddr, u32>,
    delivering: HashSet<IpAddr>,
}

impl Connections {
    /// Whether `ip` is a peer whose connections count.
    fn counts(&self, ip: IpAddr, asked: &AskScope) -> bool {
        asked.has_asked(ip) || self.delivering.contains(&ip.to_canonical())
    }

    /// Whether a delivering peer has a connection open.
    fn busy(&self, asked: &AskScope) -> bool {
        self.active.keys().any(|peer| self.counts(peer.ip(), asked))
    }
}

/// Counts a listener event into the session (refusals only of the ISP it asked) and republishes
/// it for front ends. Returns whether it was a sign of the delivery (a delivering peer's).
fn on_listener_event(
    ev: ListenerEvent,
    active: &mut Connections,
    arrivals: &mut Arrivals<'_>,
    (refused, unclaimed, asked): (&mut Refusals, &mut UnclaimedCounts, &AskScope),
    events: &EventSink,
) -> bool {
    match ev {
        ListenerEvent::Connected { peer } => {
            *active.active.entry(peer).or_default() += 1;
            events.emit(Event::Connected { peer });
            active.counts(peer.ip(), asked)
        }
        ListenerEvent::Closed { peer } => {
            if let Some(n) = active.active.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    active.active.remove(&peer);
                }
            }
            active.counts(peer.ip(), asked)
        }
        ListenerEvent::Stored(info) => {
            if let Ok(ip) = info.peer.parse::<IpAddr>() {
                active.delivering.insert(ip.to_canonical());
            }
            events.emit(Event::MessageStored(info.clone()));
            arrivals.add(*info, asked);
            true
        }
        ListenerEvent::Refused {
            peer,
            reply,
            at_connect,
        } => {
            let theirs = asked.has_asked(peer.ip());
            if theirs {
                refused.note(peer.ip(), &reply, at_connect);
            }
            theirs
        }
        ListenerEvent::Unclaimed { peer, domain } => {
            let theirs = asked.has_asked(peer.ip());
            if theirs {
                let (n, peers) = unclaimed.domains.entry(domain).or_default();
                *n += 1;
                if !peers.contains(&peer.ip()) {
                    peers.push(peer.ip());
                }
            }
            theirs
        }
    }
}

/// What the asked ISP offered for domains no account takes: per domain, the recipients put off
/// and the ISP addresses that offered them.
#[derive(Debug, Default)]
struct UnclaimedCounts {
    domains: BTreeMap<String, (u32, Vec<IpAddr>)>,
}

/// What a fetch keeps of the messages it stored: every count its session and its record need,
/// taken as each message arrives, and the details of the first [`LISTED_MESSAGES`] only.
struct Arrivals<'a> {
    accounts: &'a [Account],
    listed: Vec<MessageInfo>,
    unlisted: u32,
    /// Per configured domain line (the accounts in order, each one's lines in order): the
    /// messages it brought (see [`Arrivals::add`]).
    lines: Vec<u32>,
    /// Since the ISP was last asked: the messages for the ETRN accounts' domains (what counts
    /// against its `253 n`) …
    round_etrn: u64,
    /// … and whether one came from an address the fetch asked (the ISP's own delivery; a
    /// stranger's message is no sign of it).
    round_from_asked: bool,
}

impl<'a> Arrivals<'a> {
    fn new(accounts: &'a [Account]) -> Self {
        Arrivals {
            accounts,
            listed: Vec::new(),
            unlisted: 0,
            lines: vec![0; accounts.iter().map(|a| a.domains.len()).sum()],
            round_etrn: 0,
            round_from_asked: false,
        }
    }

    /// Counts a stored message in. A domain line counts it when a recipient's domain is its
    /// own. An ETRN account's `#name` line counts what it brought: a queue name need not be a
    /// domain, so the recipients alone cannot say — a message counts there when a recipient's
    /// domain is the name, or when the account's ISP delivered it (from an address this fetch
    /// asked for that account) and no other line of the account takes it.
    fn add(&mut self, info: MessageInfo, asked: &AskScope) {
        let from = info.peer.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if from.is_some_and(|ip| asked.has_asked(ip)) {
            self.round_from_asked = true;
        }
        let domains = || {
            info.recipients
                .iter()
                .filter_map(|r| r.rsplit_once('@').map(|(_, d)| d))
        };
        let etrn = |a: &&Account| a.mode == FetchMode::Etrn;
        if domains().any(|d| self.accounts.iter().filter(etrn).any(|a| a.accepts(d))) {
            self.round_etrn += 1;
        }
        let mut lines = self.lines.iter_mut();
        for account in self.accounts {
            let queue_line = account
                .domains
                .iter()
                .position(|d| d.form == EtrnForm::Queue)
                .filter(|_| account.mode == FetchMode::Etrn);
            for (i, spec) in account.domains.iter().enumerate() {
                let brought = domains().any(|d| spec.accepts(d))
                    || (queue_line == Some(i)
                        && from.is_some_and(|ip| asked.accounts_at(ip).contains(&account.name))
                        && !domains().any(|d| {
                            account
                                .domains
                                .iter()
                                .any(|s| s.form != EtrnForm::Queue && s.accepts(d))
                        }));
                if let Some(n) = lines.next() {
                    *n += u32::from(brought);
                }
            }
        }
        if self.listed.len() < LISTED_MESSAGES {
            self.listed.push(info);
        } else {
            self.unlisted = self.unlisted.saturating_add(1);
        }
    }

    /// The ISP was asked again: what counts against its new reply starts from nothing.
    fn asked_again(&mut self) {
        self.round_etrn = 0;
        self.round_from_asked = false;
    }
}

/// Starts one account's ETRN session in `tasks`; the address it connects to is noted in `asked`.
fn ask_etrn(
    tasks: &mut JoinSet<AccountResult>,
    account: &Account,
    options: &FetchOptions,
    events: &EventSink,
    asked: &Arc<AskScope>,
) -> tokio::task::AbortHandle {
    let account = account.clone();
    let client = options.client.clone();
    let events = events.clone();
    let asked = Arc::clone(asked);
    tasks.spawn(async move { etrn::fetch_account(&account, &client, &events, &asked).await })
}

/// The times the listener turned away the ISP a fetch asked (a 4xx at connect or in a session).
#[derive(Debug, Default)]
struct Refusals {
    /// In the whole session.
    total: u32,
    /// Since the ISP was last asked; the rest below is about these.
    since_asked: u32,
    /// The last reply, for people.
    last: String,
    /// Whether any came at connect (too many connections at once).
    at_connect: bool,
    /// The ISP's addresses that were turned away.
    peers: Vec<IpAddr>,
}

impl Refusals {
    fn note(&mut self, peer: IpAddr, reply: &str, at_connect: bool) {
        self.total += 1;
        self.since_asked += 1;
        reply.clone_into(&mut self.last);
        self.at_connect |= at_connect;
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
        }
    }

    /// The ISP is asked again: what it was refused is its to deliver once more.
    fn asked_again(&mut self) {
        *self = Refusals {
            total: self.total,
            ..Refusals::default()
        };
    }

    /// The accounts asked at the addresses turned away, each once.
    fn accounts(&self, asked: &AskScope) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.peers.iter().flat_map(|ip| asked.accounts_at(*ip)) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The session's problem: mail the ISP tried to deliver stayed there.
    fn problem(&self, asked_again: bool) -> Problem {
        let peers: Vec<String> = self.peers.iter().map(ToString::to_string).collect();
        let when = if asked_again {
            " even after Mailcall asked it again"
        } else {
            ""
        };
        let mut message = format!(
            "the listener turned away the ISP at {} {} time(s){when} (last: {}), so the ISP still holds the mail it tried to deliver then, until the next fetch. Fetch again",
            peers.join(", "),
            self.since_asked,
            self.last
        );
        let fix = self.at_connect.then(|| {
            message.push_str(
                "; if it keeps happening, let the listener take more connections at once",
            );
            Setting::config(ConfigKey::MaxConnections)
        });
        Problem::new(message).fixed_by(fix)
    }
}

/// What the ETRN replies so far tell us to wait for (ODMR deliveries are over when their
/// account's task has ended, so they never keep a session waiting).
#[derive(Debug, PartialEq, Eq)]
enum Expectation {
    /// No reply started a queue run: no mail is coming.
    Nothing,
    /// Every started run announced its count (`253 n`): this many messages in all.
    Count(u64),
    /// Some run did not say how much: wait until idle.
    Unknown,
}

fn expectation(results: &[AccountResult]) -> Expectation {
    let mut total = 0u64;
    let mut any = false;
    for outcome in results
        .iter()
        .flat_map(|r| r.domains.iter())
        .filter(|d| d.mode == FetchMode::Etrn)
        .map(|d| d.outcome)
    {
        if !outcome.expects_delivery() {
            continue;
        }
        any = true;
        match outcome {
            DomainOutcome::Started { expected: Some(n) } => total += u64::from(n),
            _ => return Expectation::Unknown,
        }
    }
    if any {
        Expectation::Count(total)
    } else {
        Expectation::Nothing
    }
}

/// Whether an ODMR turn happened (the ISP delivered, or could have, on a turned line).
fn turned(results: &[AccountResult]) -> bool {
    results
        .iter()
        .flat_map(|r| r.domains.iter())
        .any(|d| d.mode == FetchMode::Odmr && matches!(d.outcome, DomainOutcome::Started { .. }))
}

#[allow(clippy::too_many_arguments)] // plain data in, one record out
fn finish(
    id: String,
    options: &FetchOptions,
    started_at: chrono::DateTime<Utc>,
    accounts: &[Account],
    results: Vec<AccountResult>,
    arrivals: Arrivals<'_>,
    errors: Vec<Problem>,
    ended_because: EndReason,
) -> SessionRecord {
    // Worth another attempt later: the ISP could not be reached or was busy (the session
    // failed transiently), or it deferred an ETRN or ATRN (4xx, still so after the retries).
    let retryable = results
        .iter()
        .filter(|r| match &r.error {
            Some(e) => e.is_transient(),
            None => r
                .domains
                .iter()
                .any(|d| d.outcome == DomainOutcome::Deferred),
        })
        .map(|r| r.account.clone())
        .collect();
    // Report every configured domain, in account order, even when its session never ran.
    let mut domains = Vec::new();
    let mut counts = arrivals.lines.iter();
    for account in accounts {
        let result = results.iter().find(|r| r.account == account.name);
        for spec in &account.domains {
            let arg = spec.argument(account.mode);
            let mut report = result
                .and_then(|r| r.domains.iter().find(|d| d.domain == arg).cloned())
                .unwrap_or_else(|| crate::report::DomainReport {
                    account: account.name.clone(),
                    mode: account.mode,
                    domain: arg.clone(),
                    code: None,
                    text: String::new(),
                    outcome: DomainOutcome::NotSent,
                    attempts: 0,
                    messages: 0,
                });
            report.messages = counts.next().copied().unwrap_or_default();
            domains.push(report);
        }
    }
    SessionRecord {
        id,
        kind: RecordKind::Fetch,
        trigger: options.trigger,
        started_at,
        finished_at: Utc::now(),
        domains,
        messages: arrivals.listed,
        unlisted_messages: arrivals.unlisted,
        errors,
        transcripts: Vec::new(),
        ended_because,
        attempt: 1,
        retryable,
        handovers: Vec::new(),
        turned_away: 0,
        asked_again: 0,
        unclaimed: Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::account::{LinkSettings, Security};
    use crate::listener::AskedPeers;

    fn account(name: &str, domains: &[&str]) -> Account {
        Account {
            name: name.into(),
            mode: FetchMode::Etrn,
            host: "isp.test".into(),
            port: 25,
            security: Security::None,
            username: None,
            password: None,
            password_command: None,
            helo: None,
            ca_file: None,
            domains: domains.iter().map(|d| d.parse().unwrap()).collect(),
            link: LinkSettings::default(),
            outgoing: None,
        }
    }

    fn message(peer: &str, recipients: &[&str]) -> MessageInfo {
        MessageInfo {
            sender: "a@sender.test".into(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            from: None,
            subject: None,
            message_id: None,
            size: 1,
            path: "new/1".into(),
            copies: Vec::new(),
            peer: peer.into(),
            stored_at: Utc::now(),
        }
    }

    #[test]
    fn a_queue_line_counts_what_its_isp_brought() {
        let accounts = vec![
            account("isp", &["#customer42", "plain.test"]),
            account("other", &["other.test"]),
        ];
        let asked = AskedPeers::default().scope();
        asked.ask("isp", "192.0.2.25".parse().unwrap());
        asked.ask("other", "192.0.2.99".parse().unwrap());
        let messages = vec![
            // Released by the queue name: its ISP, a domain no other line of the account has.
            message("192.0.2.25", &["a@grouped.test"]),
            message("::ffff:192.0.2.25", &["b@grouped.test"]),
            // The plain line's own.
            message("192.0.2.25", &["c@plain.test"]),
            // Another ISP's.
            message("192.0.2.99", &["d@other.test"]),
        ];
        let mut arrivals = Arrivals::new(&accounts);
        for m in messages {
            arrivals.add(m, &asked);
        }
        let record = record_of(&accounts, arrivals);
        let lines: Vec<(&str, u32)> = record
            .domains
            .iter()
            .map(|d| (d.domain.as_str(), d.messages))
            .collect();
        assert_eq!(
            lines,
            [("#customer42", 2), ("plain.test", 1), ("other.test", 1)]
        );
    }

    /// The record a fetch of `accounts` would keep of `arrivals` (no ETRN results, no errors).
    fn record_of(accounts: &[Account], arrivals: Arrivals<'_>) -> SessionRecord {
        let options = FetchOptions {
            trigger: crate::history::Trigger::Cli,
            idle_timeout: Duration::from_secs(1),
            max_wait: Duration::from_secs(1),
            client: ClientSettings::default(),
            history: None,
        };
        finish(
            "id".into(),
            &options,
            Utc::now(),
            accounts,
            Vec::new(),
            arrivals,
            Vec::new(),
            EndReason::Idle,
        )
    }

    #[test]
    fn a_large_drain_is_counted_whole_and_listed_up_to_the_limit() {
        let accounts = vec![account("isp", &["a.test", "b.test"])];
        let asked = AskedPeers::default().scope();
        asked.ask("isp", "192.0.2.25".parse().unwrap());
        let mut arrivals = Arrivals::new(&accounts);
        let total = LISTED_MESSAGES + 7;
        for i in 0..total {
            let to = if i % 2 == 0 { "u@a.test" } else { "u@b.test" };
            arrivals.add(message("192.0.2.25", &[to]), &asked);
        }
        assert_eq!(arrivals.round_etrn, total as u64);
        assert!(arrivals.round_from_asked);
        arrivals.asked_again();
        assert_eq!((arrivals.round_etrn, arrivals.round_from_asked), (0, false));
        // A stranger's message is counted but is no sign that the ISP asked delivered.
        arrivals.add(message("198.51.100.7", &["u@a.test"]), &asked);
        assert_eq!((arrivals.round_etrn, arrivals.round_from_asked), (1, false));

        let record = record_of(&accounts, arrivals);
        assert_eq!(record.messages.len(), LISTED_MESSAGES);
        assert_eq!(
            record.unlisted_messages as usize,
            total + 1 - LISTED_MESSAGES
        );
        assert_eq!(record.message_count(), total + 1);
        let per_line: Vec<u32> = record.domains.iter().map(|d| d.messages).collect();
        assert_eq!(
            per_line,
            [(total.div_ceil(2) + 1) as u32, (total / 2) as u32]
        );
        let summary = record.summary();
        assert!(summary
            .headline
            .starts_with(&format!("{} message(s)", total + 1)));
        assert_eq!(summary.messages.len(), LISTED_MESSAGES + 1);
        assert!(summary.messages[LISTED_MESSAGES]
            .contains(&format!("and {} more", total + 1 - LISTED_MESSAGES)));
        // The history keeps the count; an older record without it reads as none unlisted.
        let back: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(back.message_count(), total + 1);
    }

    #[test]
    fn unclaimed_domains_are_a_problem_with_the_fix() {
        let list = vec![Unclaimed {
            domain: "grouped.test".into(),
            recipients: 3,
            accounts: vec!["isp".into()],
        }];
        let problem = Unclaimed::problem(&list).unwrap();
        assert!(problem
            .message
            .contains("no account takes: grouped.test (3 recipient(s))"));
        assert!(problem.message.contains("answered 450"));
        assert_eq!(
            problem.fix,
            Some(crate::hint::Setting::account(
                "isp",
                crate::hint::AccountField::Domains
            ))
        );
        assert!(Unclaimed::problem(&[]).is_none());
    }
}
