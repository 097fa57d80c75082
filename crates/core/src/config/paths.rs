//! Where Mailcall's files live: the config file (explicit, `MAILCALL_CONFIG`, or the platform
//! config directory), the data directory, and the Maildir and history in it.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The environment variable that overrides the config file's path.
pub const CONFIG_ENV: &str = "MAILCALL_CONFIG";

impl Config {
    /// The Maildir to deliver into: the configured one, or `Maildir` in the data directory.
    pub fn maildir_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.maildir {
            Some(p) => Ok(p.clone()),
            None => Ok(self.data_path()?.join("Maildir")),
        }
    }

    /// The data directory: the configured one, or the platform's (see [`data_dir`]).
    pub fn data_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.data_dir {
            Some(p) => Ok(p.clone()),
            None => data_dir(),
        }
    }

    /// The history file in the data directory.
    pub fn history(&self) -> Result<crate::history::History, ConfigError> {
        Ok(
            crate::history::History::new(self.data_path()?.join(crate::history::HISTORY_FILE))
                .rotated_at(crate::history::Rotation {
                    max_size: self.history_max_size,
                    max_age_days: self.history_max_age,
                }),
        )
    }
}

/// Where the config file is: the explicit path, then `MAILCALL_CONFIG`, then the platform
/// config dir.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("mailcall").join("config.toml"))
        .ok_or(ConfigError::NoDirectory { what: "config" })
}

/// The platform's data directory for Mailcall (history, state, default Maildir): the platform
/// data dir + `mailcall`. A config's `data-dir` overrides it ([`Config::data_path`]).
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    dirs::data_dir()
        .map(|d| d.join("mailcall"))
        .ok_or(ConfigError::NoDirectory { what: "data" })
}
