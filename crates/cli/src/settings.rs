//! `config show` / `config set`: the preferences in the TOML file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use mailcall_core::config::{self, Config};

use crate::failure::{Failure, Outcome};

/// The `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (defaults filled in) and the file's path.
    Show,
    /// Set one preference: listen, maildir, idle-timeout, max-wait, max-message-size, hostname,
    /// interfaces, settle-delay, fetch-interval, fetch-at-start.
    Set {
        /// The setting's key, as in the TOML file.
        key: String,
        /// Its new value.
        value: String,
    },
}

/// Resolves the config path and loads it (defaults when the file does not exist yet).
pub fn load(explicit: Option<&Path>) -> Result<(PathBuf, Config), Failure> {
    let path = config::config_path(explicit).map_err(Failure::setup)?;
    let config = Config::load(&path).map_err(Failure::setup)?;
    Ok((path, config))
}

/// Runs a `config` subcommand.
pub fn run(explicit: Option<&Path>, cmd: ConfigCommand) -> Outcome {
    let (path, mut config) = load(explicit)?;
    match cmd {
        ConfigCommand::Show => {
            println!("# {}", path.display());
            print!("{}", config.effective_toml().map_err(Failure::setup)?);
        }
        ConfigCommand::Set { key, value } => {
            config.set(&key, &value).map_err(Failure::setup)?;
            config.save(&path).map_err(Failure::setup)?;
            println!("set {key} = {value} in {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
