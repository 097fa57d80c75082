//! `fetch` and `check`: run a fetch session and print its events as they happen, then a summary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mailcall_core::account::Account;
use mailcall_core::control;
use mailcall_core::etrn::{self, ClientSettings};
use mailcall_core::event::{Event, EventSink};
use mailcall_core::history::SessionRecord;
use mailcall_core::keystore::{AccountStore, OsKeyring};
use mailcall_core::service::{self, FetchRequest, ServiceOptions};
use mailcall_core::trigger::{self, TriggerOptions};
use tokio_util::sync::CancellationToken;

use crate::failure::{Failure, Outcome};
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
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
    /// Upper bound on the whole session, in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    max_wait: Option<u64>,
    /// Ask the running daemon or tray to fetch (through its control socket); fetch here when
    /// none runs. For ip-up scripts and cron.
    #[arg(long)]
    via_running: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

/// Reads accounts from the keyring; an unknown or unreadable account is a setup failure.
fn load_accounts(names: &[String]) -> Result<Vec<Account>, Failure> {
    names
        .iter()
        .map(|n| OsKeyring.load(n).map_err(Failure::setup))
        .collect()
}

/// Runs `fetch`.
pub fn run(explicit: Option<&Path>, args: FetchArgs) -> Outcome {
    if args.via_running {
        if let Some(outcome) = via_running(&args.names)? {
            return Ok(outcome);
        }
    }
    let (path, mut config) = settings::load(explicit)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(m) = args.maildir {
        config.maildir = Some(m);
    }
    if let Some(s) = args.idle_timeout {
        config.idle_timeout = s;
    }
    if let Some(s) = args.max_wait {
        config.max_wait = s;
    }
    let names = if args.names.is_empty() {
        config.accounts.clone()
    } else {
        for n in &args.names {
            if !config.accounts.contains(n) {
                return Err(Failure::setup(format!(
                    "there is no account {n:?} in {}; see `mailcall-cli account list`",
                    path.display()
                )));
            }
        }
        args.names.clone()
    };
    if names.is_empty() {
        return Err(Failure::setup(format!(
            "no accounts configured in {}: add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
            path.display()
        )));
    }
    let options = ServiceOptions::from_config(&config).map_err(Failure::setup)?;
    let mut trigger_options = TriggerOptions::from_config(&config).map_err(Failure::setup)?;
    // A one-shot fetch: only the manual path (connect command when the link is down) applies.
    trigger_options.paused = true;
    trigger_options.fetch_at_start = false;
    trigger_options.interval = None;
    let others: Vec<String> = config
        .accounts
        .iter()
        .filter(|n| !names.contains(n))
        .cloned()
        .collect();

    let rt = runtime()?;
    let record = rt.block_on(async move {
        let events = EventSink::default();
        let printer = tokio::spawn(print_events(events.subscribe()));
        let shutdown = CancellationToken::new();
        // The listener comes up first: a bind error must show before anything is sent to the ISP.
        let service = service::start(options, Vec::new(), events.clone(), shutdown.clone())
            .await
            .map_err(Failure::failed)?;
        let loaded = tokio::task::spawn_blocking(move || {
            let asked = load_accounts(&names)?;
            // Accept mail for every configured account's domains: an ISP may flush more than asked.
            let extra: Vec<Account> = others
                .iter()
                .filter_map(|n| OsKeyring.load(n).ok())
                .collect();
            Ok::<_, Failure>((names, asked, extra))
        })
        .await
        .map_err(Failure::failed)
        .and_then(|r| r);
        let (names, asked, extra) = match loaded {
            Ok(v) => v,
            Err(e) => {
                service.stop().await;
                printer.abort();
                return Err(e);
            }
        };
        println!(
            "listening on {}; asking {} account(s): {}",
            service.listen_addr(),
            names.len(),
            names.join(", ")
        );
        let triggers = trigger::start(
            service.clone(),
            Vec::new(),
            trigger_options,
            events,
            shutdown.clone(),
        );
        let _ = triggers.set_accounts(asked.into_iter().chain(extra).collect());
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing deliveries in progress, then stopping");
                on_signal.cancel();
            }
        });
        let record = triggers
            .fetch_now(FetchRequest {
                trigger: "cli".into(),
                accounts: Some(names),
            })
            .await
            .map_err(Failure::failed);
        if !matches!(&record, Ok(r) if r.trigger != "connect") {
            // No session ran (the link never came up, or the service stopped): no
            // SessionFinished will end the printer.
            printer.abort();
        }
        let _ = printer.await;
        service.stop().await;
        record
    })?;
    print_summary(&record);
    Ok(if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `fetch --via-running`: the running instance fetches; `None` when none runs (fetch here).
fn via_running(names: &[String]) -> Result<Option<ExitCode>, Failure> {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let rt = runtime()?;
    match rt.block_on(control::fetch(&socket, names)) {
        Ok(record) => {
            println!("asked the running Mailcall ({})", socket.display());
            print_summary(&record);
            Ok(Some(if record.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }))
        }
        Err(e) if e.is_not_running() => {
            println!("no running Mailcall ({}): fetching here", socket.display());
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
                println!("({n} progress line(s) skipped)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event {
            Event::SessionStarted { .. } => {}
            Event::EtrnReply {
                account,
                domain,
                code,
                text,
                outcome,
                will_retry,
            } => {
                let retry = if will_retry { " (will retry)" } else { "" };
                println!(
                    "ETRN {domain} ({account}): {code} {text} - {}{retry}",
                    outcome.describe(domain.trim_start_matches(['@', '#']))
                );
            }
            Event::Connected { peer } => println!("connection from {peer}"),
            Event::MessageStored(m) => println!("stored: {m}"),
            Event::Error { account, message } => match account {
                Some(a) => println!("error ({a}): {message}"),
                None => println!("error: {message}"),
            },
            Event::SessionFinished(_) => return,
        }
    }
}

/// Prints the per-domain summary of a session.
pub fn print_summary(record: &SessionRecord) {
    let secs = (record.finished_at - record.started_at).num_milliseconds() as f64 / 1000.0;
    println!(
        "summary: {} message(s) in {secs:.1} s; ended: {}",
        record.messages.len(),
        record.ended_because
    );
    for m in &record.messages {
        println!("  message: {m}");
    }
    for d in &record.domains {
        let code = d
            .code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "---".into());
        println!(
            "  {} ({}): {code} {}, {} message(s)",
            d.domain,
            d.account,
            d.explain(),
            d.messages
        );
    }
    for e in &record.errors {
        println!("  error: {e}");
    }
}

