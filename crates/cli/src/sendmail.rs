//! `sendmail [-t] [-f SENDER] [-i] [-oi] [--] [RCPT…]` for local programs (cron, scripts, mutt,
//! `git send-email`, s-nail's `mta=`), and `send`, which sends the outgoing queue now.
//!
//! `sendmail` reads the message on standard input as sendmail does, queues it durably in
//! Mailcall's spool for the outgoing server of the account whose domains hold the sender's
//! domain, and exits 0 only then; it sends nothing itself (the next fetch does, or the running
//! Mailcall while the link is up: it is nudged to read the spool at once, and a nudge that
//! fails changes nothing). It takes the flags msmtp and sendmail take; those that make no sense
//! here (`-F`, `-o*` other than `-oi`, `-b m`, `-odi`…) are accepted and ignored, as msmtp
//! does.
//!
//! `send` asks the running Mailcall to send its outgoing queue now when one runs (it holds the
//! spool's lock), else sends it right here; the output and exit code are the same either way.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mailcall_core::control::{self, Client};
use mailcall_core::event::EventSink;
use mailcall_core::instance::load_accounts;
use mailcall_core::keystore;
use mailcall_core::mailcall::{Mailcall, MailcallError};
use mailcall_core::outgoing::local::{received_header, LocalMessage, LocalOptions};
use mailcall_core::outgoing::queue::{account_for, spool_dir, submit};
use mailcall_core::report::HandOverOutcome;
use mailcall_core::spool::copies::RoutingOptions;
use mailcall_core::spool::runner::{self, RunnerOptions, SendReport};
use mailcall_core::spool::Spool;

use crate::failure::{Failure, Outcome};
use crate::output::{runtime, say};
use crate::settings;

/// How long `sendmail` waits for the running Mailcall to take its nudge: a hung one must not
/// hold up the program that sends (the message is queued either way).
const NUDGE_LIMIT: Duration = Duration::from_secs(2);

/// Arguments of `sendmail`: sendmail's own, read by hand (`-oi`, `-fSENDER` do not fit a
/// modern parser).
#[derive(Debug, Args)]
pub struct SendmailArgs {
    /// -t (recipients from To:, Cc:, Bcc:; Bcc: removed), -f SENDER, -i or -oi (a lone "." does
    /// not end the message), then the recipients.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

/// Reads sendmail's flags.
fn options(args: &[String]) -> Result<LocalOptions, Failure> {
    let mut o = LocalOptions {
        dot_ends_input: true,
        ..LocalOptions::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            o.recipients.extend(it.by_ref().cloned());
            break;
        }
        let Some(flag) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            o.recipients.push(a.clone());
            continue;
        };
        match flag {
            "t" => o.recipients_from_header = true,
            "i" | "oi" => o.dot_ends_input = false,
            "f" | "r" => {
                let sender = it.next().ok_or_else(|| {
                    Failure::setup("sendmail: -f needs the sender's address (-f me@example.org)")
                })?;
                o.sender = Some(sender.clone());
            }
            "F" | "o" | "B" | "N" | "R" | "V" | "X" | "L" | "C" => {
                // Flags with a separate value that do not matter here.
                it.next();
            }
            f if f.starts_with('f') || f.starts_with('r') => o.sender = Some(f[1..].to_owned()),
            // -F"Name", -oem, -odi, -bm, -em, -v, -U, -G, -Am…: accepted, as msmtp does.
            f if f.starts_with(['F', 'o', 'b', 'e', 'd', 'v', 'U', 'G', 'A', 'N', 'B', 'R', 'V', 'X', 'L', 'C']) => {}
            f => {
                return Err(Failure::setup(format!(
                    "sendmail: unknown flag -{f} (usage: sendmail [-t] [-f SENDER] [-i] [--] [RECIPIENT...])"
                )))
            }
        }
    }
    Ok(o)
}

/// Who runs this, for the `Received:` field.
fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// `sendmail`: the message on standard input into the outgoing queue.
pub fn run(explicit: Option<&Path>, args: SendmailArgs) -> Outcome {
    let options = options(&args.args)?;
    let (path, config) = settings::load(explicit)?;
    let mut input = Vec::new();
    std::io::stdin()
        .take(config.max_message_size.saturating_add(1))
        .read_to_end(&mut input)
        .map_err(|e| {
            Failure::failed(format!(
                "sendmail: cannot read the message from standard input: {e}"
            ))
        })?;
    if input.len() as u64 > config.max_message_size {
        return Err(Failure::setup(format!(
            "sendmail: the message is larger than max-message-size ({} bytes); nothing was queued",
            config.max_message_size
        )));
    }
    let message = LocalMessage::read(&input, &options)
        .map_err(|e| Failure::setup(format!("sendmail: {e}; nothing was queued")))?;
    let store = keystore::for_config(&config, &path);
    let rt = runtime()?;
    let (accounts, _skipped) = rt
        .block_on(load_accounts(store, config.accounts.clone()))
        .map_err(Failure::setup)?;
    let account = account_for(
        &accounts,
        config.default_outgoing_account.as_deref(),
        &message.sender,
    )
    .map_err(|e| Failure::setup_problem(&e.problem()))?;
    let data = config.data_path().map_err(Failure::setup)?;
    let dir = spool_dir(&data);
    let spool = Spool::open(&dir).map_err(|e| {
        Failure::failed(format!(
            "sendmail: cannot use Mailcall's queue {}: {e}; nothing was queued",
            dir.display()
        ))
    })?;
    let user = local_user();
    let host = config.hostname();
    let id = rt
        .block_on(async {
            let received = received_header(&host, &user);
            submit(
                &spool,
                &account.name,
                &message.sender,
                &message.recipients,
                &received,
                &message.body,
                &format!("local user {user}"),
            )
            .await
        })
        .map_err(|e| {
            if e.is_transient() {
                Failure::failed(format!("sendmail: {e}"))
            } else {
                Failure::setup_problem(&e.problem())
            }
        })?;
    tracing::info!(
        "queued {id} for the outgoing server of account {}: {message}",
        account.name
    );
    rt.block_on(nudge());
    Ok(ExitCode::SUCCESS)
}

