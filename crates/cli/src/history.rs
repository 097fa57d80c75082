//! `history`: recent fetch sessions from the history file in the config's data directory.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::failure::{Failure, Outcome};
use crate::output::say;
use crate::settings;

/// Arguments of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many sessions to show (newest last).
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Print the raw JSON records, one per line.
    #[arg(long)]
    json: bool,
    /// Include the SMTP transcripts (AUTH is always redacted).
    #[arg(long)]
    transcript: bool,
}

/// Runs `history`.
pub fn run(explicit: Option<&Path>, args: HistoryArgs) -> Outcome {
    let (_, config) = settings::load(explicit)?;
    let history = config.history().map_err(Failure::setup)?;
    let (records, bad) = history.recent(args.limit).map_err(Failure::failed)?;
    if bad > 0 {
        eprintln!(
            "warning: {bad} damaged line(s) in {} were skipped",
            history.path().display()
        );
    }
    if records.is_empty() && !args.json {
        say!("no fetch sessions yet ({})", history.path().display());
    }
    for record in &records {
        if args.json {
            let line = serde_json::to_string(record).map_err(Failure::failed)?;
            say!("{}", mailcall_core::printable::json(&line));
            continue;
        }
        say!(
            "{} {} ({}) started {}",
            format!("{:?}", record.kind).to_lowercase(),
            record.id,
            record.trigger,
            record
                .started_at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
        );
        crate::fetch::print_summary(record);
        if args.transcript {
            for (account, lines) in &record.transcripts {
                say!("  transcript ({account}):");
                for line in lines {
                    say!("    {line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
