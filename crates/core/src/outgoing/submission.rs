//! The submission listener as the service runs it: where it listens (`submit-listen`), who may
//! submit besides loopback (`submit-allowed-peers`, the login), and the socket bound on demand —
//! while an account has an outgoing server — with the same help as port 25 when it cannot be.
//! The SMTP side is the listener's, in its submission role ([`crate::listener::Submission`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::account::Account;
use crate::config::{Config, ConfigError, ConfigKey};
use crate::hint::{Problem, Setting};
use crate::listener::{
    BindError, Listener, ListenerEvent, ListenerSettings, PeerNet, Reception, RecipientPolicy,
    Submission, SubmitLogin,
};
use crate::maildir::Maildir;
use crate::spool::Spool;

/// How the submission listener is set up.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The LAN networks that may submit without a login.
    pub allowed_peers: Vec<PeerNet>,
    /// The login (its password from the keyring), if one is set up.
    pub login: Option<SubmitLogin>,
    /// The account that sends what no account's domains claim (`default-outgoing-account`).
    pub default_account: Option<String>,
    /// The listener's limits and TLS (its `allowed_peers` is not used: see above).
    pub settings: ListenerSettings,
}

impl SubmitOptions {
    /// The options `config` describes (without the login's password: the caller reads it from
    /// the keyring); `None` when `submit-listen` is off. `settings` are the inbound listener's
    /// (limits, timeouts, TLS), which apply here too.
    pub fn from_config(
        config: &Config,
        settings: &ListenerSettings,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(listen) = config.submit_address()? else {
            return Ok(None);
        };
        let mut settings = settings.clone();
        // Who may submit is decided at MAIL FROM (loopback, the networks, the login).
        settings.allowed_peers = None;
        Ok(Some(SubmitOptions {
            listen,
            allowed_peers: config.submit_networks()?,
            login: None,
            default_account: config.default_outgoing_account.clone(),
            settings,
        }))
    }
}

/// Whether `accounts` need the submission listener: one of them has an outgoing server.
pub fn needs_submission(accounts: &[Account]) -> bool {
    accounts.iter().any(|a| a.outgoing.is_some())
}

/// The submission listener cannot bind; the message names the fixes.
#[derive(Debug, thiserror::Error)]
pub enum SubmitBindError {
    /// A privileged port as a normal user.
    #[error(
        "the submission listener cannot listen on {addr}: permission denied (ports below 1024 \
         need privileges). Fix it in one of these ways: run Mailcall as root; or allow this binary \
         to bind low ports with `sudo setcap cap_net_bind_service=+ep {exe}`; or allow all \
         programs with `sudo sysctl net.ipv4.ip_unprivileged_port_start={port}`; or submit on \
         another port (the submit-listen setting, e.g. 127.0.0.1:2587), or turn it off \
         (submit-listen = off)",
        exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/path/to/mailcall".into()),
        port = addr.port()
    )]
    PermissionDenied {
        /// The address.
        addr: SocketAddr,
    },
    /// Another program (often a local mail server) listens on the submission port.
    #[error(
        "the submission listener cannot listen on {addr}: the address is already in use — {who} \
         listens there. Stop that program, or submit on another port (the submit-listen \
         setting, e.g. 127.0.0.1:2587), or turn it off (submit-listen = off)",
        who = crate::listener::holder_words(holder.as_deref(), addr.port())
    )]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
        /// The program listening there, when this user may see it.
        holder: Option<String>,
    },
    /// Something else, or the spool cannot be used.
    #[error(
        "the submission listener cannot listen: {0}. Check the submit-listen setting (e.g. \
         127.0.0.1:2587), or turn it off (submit-listen = off)"
    )]
    Other(BindError),
}

impl SubmitBindError {
    fn from_bind(e: BindError) -> Self {
        match e {
            BindError::PermissionDenied { addr } => SubmitBindError::PermissionDenied { addr },
            BindError::AddressInUse { addr, holder } => {
                SubmitBindError::AddressInUse { addr, holder }
            }
            other => SubmitBindError::Other(other),
        }
    }

    /// The error with its fix, for front ends.
    pub fn problem(&self) -> Problem {
        Problem::new(self.to_string()).fixed_by(Some(Setting::config(ConfigKey::SubmitListen)))
    }
}

/// The submission listener, bound on demand.
pub struct SubmitSlot {
    listen: SocketAddr,
    submission: Arc<Submission>,
    reception: Arc<Reception>,
    addr: Mutex<Option<SocketAddr>>,
    task: Mutex<Option<JoinHandle<()>>>,
    binding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SubmitSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitSlot")
            .field("listen", &self.listen)
            .field("bound", &self.addr())
            .finish_non_exhaustive()
    }
}

