//! The ETRN client: open the connection to the ISP ([`crate::client::open`]: EHLO, TLS, AUTH),
//! check that ETRN is offered, note the address asked (its deliveries then meet no per-peer
//! limit at the listener), send one ETRN per domain (a 4xx retried with backoff), QUIT.

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

/// Runs one account's ETRN session, publishing each ETRN reply on `events`. The address it
/// connected to is noted in `asked` before the first ETRN: the ISP delivers from there.
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
    let (error, server, transcript) = match open(account, settings).await {
        Err((error, server, transcript)) => (Some(error), server, transcript),
        Ok((mut conn, server)) => {
            if let Some(peer) = conn.peer_addr() {
                asked.ask(&account.name, peer.ip());
            }
            let err = ask_all(&mut conn, account, settings, &mut domains, events).await;
            if err.is_none() {
                conn.quit().await;
            }
            let transcript = conn.into_parts().map(|(_, _, t)| t).unwrap_or_default();
            (err, server, transcript)
        }
    };
    AccountResult {
        account: account.name.clone(),
        domains,
        error,
        server,
        transcript: Vec::new(),
    }
    .finish(transcript.into_lines(), events)
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

/// Sends one ETRN per domain (retrying 4xx), filling `reports` in place.
///
/// Returns the error that ended the session early, if any; unasked domains stay `NotSent`.
async fn ask_all(
    conn: &mut Connection,
    account: &Account,
    settings: &ClientSettings,
    reports: &mut [DomainReport],
    events: &EventSink,
) -> Option<IspError> {
    for report in reports.iter_mut() {
        let command = match Etrn::new(&report.domain) {
            Ok(command) => command,
            Err(why) => {
                report.text = why.to_string();
                continue;
            }
        };
        if let Err(err) = ask(conn, account, settings, &command, report, events).await {
            return Some(err);
        }
    }
    None
}

async fn ask(
    conn: &mut Connection,
    account: &Account,
    settings: &ClientSettings,
    command: &Etrn,
    report: &mut DomainReport,
    events: &EventSink,
) -> Result<(), IspError> {
    let mut delay = settings.retry_delay;
    loop {
        report.attempts += 1;
        let step = format!("the reply to ETRN {}", command.argument());
        let answer = match conn.command(&command.to_string(), &step).await {
            Ok(answer) => answer,
            Err(err) => {
                report.text = "no reply: the session failed".into();
                return Err(err);
            }
        };
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
            return Ok(());
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
