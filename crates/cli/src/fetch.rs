//! `fetch` and `check`: a one-shot [`Instance`] whose events are printed as they happen, then the
//! summary (the outgoing queue is sent first unless `--no-send`); `check` opens the connection to one ISP and reports what it offers (TLS, AUTH,
//! whether ETRN and ATRN are advertised).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mailcall_core::config::ConfigKey;
use mailcall_core::control;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::hint::Problem;
use mailcall_core::history::{ManualTrigger, RecordKind, SessionRecord};
use mailcall_core::instance::{Instance, InstanceOptions, Mode};
use mailcall_core::keystore;
use mailcall_core::mailcall::{self, Mailcall, Patience};
use mailcall_core::service::Sending;

use crate::failure::{Failure, Outcome};
use crate::hints;
use crate::output::{runtime, say};
use crate::settings;

/// Arguments of `fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The accounts to ask (default: all configured accounts).
    names: Vec<String>,
    /// Listen on this address instead of the configured one (e.g. 0.0.0.0:2525).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Deliver into this Maildir instead of the configured one.
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// Seconds without a connection or message that end the session.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Upper bound on the whole session, in seconds.
    #[arg(long, value_name = "SECS")]
    max_wait: Option<u64>,
    /// Ask the running daemon or tray to fetch (through its control socket); fetch here when
    /// none runs. For ip-up scripts and cron.
    #[arg(long)]
    via_running: bool,
    /// Only receive: the outgoing mail stays queued (every fetch sends it first otherwise).
    #[arg(long)]
    no_send: bool,
    /// Print the session's record as JSON (one line) instead of the progress and summary.
    #[arg(long)]
    json: bool,
}

/// Runs `fetch`.
pub fn run(explicit: Option<&Path>, args: FetchArgs) -> Outcome {
    let sending = if args.no_send {
        Sending::Skip
    } else {
        Sending::First
    };
    if args.via_running {
        if let Some(outcome) = via_running(explicit, &args.names, sending, args.json)? {
            return Ok(outcome);
        }
    }
    let (path, mut config) = settings::load(explicit)?;
    // One run's overrides go through the same rules as `config set`.
    let overrides = [
        (ConfigKey::Listen, args.listen.map(|a| a.to_string())),
        (
            ConfigKey::Maildir,
            args.maildir
                .map(|m| settings::absolute(&m.display().to_string()))
                .transpose()?,
        ),
        (
            ConfigKey::IdleTimeout,
            args.idle_timeout.map(|s| s.to_string()),
        ),
        (ConfigKey::MaxWait, args.max_wait.map(|s| s.to_string())),
    ];
    for (key, value) in overrides {
        if let Some(v) = value {
            config
                .set(key, &v)
                .map_err(|e| Failure::setup(format!("--{e}")))?;
        }
    }
    for n in &args.names {
        if !config.accounts.contains(n) {
            return Err(Failure::setup(format!(
                "there is no account {n:?} in {}; see `mailcall-cli account list`",
                path.display()
            )));
        }
    }
    if config.accounts.is_empty() {
        return Err(Failure::setup(format!(
            "no accounts configured in {}: add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
            path.display()
        )));
    }
    let options = InstanceOptions {
        mode: Mode::OneShot,
        fetch_at_start: false,
        store: keystore::for_config(&config, &path),
        config_path: path,
        config,
        control_socket: None,
    };
    let names = args.names.clone();
    let json = args.json;
    let record = runtime()?.block_on(async move {
        let events = EventSink::default();
        let printer = (!json).then(|| tokio::spawn(print_events(events.subscribe())));
        // The listener comes up first: a bind error shows before anything is sent to the ISP.
        let instance = Instance::start(options, events)
            .await
            // Every start failure is a setup problem (exit 2): the config, the keyring, the
            // listen address or the Maildir needs the user.
            .map_err(|e| Failure::setup_problem(&e.problem()))?;
        // An account asked by name that the keyring could not give stops the fetch.
        if let Some(p) = instance
            .skipped()
            .iter()
            .find(|p| p.account.as_ref().is_some_and(|a| names.is_empty() || names.contains(a)))
        {
            if !names.is_empty() {
                let failure = Failure::setup_problem(p);
                instance.stop().await;
                return Err(failure);
            }
        }
        crate::hints::note_saved_passwords(instance.service().accounts().iter());
        let asked: Vec<String> = if names.is_empty() {
            instance.service().accounts().iter().map(|a| a.name.clone()).collect()
        } else {
            names.clone()
        };
        if asked.is_empty() {
            let problem = instance.skipped().first().cloned().unwrap_or_else(|| {
                Problem::new("no account could be read from the keyring")
            });
            instance.stop().await;
            return Err(Failure::setup_problem(&problem));
        }
        // With --json the record is the only output.
        if !json {
            match instance.service().listen_addr() {
                Some(addr) => say!(
                    "listening on {addr}; asking {} account(s): {}",
                    asked.len(),
                    asked.join(", ")
                ),
                None => say!(
                    "no listener (ODMR accounts only: the ISP delivers on Mailcall's own connection); asking {} account(s): {}",
                    asked.len(),
                    asked.join(", ")
                ),
            }
        }

        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing deliveries in progress, then stopping");
                on_signal.cancel();
            }
        });
        let record = tokio::select! {
            r = instance.fetch_with(ManualTrigger::Cli, asked, sending) => r.map_err(Failure::failed),
            _ = stop.cancelled() => Err(Failure::failed("interrupted: the mail not acknowledged stays at the ISP")),
        };
        instance.stop().await;
        if let Some(printer) = printer {
            // The session's end (or the instance's) ends the printer.
            let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
        }
        record
    })?;
    finish(&record, json)
}

