//! `generate` (hidden): shell completions and man pages made from the CLI's own clap definitions,
//! so what the package ships can never drift from the real options (scripts/package.sh runs it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::failure::{Failure, Outcome};

/// What `generate` makes.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for SHELL on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write man pages into DIR: mailcall-cli.1 and one per subcommand (mailcall-cli-fetch.1, ...).
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// The binary name the completions and pages are for (what users type).
const BIN: &str = "mailcall-cli";

/// Runs `generate`.
pub fn run(cmd: GenerateCommand) -> Outcome {
    let mut command = crate::Cli::command();
    match cmd {
        GenerateCommand::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, BIN, &mut script);
            std::io::stdout()
                .write_all(&script)
                .map_err(|e| Failure::failed(format!("cannot write the completions: {e}")))?;
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::setup(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
            clap_mangen::generate_to(command, &dir).map_err(|e| {
                Failure::failed(format!(
                    "cannot write man pages into {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