impl SubmitSlot {
    /// The listener for `options`, queueing into `spool` (the runner's, so that it hears of
    /// each message) for `accounts`; stops with `shutdown`. Not bound yet.
    pub fn new(
        options: SubmitOptions,
        spool: Spool,
        accounts: Vec<Account>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let submission = Arc::new(
            Submission::new(spool, accounts, options.allowed_peers).with_login(options.login),
        );
        submission.replace_default_account(options.default_account);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(log_events(rx));
        // The Maildir and the recipient policy are the inbound listener's and unused here; a
        // Maildir in the spool's own directory keeps the reception whole.
        let unused = Maildir::create(submission.spool().root())?;
        let reception = Reception::new(
            Arc::new(options.settings),
            Arc::new(RecipientPolicy::default()),
            Arc::new(unused),
            tx,
            shutdown,
        )
        .with_submission(submission.clone());
        Ok(SubmitSlot {
            listen: options.listen,
            submission,
            reception: Arc::new(reception),
            addr: Mutex::new(None),
            task: Mutex::new(None),
            binding: tokio::sync::Mutex::new(()),
        })
    }

    /// Where it listens, once bound.
    pub fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The accounts changed: later senders are judged by the new ones.
    pub fn replace_accounts(&self, accounts: Vec<Account>) {
        self.submission.replace_accounts(accounts);
    }

    /// `default-outgoing-account` changed: later senders are judged by the new one.
    pub fn replace_default_account(&self, name: Option<String>) {
        self.submission.replace_default_account(name);
    }

    /// Binds and serves unless it is up (or stopping).
    pub async fn ensure(&self) -> Result<Option<SocketAddr>, SubmitBindError> {
        let _binding = self.binding.lock().await;
        if let Some(addr) = self.addr() {
            return Ok(Some(addr));
        }
        if self.reception.shutdown.is_cancelled() {
            return Ok(None);
        }
        let listener = Listener::bind(self.listen)
            .await
            .map_err(SubmitBindError::from_bind)?;
        let addr = listener.local_addr();
        tracing::info!(%addr, "listening for outgoing mail (submission)");
        let task = tokio::spawn(listener.serve(self.reception.clone()));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        Ok(Some(addr))
    }

    /// Waits (at most `limit`) for the sessions to finish after the stop token; returns whether
    /// they did.
    pub async fn drained(&self, limit: Duration) -> bool {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        match task {
            Some(task) => tokio::time::timeout(limit, task).await.is_ok(),
            None => true,
        }
    }
}

/// The sessions' reports, into the log (the queue itself is what the runner reads).
async fn log_events(mut rx: mpsc::UnboundedReceiver<ListenerEvent>) {
    while let Some(ev) = rx.recv().await {
        if let ListenerEvent::Stored(info) = ev {
            tracing::info!(
                sender = %info.sender,
                recipients = info.recipients.len(),
                peer = %info.peer,
                "outgoing message queued"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_port_that_cannot_be_bound_names_the_fixes_and_submit_listen() {
        let addr: SocketAddr = "127.0.0.1:587".parse().unwrap();
        let e = SubmitBindError::from_bind(BindError::PermissionDenied { addr });
        let text = e.to_string();
        for hint in [
            "setcap cap_net_bind_service=+ep",
            "net.ipv4.ip_unprivileged_port_start=587",
            "the submit-listen setting, e.g. 127.0.0.1:2587",
            "submit-listen = off",
        ] {
            assert!(text.contains(hint), "{hint} missing in {text}");
        }
        assert_eq!(
            e.problem().fix,
            Some(Setting::config(ConfigKey::SubmitListen))
        );
        let e = SubmitBindError::from_bind(BindError::AddressInUse { addr, holder: None });
        assert!(e.to_string().contains("submit-listen"), "{e}");
    }

    #[test]
    fn only_accounts_with_an_outgoing_server_need_the_listener() {
        let mut a = Account {
            name: "isp".into(),
            mode: Default::default(),
            host: "mail.isp.test".into(),
            port: 25,
            security: crate::account::Security::None,
            username: None,
            password: None,
            password_command: None,
            helo: None,
            ca_file: None,
            domains: vec!["office.test".parse().unwrap()],
            link: Default::default(),
            outgoing: None,
        };
        assert!(!needs_submission(&[a.clone()]));
        a.outgoing = Some(crate::account::OutgoingServer::new(
            "smtp.isp.test",
            crate::account::Security::Starttls,
        ));
        assert!(needs_submission(&[a]));
        assert!(!needs_submission(&[]));
    }
}