/// Tells the running Mailcall, if one runs, that a message was queued: while a watched link is
/// up it leaves within seconds instead of at the runner's next rescan. The message is safe in
/// the queue already, so nothing here can fail `sendmail`: a Mailcall that is not running, or
/// does not answer in time, finds the message later (at its next fetch or rescan).
async fn nudge() {
    let Ok(socket) = control::default_socket_path() else {
        return;
    };
    match tokio::time::timeout(NUDGE_LIMIT, Client::new(socket).wake()).await {
        Ok(Ok(())) => tracing::info!("the running Mailcall reads its queue now"),
        Ok(Err(e)) if e.is_not_running() => {}
        Ok(Err(e)) => {
            tracing::info!("the running Mailcall was not told (it finds the message later): {e}")
        }
        Err(_) => tracing::info!(
            "the running Mailcall did not answer within {} s (it finds the message later)",
            NUDGE_LIMIT.as_secs()
        ),
    }
}

/// Arguments of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {}

/// `send`: the outgoing queue sent now, by the running Mailcall or (when none runs) here.
pub fn send(explicit: Option<&Path>, _args: SendArgs) -> Outcome {
    if let Some(report) = send_via_running(explicit)? {
        return print_report(&report);
    }
    let (path, config) = settings::load(explicit)?;
    let store = keystore::for_config(&config, &path);
    let rt = runtime()?;
    let (accounts, skipped) = rt
        .block_on(load_accounts(store, config.accounts.clone()))
        .map_err(Failure::setup)?;
    for p in &skipped {
        eprintln!("warning: {p}");
    }
    let data = config.data_path().map_err(Failure::setup)?;
    let spool = Spool::open(&spool_dir(&data)).map_err(Failure::failed)?;
    // A running Mailcall holds the queue's lock for its whole life; one that did not answer on
    // the control socket (another socket directory) cannot be asked from here.
    match spool.try_lock() {
        Ok(Some(lock)) => drop(lock),
        Ok(None) => {
            return Err(Failure::failed(
                "send: a running Mailcall holds the queue, and does not answer on this control socket; it sends the outgoing mail first at its next fetch, or by itself while a link is up",
            ))
        }
        Err(e) => return Err(Failure::failed(format!("send: cannot lock the queue: {e}"))),
    }
    let maildir = config.maildir_path().map_err(Failure::setup)?;
    let postmaster = mailcall_core::maildir::Maildir::create(&maildir).map_err(Failure::failed)?;
    // Delivery reports for refused recipients go to their local senders by the routes.
    let router = RoutingOptions::from_config(&config)
        .map_err(Failure::setup)?
        .router(postmaster.clone())
        .map_err(Failure::setup)?;
    let mut options = RunnerOptions::from_config(&config).map_err(Failure::setup)?;
    options.router = Some(Arc::new(router));
    let (_accounts_tx, accounts_rx) = tokio::sync::watch::channel(Arc::new(accounts));
    options.accounts = Some(accounts_rx);
    let report = rt.block_on(async {
        let runner = runner::start(spool, postmaster, options, EventSink::default());
        let report = runner.handle().send_outgoing().await;
        runner.finish(None).await;
        report
    });
    let Some(report) = report else {
        return Err(Failure::failed(
            "send: the queue stopped before the outgoing mail was tried",
        ));
    };
    print_report(&report)
}

/// `send` through the running Mailcall: what it sent; `None` when none runs (send here).
fn send_via_running(explicit: Option<&Path>) -> Result<Option<SendReport>, Failure> {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let asked = runtime()?.block_on(async {
        let running = Mailcall::connect(socket.clone()).await?;
        let report = running.send().await?;
        Ok::<_, MailcallError>((running, report))
    });
    match asked {
        Ok((running, report)) => {
            say!("asked the running Mailcall ({})", socket.display());
            let theirs = running.running_config().map(|p| p.display().to_string());
            crate::running::note_other_config(
                explicit,
                theirs.as_deref(),
                "it sent its own queue through its accounts' outgoing servers",
            );
            Ok(Some(report))
        }
        Err(MailcallError::Remote(e)) if e.is_not_running() => Ok(None),
        Err(e) => Err(Failure::failed(format!("send: {e}"))),
    }
}

/// Prints what became of each recipient and the counts; exit 0 only when everything was sent.
fn print_report(report: &SendReport) -> Outcome {
    let (sent, refused, deferred) = report.counts();
    for m in &report.messages {
        for r in &m.recipients {
            let what = match r.outcome {
                HandOverOutcome::Delivered => "sent",
                HandOverOutcome::Failed => "refused",
                HandOverOutcome::Deferred { .. } => "deferred",
            };
            say!("{} {what} to {}: {}", m.id, r.address, r.reply);
        }
    }
    for e in &report.errors {
        eprintln!("error: {}", mailcall_core::printable::text(e));
    }
    say!("sent: {sent} recipient(s), refused: {refused}, deferred: {deferred}");
    if refused + deferred > 0 || !report.errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
