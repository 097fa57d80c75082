//! Linux: watches the session bus for a system tray (a StatusNotifierItem host) to show the icon
//! in, for a desktop whose panel starts after Mailcall or that has none yet: a
//! `org.kde.StatusNotifierWatcher` appearing, or a host registering with one.

use std::future::poll_fn;
use std::pin::Pin;

use zbus::export::futures_core::Stream;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

/// The bus name (and interface) of the registry that tray hosts and items register with.
pub const WATCHER: &str = "org.kde.StatusNotifierWatcher";

/// A subscription to the signals that can make a tray icon showable.
pub struct HostWatch {
    _conn: Connection,
    owners: MessageStream,
    hosts: MessageStream,
}

impl HostWatch {
    /// Subscribes (on its own session-bus connection) to the watcher's name changing owner and
    /// to hosts registering with it.
    pub async fn new() -> zbus::Result<Self> {
        let conn = Connection::session().await?;
        let owner_rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .add_arg(WATCHER)?
            .build();
        let host_rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .interface(WATCHER)?
            .member("StatusNotifierHostRegistered")?
            .build();
        let owners = MessageStream::for_match_rule(owner_rule, &conn, Some(8)).await?;
        let hosts = MessageStream::for_match_rule(host_rule, &conn, Some(8)).await?;
        Ok(Self {
            _conn: conn,
            owners,
            hosts,
        })
    }

    /// Waits for the next such signal; false when the bus connection ended.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            m = next(&mut self.owners) => m.is_some(),
            m = next(&mut self.hosts) => m.is_some(),
        }
    }
}

async fn next(stream: &mut MessageStream) -> Option<zbus::Result<zbus::Message>> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}
