//! `mailcall --fetch` (what an ip-up script calls): ask the running daemon or tray over the
//! control socket and print the session's outcome; else hand it to a running tray over the
//! single-instance plugin's D-Bus name; with nothing running, fetch with a one-shot
//! [`Instance`] and exit.

use std::process::ExitCode;

use mailcall_core::config;
use mailcall_core::control;
use mailcall_core::event::EventSink;
use mailcall_core::hint::Problem;
use mailcall_core::history::{ManualTrigger, SessionRecord};
use mailcall_core::instance::{Instance, InstanceOptions, Mode};
use mailcall_core::mailcall::{Mailcall, MailcallError};
use mailcall_core::printable;
use tauri::{AppHandle, Runtime};

use crate::hints;

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
    crate::state::fetch_in_background(app, ManualTrigger::Control);
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
                tracing::debug!("no running instance ({why}); fetching here");
                match one_shot().await {
                    Ok(record) => report(&record),
                    Err(p) => {
                        eprintln!("mailcall: {}", hints::render(&p));
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

/// Asks whoever serves the control socket (daemon or tray) and waits for the session's record;
/// `None` when nothing listens there.
async fn via_control_socket() -> Result<Option<SessionRecord>, MailcallError> {
    let path = control::default_socket_path()?;
    let running = match Mailcall::connect(path.clone()).await {
        Ok(running) => running,
        Err(e) if e.is_not_running() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let record = running.fetch(ManualTrigger::Control, Vec::new()).await?;
    println!("asked the running Mailcall to fetch ({})", path.display());
    Ok(Some(record))
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

/// Prints a session's summary, each problem with where to fix it; success when every ETRN
/// was accepted.
fn report(record: &SessionRecord) -> ExitCode {
    let summary = record.summary();
    println!("summary: {}", summary.headline);
    for m in &summary.messages {
        println!("  message: {m}");
    }
    // Messages are shown harmless by their Display; the domains' lines hold the ISP's replies.
    for d in &summary.domains {
        println!("  {}", printable::text(d));
    }
    for p in &summary.problems {
        let text = hints::render(p).replace('\n', "\n  ");
        eprintln!("  error: {}", printable::text(&text));
    }
    if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Nothing runs: one fetch with a one-shot instance (the accounts' connect/disconnect commands
/// around it), then out.
async fn one_shot() -> Result<SessionRecord, Problem> {
    let path = config::config_path(None).map_err(|e| Problem::new(e.to_string()))?;
    let mut options = InstanceOptions::load(Mode::OneShot, path.clone())
        .map_err(|e| Problem::new(e.to_string()))?;
    options.fetch_at_start = false;
    if options.config.accounts.is_empty() {
        return Err(Problem::new(format!(
            "no accounts configured in {}: start `mailcall` and add one under Settings → Accounts",
            path.display()
        )));
    }
    let instance = Instance::start(options, EventSink::default())
        .await
        .map_err(|e| e.problem())?;
    for p in instance.skipped() {
        eprintln!("  error: {}", printable::text(&hints::render(p)));
    }
    if instance.service().accounts().is_empty() {
        instance.stop().await;
        return Err(Problem::new("no account could be read from the keyring"));
    }
    let record = tokio::select! {
        r = instance.fetch(ManualTrigger::Control, Vec::new()) => r.map_err(|e| Problem::new(e.to_string())),
        _ = tokio::signal::ctrl_c() => Err(Problem::new("interrupted: the mail not acknowledged stays at the ISP")),
    };
    instance.stop().await;
    record
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
