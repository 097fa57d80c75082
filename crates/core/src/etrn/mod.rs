//! The ETRN client: open the connection to the ISP ([`crate::client::open`]: EHLO, TLS, AUTH),
//! check that ETRN is offered, note the address asked (its deliveries then meet no per-peer
//! limit at the listener), send one ETRN per domain (a 4xx retried with backoff), QUIT; at most
//! [`ETRNS_PER_CONNECTION`] per connection, and a new connection once replies slow down.

pub mod command;
pub mod reply;

use std::time::Duration;

use crate::account::{Account, FetchMode};
use crate::client::{self, ClientSettings, Connection, IspError, Refused, ServerInfo};
use crate::event::{Event, EventSink};
use crate::listener::AskScope;
use crate::report::{AccountResult, DomainReport, TranscriptLine};
use command::Etrn;

/// The longest pause between two attempts of the same ETRN, however the delay doubles.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// The most ETRNs sent on one connection: some ISPs slow their replies down after the 8th on
/// one connection (1, 3, 7, 15 s …), so an account with many domains asks the rest on a new
/// connection.
pub const ETRNS_PER_CONNECTION: usize = 8;

/// A reply this much slower than the connection's fastest (and at least [`SLOW_REPLY`]) means
/// the ISP has started to slow down: the next domain is asked on a new connection.
const SLOWDOWN_FACTOR: u32 = 4;

/// The shortest reply time that counts as slowing down.
const SLOW_REPLY: Duration = Duration::from_secs(1);

/// Runs one account's ETRN session, publishing each ETRN reply on `events`. The address it
/// connected to is noted in `asked` before the first ETRN: the ISP delivers from there.
///
/// At most [`ETRNS_PER_CONNECTION`] domains are asked on one connection, and none after a reply
/// that came much slower than the ones before: the rest go on a new connection.
///
/// Never fails as a whole: a session-level failure is in `error` (and published as
/// `Event::Error`), and every domain not asked is reported `NotSent`.
pub async fn fetch_account(
    account: &Account,
    settings: &ClientSettings,
    events: &EventSink,
    asked: &AskScope,
) -> AccountResult {
    let mut domains: Vec<DomainReport> = account
        .domains
        .iter()
        .map(|spec| DomainReport::not_sent(&account.name, FetchMode::Etrn, spec.etrn_argument()))
        .collect();
    let mut transcript = Vec::new();
    let mut server = None;
    let mut error = None;
    let mut next = 0;
    while next < domains.len() || (next == 0 && domains.is_empty()) {
        match open(account, settings).await {
            Err((e, info, lines)) => {
                server.get_or_insert(info);
                transcript.extend(lines.into_lines());
                error = Some(e);
                break;
            }
            Ok((mut conn, info)) => {
                server.get_or_insert(info);
                if let Some(peer) = conn.peer_addr() {
                    asked.ask(&account.name, peer.ip());
                }
                let (asked_here, err) =
                    ask_some(&mut conn, account, settings, &mut domains[next..], events).await;
                next += asked_here;
                if err.is_none() {
                    conn.quit().await;
                }
                transcript.extend(
                    conn.into_parts()
                        .map(|(_, _, t)| t)
                        .unwrap_or_default()
                        .into_lines(),
                );
                if err.is_some() || domains.is_empty() {
                    error = err;
                    break;
                }
            }
        }
    }
    AccountResult {
        account: account.name.clone(),
        domains,
        error,
        server: server.unwrap_or_default(),
        transcript: Vec::new(),
    }
    .finish(transcript, events)
}

/// Connects, secures, authenticates and reports what the server offers, without sending ETRN.
///
/// A server that does not advertise ETRN is reported as `IspError::EtrnNotAdvertised`.
pub async fn check_account(
    account: &Account,
    settings: &ClientSettings,
) -> (ServerInfo, Option<IspError>, Vec<TranscriptLine>) {
    client::check_report(open(account, settings).await).await
}