/// Runs `check NAME`.
pub fn check(explicit: Option<&Path>, name: &str) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    if !config.accounts.iter().any(|a| a == name) {
        return Err(Failure::setup(format!(
            "there is no account {name:?} in {}; see `mailcall-cli account list`",
            path.display()
        )));
    }
    let account = OsKeyring.load(name).map_err(Failure::setup)?;
    let rt = runtime()?;
    let settings = ClientSettings {
        reply_timeout: Duration::from_secs(30),
        ..ClientSettings::default()
    };
    let (info, error, transcript) = rt.block_on(etrn::check_account(&account, &settings));
    for line in &transcript {
        println!("  {line}");
    }
    println!(
        "server: {}",
        if info.greeting.is_empty() {
            "-"
        } else {
            &info.greeting
        }
    );
    println!("TLS: {}", if info.tls { "yes" } else { "no" });
    println!(
        "AUTH: {}",
        match (&account.username, info.authenticated) {
            (None, _) => "not configured",
            (Some(_), true) => "yes",
            (Some(_), false) => "no",
        }
    );
    println!(
        "ETRN advertised: {}",
        if info.etrn_advertised { "yes" } else { "no" }
    );
    // check_account reports a server without ETRN as an error (EtrnNotAdvertised) itself.
    match error {
        Some(e) => Err(Failure::failed(e)),
        None => Ok(ExitCode::SUCCESS),
    }
}
