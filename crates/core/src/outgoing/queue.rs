//! Outgoing mail into the queue: which account's outgoing server a message leaves through (the
//! account whose domains hold the sender's domain), and the message made durable in the spool
//! (file and directory fsynced) before the submitter hears that it is queued. It then waits
//! there, as a `smarthost:ACCOUNT` entry, for the link (see the spool's runner).

use chrono::Utc;

use crate::account::Account;
use crate::hint::{AccountField, Problem, Setting};
use crate::routing::Target;
use crate::spool::{Envelope, QueuedRecipient, Spool, SPOOL_DIR};

/// Outgoing mail could not be queued; nothing was.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No account holds the sender's domain, and no default account is set.
    #[error("no account sends mail from {} (the sender is <{sender}>): add {domain} to the domains of the account whose outgoing server should send it, send from an address in an account's domains, or name the account that sends everything else (config set default-outgoing-account ACCOUNT)", if domain.is_empty() { "the null sender <>".to_owned() } else { format!("{domain:?}") })]
    NoAccount {
        /// The envelope sender.
        sender: String,
        /// Its domain.
        domain: String,
    },
    /// `default-outgoing-account` names an account that does not exist.
    #[error("default-outgoing-account names {name:?}, but no account has that name: set it to one of the accounts (config set default-outgoing-account ACCOUNT) or unset it")]
    NoDefault {
        /// The name it gives.
        name: String,
    },
    /// The account holds the domain but has no outgoing server.
    #[error("account {account} holds {domain} but has no outgoing server to send through: give it one (the ISP's submission server, usually port 587)")]
    NoOutgoing {
        /// The account.
        account: String,
        /// The sender's domain.
        domain: String,
    },
    /// The message could not be written durably (disk full, permissions).
    #[error("cannot queue the message in {path}: {source}; nothing was queued (free some space or check the data directory)")]
    Storage {
        /// The spool.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl SubmitError {
    /// What the user changes to fix it.
    pub fn fix(&self) -> Option<Setting> {
        match self {
            SubmitError::NoAccount { .. } | SubmitError::NoDefault { .. } => Some(Setting::config(
                crate::config::ConfigKey::DefaultOutgoingAccount,
            )),
            SubmitError::NoOutgoing { account, .. } => {
                Some(Setting::account(account, AccountField::OutgoingHost))
            }
            SubmitError::Storage { .. } => Some(Setting::config(crate::config::ConfigKey::DataDir)),
        }
    }

    /// The error with its fix, for front ends.
    pub fn problem(&self) -> Problem {
        Problem::new(self.to_string()).fixed_by(self.fix())
    }

    /// Whether trying again later may work (the disk), rather than a setting to change.
    pub fn is_transient(&self) -> bool {
        matches!(self, SubmitError::Storage { .. })
    }
}

/// The account a message from `sender` leaves through: the one whose domains hold the
/// sender's domain and that has an outgoing server; else the `default-outgoing-account`
/// (`default`), which also sends mail from the null sender (`<>`: a report, an auto-reply) — or,
/// with no default, the only account with an outgoing server does. Without either the error
/// names the fix: the account holding the domain that lacks an outgoing server, or the default.
pub fn account_for<'a>(
    accounts: &'a [Account],
    default: Option<&str>,
    sender: &str,
) -> Result<&'a Account, SubmitError> {
    let domain = sender
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let holders: Vec<&Account> = if domain.is_empty() {
        Vec::new()
    } else {
        accounts.iter().filter(|a| a.accepts(&domain)).collect()
    };
    if let Some(a) = holders.iter().find(|a| a.outgoing.is_some()) {
        return Ok(a);
    }
    if let Some(name) = default {
        return match accounts.iter().find(|a| a.name == name) {
            Some(a) if a.outgoing.is_some() => Ok(a),
            Some(a) => Err(SubmitError::NoOutgoing {
                account: a.name.clone(),
                domain,
            }),
            None => Err(SubmitError::NoDefault {
                name: name.to_owned(),
            }),
        };
    }
    if sender.is_empty() {
        let mut sending = accounts.iter().filter(|a| a.outgoing.is_some());
        if let (Some(only), None) = (sending.next(), sending.next()) {
            return Ok(only);
        }
    }
    match holders.first() {
        Some(a) => Err(SubmitError::NoOutgoing {
            account: a.name.clone(),
            domain,
        }),
        None => Err(SubmitError::NoAccount {
            sender: sender.to_owned(),
            domain,
        }),
    }
}

/// Queues a message for `account`'s outgoing server: `received` (our `Received:` field) on top
/// of `body`; returns its queue id once it is durable.
pub async fn submit(
    spool: &Spool,
    account: &str,
    sender: &str,
    recipients: &[String],
    received: &str,
    body: &[u8],
    peer: &str,
) -> Result<String, SubmitError> {
    let storage = |source| SubmitError::Storage {
        path: spool.root().to_path_buf(),
        source,
    };
    let envelope = Envelope {
        received_at: Utc::now(),
        sender: sender.to_owned(),
        recipients: recipients
            .iter()
            .map(|r| QueuedRecipient {
                address: r.clone(),
                target: Target::smarthost(account),
            })
            .collect(),
        peer: peer.to_owned(),
    };
    let mut writer = spool.begin(&envelope).await.map_err(storage)?;
    let id = writer.id().to_owned();
    let written = async {
        writer.write(received.as_bytes()).await?;
        writer.write(body).await
    }
    .await;
    if let Err(e) = written {
        writer.abort().await;
        return Err(storage(e));
    }
    writer.commit().await.map_err(storage)?;
    Ok(id)
}

