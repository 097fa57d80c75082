//! `daemon`: the listener and every automatic trigger without a GUI, logging to stderr until
//! SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use mailcall_core::account::Account;
use mailcall_core::control::{self, ControlServer};
use mailcall_core::event::{Event, EventSink};
use mailcall_core::keystore::{AccountStore, OsKeyring};
use mailcall_core::service::{self, ServiceOptions};
use mailcall_core::trigger::{self, TriggerOptions};
use tokio_util::sync::CancellationToken;

use crate::failure::{Failure, Outcome};
use crate::settings;

/// Arguments of `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Listen on this address instead of the configured one (e.g. 0.0.0.0:2525).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Deliver into this Maildir instead of the configured one.
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
}

/// Runs `daemon` until SIGTERM or SIGINT.
pub fn run(explicit: Option<&Path>, args: DaemonArgs) -> Outcome {
    let (path, mut config) = settings::load(explicit)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(m) = args.maildir {
        config.maildir = Some(m);
    }
    let options = ServiceOptions::from_config(&config).map_err(Failure::setup)?;
    let trigger_options = TriggerOptions::from_config(&config).map_err(Failure::setup)?;
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let names = config.accounts.clone();
    let config_path = path.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        // Before the listener: a second daemon is told about the first, not about port 25.
        let control = ControlServer::bind(&socket).map_err(Failure::setup)?;
        let stop_signal = signals(shutdown.clone()).map_err(Failure::failed)?;
        let events = EventSink::default();
        let logger = tokio::spawn(log_events(events.subscribe()));
        let accounts = tokio::task::spawn_blocking(move || load_accounts(&names))
            .await
            .map_err(Failure::failed)??;
        if accounts.is_empty() {
            tracing::warn!(
                "no accounts in {}: the listener runs, but nothing will be fetched; add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
                path.display()
            );
        }
        let service = service::start(options, accounts.clone(), events.clone(), shutdown.clone())
            .await
            .map_err(Failure::failed)?;
        let interfaces = if trigger_options.interfaces.patterns().is_empty() {
            "any but loopback".to_string()
        } else {
            trigger_options.interfaces.patterns().join(",")
        };
        tracing::info!(
            listen = %service.listen_addr(),
            control = %control.path().display(),
            %interfaces,
            settle_secs = trigger_options.settle.as_secs(),
            interval_mins = trigger_options.interval.map_or(0, |i| i.as_secs() / 60),
            fetch_at_start = trigger_options.fetch_at_start,
            "mailcall daemon running; stop with SIGTERM or Ctrl-C"
        );
        let triggers = trigger::start(service.clone(), accounts, trigger_options, events, shutdown.clone());
        let server = tokio::spawn(control.serve(triggers.clone(), shutdown.clone()));
        let reloader = reload_on_hangup(config_path, triggers.clone()).map_err(Failure::failed)?;
        shutdown.cancelled().await;
        reloader.abort();
        tracing::info!("stopping: finishing deliveries in progress");
        service.stop().await;
        triggers.stopped().await;
        let _ = server.await;
        logger.abort();
        stop_signal.abort();
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Loads the named accounts; an unreadable one is logged and skipped so the others still work,
/// but a keyring that cannot be reached at all stops the daemon before it starts.
pub fn load_accounts(names: &[String]) -> Result<Vec<Account>, Failure> {
    let mut accounts = Vec::new();
    for n in names {
        match OsKeyring.load(n) {
            Ok(a) => accounts.push(a),
            Err(e) if e.is_unavailable() => return Err(Failure::setup(e)),
            Err(e) => tracing::error!("account {n} is skipped: {e}"),
        }
    }
    Ok(accounts)
}

/// On SIGHUP, reads the config file's account list and the accounts from the keyring again and
/// hands them to the triggers and the listener (after `account set`/`remove` while running).
fn reload_on_hangup(
    path: PathBuf,
    triggers: trigger::TriggerHandle,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let path = path.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let config = mailcall_core::config::Config::load(&path).map_err(Failure::setup)?;
                load_accounts(&config.accounts)
            })
            .await;
            match loaded {
                Ok(Ok(accounts)) => {
                    tracing::info!(
                        "SIGHUP: reloaded {} account(s): {}",
                        accounts.len(),
                        accounts
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    if triggers.set_accounts(accounts).is_err() {
                        return; // the service is stopping
                    }
                }
                Ok(Err(Failure::Failed(e) | Failure::Setup(e))) => {
                    tracing::error!("SIGHUP: accounts not reloaded, the old ones stay in use: {e}")
                }
                Err(e) => tracing::error!("SIGHUP: accounts not reloaded: {e}"),
            }
        }
    }))
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        shutdown.cancel();
    }))
}

/// Logs every event of the service, one line each.
pub async fn log_events(mut rx: tokio::sync::broadcast::Receiver<Event>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("{n} event(s) not logged (too many at once)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event {
            Event::SessionStarted {
                id,
                trigger,
                accounts,
                ..
            } => tracing::info!(%id, %trigger, "fetch started: {}", accounts.join(", ")),
            Event::EtrnReply {
                account,
                domain,
                code,
                text,
                ..
            } => tracing::info!("ETRN {domain} ({account}): {code} {text}"),
            Event::Connected { peer } => tracing::info!("connection from {peer}"),
            Event::MessageStored(m) => tracing::info!(
                "stored: {} - {} ({} bytes) -> {}",
                m.from
                    .as_deref()
                    .unwrap_or(if m.sender.is_empty() { "<>" } else { &m.sender }),
                m.subject.as_deref().unwrap_or("(no subject)"),
                m.size,
                m.path.display()
            ),
            Event::Error { account, message } => match account {
                Some(a) => tracing::error!("{a}: {message}"),
                None => tracing::error!("{message}"),
            },
            Event::SessionFinished(r) => tracing::info!(
                id = %r.id,
                trigger = %r.trigger,
                "fetch finished: {} message(s), ended: {}, {} error(s)",
                r.messages.len(),
                r.ended_because,
                r.errors.len()
            ),
        }
    }
}
