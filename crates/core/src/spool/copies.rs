//! The copies one accepted message becomes, and the router that decides them: each recipient
//! is routed at `RCPT`; at `DATA` the recipients are grouped by target — one file per Maildir
//! target, one spool entry for all the servers — every copy gets its headers, the message
//! streams into all of them, and all are committed (durable) before the `250`, or none is.
//!
//! The headers, a choice made to read like a real MTA's local delivery (documented in the
//! README): a Maildir copy starts with `Return-Path: <sender>`, then, for each recipient it
//! stands for, `X-Original-To: <recipient>` and `Delivered-To: <recipient>` (Postfix's
//! local(8) writes exactly this pair for one recipient), then our `Received:`. Several
//! recipients routed to the same Maildir are stored once — one file, not n copies a reader
//! would show as duplicates — with a pair of lines for each of them; only the Maildir's owner
//! reads them, so no Bcc recipient is shown to anyone else. Mail for a server (LMTP, SMTP)
//! gets only our `Received:`: the server writes `Return-Path` and `Delivered-To` itself (a
//! `Delivered-To` of ours would make Postfix see a loop), and the envelope goes on in
//! `MAIL FROM`/`RCPT TO`. The spool sends LMTP one recipient per transaction, because Dovecot
//! writes `Delivered-To` only into single-recipient transactions (it shares one file among
//! several, so it cannot name each).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::Utc;

use super::{Envelope, QueuedRecipient, Spool, SpoolWriter, SPOOL_DIR};
use crate::config::{ConfigKey, UnknownRecipients};
use crate::maildir::{Delivery, Maildir};
use crate::routing::{Destination, RouteTable, Target};

/// What the service needs to route: the routes, the answer for unknown recipients, and where
/// the spool is.
#[derive(Debug, Clone)]
pub struct RoutingOptions {
    /// The routes.
    pub table: RouteTable,
    /// What recipients no route names get.
    pub unknown: UnknownRecipients,
    /// The spool's directory (`spool/` in the data directory).
    pub spool: PathBuf,
}

impl RoutingOptions {
    /// The routing a config describes.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        Ok(RoutingOptions {
            table: config.route_table()?,
            unknown: config.unknown_recipients,
            spool: config.data_path()?.join(SPOOL_DIR),
        })
    }

    /// No routes (everything into the service's Maildir), the spool at `spool`.
    pub fn without_routes(spool: PathBuf) -> Self {
        RoutingOptions {
            table: RouteTable::default(),
            unknown: UnknownRecipients::CatchAll,
            spool,
        }
    }

    /// The router over `default`: every route's Maildir and the spool created.
    pub fn router(&self, default: Maildir) -> Result<Router, RoutingError> {
        let spool = Spool::open(&self.spool).map_err(|source| RoutingError::Spool {
            path: self.spool.clone(),
            source,
        })?;
        Router::new(default, self.table.clone(), self.unknown, Some(spool))
            .map_err(|(path, source)| RoutingError::Maildir { path, source })
    }
}

/// A route's Maildir or the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A `maildir:` route's directory.
    #[error("cannot use the Maildir {path} of a route: {source}. Check the path and its permissions, or change the route")]
    Maildir {
        /// The Maildir.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The spool in the data directory.
    #[error(
        "cannot use Mailcall's spool {path}: {source}. Check that the data directory is writable"
    )]
    Spool {
        /// The spool.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl RoutingError {
    /// The config key that fixes it.
    pub fn key(&self) -> ConfigKey {
        match self {
            RoutingError::Maildir { .. } => ConfigKey::Routes,
            RoutingError::Spool { .. } => ConfigKey::DataDir,
        }
    }
}

/// The routes in force and what unknown recipients get.
#[derive(Debug, Clone, Default)]
struct Rules {
    table: RouteTable,
    unknown: UnknownRecipients,
}

/// Decides where each recipient's mail goes and opens the copies of a message; one per
/// service, shared by every session (and replaced routes apply to later RCPTs).
#[derive(Debug)]
pub struct Router {
    rules: RwLock<Arc<Rules>>,
    default: Maildir,
    maildirs: Mutex<HashMap<PathBuf, Maildir>>,
    spool: Option<Spool>,
}

impl Router {
    /// Everything into one Maildir, no routes: Mailcall before routes, and the default.
    pub fn single(maildir: Maildir) -> Self {
        Router {
            rules: RwLock::default(),
            default: maildir,
            maildirs: Mutex::default(),
            spool: None,
        }
    }