/// Prints the record (or its JSON) and gives the exit code: 0 when every ETRN was accepted.
fn finish(record: &SessionRecord, json: bool) -> Outcome {
    if json {
        crate::output::print_json(&serde_json::to_string(record).map_err(Failure::failed)?);
    } else {
        print_summary(record);
    }
    Ok(if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `fetch --via-running`: the running instance fetches; `None` when none runs (fetch here).
fn via_running(
    explicit: Option<&Path>,
    names: &[String],
    sending: Sending,
    json: bool,
) -> Result<Option<ExitCode>, Failure> {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let rt = runtime()?;
    let asked = rt.block_on(async {
        let running = Mailcall::connect(socket.clone()).await?;
        let record = running
            .fetch_with(ManualTrigger::Control, names.to_vec(), sending)
            .await?;
        Ok::<_, mailcall::MailcallError>((running, record))
    });
    match asked {
        Ok((running, record)) => {
            if !json {
                say!("asked the running Mailcall ({})", socket.display());
                // Sent first, before it asked: in that order, as a fetch here prints them.
                for sent in record.handovers.iter().filter(|h| h.is_outgoing()) {
                    say!("sent: {sent}");
                }
            }
            let theirs = running.running_config().map(|p| p.display().to_string());
            // The record's hints are about the running one's accounts: they name its file.
            if let Some(config) = crate::running::note_other_config(
                explicit,
                theirs.as_deref(),
                "it fetched with its own accounts and settings",
            ) {
                crate::hints::set_config(&config);
            }
            finish(&record, json).map(Some)
        }
        Err(mailcall::MailcallError::Remote(e)) if e.is_not_running() => {
            if !json {
                say!("no running Mailcall ({}): fetching here", socket.display());
            }
            Ok(None)
        }
        Err(e) => Err(Failure::failed(e)),
    }
}

/// Prints events as they arrive until the session finishes.
async fn print_events(mut rx: tokio::sync::broadcast::Receiver<Event>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                say!("({n} progress line(s) skipped)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match &event {
            Event::SessionFinished(_) => return,
            // The session's start is the "listening on" line already.
            Event::SessionStarted { .. } => {}
            // Counts for a tray badge; the hand-overs themselves are printed.
            Event::QueueChanged { .. } => {}
            Event::Error(p) => say!("error: {}", hints::render(p)),
            other => {
                if let Some(line) = other.line() {
                    say!("{line}");
                }
            }
        }
    }
}

/// Prints the summary of a record, with the command that fixes each problem.
pub fn print_summary(record: &SessionRecord) {
    let summary = record.summary();
    let label = match record.kind {
        RecordKind::Fetch | RecordKind::Delivery => "summary",
        RecordKind::Connect | RecordKind::Disconnect => "dial-up",
        RecordKind::HandOver => "hand-over",
    };
    say!("{label}: {}", summary.headline);
    for m in &summary.messages {
        say!("  message: {m}");
    }
    for d in &summary.domains {
        say!("  {d}");
    }
    for p in &summary.problems {
        say!("  error: {}", hints::render(p).replace('\n', "\n  "));
    }
}

/// Runs `check NAME`.
pub fn check(explicit: Option<&Path>, name: &str, json: bool) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    if !config.accounts.iter().any(|a| a == name) {
        return Err(Failure::setup(format!(
            "there is no account {name:?} in {}; see `mailcall-cli account list`",
            path.display()
        )));
    }
    let account = keystore::for_config(&config, &path)
        .load(name)
        .map_err(Failure::setup)?;
    crate::hints::note_saved_passwords([&account]);
    let check = runtime()?.block_on(mailcall::check_account(
        &account,
        &config,
        Patience::Configured,
    ));
    let problem = check.problem(name);
    let info = &check.info;
    if json {
        let value = serde_json::json!({
            "account": name,
            "mode": account.mode,
            "server": info,
            "etrn_advertised": info.advertises("ETRN"),
            "atrn_advertised": info.advertises("ATRN"),
            "error": problem,
            "transcript": check.transcript,
        });
        crate::output::print_json(&value.to_string());
        return Ok(if problem.is_some() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    for line in &check.transcript {
        say!("  {line}");
    }
    say!(
        "server: {}",
        if info.greeting.is_empty() {
            "-"
        } else {
            &info.greeting
        }
    );
    say!("TLS: {}", if info.tls { "yes" } else { "no" });
    say!(
        "AUTH: {}",
        match (&account.username, info.authenticated, &info.mechanism) {
            (None, _, _) => "not configured".to_string(),
            (Some(_), true, Some(m)) => format!("yes ({m})"),
            (Some(_), true, None) => "yes".to_string(),
            (Some(_), false, _) => "no".to_string(),
        }
    );
    say!("mode: {}", account.mode);
    for keyword in ["ETRN", "ATRN"] {
        // Unknown when the session failed before the EHLO reply.
        let known = check.ehlo_seen();
        say!(
            "{keyword} advertised: {}",
            match (known, info.advertises(keyword)) {
                (_, true) => "yes",
                (true, false) => "no",
                (false, false) => "unknown (no EHLO reply)",
            }
        );
    }
    match problem {
        Some(p) => Err(Failure::failed(hints::render(&p))),
        None => Ok(ExitCode::SUCCESS),
    }
}
