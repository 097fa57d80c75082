//! The SMTP listener the ISP delivers to: accept loop, one session per connection.
//!
//! `session` holds the command state machine (over any stream: the TCP connections the ISP
//! opens here, and ODMR's turned-around connection to the ISP), `conn` the stream and its
//! buffers, `codec` the I/O-free line splitter and DATA un-stuffer, `data` the writer that puts
//! a message on disk, `policy` who may receive mail here, `gate` who may connect (and which ISP a
//! fetch has asked), `reply` the wire form of our answers, `tls` the certificate and config
//! STARTTLS offers, `submission` the role in which it takes outgoing mail (port 587) instead. Mail is acknowledged only once it is durable on disk; every 4xx we answer is
//! reported, so a fetch knows what stayed at the ISP.

mod address;
mod codec;
mod conn;
mod data;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod policy;
mod privileged;
mod reply;
mod session;
mod submission;
pub mod tls;

pub use gate::{AskScope, AskedPeers, PeerNet, PeerNetError};
pub use policy::RecipientPolicy;
pub use privileged::SERVED_LOW_PORTS;
pub use session::{serve, Reception};
pub use submission::{Submission, SubmitLogin};

pub(crate) use data::message_headline;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

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
    /// How long a new session may take to send its first command line: a peer that connects
    /// and says nothing gives its slot back soon.
    pub first_command_timeout: Duration,
    /// How long one message's DATA may take in all (each read still within `data_timeout`);
    /// beyond, `421 4.4.2` and nothing is stored.
    pub max_data_time: Duration,
    /// How long a session may last; beyond, its next command gets `421 4.4.2` (a message in
    /// DATA is finished first, within `max_data_time`).
    pub max_session_time: Duration,
    /// Commands that do not move a transaction forward (NOOP, RSET, VRFY, HELP, another
    /// EHLO/HELO, a RCPT we put off) since the last message stored; beyond, `421 4.7.0`.
    /// As Postfix's `smtpd_junk_command_limit`.
    pub max_junk_commands: u32,
    /// Recipients per message; more get `452 4.5.3` (RFC 5321 asks servers to take at least 100).
    pub max_recipients: usize,
    /// The longest command line taken, without its CRLF; longer ones get `500 5.5.2` and are
    /// skipped, never buffered.
    pub max_line_length: usize,
    /// Errors (5xx replies) after which a session is ended with `421 4.7.0`.
    pub max_errors: u32,
    /// Sessions at once, from all peers; beyond, `421 4.7.0` at connect.
    pub max_connections: usize,
    /// Sessions at once from one peer (an IPv4 address, an IPv6 /64); beyond, `421 4.7.0` at
    /// connect. Not applied to the ISP a running fetch has asked ([`AskedPeers`]).
    pub max_connections_per_peer: usize,
    /// Of `max_connections`, the slots strangers never get: held back for `allowed_peers` and
    /// the ISP a running fetch has asked, so its delivery gets in while strangers hold the rest.
    pub reserved_connections: usize,
    /// When set, only peers in these networks may deliver; others get `554 5.7.1` at connect.
    pub allowed_peers: Option<Vec<PeerNet>>,
    /// When set, STARTTLS is offered with this config (see [`tls`]); `None`: no TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerSettings {
    /// Settings with RFC 5321's suggested timeouts (5 minutes per command, 10 minutes per DATA
    /// read), 30 seconds for the first command, 30 minutes for one message's DATA, an hour per
    /// session, 100 commands without mail, 100 recipients, 4096-byte command lines, 20 errors,
    /// 100 connections (20 per peer, 20 held back from strangers), no allowlist, and no TLS.
    pub fn new(hostname: String, max_message_size: u64) -> Self {
        ListenerSettings {
            hostname,
            max_message_size,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            first_command_timeout: Duration::from_secs(30),
            max_data_time: Duration::from_secs(30 * 60),
            max_session_time: Duration::from_secs(60 * 60),
            max_junk_commands: 100,
            max_recipients: 100,
            max_line_length: 4096,
            max_errors: 20,
            max_connections: 100,
            max_connections_per_peer: 20,
            reserved_connections: 20,
            allowed_peers: None,
            tls: None,
        }
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
    /// We answered a peer with a 4xx: turned it away at connect (too many connections), or put
    /// off one of its commands in the session. What it meant to deliver stays with it for now.
    Refused {
        /// Its address.
        peer: SocketAddr,
        /// Our reply, without its line end.
        reply: String,
        /// Whether it came at connect, instead of the greeting.
        at_connect: bool,
    },
    /// The ISP a running fetch asked offered mail for a recipient in a domain no account takes:
    /// we answered `450 4.7.1`, so it keeps that mail instead of bouncing it, and the fetch
    /// reports the domain (asking again would only bring the same refusal).
    Unclaimed {
        /// Its address.
        peer: SocketAddr,
        /// The recipient's domain, lower-cased, without a trailing dot.
        domain: String,
    },
}