    /// A router over `table`, with `default` as the catch-all without a `*` route, and the
    /// spool for server targets. Every Maildir a route names is created now (a path that cannot
    /// be used is a setup problem before any mail comes).
    pub fn new(
        default: Maildir,
        table: RouteTable,
        unknown: UnknownRecipients,
        spool: Option<Spool>,
    ) -> Result<Self, (PathBuf, io::Error)> {
        let router = Router {
            rules: RwLock::default(),
            default,
            maildirs: Mutex::default(),
            spool,
        };
        router.replace(table, unknown)?;
        Ok(router)
    }

    /// Replaces the routes (a reload); the Maildirs of new routes are created first, and on
    /// an error the old routes stay.
    pub fn replace(
        &self,
        table: RouteTable,
        unknown: UnknownRecipients,
    ) -> Result<(), (PathBuf, io::Error)> {
        for route in table.routes() {
            if let Destination::Maildir(path) = &route.target.destination {
                self.maildir(path).map_err(|e| (path.clone(), e))?;
            }
        }
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Rules { table, unknown });
        Ok(())
    }

    /// The default Maildir (the catch-all without a `*` route; where bounces go).
    pub fn default_maildir(&self) -> &Maildir {
        &self.default
    }

    /// The spool, when server targets are possible.
    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    /// Where `address` goes; `None` when it is unknown and unknown recipients are refused.
    pub fn route(&self, address: &str) -> Option<Target> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
        if rules.table.is_empty() {
            return Some(self.default_target());
        }
        match rules.table.lookup(address) {
            Some(route) => Some(route.target.clone()),
            None => match rules.unknown {
                UnknownRecipients::CatchAll => Some(self.default_target()),
                UnknownRecipients::Reject => None,
            },
        }
    }

    /// The default Maildir as a target (the catch-all, and the postmaster's).
    pub fn default_target(&self) -> Target {
        Target::maildir(self.default.root().to_path_buf())
    }

    /// The Maildir at `path` (the default one, or a route's, opened once).
    fn maildir(&self, path: &std::path::Path) -> io::Result<Maildir> {
        if path == self.default.root() {
            return Ok(self.default.clone());
        }
        let mut maildirs = self.maildirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = maildirs.get(path) {
            return Ok(m.clone());
        }
        let m = Maildir::create(path)?;
        maildirs.insert(path.to_path_buf(), m.clone());
        Ok(m)
    }

    /// Opens the copies of one message for `recipients` (address and target each, in RCPT
    /// order): a file per Maildir target, one spool entry for all server targets, each with
    /// its headers written. `received` makes our `Received:` for a copy's recipients and the
    /// message id.
    pub async fn open(
        &self,
        sender: &str,
        peer: &str,
        recipients: &[(String, Target)],
        received: &(dyn Fn(&[String], &str) -> String + Sync),
    ) -> io::Result<Copies> {
        // Maildir targets in the order of their first recipient; servers all in one entry.
        let mut groups: Vec<(Target, Vec<String>)> = Vec::new();
        let mut queued: Vec<QueuedRecipient> = Vec::new();
        for (address, target) in recipients {
            if target.destination.is_server() {
                queued.push(QueuedRecipient {
                    address: address.clone(),
                    target: target.clone(),
                });
                continue;
            }
            match groups.iter_mut().find(|(t, _)| t == target) {
                Some((_, list)) => list.push(address.clone()),
                None => groups.push((target.clone(), vec![address.clone()])),
            }
        }
        let mut sinks = Vec::new();
        if !queued.is_empty() {
            let spool = self.spool.as_ref().ok_or_else(|| {
                io::Error::other("a route names a server, but there is no spool to queue for it")
            })?;
            let envelope = Envelope {
                received_at: Utc::now(),
                sender: sender.to_owned(),
                recipients: queued,
                peer: peer.to_owned(),
            };
            sinks.push(Sink::Spool {
                writer: spool.begin(&envelope).await?,
                recipients: envelope.recipients,
            });
        }
        for (target, list) in groups {
            let Destination::Maildir(path) = &target.destination else {
                continue;
            };
            let maildir = self.maildir(path)?;
            sinks.push(Sink::Maildir {
                delivery: maildir.begin().await?,
                recipients: list,
                target,
            });
        }
        let id = sinks.first().map(Sink::id).unwrap_or_default().to_owned();
        let mut copies = Copies { id, sinks };
        for sink in &mut copies.sinks {
            let head = match sink {
                Sink::Spool { recipients, .. } => {
                    let all: Vec<String> = recipients.iter().map(|r| r.address.clone()).collect();
                    received(&all, &copies.id)
                }
                Sink::Maildir { recipients, .. } => {
                    let mut head = format!("Return-Path: <{sender}>\r\n");
                    for r in recipients.iter() {
                        head.push_str(&format!("X-Original-To: {r}\r\nDelivered-To: {r}\r\n"));
                    }
                    head.push_str(&received(recipients, &copies.id));
                    head
                }
            };
            sink.write(head.as_bytes()).await?;
        }
        Ok(copies)
    }
}

