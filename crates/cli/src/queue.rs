//! `queue [list]|retry|hold|release|bounce|delete`: the mail waiting in Mailcall's spool, both
//! ways — outgoing mail for the smarthost (`out`) and incoming mail to be handed on to LAN
//! servers (`in`). Listing reads the spool directly; the actions go to a running Mailcall, or, when
//! none runs, are done here by the core ([`offline`]) — a retry then hands the mail on at once
//! from this process, each hand-over printed.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use mailcall_core::config::Config;
use mailcall_core::control;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::mailcall::Mailcall;
use mailcall_core::printable;
use mailcall_core::spool::actions::{ActionResult, Listing, Selection};
use mailcall_core::spool::offline::{self, OfflineError};
use mailcall_core::spool::{Action, Entry, Spool, Status, SPOOL_DIR};

use crate::failure::{Failure, Outcome};
use crate::output::{runtime, say};
use crate::settings;

/// Arguments of `queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: Option<QueueCommand>,
    /// Print the queue as JSON (one message per line).
    #[arg(long)]
    json: bool,
}

/// The `queue` subcommands.
#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// List the messages waiting (the default).
    List,
    /// Hand the messages on now (refused recipients are tried again too).
    Retry(Which),
    /// Keep messages from being tried (also across restarts) until released.
    Hold(Which),
    /// Let held messages be tried again.
    Release(Which),
    /// Give messages up: a delivery report (DSN) with each message goes to the sender of
    /// outgoing mail, else into the postmaster's Maildir (the maildir setting).
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

impl QueueCommand {
    /// The action, its messages and whether `--yes` was given; `None` for a listing.
    fn action(&self) -> Option<(Action, &Which, bool)> {
        match self {
            QueueCommand::List => None,
            QueueCommand::Retry(which) => Some((Action::Retry, which, false)),
            QueueCommand::Hold(which) => Some((Action::Hold, which, false)),
            QueueCommand::Release(which) => Some((Action::Release, which, false)),
            QueueCommand::Bounce(c) => Some((Action::Bounce, &c.which, c.yes)),
            QueueCommand::Delete(c) => Some((Action::Delete, &c.which, c.yes)),
        }
    }
}

/// Runs `queue`.
pub fn run(explicit: Option<&Path>, args: QueueArgs) -> Outcome {
    let (_, config) = settings::load(explicit)?;
    let dir = config.data_path().map_err(Failure::setup)?.join(SPOOL_DIR);
    let todo = args.command.as_ref().and_then(QueueCommand::action);
    if !dir.exists() && todo.is_none() {
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
    let Some((action, which, yes)) = todo else {
        return list(&spool, args.json);
    };
    if action.is_destructive() {
        confirm(&spool, which, yes, action)?;
    }
    act(&config, &spool, action, which.selection())
}

/// "in" for mail handed on to a LAN server, "out" for outgoing mail.
fn direction(e: &Entry) -> &'static str {
    if e.is_outgoing() {
        "out"
    } else {
        "in"
    }
}