/// Binding the listener failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Not allowed to bind (a port below 1024 as a normal user).
    #[error(
        "cannot listen on {addr}: permission denied (ports below 1024 need privileges). Fix it in \
         one of these ways: run Mailcall as root; or allow this binary to bind low ports with \
         `sudo setcap cap_net_bind_service=+ep {exe}`; or allow all programs with \
         `sudo sysctl net.ipv4.ip_unprivileged_port_start={port}`; or listen on another port the \
         ISP delivers to (the listen setting, e.g. 0.0.0.0:2525)",
        exe = current_exe_display(),
        port = addr.port()
    )]
    PermissionDenied {
        /// The address.
        addr: SocketAddr,
    },
    /// A port below 1024 other than 25 and 587 while Mailcall holds `cap_net_bind_service`.
    #[error(
        "will not listen on {addr}: this binary holds cap_net_bind_service (granted to it for \
         every local user), and under it Mailcall binds only ports 25 and 587 below 1024, so \
         that the capability serves nothing else. Listen on 25, on 587, or on a port of 1024 or \
         above (the listen or submit-listen setting, e.g. 0.0.0.0:2525)"
    )]
    NotServedPort {
        /// The address.
        addr: SocketAddr,
    },
    /// Another program already listens there.
    #[error(
        "cannot listen on {addr}: the address is already in use — {who} listens there. Stop that \
         program, or listen on another port the ISP delivers to (the listen setting, e.g. \
         0.0.0.0:2525)",
        who = holder_words(holder.as_deref(), addr.port())
    )]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
        /// The program listening there, as "NAME (pid N)", when this user may see it.
        holder: Option<String>,
    },
    /// Some other error.
    #[error("cannot listen on {addr}: {source}; check the listen address in the configuration")]
    Other {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

impl BindError {
    /// The address that could not be bound.
    pub fn addr(&self) -> SocketAddr {
        match self {
            BindError::PermissionDenied { addr }
            | BindError::NotServedPort { addr }
            | BindError::AddressInUse { addr, .. }
            | BindError::Other { addr, .. } => *addr,
        }
    }

    fn from_io(addr: SocketAddr, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => BindError::PermissionDenied { addr },
            std::io::ErrorKind::AddrInUse => BindError::AddressInUse {
                addr,
                holder: port_holder(addr.port()),
            },
            _ => BindError::Other { addr, source },
        }
    }
}

