//! `config show` / `config set` / `config unset`: the preferences in the TOML file; and
//! `config set-submit-password`, the submission login's password into the keyring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use mailcall_core::config::{self, Config, ConfigKey};
use mailcall_core::control;

use crate::failure::{Failure, Outcome};
use crate::hints;
use crate::output::say;

/// The `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (defaults filled in) and the file's path.
    Show {
        /// One JSON object of the effective settings.
        #[arg(long)]
        json: bool,
    },
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
    /// Keep the submission login's password (for `submit-user`) in the OS keyring, read from
    /// one line of standard input; never shown.
    SetSubmitPassword,
}

/// Resolves the config path and loads it (defaults when the file does not exist yet). A file
/// whose one bad value `config unset KEY` repairs says so, as a command to type.
pub fn load(explicit: Option<&Path>) -> Result<(PathBuf, Config), Failure> {
    let path = config::config_path(explicit).map_err(Failure::setup)?;
    match Config::load(&path) {
        Ok(config) => Ok((path, config)),
        Err(e) => Err(match e.key().filter(|k| repaired_by_unset(&path, *k)) {
            Some(key) => Failure::setup(format!("{e}\n  to fix: {}", hints::unset_command(key))),
            None => Failure::setup(e),
        }),
    }
}

/// The config file's lock (see [`Config::lock`]), for a command that loads, changes and saves
/// it.
pub fn lock(explicit: Option<&Path>) -> Result<mailcall_core::fsutil::FileLock, Failure> {
    let path = config::config_path(explicit).map_err(Failure::setup)?;
    Config::lock(&path).map_err(Failure::setup)
}

/// Whether `config unset key` would make the file at `path` valid.
fn repaired_by_unset(path: &Path, key: ConfigKey) -> bool {
    let Ok(mut config) = Config::load_to_change(path, key) else {
        return false;
    };
    config.unset(key).is_ok() && config.validate().is_ok()
}

/// The config to change `key` in: a file broken only in that key loads, so `set`/`unset`
/// repair it.
fn load_to_change(explicit: Option<&Path>, key: ConfigKey) -> Result<(PathBuf, Config), Failure> {
    let path = config::config_path(explicit).map_err(Failure::setup)?;
    match Config::load_to_change(&path, key) {
        Ok(config) => Ok((path, config)),
        Err(_) => load(explicit),
    }
}

/// Runs a `config` subcommand.
pub fn run(explicit: Option<&Path>, cmd: ConfigCommand) -> Outcome {
    // set/unset load and save under the config's lock: another writer's change is kept.
    let _lock = match cmd {
        ConfigCommand::Set { .. } | ConfigCommand::Unset { .. } => Some(lock(explicit)?),
        _ => None,
    };
    let (path, mut config) = match &cmd {
        // A name that is no key is said by `set`/`unset`, after the file's own faults.
        ConfigCommand::Set { key, .. } | ConfigCommand::Unset { key } => match key.parse() {
            Ok(key) => load_to_change(explicit, key)?,
            Err(_) => load(explicit)?,
        },
        _ => load(explicit)?,
    };
    match cmd {
        ConfigCommand::Show { json: true } => {
            let mut shown = config.clone();
            shown.maildir = Some(config.maildir_path().map_err(Failure::setup)?);
            shown.data_dir = Some(config.data_path().map_err(Failure::setup)?);
            shown.hostname = Some(config.hostname());
            let mut value = serde_json::to_value(&shown).map_err(Failure::failed)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("config-file".into(), path.display().to_string().into());
            }
            crate::output::print_json(&value.to_string());
        }
        ConfigCommand::Show { json: false } => {
            say!("# {}", path.display());
            let text = config.effective_toml().map_err(Failure::setup)?;
            if !crate::output::quiet() {
                print!("{text}");
            }
        }
        ConfigCommand::Set { key, value } => {
            let key: ConfigKey = key.parse().map_err(Failure::setup)?;
            // A relative path is relative to where the command runs, not to the daemon's.
            let value = if key.kind().is_path() {
                absolute(&value)?
            } else {
                value
            };
            config.set(key, &value).map_err(Failure::setup)?;
            config.save(&path).map_err(Failure::setup)?;
            say!("set {key} = {value} in {}", path.display());
            note_running(key);
        }
        ConfigCommand::Unset { key } => {
            let key: ConfigKey = key.parse().map_err(Failure::setup)?;
            config.unset(key).map_err(Failure::setup)?;
            config.save(&path).map_err(Failure::setup)?;
            say!("{key} is back to its default in {}", path.display());
            note_running(key);
        }
        ConfigCommand::Keys => {
            for k in ConfigKey::settable() {
                say!("{:<26} {}", k.name(), k.about());
            }
        }
        ConfigCommand::SetSubmitPassword => {
            if config.account_store != config::AccountStoreKind::Keyring {
                return Err(Failure::setup(
                    "the submission password lives in the OS keyring, and accounts here live in a \
                     file (account-store = file): let LAN hosts submit through \
                     submit-allowed-peers instead, or keep accounts in the keyring",
                ));
            }
            let password = read_submit_password()?;
            mailcall_core::keystore::save_submit_password(&password).map_err(Failure::setup)?;
            let user = config.submit_user.as_deref().unwrap_or("(none yet)");
            say!("the submission password is in the keyring (submit-user: {user})");
            if config.submit_user.is_none() {
                say!("set the login's user name too: mailcall-cli config set submit-user NAME");
            }
            note_running(ConfigKey::SubmitUser);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Says so when a daemon or tray runs: it read its preferences when it started (only accounts
/// are read again while it runs), so a changed preference applies from its next start.
fn note_running(key: ConfigKey) {
    let Ok(socket) = control::default_socket_path() else {
        return;
    };
    let Ok(rt) = crate::output::runtime() else {
        return;
    };
    if rt
        .block_on(control::Client::new(socket.clone()).status())
        .is_ok()
    {
        say!(
            "a Mailcall is running ({}): it uses the new {key} from its next start; restart it to use it now",
            socket.display()
        );
    }
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

/// One line of standard input, without its line end; empty is refused.
fn read_submit_password() -> Result<String, Failure> {
    use std::io::BufRead as _;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Failure::setup(format!("cannot read the password from standard input: {e}"))
    })?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(Failure::setup(
            "read an empty password: pipe it in, e.g. `printf '%s\\n' \"$PW\" | mailcall-cli config set-submit-password`",
        ));
    }
    Ok(password)
}
