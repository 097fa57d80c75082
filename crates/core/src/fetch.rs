//! The fetch session: listener up → ETRN to each account → receive until idle → summary + history.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::account::{Account, DomainSpec};
use crate::etrn::{self, AccountResult, ClientSettings};
use crate::event::{Event, EventSink};
use crate::history::{History, SessionRecord};
use crate::listener::{Listener, ListenerEvent, ListenerSettings, RecipientPolicy};
use crate::maildir::Maildir;
use crate::report::{DomainOutcome, MessageInfo};

/// How long the listener may take to finish in-flight deliveries once a session ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Everything a fetch session needs besides the accounts and the bound listener.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// What started it (`cli`, `tray`, `network`, `interval`), for the history.
    pub trigger: String,
    /// The Maildir to deliver into.
    pub maildir: PathBuf,
    /// The listener's behaviour (host name, size limit, timeouts).
    pub listener: ListenerSettings,
    /// Quiet time after the last ETRN reply / connection / message that ends the session.
    pub idle_timeout: Duration,
    /// Upper bound on the whole session.
    pub max_wait: Duration,
    /// The ETRN client's timeouts and retries.
    pub client: ClientSettings,
    /// Where to append the session record; `None` keeps no history.
    pub history: Option<History>,
}

/// Runs one fetch session on an already bound `listener` (bind it first: a bind error must
/// surface before anything is sent to the ISP). `accounts` are asked for their mail; the listener
/// accepts recipients of `accepted` (usually every configured account's domains).
/// Cancelling `shutdown` ends the session early, keeping what was stored.
pub async fn run(
    listener: Listener,
    accounts: Vec<Account>,
    accepted: Vec<DomainSpec>,
    options: FetchOptions,
    events: &EventSink,
    shutdown: CancellationToken,
) -> SessionRecord {
    let started_at = Utc::now();
    let id = format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    );
    let mut errors = Vec::new();
    let listen = listener.local_addr();

    let maildir = match Maildir::create(&options.maildir) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            let message = format!(
                "cannot use the Maildir {}: {e}. Check the path and its permissions (--maildir or `config set maildir DIR`); nothing was asked from the ISP",
                options.maildir.display()
            );
            events.emit(Event::Error {
                account: None,
                message: message.clone(),
            });
            errors.push(message);
            let record = finish(
                id,
                &options,
                started_at,
                &accounts,
                Vec::new(),
                Vec::new(),
                errors,
                "not started",
            );
            return record;
        }
    };

    events.emit(Event::SessionStarted {
        id: id.clone(),
        trigger: options.trigger.clone(),
        accounts: accounts.iter().map(|a| a.name.clone()).collect(),
        listen,
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop_listener = shutdown.child_token();
    let server = tokio::spawn(listener.serve(
        Arc::new(options.listener.clone()),
        Arc::new(RecipientPolicy::new(accepted)),
        maildir,
        tx,
        stop_listener.clone(),
    ));

    let mut etrn_tasks = JoinSet::new();
    for account in &accounts {
        let account = account.clone();
        let client = options.client.clone();
        let events = events.clone();
        etrn_tasks.spawn(async move { etrn::fetch_account(&account, &client, &events).await });
    }

    let deadline = Instant::now() + options.max_wait;
    let mut results: Vec<AccountResult> = Vec::new();
    let mut messages: Vec<MessageInfo> = Vec::new();
    let mut active: HashMap<SocketAddr, u32> = HashMap::new();
    let mut last_activity = Instant::now();
    let mut etrn_done = accounts.is_empty();

    let ended_because = loop {
        let expected = expectation(&results);
        if etrn_done && active.is_empty() {
            match expected {
                Expectation::Nothing => break "nothing to wait for",
                Expectation::Count(n) if messages.len() as u64 >= n => {
                    break "expected messages arrived"
                }
                _ => {}
            }
        }
        let idle_at = last_activity + options.idle_timeout;
        let idle_armed = etrn_done && active.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => break "cancelled",
            _ = tokio::time::sleep_until(deadline) => break "max wait",
            _ = tokio::time::sleep_until(idle_at), if idle_armed => break "idle",
            joined = etrn_tasks.join_next(), if !etrn_done => {
                match joined {
                    Some(Ok(result)) => {
                        if let Some(e) = &result.error {
                            errors.push(format!("{}: {e}", result.account));
                        }
                        results.push(result);
                    }
                    Some(Err(e)) => errors.push(format!(
                        "an ETRN session ended unexpectedly ({e}); please report this bug"
                    )),
                    None => {}
                }
                etrn_done = etrn_tasks.is_empty();
                // The idle clock starts at the last ETRN reply, when the ISP's run begins.
                last_activity = Instant::now();
            }
            ev = rx.recv() => match ev {
                Some(ev) => {
                    last_activity = Instant::now();
                    on_listener_event(ev, &mut active, &mut messages, events);
                }
                None => {
                    errors.push("the SMTP listener stopped unexpectedly; mail may stay at the ISP — fetch again".into());
                    break "listener stopped";
                }
            },
        }
    };

    // ETRN sessions still running (max wait, cancel) are abandoned; their domains count as not sent.
    etrn_tasks.abort_all();
    while let Some(joined) = etrn_tasks.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }

    // Let deliveries in flight finish (the listener refuses new commands with 421 meanwhile);
    // messages acknowledged during the drain are still counted.
    stop_listener.cancel();
    if tokio::time::timeout(DRAIN_LIMIT, server).await.is_err() {
        errors.push("the listener did not finish its deliveries in time; any message without a 250 stays at the ISP".into());
    }
    while let Ok(ev) = rx.try_recv() {
        on_listener_event(ev, &mut active, &mut messages, events);
    }

    let transcripts = results
        .iter()
        .map(|r| (r.account.clone(), r.transcript.clone()))
        .collect();
    let mut record = finish(
        id,
        &options,
        started_at,
        &accounts,
        results,
        messages,
        errors,
        ended_because,
    );
    record.transcripts = transcripts;
    if let Some(history) = &options.history {
        if let Err(e) = history.append(&record) {
            let message = e.to_string();
            events.emit(Event::Error {
                account: None,
                message: message.clone(),
            });
            record.errors.push(message);
        }
    }
    events.emit(Event::SessionFinished(Box::new(record.clone())));
    record
}