/// The connection, secured and authenticated, to a server that offers ETRN.
async fn open(
    account: &Account,
    settings: &ClientSettings,
) -> Result<(Connection, ServerInfo), Refused> {
    client::open_offering(account, settings, "ETRN", || IspError::EtrnNotAdvertised {
        host: account.host.clone(),
    })
    .await
}

/// Sends one ETRN per domain of `reports` (retrying 4xx), filling them in place, until
/// [`ETRNS_PER_CONNECTION`] were sent or a reply came slowly.
///
/// Returns how many of `reports` it dealt with (at least one when there is one), and the
/// error that ended the session early, if any; unasked domains stay `NotSent`.
async fn ask_some(
    conn: &mut Connection,
    account: &Account,
    settings: &ClientSettings,
    reports: &mut [DomainReport],
    events: &EventSink,
) -> (usize, Option<IspError>) {
    let mut sent = 0;
    let mut fastest: Option<Duration> = None;
    for (done, report) in reports.iter_mut().enumerate() {
        if sent == ETRNS_PER_CONNECTION {
            conn.transcript().note(&format!(
                "{sent} ETRNs on this connection: the rest are asked on a new one"
            ));
            return (done, None);
        }
        let command = match Etrn::new(&report.domain) {
            Ok(command) => command,
            Err(why) => {
                report.text = why.to_string();
                continue;
            }
        };
        sent += 1;
        match ask(conn, account, settings, &command, report, events).await {
            Err(err) => return (done + 1, Some(err)),
            Ok(took) => {
                let quickest = *fastest.get_or_insert(took);
                if took >= SLOW_REPLY && took > quickest * SLOWDOWN_FACTOR {
                    conn.transcript().note(&format!(
                        "the reply took {:.1} s, the first {:.1} s: the ISP is slowing down, the rest are asked on a new connection",
                        took.as_secs_f64(),
                        quickest.as_secs_f64()
                    ));
                    return (done + 1, None);
                }
                fastest = Some(quickest.min(took));
            }
        }
    }
    (reports.len(), None)
}

/// Sends one ETRN (retrying a 4xx); returns how long its last reply took.
async fn ask(
    conn: &mut Connection,
    account: &Account,
    settings: &ClientSettings,
    command: &Etrn,
    report: &mut DomainReport,
    events: &EventSink,
) -> Result<Duration, IspError> {
    let mut delay = settings.retry_delay;
    loop {
        report.attempts += 1;
        let step = format!("the reply to ETRN {}", command.argument());
        let started = tokio::time::Instant::now();
        let answer = match conn.command(&command.to_string(), &step).await {
            Ok(answer) => answer,
            Err(IspError::Timeout { host, secs, .. }) => {
                report.text = "no reply: the ISP did not answer in time".into();
                return Err(IspError::EtrnTimeout {
                    host,
                    argument: command.argument().to_string(),
                    secs,
                });
            }
            Err(err) => {
                report.text = "no reply: the session failed".into();
                return Err(err);
            }
        };
        let took = started.elapsed();
        let text = answer.text();
        let outcome = reply::classify(answer.code, &text);
        let will_retry =
            reply::is_retryable(answer.code, &text) && report.attempts <= settings.retries;
        events.emit(Event::EtrnReply {
            account: account.name.clone(),
            domain: report.domain.clone(),
            code: answer.code,
            text: text.clone(),
            outcome,
            will_retry,
        });
        report.code = Some(answer.code);
        report.text = text.clone();
        report.outcome = outcome;
        if reply::is_closing(answer.code) {
            return Err(IspError::ServiceClosing {
                host: account.host.clone(),
                text,
            });
        }
        if !will_retry {
            return Ok(took);
        }
        conn.transcript().note(&format!(
            "retrying ETRN {} in {:.1} s",
            command.argument(),
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}