enum Sink {
    Maildir {
        delivery: Delivery,
        recipients: Vec<String>,
        target: Target,
    },
    Spool {
        writer: SpoolWriter,
        recipients: Vec<QueuedRecipient>,
    },
}

impl Sink {
    fn id(&self) -> &str {
        match self {
            Sink::Maildir { delivery, .. } => delivery.id(),
            Sink::Spool { writer, .. } => writer.id(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Maildir { delivery, .. } => delivery.write(bytes).await,
            Sink::Spool { writer, .. } => writer.write(bytes).await,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Sink::Maildir { delivery, .. } => delivery.size(),
            Sink::Spool { writer, .. } => writer.size(),
        }
    }

    async fn abort(self) {
        match self {
            Sink::Maildir { delivery, .. } => delivery.abort().await,
            Sink::Spool { writer, .. } => writer.abort().await,
        }
    }
}

/// The copies of one message being written; dropped without `commit`, none is left.
pub struct Copies {
    id: String,
    sinks: Vec<Sink>,
}

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copies")
            .field("id", &self.id)
            .field("copies", &self.sinks.len())
            .finish()
    }
}

/// One copy, committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// The file (in a Maildir's `new/`, or in the spool).
    pub path: PathBuf,
    /// The recipients it stands for.
    pub recipients: Vec<String>,
    /// Where it is: the Maildir, or for a spool entry the server targets, which it waits for.
    pub targets: Vec<Target>,
    /// Whether it waits in the spool to be handed over.
    pub queued: bool,
}

impl Copies {
    /// The message's id: what `queued as` and `Received: ... id` say.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends message bytes to every copy.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.write(bytes).await?;
        }
        Ok(())
    }

    /// The first copy's size in bytes, its headers included.
    pub fn size(&self) -> u64 {
        self.sinks.first().map(Sink::size).unwrap_or(0)
    }

    /// Gives every copy up.
    pub async fn abort(self) {
        for sink in self.sinks {
            sink.abort().await;
        }
    }

    /// Makes every copy durable, Maildirs first, the spool last (so the runner never hands
    /// over a message whose other copies then fail); on an error the copies already committed
    /// are taken back, so a `4xx` and the ISP's retry cannot duplicate them.
    pub async fn commit(self) -> io::Result<Vec<StoredCopy>> {
        let mut spool = None;
        let mut pending = Vec::new();
        for sink in self.sinks {
            match sink {
                s @ Sink::Spool { .. } => spool = Some(s),
                s => pending.push(s),
            }
        }
        pending.extend(spool);
        let mut done: Vec<StoredCopy> = Vec::new();
        let mut rest = pending.into_iter();
        while let Some(sink) = rest.next() {
            let result = match sink {
                Sink::Maildir {
                    delivery,
                    recipients,
                    target,
                } => delivery.commit().await.map(|path| StoredCopy {
                    path,
                    recipients,
                    targets: vec![target],
                    queued: false,
                }),
                Sink::Spool { writer, recipients } => writer.commit().await.map(|path| {
                    let mut targets: Vec<Target> = Vec::new();
                    for r in &recipients {
                        if !targets.contains(&r.target) {
                            targets.push(r.target.clone());
                        }
                    }
                    StoredCopy {
                        path,
                        recipients: recipients.into_iter().map(|r| r.address).collect(),
                        targets,
                        queued: true,
                    }
                }),
            };
            match result {
                Ok(copy) => done.push(copy),
                Err(e) => {
                    for sink in rest {
                        sink.abort().await;
                    }
                    for copy in &done {
                        // Durably, or said: a copy left (or back after a crash) is a duplicate.
                        if let Err(rm) = crate::fsutil::remove_durably(&copy.path) {
                            tracing::error!(path = %copy.path.display(), error = %rm,
                                "cannot take back a copy of a message whose other copies failed: \
                                 the sender's retry will store it twice");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }
}
