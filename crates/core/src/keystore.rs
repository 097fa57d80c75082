//! Where accounts are kept: the OS keyring (one entry per account, service `mailcall`, user =
//! account name, the whole account as JSON, password included), or — for a machine without a
//! keyring, such as a home server running the daemon — a file beside the config that holds every
//! setting but a password: such accounts get theirs from a password command
//! ([`crate::user_command::password_from_command`]), so no password is ever written to a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::config::{AccountStoreKind, Config};

/// The file accounts are kept in with `account-store = file`, beside the config file.
pub const ACCOUNTS_FILE: &str = "accounts.toml";

/// The keyring service name under which Mailcall's entries live.
pub const SERVICE: &str = "mailcall";

/// The keyring could not give or take an account.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// No entry for this account.
    #[error(
        "there is no account {0:?} where accounts are kept: add it again, or check the list of accounts"
    )]
    NotFound(String),
    /// The keyring service is missing, not running or locked.
    #[error("the OS keyring is not available: {0}. Start and unlock your keyring (GNOME Keyring, KWallet or KeePassXC with its Secret Service enabled, inside your desktop session), then try again; on a machine without a desktop session, keep the accounts in a file instead (the account-store setting) with a password command per account")]
    Unavailable(String),
    /// The keyring is there but locked, or access was refused.
    #[error("the OS keyring is locked or refused access ({0}). Unlock it (log in to your desktop session, or unlock the \"login\" keyring in your keyring manager such as Seahorse or KeePassXC), then try again")]
    Locked(String),
    /// The entry exists but does not hold a Mailcall account.
    #[error(
        "the keyring entry for account {name:?} is damaged ({message}): save the account again"
    )]
    Corrupt {
        /// The account.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The account file was asked to keep a password.
    #[error("account {0:?} is not saved: the account file holds no passwords (it is a plain file); give the account a password command that prints its password (e.g. `pass show {0}`), or keep accounts in the OS keyring")]
    PasswordInFile(String),
    /// The account file cannot be read or written.
    #[error("cannot use the account file {path}: {reason}. Check the file and its directory")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl KeystoreError {
    /// Whether the keyring itself is unreachable (as opposed to one entry being missing or bad).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            KeystoreError::Unavailable(_) | KeystoreError::Locked(_)
        )
    }
}

/// Where accounts are kept. The OS keyring in production; a map in unit tests.
pub trait AccountStore: Send + Sync {
    /// Reads one account.
    fn load(&self, name: &str) -> Result<Account, KeystoreError>;
    /// Writes one account whole, replacing any previous version.
    fn save(&self, account: &Account) -> Result<(), KeystoreError>;
    /// Deletes one account; `Ok(false)` when it was not there.
    fn remove(&self, name: &str) -> Result<bool, KeystoreError>;
    /// Where the accounts are, in words for a message ("the keyring", a file's path).
    fn place(&self) -> String {
        "the keyring".into()
    }
}

/// The OS keyring through the `keyring` crate (Secret Service on Linux). Calls block on D-Bus:
/// from async code, call it inside `spawn_blocking`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeyring;

fn entry(name: &str) -> Result<keyring::Entry, KeystoreError> {
    keyring::Entry::new(SERVICE, name).map_err(|e| map_error(name, e))
}

fn map_error(name: &str, e: keyring::Error) -> KeystoreError {
    match e {
        keyring::Error::NoEntry => KeystoreError::NotFound(name.to_string()),
        keyring::Error::BadEncoding(_) | keyring::Error::BadDataFormat(..) => {
            KeystoreError::Corrupt {
                name: name.to_string(),
                message: e.to_string(),
            }
        }
        keyring::Error::NoDefaultStore => KeystoreError::Unavailable(
            "no Secret Service could be reached on the D-Bus session bus".into(),
        ),
        keyring::Error::NoStorageAccess(detail) => KeystoreError::Locked(detail.to_string()),
        other => KeystoreError::Unavailable(other.to_string()),
    }
}

impl AccountStore for OsKeyring {
    fn load(&self, name: &str) -> Result<Account, KeystoreError> {
        let text = entry(name)?
            .get_password()
            .map_err(|e| map_error(name, e))?;
        let account: Account = serde_json::from_str(&text).map_err(|e| KeystoreError::Corrupt {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(account)
    }

    fn save(&self, account: &Account) -> Result<(), KeystoreError> {
        let text = serde_json::to_string(account).map_err(|e| KeystoreError::Corrupt {
            name: account.name.clone(),
            message: e.to_string(),
        })?;
        entry(&account.name)?
            .set_password(&text)
            .map_err(|e| map_error(&account.name, e))
    }

    fn remove(&self, name: &str) -> Result<bool, KeystoreError> {
        match entry(name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_error(name, e)),
        }
    }
}

/// Accounts in a file (`accounts.toml` beside the config, mode 0600): every setting, never a
/// password — an account with AUTH there has a password command instead.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountsFile {
    #[serde(default)]
    accounts: BTreeMap<String, Account>,
}