/// How long ago, in words: `45s`, `12m`, `3h 5m`, `2d 4h`.
fn age(since: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// When the message is tried next, in words.
fn next_try(e: &Entry, now: chrono::DateTime<Utc>) -> String {
    if e.state.held {
        return "held (queue release)".into();
    }
    match e.next_attempt() {
        None if e
            .state
            .recipients
            .iter()
            .any(|s| s.status == Status::Failed) =>
        {
            "refused, held: retry, bounce or delete it".into()
        }
        None => "nothing left".into(),
        Some(t) if t > now => format!(
            "next try {}",
            t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
        ),
        Some(_) if e.is_outgoing() => "due: at the next send (link up, fetch or send)".into(),
        Some(_) => "due now".into(),
    }
}

fn list(spool: &Spool, json: bool) -> Outcome {
    let listing = Listing::of(spool).map_err(Failure::failed)?;
    for p in &listing.problems {
        eprintln!("warning: {}", printable::text(&p.to_string()));
    }
    let now = Utc::now();
    let (mut queued, mut failed, mut unsure) = (0, 0, 0);
    for listed in &listing.messages {
        let (e, headline) = (&listed.entry, &listed.headline);
        if e.state.recipients.iter().any(|s| s.maybe_delivered) {
            unsure += 1;
        }
        if json {
            let line = serde_json::json!({
                "id": e.id,
                "direction": direction(e),
                "received_at": e.envelope.received_at,
                "age_secs": (now - e.envelope.received_at).num_seconds().max(0),
                "sender": e.envelope.sender,
                "size": e.size,
                "held": e.state.held,
                "next_attempt": if e.state.held { None } else { e.next_attempt() },
                "last_reply": e.last_reply(),
                "maybe_delivered": e.state.recipients.iter().any(|s| s.maybe_delivered),
                "message_id": headline.message_id,
                "subject": headline.subject,
                "recipients": e.envelope.recipients.iter().zip(&e.state.recipients).map(|(r, s)| serde_json::json!({
                    "address": r.address,
                    "destination": r.target.to_string(),
                    "state": s,
                })).collect::<Vec<_>>(),
            });
            crate::output::print_json(&line.to_string());
        } else {
            let rcpts: Vec<&str> = e
                .envelope
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect();
            say!(
                "{}  {:<3}  {} old  {} bytes  from <{}>  to {}  {}",
                e.id,
                direction(e),
                age(e.envelope.received_at, now),
                e.size,
                printable::line(&e.envelope.sender),
                printable::line(&rcpts.join(", ")),
                next_try(e, now),
            );
            say!(
                "    subject: {}",
                printable::line(headline.subject.as_deref().unwrap_or("(no subject)"))
            );
        }
        for (r, s) in e.envelope.recipients.iter().zip(&e.state.recipients) {
            let what = match s.status {
                Status::Queued => {
                    queued += 1;
                    let unsure = if s.maybe_delivered {
                        " (MAYBE SENT: an earlier attempt may have been stored: a retry can make a second copy)"
                    } else {
                        ""
                    };
                    format!("waiting, {} attempt(s){unsure}", s.attempts)
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
                    say!("        last reply: {}", printable::line(reply));
                }
            }
        }
    }
    if !json {
        if listing.messages.is_empty() {
            say!("the queue is empty");
        } else {
            let out = listing
                .messages
                .iter()
                .filter(|l| l.entry.is_outgoing())
                .count();
            let held = listing
                .messages
                .iter()
                .filter(|l| l.entry.state.held)
                .count();
            say!(
                "{} message(s) ({out} out, {} in, {held} held): {queued} recipient(s) waiting, {failed} refused",
                listing.messages.len(),
                listing.messages.len() - out
            );
            if unsure > 0 {
                say!(
                    "{unsure} message(s) may have gone out already: a retry can make a second copy"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The verb for people: what the confirmation asks.
fn verb(action: Action) -> &'static str {
    match action {
        Action::Retry => "Retry",
        Action::Bounce => "Bounce",
        Action::Delete => "Delete",
        Action::Hold => "Hold",
        Action::Release => "Release",
    }
}

/// Shows what would be bounced or deleted and asks, unless `--yes`.
fn confirm(spool: &Spool, which: &Which, yes: bool, action: Action) -> Result<(), Failure> {
    let (entries, _) = spool.entries().map_err(Failure::failed)?;
    let picked = which.selection().pick(entries).map_err(Failure::failed)?;
    if picked.is_empty() {
        return Err(Failure::failed("the queue is empty: nothing to do"));
    }
    if yes {
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
            printable::line(&e.envelope.sender),
            printable::line(&rcpts.join(", "))
        );
    }
    let verb = verb(action);
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
fn act(config: &Config, spool: &Spool, action: Action, selection: Selection) -> Outcome {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        match Mailcall::connect(socket.clone()).await {
            Ok(running) => {
                let result = running
                    .queue(action, selection)
                    .await
                    .map_err(Failure::failed)?;
                say!("the running Mailcall did it ({})", socket.display());
                Ok(result)
            }
            Err(e) if e.is_not_running() => {
                let result = here(config, spool, action, &selection).await?;
                let outgoing = spool
                    .entries()
                    .map(|(entries, _)| {
                        selection
                            .pick_present(entries)
                            .iter()
                            .any(|e| e.is_outgoing() && !e.state.held)
                    })
                    .unwrap_or(false);
                if matches!(action, Action::Retry | Action::Release) && outgoing {
                    say!("outgoing mail leaves with `mailcall-cli send`, or at the next fetch (no Mailcall runs to send it now)");
                }
                Ok(result)
            }
            Err(e) => Err(Failure::failed(e)),
        }
    })?;
    report(action, &result);
    Ok(ExitCode::SUCCESS)
}

fn report(action: Action, r: &ActionResult) {
    let verb = match action {
        Action::Retry => "retried",
        Action::Bounce => "bounced",
        Action::Delete => "deleted",
        Action::Hold => "held",
        Action::Release => "released",
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

/// No Mailcall runs: the core acts holding the spool's lock (a retry hands the mail on right
/// here); each hand-over and error is printed as it happens.
async fn here(
    config: &Config,
    spool: &Spool,
    action: Action,
    selection: &Selection,
) -> Result<ActionResult, Failure> {
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
    let result = offline::act(config, spool, action, selection, events).await;
    // The sink is gone with the hand-overs: the printer ends once it printed everything.
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
    result.map_err(|e: OfflineError| {
        if e.is_setup() {
            Failure::setup(e)
        } else {
            Failure::failed(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_largest_units_that_fit() {
        let now = Utc::now();
        let ago = |secs: i64| age(now - chrono::Duration::seconds(secs), now);
        assert_eq!(ago(45), "45s");
        assert_eq!(ago(12 * 60 + 5), "12m");
        assert_eq!(ago(3 * 3600 + 5 * 60), "3h 5m");
        assert_eq!(ago(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
        assert_eq!(ago(-5), "0s", "a clock that went back is no negative age");
    }
}
