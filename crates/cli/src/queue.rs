//! `queue [list]|retry|bounce|delete`: the mail waiting in Mailcall's spool to be handed on to
//! LAN servers. Listing reads the spool directly; the actions go to a running Mailcall over its
//! control socket, or, when none runs, are done here (holding the spool's lock) — a retry then
//! hands the mail on at once from this process.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use mailcall_core::config::Config;
use mailcall_core::control;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::maildir::Maildir;
use mailcall_core::spool::actions::{self, ActionResult, Selection};
use mailcall_core::spool::runner::{self, RunnerOptions};
use mailcall_core::spool::{Spool, Status, SPOOL_DIR};

use crate::failure::{Failure, Outcome};
use crate::output::{runtime, say};
use crate::settings;

/// How long `queue retry` with no Mailcall running hands mail on before it gives up.
const RETRY_LIMIT: Duration = Duration::from_secs(120);

/// Arguments of `queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    action: Option<QueueAction>,
    /// Print the queue as JSON (one message per line).
    #[arg(long)]
    json: bool,
}

/// The `queue` subcommands.
#[derive(Debug, Subcommand)]
enum QueueAction {
    /// List the messages waiting (the default).
    List,
    /// Hand the messages on now (refused recipients are tried again too).
    Retry(Which),
    /// Give messages up: a delivery report (DSN) with each message goes into the postmaster's
    /// Maildir (the maildir setting); Mailcall cannot mail it to the sender.
    Bounce(Confirmed),
    /// Remove messages from the queue; nothing is sent or kept.
    Delete(Confirmed),
}

