//! The tray icon as a StatusNotifierItem host sees it, over the test's session bus (zbus): the
//! items registered with the StatusNotifierWatcher, the one that is Mailcall's (Id `mailcall`),
//! and its ToolTip property.

use std::time::Duration;

use mailcall_e2e::KeyringEnv;
use zbus::blocking::Connection;
use zbus::zvariant::OwnedValue;

const WATCHER: &str = "org.kde.StatusNotifierWatcher";
const ITEM: &str = "org.kde.StatusNotifierItem";
/// The app's tray id, which its StatusNotifierItem reports as `Id`.
const MAILCALL_ID: &str = "mailcall";

/// A connection to the test's session bus.
pub struct Sni {
    conn: Connection,
}

/// A StatusNotifierItem: its bus name and object path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The bus name it is on.
    pub service: String,
    /// Its object path.
    pub path: String,
}

impl Sni {
    /// Connects to the keyring environment's private session bus.
    pub fn connect(keyring: &KeyringEnv) -> Self {
        let addr = keyring
            .bus_address()
            .expect("the GUI test's KeyringEnv has a session bus");
        let conn = zbus::blocking::connection::Builder::address(addr)
            .and_then(|b| b.method_timeout(Duration::from_secs(10)).build())
            .unwrap_or_else(|e| panic!("connecting to the test's session bus {addr}: {e}"));
        Sni { conn }
    }

    fn get(
        &self,
        service: &str,
        path: &str,
        iface: &str,
        name: &str,
    ) -> Result<OwnedValue, String> {
        let reply = self
            .conn
            .call_method(
                Some(service),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(iface, name),
            )
            .map_err(|e| format!("{service}{path} {iface}.{name}: {e}"))?;
        reply
            .body()
            .deserialize::<OwnedValue>()
            .map_err(|e| format!("{service}{path} {iface}.{name}: {e}"))
    }

    /// Whether a host (the tray) has registered with the watcher.
    pub fn host_registered(&self) -> bool {
        self.get(
            WATCHER,
            "/StatusNotifierWatcher",
            WATCHER,
            "IsStatusNotifierHostRegistered",
        )
        .ok()
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false)
    }

    /// The items registered with the watcher (none when no watcher runs).
    pub fn registered(&self) -> Vec<Item> {
        let names = self
            .get(
                WATCHER,
                "/StatusNotifierWatcher",
                WATCHER,
                "RegisteredStatusNotifierItems",
            )
            .ok()
            .and_then(|v| Vec::<String>::try_from(v).ok())
            .unwrap_or_default();
        names
            .into_iter()
            .map(|n| match n.split_once('/') {
                // Some watchers list "service/path" for items registered by path.
                Some((service, path)) => Item {
                    service: service.to_string(),
                    path: format!("/{path}"),
                },
                None => Item {
                    service: n,
                    path: "/StatusNotifierItem".into(),
                },
            })
            .collect()
    }

    /// Mailcall's item, when it is registered and answers.
    pub fn mailcall(&self) -> Option<Item> {
        self.registered().into_iter().find(|item| {
            self.get(&item.service, &item.path, ITEM, "Id")
                .ok()
                .and_then(|v| String::try_from(v).ok())
                .is_some_and(|id| id == MAILCALL_ID)
        })
    }

    /// The item's tooltip text (the ToolTip property's description).
    pub fn tooltip(&self, item: &Item) -> Result<String, String> {
        let value = self.get(&item.service, &item.path, ITEM, "ToolTip")?;
        type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);
        let (_icon, _pixmaps, _title, text) =
            ToolTip::try_from(value).map_err(|e| format!("ToolTip is not (sa(iiay)ss): {e}"))?;
        Ok(text)
    }
}

impl Sni {
    /// The item's Title property (what trays that show titles, and screen readers, name it).
    pub fn title(&self, item: &Item) -> Result<String, String> {
        let value = self.get(&item.service, &item.path, ITEM, "Title")?;
        String::try_from(value).map_err(|e| format!("Title is not a string: {e}"))
    }
}
