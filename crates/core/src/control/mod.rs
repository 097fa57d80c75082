//! The local control socket: lets front ends and scripts (ip-up.d, cron, `mailcall-cli fetch
//! --via-running`, a tray fronting a daemon) ask a running daemon or tray instance to fetch,
//! pause, report, reload, act on its queue or stream its events, instead of starting a second
//! listener.
//!
//! On Unix a Unix socket, owner-only (directory 0700, socket 0600, and the peer's uid is
//! checked), in `$XDG_RUNTIME_DIR/mailcall/` (fallback: the data directory). On Windows a TCP
//! socket on 127.0.0.1 whose port and a random token are in that file (in the user's own profile);
//! a client sends the token first. One request line, one JSON reply line, then the connection
//! closes ([`protocol`] has the table).
//!
//! - [`protocol`]: the requests and replies, typed, read and written in one place;
//! - [`transport`]: the Unix socket, or the TCP socket with its token;
//! - [`server`]: answers each connection with the running instance's [`Controls`];
//! - [`client`]: asks a running Mailcall.
//!
//! [`Controls`]: crate::instance::Controls

pub mod client;
pub mod protocol;
pub mod server;
pub mod transport;

use std::path::PathBuf;

use crate::config::{self, ConfigError};

pub use client::{Client, EventStream};
pub use protocol::{ParseError, Reply, Request, Status, Verb};
pub use server::Server;

/// The socket's file name.
pub const SOCKET_NAME: &str = "control.sock";

/// Talking over the control socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no running Mailcall listens on {0}")]
    NotRunning(PathBuf),
    /// Another instance already owns the socket.
    #[error("another Mailcall (daemon or tray) is already running and owns {0}: stop it first, or ask it to fetch through this socket")]
    InUse(PathBuf),
    /// Socket I/O failed.
    #[error("the control socket {path} failed: {source}. Check that the directory is yours and writable")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What the socket reported.
        source: std::io::Error,
    },
    /// The running instance answered with an error.
    #[error("the running Mailcall refused: {0}")]
    Refused(String),
    /// The reply could not be understood.
    #[error(
        "the running Mailcall gave a reply that cannot be read ({0}); are both the same version?"
    )]
    Protocol(String),
    /// The request cannot be sent as it is (it would not read back as itself).
    #[error("{0}")]
    Invalid(ParseError),
    /// No place for the socket.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ControlError {
    /// Whether nothing runs (so a caller may fall back to doing the work itself).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ControlError::NotRunning(_))
    }
}

/// Where the socket lives: `$XDG_RUNTIME_DIR/mailcall/control.sock`, else the data directory.
pub fn default_socket_path() -> Result<PathBuf, ControlError> {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("mailcall").join(SOCKET_NAME)),
        None => Ok(config::data_dir()?.join(SOCKET_NAME)),
    }
}
