//! `pause`, `resume` and `status`: the running daemon or tray, through the core's handle on it;
//! when nothing runs, `pause`/`resume` set the remembered switch for the next start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mailcall_core::control;
use mailcall_core::instance::SavedState;
use mailcall_core::mailcall::{Mailcall, MailcallError};

use crate::failure::{Failure, Outcome};
use crate::output::{runtime, say};
use crate::settings;

/// Warns (on stderr, unless `--quiet`) when the Mailcall that answered runs with another config
/// file than this run's (`--config PATH`, or the default one): `what` it did was with that
/// one's accounts and settings. One Mailcall runs per user (it owns the control socket).
/// Returns the running one's config file when it differs, for hints that must name it.
pub fn note_other_config(
    explicit: Option<&Path>,
    running: Option<&str>,
    what: &str,
) -> Option<PathBuf> {
    let running = PathBuf::from(running?);
    let ours = mailcall_core::config::config_path(explicit).ok()?;
    if mailcall_core::fsutil::same_path(&ours, &running) {
        return None;
    }
    if !crate::output::quiet() {
        eprintln!(
            "note: the running Mailcall uses {}, not {}: {what}; to run one with {}, stop that one first",
            running.display(),
            ours.display(),
            ours.display()
        );
    }
    Some(running)
}

/// Whether `e` says that nothing runs (so the command does its work without it).
fn not_running(e: &MailcallError) -> bool {
    matches!(e, MailcallError::Remote(e) if e.is_not_running())
}

/// `pause` / `resume`.
pub fn set_paused(explicit: Option<&Path>, paused: bool) -> Outcome {
    let word = if paused { "paused" } else { "resumed" };
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let rt = runtime()?;
    let asked = rt.block_on(async {
        let running = Mailcall::connect(socket).await?;
        running.set_paused(paused).await?;
        Ok::<_, MailcallError>(running)
    });
    match asked {
        Ok(running) => {
            say!("automatic fetching {word} in the running Mailcall (and for its next start)");
            let theirs = running.running_config().map(|p| p.display().to_string());
            note_other_config(
                explicit,
                theirs.as_deref(),
                &format!("it is the one {word}"),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if not_running(&e) => {
            let (_, config) = settings::load(explicit)?;
            SavedState { paused }
                .save(&config)
                .map_err(Failure::setup)?;
            say!("automatic fetching {word}: no Mailcall runs now; the next one starts {word}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Failure::failed(e)),
    }
}

/// `status`.
pub fn status(explicit: Option<&Path>, json: bool) -> Outcome {
    let socket = control::default_socket_path().map_err(Failure::setup)?;
    let asked =
        runtime()?.block_on(async { Mailcall::connect(socket.clone()).await?.status().await });
    match asked {
        Ok(s) if json => {
            note_other_config(explicit, s.config.as_deref(), "this is its state");
            let mut value = serde_json::to_value(&s).map_err(Failure::failed)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("running".into(), true.into());
                object.insert("socket".into(), socket.display().to_string().into());
            }
            crate::output::print_json(&value.to_string());
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => {
            say!("running: yes ({})", socket.display());
            if let Some(config) = &s.config {
                say!("config: {config}");
            }
            note_other_config(explicit, s.config.as_deref(), "this is its state");
            say!(
                "listening on: {}",
                s.listen.map_or_else(
                    || "nothing (ODMR accounts only: no listener needed)".to_string(),
                    |a| a.to_string()
                )
            );
            say!("accounts: {}", s.accounts.join(", "));
            say!("fetching now: {}", if s.fetching { "yes" } else { "no" });
            say!(
                "automatic fetching: {}",
                if s.paused { "paused" } else { "on" }
            );
            match &s.links {
                Some(l) if l.is_empty() => say!("links up: none"),
                Some(l) => say!("links up: {}", l.join(", ")),
                None => say!("links up: unknown (interfaces cannot be watched)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if not_running(&e) => {
            let (_, config) = settings::load(explicit)?;
            let saved = SavedState::load(&config).map_err(Failure::setup)?;
            if json {
                crate::output::print_json(
                    &serde_json::json!({
                        "running": false,
                        "socket": socket.display().to_string(),
                        "paused": saved.paused,
                    })
                    .to_string(),
                );
                return Ok(ExitCode::from(3));
            }
            say!("running: no (nothing answers on {})", socket.display());
            say!(
                "automatic fetching: {} at the next start",
                if saved.paused { "paused" } else { "on" }
            );
            // Not running is a state to report, not a failure of `status`.
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(Failure::failed(e)),
    }
}