/// Which messages.
#[derive(Debug, Args)]
struct Which {
    /// The messages' ids (as `queue list` shows them; a unique beginning is enough).
    #[arg(required_unless_present = "all")]
    ids: Vec<String>,
    /// Every message in the queue.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

impl Which {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

/// Which messages, and the confirmation.
#[derive(Debug, Args)]
struct Confirmed {
    #[command(flatten)]
    which: Which,
    /// Do not ask (for scripts).
    #[arg(long, short)]
    yes: bool,
}

/// Runs `queue`.
pub fn run(explicit: Option<&Path>, args: QueueArgs) -> Outcome {
    let (_, config) = settings::load(explicit)?;
    let dir = config.data_path().map_err(Failure::setup)?.join(SPOOL_DIR);
    if !dir.exists() && matches!(args.action, None | Some(QueueAction::List)) {
        if !args.json {
            say!("the queue is empty ({} does not exist yet)", dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let spool = Spool::open(&dir).map_err(|e| {
        Failure::setup(format!(
            "cannot open Mailcall's spool {}: {e}",
            dir.display()
        ))
    })?;
    match args.action {
        None | Some(QueueAction::List) => list(&spool, args.json),
        Some(QueueAction::Retry(which)) => act(&config, &spool, "RETRY", which.selection()),
        Some(QueueAction::Bounce(c)) => {
            confirm(&spool, &c, "Bounce")?;
            act(&config, &spool, "BOUNCE", c.which.selection())
        }
        Some(QueueAction::Delete(c)) => {
            confirm(&spool, &c, "Delete")?;
            act(&config, &spool, "DELETE", c.which.selection())
        }
    }
}

fn list(spool: &Spool, json: bool) -> Outcome {
    let (entries, problems) = spool.entries().map_err(Failure::failed)?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let (mut queued, mut failed) = (0, 0);
    for e in &entries {
        let headline = spool.headline(e);
        if json {
            let line = serde_json::json!({
                "id": e.id,
                "received_at": e.envelope.received_at,
                "sender": e.envelope.sender,
                "size": e.size,
                "message_id": headline.message_id,
                "subject": headline.subject,
                "recipients": e.envelope.recipients.iter().zip(&e.state.recipients).map(|(r, s)| serde_json::json!({
                    "address": r.address,
                    "destination": r.target.to_string(),
                    "state": s,
                })).collect::<Vec<_>>(),
            });
            println!("{line}");
        } else {
            let local = e.envelope.received_at.with_timezone(&chrono::Local);
            say!(
                "{}  {}  from <{}>  {} bytes  {}",
                e.id,
                local.format("%Y-%m-%d %H:%M:%S"),
                e.envelope.sender,
                e.size,
                headline.subject.as_deref().unwrap_or("(no subject)")
            );
        }
        for (r, s) in e.envelope.recipients.iter().zip(&e.state.recipients) {
            let what = match s.status {
                Status::Queued => {
                    queued += 1;
                    let next = match s.next_attempt {
                        Some(t) if t > Utc::now() => format!(
                            "next try {}",
                            t.with_timezone(&chrono::Local).format("%H:%M:%S")
                        ),
                        _ => "due now".to_string(),
                    };
                    let unsure = if s.maybe_delivered {
                        " (an earlier attempt may have been stored: a retry can make a second copy)"
                    } else {
                        ""
                    };
                    format!("waiting, {} attempt(s), {next}{unsure}", s.attempts)
                }
                Status::Failed => {
                    failed += 1;
                    "REFUSED, held: retry, bounce or delete it".to_string()
                }
                Status::Delivered => "delivered".to_string(),
                Status::Bounced => "bounced".to_string(),
            };
            if !json {
                say!("    {} -> {}: {what}", r.address, r.target);
                if let (Some(reply), false) = (&s.reply, s.status == Status::Delivered) {
                    say!("        last: {reply}");
                }
            }
        }
    }
    if !json {
        if entries.is_empty() {
            say!("the queue is empty");
        } else {
            say!(
                "{} message(s): {queued} recipient(s) waiting, {failed} refused",
                entries.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows what would be bounced or deleted and asks, unless `--yes`.
fn confirm(spool: &Spool, c: &Confirmed, verb: &str) -> Result<(), Failure> {
    let (entries, _) = spool.entries().map_err(Failure::failed)?;
    let picked = c.which.selection().pick(entries).map_err(Failure::failed)?;
    if picked.is_empty() {
        return Err(Failure::failed("the queue is empty: nothing to do"));
    }
    if c.yes {
        return Ok(());
    }
    for e in &picked {
        let rcpts: Vec<&str> = e
            .envelope
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        eprintln!(
            "  {}  from <{}>  to {}",
            e.id,
            e.envelope.sender,
            rcpts.join(", ")
        );
    }
    eprint!("{verb} {} message(s)? [y/N] ", picked.len());
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "not confirmed: nothing was changed ({} --yes does it without asking)",
            verb.to_lowercase()
        )))
    }
}

/// Asks the running Mailcall, or does it here.
fn act(config: &Config, spool: &Spool, action: &str, selection: Selection) -> Outcome {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let rt = runtime()?;
    let result = match rt.block_on(control::queue(&socket, action, &selection)) {
        Ok(result) => {
            say!("the running Mailcall did it ({})", socket.display());
            result
        }
        Err(e) if e.is_not_running() => rt.block_on(here(config, spool, action, &selection))?,
        Err(e) => return Err(Failure::failed(e)),
    };
    report(action, &result);
    Ok(ExitCode::SUCCESS)
}

fn report(action: &str, r: &ActionResult) {
    let verb = match action {
        "RETRY" => "retried",
        "BOUNCE" => "bounced",
        _ => "deleted",
    };
    say!(
        "{verb} {} message(s), {} recipient(s)",
        r.messages,
        r.recipients
    );
    for p in &r.reports {
        say!("  delivery report: {}", p.display());
    }
}

/// No Mailcall runs: act holding the spool's lock; a retry hands the mail on right here.
async fn here(
    config: &Config,
    spool: &Spool,
    action: &str,
    selection: &Selection,
) -> Result<ActionResult, Failure> {
    let Some(lock) = spool.try_lock().map_err(Failure::failed)? else {
        return Err(Failure::failed(
            "another Mailcall is handing mail on from the queue right now (a fetch in progress?); try again when it has finished",
        ));
    };
    let result = match action {
        "RETRY" => actions::retry(spool, selection, &[]),
        "BOUNCE" => {
            let maildir = config.maildir_path().map_err(Failure::setup)?;
            let postmaster = Maildir::create(&maildir).map_err(|e| {
                Failure::setup(format!("cannot use the Maildir {}: {e}", maildir.display()))
            })?;
            actions::bounce(
                spool,
                selection,
                &postmaster,
                &config.hostname(),
                actions::BOUNCED_BY_HAND,
                &[],
            )
            .await
        }
        _ => actions::delete(spool, selection, &[]),
    }
    .map_err(Failure::failed)?;
    drop(lock);
    if action == "RETRY" && result.messages > 0 {
        hand_on_now(config, spool).await?;
    }
    Ok(result)
}

/// Runs the hand-over loop until nothing is due, printing what each server says.
async fn hand_on_now(config: &Config, spool: &Spool) -> Result<(), Failure> {
    let maildir = config.maildir_path().map_err(Failure::setup)?;
    let postmaster = Maildir::create(&maildir).map_err(|e| {
        Failure::setup(format!("cannot use the Maildir {}: {e}", maildir.display()))
    })?;
    let options = RunnerOptions::from_config(config).map_err(Failure::setup)?;
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            match &ev {
                Event::HandOver(_) => say!("{}", ev.line().unwrap_or_default()),
                Event::Error(p) => say!("error: {}", crate::hints::render(p)),
                _ => {}
            }
        }
    });
    let runner = runner::start(spool.clone(), postmaster, options, events);
    runner.finish(Some(RETRY_LIMIT)).await;
    // The loop is gone, so is the last sender: the printer ends once it printed everything.
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
    Ok(())
}
