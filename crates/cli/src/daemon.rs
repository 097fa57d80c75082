//! `daemon`: a daemon-mode [`Instance`] (the listener when an ETRN account needs it, every
//! automatic trigger, the control socket) without a GUI, logging to stderr (the journal under
//! systemd) or `--log-file`, until SIGTERM or SIGINT; SIGHUP reads the accounts again (and binds
//! the listener if an ETRN account came).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use mailcall_core::config::ConfigKey;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::instance::{Instance, InstanceOptions, Mode};
use mailcall_core::keystore;
use tokio_util::sync::CancellationToken;

use crate::failure::{Failure, Outcome};
use crate::hints;
use crate::output::runtime;
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
    /// Append the log to this file (created readable by you only) instead of stderr. Under
    /// systemd stderr goes to the journal, with syslog priorities and without timestamps.
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

impl DaemonArgs {
    /// `--log-file`, read before the command runs (the log is set up first).
    pub fn log_file(&self) -> Option<&Path> {
        self.log_file.as_deref()
    }
}

/// Runs `daemon` until SIGTERM or SIGINT.
pub fn run(explicit: Option<&Path>, args: DaemonArgs) -> Outcome {
    let (path, mut config) = settings::load(explicit)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(m) = args.maildir {
        let m = settings::absolute(&m.display().to_string())?;
        config.set(ConfigKey::Maildir, &m).map_err(Failure::setup)?;
    }
    if config.accounts.is_empty() {
        tracing::warn!(
            "no accounts in {}: the listener runs, but nothing will be fetched; add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
            path.display()
        );
    }
    let options = InstanceOptions {
        mode: Mode::Daemon,
        fetch_at_start: config.fetch_at_start,
        store: keystore::for_config(&config, &path),
        config_path: path,
        config: config.clone(),
        control_socket: None,
    };
    runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop_signal = signals(shutdown.clone()).map_err(Failure::failed)?;
        let events = EventSink::default();
        let logger = tokio::spawn(log_events(events.subscribe()));
        // Every start failure is a setup problem (exit 2).
        let instance = Instance::start(options, events)
            .await
            .map_err(|e| Failure::setup_problem(&e.problem()))?;
        let instance = Arc::new(instance);
        let interfaces = if config.interfaces.is_empty() {
            "any but loopback".to_string()
        } else {
            config.interfaces.join(",")
        };
        let listen = match instance.service().listen_addr() {
            Some(addr) => addr.to_string(),
            None => "none (ODMR accounts only: no listener, no inbound port)".to_string(),
        };
        tracing::info!(
            %listen,
            control = %instance.control_path().map(|p| p.display().to_string()).unwrap_or_default(),
            %interfaces,
            settle_secs = config.settle_delay,
            interval_mins = config.fetch_interval,
            fetch_at_start = config.fetch_at_start,
            paused = instance.triggers().is_paused(),
            "mailcall daemon running; stop with SIGTERM or Ctrl-C"
        );
        let reloader = reload_on_hangup(instance.clone()).map_err(Failure::failed)?;
        shutdown.cancelled().await;
        reloader.abort();
        let _ = reloader.await;
        tracing::info!("stopping: finishing deliveries in progress");
        match Arc::try_unwrap(instance) {
            Ok(instance) => instance.stop().await,
            Err(_) => tracing::error!("the instance is still in use at shutdown; stopping anyway"),
        }
        logger.abort();
        stop_signal.abort();
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// On SIGHUP, reads the config file's account list and the accounts from the keyring again
/// (`account set`/`remove` ask over the control socket; SIGHUP does the same for scripts).
#[cfg(unix)]
fn reload_on_hangup(instance: Arc<Instance>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match instance.reload().await {
                Ok(_) => tracing::info!("SIGHUP: reloaded the accounts"),
                Err(e) => {
                    tracing::error!("SIGHUP: accounts not reloaded, the old ones stay in use: {e}")
                }
            }
        }
    }))
}

/// Without SIGHUP, the accounts are read again over the control channel (`RELOAD`), which
/// `account set`/`remove` use.
#[cfg(not(unix))]
fn reload_on_hangup(_instance: Arc<Instance>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

/// Cancels `shutdown` on each way Windows asks a console program to end, SIGTERM's and SIGINT's
/// counterparts: Ctrl-C, Ctrl-Break, the console window closed, the user logging off, the system
/// shutting down. The control file goes with the control channel then (a process ended by force,
/// by Task Manager or `taskkill /F`, leaves it: the next start replaces it, and meanwhile
/// `status` says nothing answers there).
#[cfg(windows)]
fn signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::windows;
    let mut c = windows::ctrl_c()?;
    let mut brk = windows::ctrl_break()?;
    let mut close = windows::ctrl_close()?;
    let mut logoff = windows::ctrl_logoff()?;
    let mut off = windows::ctrl_shutdown()?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = c.recv() => "Ctrl-C",
            _ = brk.recv() => "Ctrl-Break",
            _ = close.recv() => "the console closing",
            _ = logoff.recv() => "the user logging off",
            _ = off.recv() => "the system shutting down",
        };
        tracing::info!("{name}: stopping");
        shutdown.cancel();
    }))
}

/// Cancels `shutdown` on Ctrl-C.
#[cfg(not(any(unix, windows)))]
fn signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
            shutdown.cancel();
        }
    }))
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
#[cfg(unix)]
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

/// Logs every event of the instance, one line each.
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
        match &event {
            Event::Error(p) => {
                tracing::error!("{}", mailcall_core::printable::text(&hints::render(p)))
            }
            Event::SessionFinished(r) => {
                let s = r.summary();
                tracing::info!(id = %r.id, trigger = %r.trigger, "fetch finished: {}", s.headline);
                for d in &s.domains {
                    tracing::info!("  {}", mailcall_core::printable::text(d));
                }
            }
            Event::SessionStarted { id, .. } => {
                let line = event.line().unwrap_or_default();
                tracing::info!(%id, "{}", mailcall_core::printable::text(&line))
            }
            // Lines hold subjects and servers' replies: the log may end up on a terminal.
            other => tracing::info!(
                "{}",
                mailcall_core::printable::text(&other.line().unwrap_or_default())
            ),
        }
    }
}
