//! Accounts in the OS keyring: one entry per account (service `mailcall`, user = account name)
//! whose secret is the whole account as JSON, password included.

use crate::account::Account;

/// The keyring service name under which Mailcall's entries live.
pub const SERVICE: &str = "mailcall";

/// The keyring could not give or take an account.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// No entry for this account.
    #[error(
        "there is no account {0:?} in the keyring: add it again, or check the list of accounts"
    )]
    NotFound(String),
    /// The keyring service is missing, not running or locked.
    #[error("the OS keyring is not available: {0}. Start and unlock your keyring (GNOME Keyring, KWallet or KeePassXC with its Secret Service enabled, inside your desktop session), then try again")]
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