/// The programs listening on TCP `port`, as "NAME (pid N)", when this user may see them (another
/// user's program, a system mail server run by root, is hidden from an ordinary user).
pub fn port_holder(port: u16) -> Option<String> {
    let all = listeners::get_all().ok()?;
    let mut found: Vec<String> = all
        .into_iter()
        .filter(|l| {
            l.protocol == listeners::Protocol::TCP
                && l.state == listeners::SocketState::Listen
                && l.socket.port() == port
        })
        .map(|l| format!("{} (pid {})", l.process.name, l.process.pid))
        .collect();
    found.sort();
    found.dedup();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Who holds a port, in words: the program when known, else where to look it up.
pub fn holder_words(holder: Option<&str>, port: u16) -> String {
    match holder {
        Some(who) => who.to_string(),
        #[cfg(not(windows))]
        None => format!(
            "another program (often a local mail server such as Postfix or Exim; `sudo ss -ltnp 'sport = :{port}'` names it)"
        ),
        #[cfg(windows)]
        None => format!(
            "another program (often a local mail server; `netstat -ano | findstr :{port}` gives its process id, Task Manager's Details tab its name)"
        ),
    }
}

/// Answers a connection refused at connect and closes it, without a task or any waiting: the
/// reply is a few bytes into an empty socket buffer, and a peer flooding us gets no more than that.
/// Returns the reply.
fn turn_away(
    stream: TcpStream,
    peer: SocketAddr,
    refusal: gate::Refusal,
    host: &str,
) -> reply::Reply {
    let reply = match refusal {
        gate::Refusal::NotAllowed => {
            tracing::info!(%peer, "peer not in the allowlist: refused");
            reply::Reply::new(554, "5.7.1", format!("{host} Error: access denied"))
        }
        gate::Refusal::TooMany => {
            tracing::warn!(%peer, "too many connections: refused");
            reply::Reply::new(
                421,
                "4.7.0",
                format!("{host} Error: too many connections, try again later"),
            )
        }
    };
    let _ = stream.try_write(reply.to_string().as_bytes());
    reply
}

/// The running binary's path for the `setcap` hint.
fn current_exe_display() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/path/to/mailcall".into())
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
}

impl Listener {
    /// Binds `addr`; the socket accepts connections from now on (queued until `serve`). Under
    /// `cap_net_bind_service` (not root), a port below 1024 other than 25 and 587 is refused.
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        if !privileged::Privileges::of_this_process().allows(addr.port()) {
            return Err(BindError::NotServedPort { addr });
        }
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError::from_io(addr, source))?;
        Ok(Listener { tcp })
    }
    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("bound socket has an address")
    }
    /// Serves connections until the reception's shutdown; then stops accepting and lets
    /// sessions finish.
    ///
    /// On shutdown a session waiting for a command gets `421 4.3.2` and closes; one inside DATA
    /// finishes that message first (bounded by `data_timeout`). Returns when all sessions ended.
    pub async fn serve(self, reception: Arc<Reception>) {
        let ctx = reception;
        let events = ctx.events.clone();
        let shutdown = ctx.shutdown.clone();
        let gate = gate::Gate::new(
            ctx.settings.allowed_peers.clone(),
            gate::Limits {
                total: ctx.settings.max_connections,
                per_peer: ctx.settings.max_connections_per_peer,
                // No ISP delivers to the submission listener: nothing to hold back there.
                reserved: match ctx.submission {
                    Some(_) => 0,
                    None => ctx.settings.reserved_connections,
                },
            },
            ctx.asked.clone(),
        );
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let ticket = match gate.admit(peer.ip()) {
                        Ok(ticket) => ticket,
                        Err(refusal) => {
                            let reply = turn_away(stream, peer, refusal, &ctx.settings.hostname);
                            if reply.is_transient() {
                                let _ = events.send(ListenerEvent::Refused {
                                    peer,
                                    reply: reply.line(),
                                    at_connect: true,
                                });
                            }
                            continue;
                        }
                    };
                    let _ = events.send(ListenerEvent::Connected { peer });
                    let ctx = Arc::clone(&ctx);
                    let events = events.clone();
                    tracker.spawn(async move {
                        session::run(stream, peer, ctx).await;
                        drop(ticket);
                        let _ = events.send(ListenerEvent::Closed { peer });
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning, then retry.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        // Stop accepting at once: new connections are refused rather than left unanswered.
        drop(self.tcp);
        tracker.close();
        tracker.wait().await;
    }
}
