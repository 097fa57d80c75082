//! The link state from the operating system, via `netwatcher` (netlink on Linux): the
//! interfaces that pass the filter and have a usable address — with their index and addresses,
//! so a deleted and re-created `ppp0` or a changed address is a change — republished on every
//! change.

use std::collections::HashMap;
use std::net::IpAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::filter::{InterfaceFilter, Links};

/// The links up in one netwatcher snapshot.
pub fn links_of(
    filter: &InterfaceFilter,
    interfaces: &HashMap<u32, netwatcher::Interface>,
) -> Links {
    interfaces
        .values()
        .filter_map(|i| {
            let addrs: Vec<IpAddr> = i.ips.iter().map(|r| r.ip).collect();
            filter.link(i.index, &i.name, &addrs)
        })
        .collect()
}

/// Starts watching; each snapshot that changes the set of links is published on `tx`.
/// Must be called inside a Tokio runtime.
pub fn spawn(
    filter: InterfaceFilter,
    tx: watch::Sender<Option<Links>>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, netwatcher::Error> {
    let mut watch = netwatcher::watch_interfaces_async::<netwatcher::async_adapter::Tokio>()?;
    Ok(tokio::spawn(async move {
        loop {
            let update = tokio::select! {
                _ = shutdown.cancelled() => return,
                u = watch.changed() => u,
            };
            let links = links_of(&filter, &update.interfaces);
            tracing::debug!(?links, initial = update.is_initial, "interfaces changed");
            tx.send_if_modified(|current| {
                if current.as_ref() == Some(&links) {
                    false
                } else {
                    *current = Some(links);
                    true
                }
            });
        }
    }))
}
