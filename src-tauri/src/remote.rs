//! `mailcall --fetch` (what an ip-up script calls): ask the running daemon or tray over the
//! control socket and print the session's outcome; else hand it to a running tray over the
//! single-instance plugin's D-Bus name; with nothing running, fetch headless and exit.

use std::process::ExitCode;

use mailcall_core::config::{self, Config};
use mailcall_core::control;
use mailcall_core::event::EventSink;
use mailcall_core::history::SessionRecord;
use mailcall_core::keystore::{AccountStore, OsKeyring};
use mailcall_core::service::{self, FetchRequest, ServiceOptions};
use mailcall_core::trigger::{self, TriggerOptions};
use tauri::{AppHandle, Manager, Runtime};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The argument that asks for a fetch.
pub const FETCH_FLAG: &str = "--fetch";

/// The app's identifier in `tauri.conf.json`; the single-instance plugin derives its D-Bus name
/// from it, so both must change together (a unit test checks).
pub const APP_IDENTIFIER: &str = "io.mailcall.Mailcall";

/// The running instance's D-Bus name and object path (as tauri-plugin-single-instance 2.x
/// builds them: identifier + `.SingleInstance`, dots to slashes).
pub fn single_instance_address() -> (String, String) {
    let name = format!("{APP_IDENTIFIER}.SingleInstance");
    let path = format!("/{}", name.replace('.', "/").replace('-', "_"));
    (name, path)
}

/// In the running app: a `--fetch` arrived from another process over D-Bus (the control socket
/// was not there). Like a FETCH on the socket, it is a manual fetch: Pause does not stop it.
pub fn fetch_requested<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        if let Err(e) = state.fetch_now(&app, "control").await {
            let notices = state.status().service_failed(&e);
            state.notifier.send(notices);
            crate::state::refresh(&app);
        }
    });
}

/// Runs `mailcall --fetch` from a shell or script.
pub fn fetch_from_command_line() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailcall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match via_control_socket().await {
            Ok(Some(record)) => return report(&record),
            Ok(None) => {}
            Err(e) => {
                eprintln!("mailcall: {e}");
                return ExitCode::FAILURE;
            }
        }
        match forward().await {
            Ok(()) => {
                println!("asked the running Mailcall to fetch");
                ExitCode::SUCCESS
            }
            Err(why) => {
                tracing::debug!("no running instance ({why}); fetching headless");
                headless().await
            }
        }
    })
}

/// Asks whoever serves the control socket (daemon or tray) and waits for the session's record;
/// `None` when nothing listens there.
async fn via_control_socket() -> Result<Option<SessionRecord>, control::ControlError> {
    let path = control::default_socket_path()?;
    match control::fetch(&path, &[]).await {
        Ok(record) => {
            println!("asked the running Mailcall to fetch ({})", path.display());
            Ok(Some(record))
        }
        Err(e) if e.is_not_running() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn forward() -> zbus::Result<()> {
    let (name, path) = single_instance_address();
    let conn = zbus::Connection::session().await?;
    let argv: Vec<String> = std::env::args().collect();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    conn.call_method(
        Some(name.as_str()),
        path.as_str(),
        Some("org.SingleInstance.DBus"),
        "ExecuteCallback",
        &(argv, cwd),
    )
    .await?;
    Ok(())
}

/// Prints a session's outcome; success when every ETRN was accepted.
fn report(record: &SessionRecord) -> ExitCode {
    println!(
        "fetched {} message(s); ended: {}",
        record.messages.len(),
        record.ended_because
    );
    for d in &record.domains {
        println!(
            "  {} ({}): {}",
            d.domain,
            d.account,
            d.outcome.describe(d.domain.trim_start_matches(['@', '#']))
        );
    }
    for e in &record.errors {
        eprintln!("  error: {e}");
    }
    if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn headless() -> ExitCode {
    match headless_fetch().await {
        Ok(record) => report(&record),
        Err(e) => {
            eprintln!("mailcall: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn headless_fetch() -> anyhow::Result<SessionRecord> {
    let path = config::config_path(None)?;
    let config = Config::load(&path)?;
    if config.accounts.is_empty() {
        anyhow::bail!(
            "no accounts configured in {}: start `mailcall` and add one under Settings…",
            path.display()
        );
    }
    let options = ServiceOptions::from_config(&config)?;
    let mut trigger_options = TriggerOptions::from_config(&config)?;
    // A one-shot fetch: only the manual path (connect command when the link is down) applies.
    trigger_options.paused = true;
    trigger_options.fetch_at_start = false;
    trigger_options.interval = None;
    let names = config.accounts.clone();
    let accounts = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .map(|n| OsKeyring.load(n))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let shutdown = CancellationToken::new();
    let events = EventSink::default();
    let service =
        service::start(options, accounts.clone(), events.clone(), shutdown.clone()).await?;
    let triggers = trigger::start(
        service.clone(),
        accounts,
        trigger_options,
        events,
        shutdown.clone(),
    );
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    // Through the triggers: the accounts' connect/disconnect commands run around the fetch.
    let record = triggers.fetch_now(FetchRequest::all("control")).await;
    shutdown.cancel();
    service.stop().await;
    triggers.stopped().await;
    Ok(record?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dbus_address_follows_the_configured_identifier() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).expect("valid JSON");
        assert_eq!(conf["identifier"], APP_IDENTIFIER);
        assert_eq!(
            single_instance_address(),
            (
                "io.mailcall.Mailcall.SingleInstance".to_string(),
                "/io/mailcall/Mailcall/SingleInstance".to_string()
            )
        );
    }
}