/// The spool directory under a data directory (where outgoing mail waits).
pub fn spool_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join(SPOOL_DIR)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::account::{OutgoingServer, Security};

    fn account(name: &str, domain: &str, outgoing: bool) -> Account {
        Account {
            name: name.into(),
            mode: Default::default(),
            host: "mail.isp.test".into(),
            port: 25,
            security: Security::None,
            username: None,
            password: None,
            password_command: None,
            helo: None,
            ca_file: None,
            domains: vec![domain.parse().unwrap()],
            link: Default::default(),
            outgoing: outgoing.then(|| OutgoingServer::new("smtp.isp.test", Security::Starttls)),
        }
    }

    #[test]
    fn the_senders_domain_picks_the_account() {
        let accounts = [
            account("a", "one.test", true),
            account("b", "two.test", true),
        ];
        assert_eq!(
            account_for(&accounts, None, "me@TWO.test").unwrap().name,
            "b"
        );
        let e = account_for(&accounts, None, "me@three.test").unwrap_err();
        assert!(matches!(e, SubmitError::NoAccount { .. }), "{e}");
        assert!(e.to_string().contains("three.test"), "{e}");
        assert!(e.to_string().contains("default-outgoing-account"), "{e}");
        let without = [account("a", "one.test", false)];
        let e = account_for(&without, None, "me@one.test").unwrap_err();
        assert!(matches!(e, SubmitError::NoOutgoing { .. }), "{e}");
        assert_eq!(
            e.fix(),
            Some(Setting::account("a", AccountField::OutgoingHost))
        );
        // The null sender leaves through the only account that sends, and only then.
        let one = [
            account("a", "one.test", true),
            account("b", "two.test", false),
        ];
        assert_eq!(account_for(&one, None, "").unwrap().name, "a");
        assert!(account_for(&accounts, None, "").is_err());
    }

    #[test]
    fn the_default_account_sends_what_no_domain_claims_and_the_null_sender() {
        let accounts = [
            account("a", "one.test", true),
            account("b", "two.test", true),
            account("c", "three.test", false),
        ];
        // A held domain still picks its own account.
        assert_eq!(
            account_for(&accounts, Some("b"), "me@one.test")
                .unwrap()
                .name,
            "a"
        );
        for sender in ["me@elsewhere.test", "", "me@three.test"] {
            assert_eq!(
                account_for(&accounts, Some("b"), sender).unwrap().name,
                "b",
                "{sender:?}"
            );
        }
        let e = account_for(&accounts, None, "").unwrap_err();
        assert!(e.to_string().contains("null sender"), "{e}");
        let e = account_for(&accounts, Some("gone"), "me@elsewhere.test").unwrap_err();
        assert!(matches!(e, SubmitError::NoDefault { .. }), "{e}");
        assert!(e.to_string().contains("\"gone\""), "{e}");
        assert_eq!(
            e.fix(),
            Some(Setting::config(
                crate::config::ConfigKey::DefaultOutgoingAccount
            ))
        );
        let e = account_for(&accounts, Some("c"), "me@elsewhere.test").unwrap_err();
        assert!(
            matches!(e, SubmitError::NoOutgoing { ref account, .. } if account == "c"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_submitted_message_is_durable_with_its_envelope_and_received_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let rcpts = vec!["a@example.org".to_owned(), "b@example.org".to_owned()];
        let id = submit(
            &spool,
            "isp",
            "me@office.test",
            &rcpts,
            "Received: by here\r\n",
            b"Subject: x\r\n\r\nbody\r\n",
            "local user me",
        )
        .await
        .unwrap();
        let (entries, problems) = spool.entries().unwrap();
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.id, id);
        assert_eq!(e.envelope.sender, "me@office.test");
        assert!(e
            .envelope
            .recipients
            .iter()
            .all(|r| r.target == Target::smarthost("isp")));
        assert_eq!(
            spool.read_message(e).unwrap(),
            b"Received: by here\r\nSubject: x\r\n\r\nbody\r\n"
        );
    }

    #[tokio::test]
    async fn every_name_the_queue_writes_is_valid_on_windows_too() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let rcpts = vec!["a@example.org".to_owned()];
        for _ in 0..3 {
            submit(&spool, "isp", "me@office.test", &rcpts, "", b"x\r\n", "me")
                .await
                .unwrap();
        }
        let (entries, _) = spool.entries().unwrap();
        let mut state = entries[0].state.clone();
        state.recipients[0].attempts = 1;
        spool.save_state(&entries[0].name, &state, true).unwrap();
        let mut names = Vec::new();
        for sub in ["new", "state", "tmp", "cur"] {
            for f in std::fs::read_dir(spool.root().join(sub)).unwrap() {
                names.push(f.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        assert!(names.len() >= 4, "{names:?}");
        // Windows refuses these characters, names ending in a dot or space, and device names.
        for name in &names {
            assert!(
                !name.contains(['<', '>', ':', '"', '/', '\\', '|', '?', '*'])
                    && !name.ends_with(['.', ' '])
                    && !name.chars().any(|c| c.is_control()),
                "{name:?} is not a valid Windows file name"
            );
            let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
            assert!(
                !["CON", "PRN", "AUX", "NUL", "COM1", "LPT1"].contains(&stem.as_str()),
                "{name:?}"
            );
        }
    }
}