impl FileStore {
    /// The store in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// The store beside the config file at `config_path`.
    pub fn beside(config_path: &Path) -> Self {
        let dir = config_path.parent().unwrap_or_else(|| Path::new("."));
        FileStore::new(dir.join(ACCOUNTS_FILE))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> KeystoreError {
        KeystoreError::File {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The file's lock, held around each read-modify-write (see [`crate::fsutil::FileLock`]).
    fn lock(&self) -> Result<crate::fsutil::FileLock, KeystoreError> {
        crate::fsutil::FileLock::take(&self.path).map_err(|e| self.error(e))
    }

    fn read(&self) -> Result<AccountsFile, KeystoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| self.error(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn write(&self, file: &AccountsFile) -> Result<(), KeystoreError> {
        let text = toml::to_string_pretty(file).map_err(|e| self.error(e))?;
        let body = format!(
            "# Mailcall accounts (account-store = file). No passwords: accounts with AUTH use a\n# password-command. Edit with `mailcall-cli account`.\n{text}"
        );
        crate::fsutil::write_atomic(&self.path, body.as_bytes(), 0o600).map_err(|e| self.error(e))
    }
}

impl AccountStore for FileStore {
    fn place(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self, name: &str) -> Result<Account, KeystoreError> {
        self.read()?
            .accounts
            .remove(name)
            .ok_or_else(|| KeystoreError::NotFound(name.to_string()))
    }

    fn save(&self, account: &Account) -> Result<(), KeystoreError> {
        let outgoing_password = account
            .outgoing
            .as_ref()
            .is_some_and(|o| o.password.is_some());
        if account.password.is_some() || outgoing_password {
            return Err(KeystoreError::PasswordInFile(account.name.clone()));
        }
        let _lock = self.lock()?;
        let mut file = self.read()?;
        file.accounts.insert(account.name.clone(), account.clone());
        self.write(&file)
    }

    fn remove(&self, name: &str) -> Result<bool, KeystoreError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let was = file.accounts.remove(name).is_some();
        if was {
            self.write(&file)?;
        }
        Ok(was)
    }
}

/// The store `config` says accounts live in (`account-store`): the OS keyring, or the account
/// file beside `config_path`.
pub fn for_config(config: &Config, config_path: &Path) -> Arc<dyn AccountStore> {
    match config.account_store {
        AccountStoreKind::Keyring => Arc::new(OsKeyring),
        AccountStoreKind::File => Arc::new(FileStore::beside(config_path)),
    }
}

/// The keyring entry (service `mailcall`) holding the submission login's password; no account
/// name can be this (account names have no `@`).
pub const SUBMIT_PASSWORD_ENTRY: &str = "@submit-password";

/// Keeps the submission login's password in the OS keyring (blocks on D-Bus).
pub fn save_submit_password(password: &str) -> Result<(), KeystoreError> {
    entry(SUBMIT_PASSWORD_ENTRY)?
        .set_password(password)
        .map_err(|e| map_error(SUBMIT_PASSWORD_ENTRY, e))
}

/// The submission login's password from the OS keyring; `None` when none was set (blocks on
/// D-Bus).
pub fn load_submit_password() -> Result<Option<String>, KeystoreError> {
    match entry(SUBMIT_PASSWORD_ENTRY)?.get_password() {
        Ok(p) => Ok(Some(p)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(map_error(SUBMIT_PASSWORD_ENTRY, e)),
    }
}

/// The submission login `config` names (`submit-user`) with its password from the keyring,
/// read off the async threads. `None` without a user, with accounts in a file (which holds no
/// passwords), or without a password (then only loopback and the listed networks may submit);
/// why is logged.
pub async fn submit_login(config: &Config) -> Option<crate::listener::SubmitLogin> {
    let user = config.submit_user.clone()?;
    if config.account_store != AccountStoreKind::Keyring {
        tracing::warn!("submit-user is set but accounts live in a file, which holds no passwords: no submission login (LAN hosts submit through submit-allowed-peers)");
        return None;
    }
    match tokio::task::spawn_blocking(load_submit_password).await {
        Ok(Ok(Some(password))) => Some(crate::listener::SubmitLogin::new(user, password)),
        Ok(Ok(None)) => {
            tracing::warn!("submit-user is set but no password is: set it with `mailcall-cli config set-submit-password`");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!("no submission login: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("no submission login: the keyring task failed: {e}");
            None
        }
    }
}

/// An in-memory store for unit tests and previews; nothing persists.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: std::sync::Mutex<std::collections::BTreeMap<String, Account>>,
}

impl AccountStore for MemoryStore {
    fn load(&self, name: &str) -> Result<Account, KeystoreError> {
        let map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name)
            .cloned()
            .ok_or_else(|| KeystoreError::NotFound(name.to_string()))
    }
    fn save(&self, account: &Account) -> Result<(), KeystoreError> {
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(account.name.clone(), account.clone());
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<bool, KeystoreError> {
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.remove(name).is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::account::{Secret, Security};

    fn account(password: Option<&str>, command: Option<&str>) -> Account {
        Account {
            name: "isp".into(),
            mode: Default::default(),
            host: "mail.isp.test".into(),
            port: 587,
            security: Security::Starttls,
            username: Some("me".into()),
            password: password.map(Secret::new),
            password_command: command.map(str::to_string),
            helo: None,
            ca_file: None,
            domains: vec!["example.com".parse().unwrap()],
            link: Default::default(),
            outgoing: None,
        }
    }

    #[test]
    fn the_account_file_keeps_everything_but_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::beside(&dir.path().join("config.toml"));
        assert_eq!(store.path(), dir.path().join(ACCOUNTS_FILE));
        assert!(matches!(store.load("isp"), Err(KeystoreError::NotFound(_))));
        let with_command = account(None, Some("pass show isp"));
        store.save(&with_command).unwrap();
        assert_eq!(store.load("isp").unwrap(), with_command);
        let refused = store.save(&account(Some("hunter2"), None)).unwrap_err();
        assert!(
            matches!(refused, KeystoreError::PasswordInFile(_)),
            "{refused}"
        );
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            !text.contains("hunter2") && text.contains("pass show isp"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(store.remove("isp").unwrap());
        assert!(!store.remove("isp").unwrap());
    }
}
