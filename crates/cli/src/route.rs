//! `route add|list|remove`: where each recipient's mail goes, kept in the config file's
//! `[[routes]]` table. The rules are the core's ([`Config::add_route`]); this file maps the
//! command line onto them and tells a running Mailcall.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mailcall_core::account::Security;
use mailcall_core::config::{Config, RouteEntry, UnknownRecipients};

use crate::failure::{Failure, Outcome};
use crate::output::say;
use crate::settings;

/// The `route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Add a route, or replace the one for the same recipient pattern.
    Add(AddArgs),
    /// List the routes, most specific first, and what unknown recipients get.
    List,
    /// Remove the route for a recipient pattern.
    Remove {
        /// The pattern, as given to `route add`.
        recipient: String,
    },
}

/// Arguments of `route add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Whose mail: alice@example.com, @example.com (the rest of the domain) or '*' (everything
    /// else).
    recipient: String,
    /// Where it goes: maildir:PATH (a Maildir or a Maildir++ folder such as
    /// ~/Maildir/.Example-org), lmtp:HOST:PORT, lmtp:unix:PATH, or smtp:HOST:PORT.
    destination: String,
    /// smtp: only: none (default), starttls or tls; certificates are always verified.
    #[arg(long)]
    security: Option<Security>,
    /// smtp: only: a PEM file of CA certificates to trust for the server.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
}

/// Runs a `route` subcommand.
pub fn run(explicit: Option<&Path>, cmd: RouteCommand) -> Outcome {
    // A change loads and saves under the config's lock: another writer's change is kept.
    let _lock = match cmd {
        RouteCommand::List => None,
        _ => Some(settings::lock(explicit)?),
    };
    let (path, mut config) = settings::load(explicit)?;
    match cmd {
        RouteCommand::Add(args) => {
            // A relative path is relative to where the command runs, not to the daemon's.
            let destination = match args.destination.split_once(':') {
                Some((kind, rest)) if kind.eq_ignore_ascii_case("maildir") => {
                    format!("maildir:{}", settings::absolute(rest)?)
                }
                _ => args.destination.clone(),
            };
            let ca_file = args
                .ca_file
                .map(|p| settings::absolute(&p.display().to_string()).map(PathBuf::from))
                .transpose()?;
            let replaced = config.route_table().ok().and_then(|t| {
                let pattern = args.recipient.parse().ok()?;
                t.routes()
                    .iter()
                    .find(|r| r.pattern == pattern)
                    .map(|r| r.target.to_string())
            });
            let route = config
                .add_route(RouteEntry {
                    recipient: args.recipient,
                    destination,
                    security: args.security,
                    ca_file,
                })
                .map_err(|e| config_problem(&e))?;
            config.save(&path).map_err(Failure::setup)?;
            match replaced {
                Some(old) => say!("route {route} (was {old}) in {}", path.display()),
                None => say!("route {route} added in {}", path.display()),
            }
            crate::account::tell_running();
        }
        RouteCommand::List => list(&path, &config)?,
        RouteCommand::Remove { recipient } => {
            if !config
                .remove_route(&recipient)
                .map_err(|e| config_problem(&e))?
            {
                return Err(Failure::failed(format!(
                    "there is no route for {recipient:?} in {}; see `mailcall-cli route list`",
                    path.display()
                )));
            }
            config.save(&path).map_err(Failure::setup)?;
            say!("route for {recipient} removed from {}", path.display());
            crate::account::tell_running();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A broken route rule as a setup failure with the command that fixes it (hints as data).
fn config_problem(e: &mailcall_core::config::ConfigError) -> Failure {
    let fix = e.key().map(mailcall_core::hint::Setting::config);
    Failure::setup_problem(&mailcall_core::hint::Problem::new(e.to_string()).fixed_by(fix))
}

fn list(path: &Path, config: &Config) -> Result<(), Failure> {
    let maildir = config.maildir_path().map_err(Failure::setup)?;
    let table = config.route_table().map_err(Failure::setup)?;
    say!("# {}", path.display());
    if table.is_empty() {
        say!("no routes: all mail goes into {}", maildir.display());
        return Ok(());
    }
    // Most specific first, as they are looked up.
    let mut routes: Vec<_> = table.routes().to_vec();
    routes.sort_by_key(|r| match r.pattern {
        mailcall_core::routing::Pattern::Address(_) => 0,
        mailcall_core::routing::Pattern::Domain(_) => 1,
        mailcall_core::routing::Pattern::Any => 2,
    });
    let width = routes
        .iter()
        .map(|r| r.pattern.to_string().len())
        .max()
        .unwrap_or(0);
    for r in &routes {
        say!("{:<width$}  ->  {}", r.pattern.to_string(), r.target);
    }
    let has_any = routes
        .iter()
        .any(|r| r.pattern == mailcall_core::routing::Pattern::Any);
    match (has_any, config.unknown_recipients) {
        (true, _) => say!("everything else: the * route"),
        (false, UnknownRecipients::CatchAll) => say!(
            "recipients no route names (unknown-recipients = catch-all): into {}",
            maildir.display()
        ),
        (false, UnknownRecipients::Reject) => {
            say!("recipients no route names (unknown-recipients = reject): refused with 550 5.1.1")
        }
    }
    Ok(())
}
