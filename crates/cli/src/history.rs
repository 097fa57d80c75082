//! `history`: recent fetch sessions from the data directory's history file.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use mailcall_core::config;
use mailcall_core::history::{History, HISTORY_FILE};

use crate::failure::{Failure, Outcome};
use crate::fetch::print_summary;

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
pub fn run(_explicit: Option<&Path>, args: HistoryArgs) -> Outcome {
    let dir = config::data_dir().map_err(Failure::setup)?;
    let history = History::new(dir.join(HISTORY_FILE));
    let (records, bad) = history.recent(args.limit).map_err(Failure::failed)?;
    if bad > 0 {
        eprintln!(
            "warning: {bad} damaged line(s) in {} were skipped",
            history.path().display()
        );
    }
    if records.is_empty() && !args.json {
        println!("no fetch sessions yet ({})", history.path().display());
    }
    for record in &records {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(record).map_err(Failure::failed)?
            );
            continue;
        }
        println!(
            "session {} ({}) started {}",
            record.id,
            record.trigger,
            record
                .started_at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
        );
        print_summary(record);
        if args.transcript {
            for (account, lines) in &record.transcripts {
                println!("  transcript ({account}):");
                for line in lines {
                    println!("    {line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