fn on_listener_event(
    ev: ListenerEvent,
    active: &mut HashMap<SocketAddr, u32>,
    messages: &mut Vec<MessageInfo>,
    events: &EventSink,
) {
    match ev {
        ListenerEvent::Connected { peer } => {
            *active.entry(peer).or_default() += 1;
            events.emit(Event::Connected { peer });
        }
        ListenerEvent::Closed { peer } => {
            if let Some(n) = active.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    active.remove(&peer);
                }
            }
        }
        ListenerEvent::Stored(info) => {
            events.emit(Event::MessageStored(info.clone()));
            messages.push(*info);
        }
    }
}

/// What the ETRN replies so far tell us to wait for.
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
        .flat_map(|r| r.domains.iter().map(|d| d.outcome))
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

#[allow(clippy::too_many_arguments)] // plain data in, one record out
fn finish(
    id: String,
    options: &FetchOptions,
    started_at: chrono::DateTime<Utc>,
    accounts: &[Account],
    results: Vec<AccountResult>,
    messages: Vec<MessageInfo>,
    errors: Vec<String>,
    ended_because: &str,
) -> SessionRecord {
    // Report every configured domain, in account order, even when its session never ran.
    let mut domains = Vec::new();
    for account in accounts {
        let result = results.iter().find(|r| r.account == account.name);
        for spec in &account.domains {
            let arg = spec.etrn_argument();
            let mut report = result
                .and_then(|r| r.domains.iter().find(|d| d.domain == arg).cloned())
                .unwrap_or_else(|| crate::report::DomainReport {
                    account: account.name.clone(),
                    domain: arg.clone(),
                    code: None,
                    text: String::new(),
                    outcome: DomainOutcome::NotSent,
                    attempts: 0,
                    messages: 0,
                });
            report.messages = messages
                .iter()
                .filter(|m| {
                    m.recipients.iter().any(|r| {
                        r.rsplit_once('@')
                            .is_some_and(|(_, domain)| spec.accepts(domain))
                    })
                })
                .count() as u32;
            domains.push(report);
        }
    }
    SessionRecord {
        id,
        trigger: options.trigger.clone(),
        started_at,
        finished_at: Utc::now(),
        domains,
        messages,
        errors,
        transcripts: Vec::new(),
        ended_because: ended_because.to_string(),
    }
}
