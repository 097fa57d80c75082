//! The SMTP listener the ISP delivers to: accept loop, one session per connection.
// STUB: the listener helper replaces this; the signatures below are the contract.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::account::DomainSpec;
use crate::maildir::Maildir;
use crate::report::MessageInfo;

/// How the listener behaves.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// The name in our greeting and `Received:` header (never the ISP's name: Postfix sees a loop).
    pub hostname: String,
    /// The largest message accepted, in bytes (advertised with SIZE).
    pub max_message_size: u64,
    /// How long to wait for a command line.
    pub command_timeout: Duration,
    /// How long to wait for each chunk of DATA.
    pub data_timeout: Duration,
}

impl ListenerSettings {
    /// Settings with default timeouts.
    pub fn new(hostname: String, max_message_size: u64) -> Self {
        ListenerSettings {
            hostname,
            max_message_size,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
        }
    }
}

/// Which recipients the listener accepts: only those in the configured domains.
#[derive(Debug, Clone, Default)]
pub struct RecipientPolicy {
    domains: Vec<DomainSpec>,
}

impl RecipientPolicy {
    /// Accept recipients in these domains (per their ETRN form), nothing else.
    pub fn new(domains: Vec<DomainSpec>) -> Self {
        RecipientPolicy { domains }
    }
    /// Whether `address` (a bare `local@domain`) is one we accept.
    pub fn accepts(&self, address: &str) -> bool {
        let _ = &self.domains;
        let _ = address;
        false
    }
}

/// What the listener tells its owner.
#[derive(Debug, Clone)]
pub enum ListenerEvent {
    /// A peer connected.
    Connected {
        /// Its address.
        peer: SocketAddr,
    },
    /// A message was stored durably and acknowledged with 250.
    Stored(Box<MessageInfo>),
    /// A peer's connection ended.
    Closed {
        /// Its address.
        peer: SocketAddr,
    },
}

/// Binding the listener failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Not allowed to bind (a port below 1024 as a normal user).
    #[error("cannot listen on {addr}: permission denied")]
    PermissionDenied {
        /// The address.
        addr: SocketAddr,
    },
    /// Some other error.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
}

impl Listener {
    /// Binds `addr`; the socket accepts connections from now on (queued until `serve`).
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError::Other { addr, source })?;
        Ok(Listener { tcp })
    }
    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("bound socket has an address")
    }
    /// Serves connections until `shutdown`; then stops accepting and lets sessions finish.
    pub async fn serve(
        self,
        _settings: Arc<ListenerSettings>,
        _policy: Arc<RecipientPolicy>,
        _maildir: Arc<Maildir>,
        _events: mpsc::UnboundedSender<ListenerEvent>,
        shutdown: CancellationToken,
    ) {
        shutdown.cancelled().await;
    }
}
