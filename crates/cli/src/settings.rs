//! `config show` / `config set` / `config unset`: the preferences in the TOML file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use mailcall_core::config::{self, Config, KEYS};

use crate::failure::{Failure, Outcome};
use crate::output::say;

/// The `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (defaults filled in) and the file's path.
    Show,
    /// Set one preference (`config keys` lists them).
    Set {
        /// The setting's key, as in the TOML file.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Bring one preference back to its default.
    Unset {
        /// The setting's key, as in the TOML file.
        key: String,
    },
    /// List the keys and what each holds.
    Keys,
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
            say!("# {}", path.display());
            let text = config.effective_toml().map_err(Failure::setup)?;
            if !crate::output::quiet() {
                print!("{text}");
            }
        }
        ConfigCommand::Set { key, value } => {
            // A relative path is relative to where the command runs, not to the daemon's.
            let value = match key.as_str() {
                "maildir" | "data-dir" | "tls-cert" | "tls-key" => absolute(&value)?,
                _ => value,
            };
            config.set(&key, &value).map_err(Failure::setup)?;
            config.save(&path).map_err(Failure::setup)?;
            say!("set {key} = {value} in {}", path.display());
            crate::account::tell_running();
        }
        ConfigCommand::Unset { key } => {
            config.unset(&key).map_err(Failure::setup)?;
            config.save(&path).map_err(Failure::setup)?;
            say!("{key} is back to its default in {}", path.display());
        }
        ConfigCommand::Keys => {
            for k in KEYS {
                say!("{:<26} {}", k.name, k.about);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `value` as a full path (relative to the current directory), empty staying empty.
pub fn absolute(value: &str) -> Result<String, Failure> {
    if value.trim().is_empty() || Path::new(value).is_absolute() {
        return Ok(value.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Failure::setup(format!(
            "cannot tell the current directory to make {value:?} a full path: {e}"
        ))
    })?;
    Ok(cwd.join(value).display().to_string())
}
