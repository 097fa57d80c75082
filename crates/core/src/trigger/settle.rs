//! Link-up de-duplication: one fetch per link-up, and a link that flaps (goes down and comes back
//! within the settle delay) counts as the same link-up.
//!
//! Links are tracked by interface index, the kernel's identity for an interface: pppd deletes
//! `ppp0` at hang-up and creates a new one (a new index) at the next dial-in, so that is always a
//! new link-up, however fast it comes and whatever its name and address. The settle delay only
//! merges the *same* interface going down and coming back (a carrier flap, `ip link set down/up`)
//! with the same addresses. A new address on a link that has been up for the settle delay (a DHCP
//! renew that changed the address) is a link-up too: the ISP must now reach a new address.
//!
//! The first appearance fires at once — the point is to ask the ISP the moment the link is up.
//! A pure state machine over instants, so the rules are tested without any network.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::filter::Links;

/// Why a link counts as having come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkUpCause {
    /// An interface Mailcall did not know (a new index: a new `ppp0`, a renamed interface that
    /// now passes the filter, a cable plugged in).
    New,
    /// A known interface back after being down for longer than the settle delay.
    Back,
    /// A known interface with an address it did not have (e.g. a DHCP renew that changed it).
    NewAddress,
}

/// A link-up that deserves a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUp {
    /// The interface's name.
    pub name: String,
    /// Why it counts.
    pub cause: LinkUpCause,
}

#[derive(Debug, Clone)]
struct State {
    name: String,
    /// The usable addresses it had when last seen up.
    addrs: BTreeSet<IpAddr>,
    /// When it came up; `None` when it was up before Mailcall started.
    up_since: Option<Instant>,
    /// When it went down; `None` while up.
    down_since: Option<Instant>,
}

/// Tracks which links are up and decides which link-ups deserve a fetch.
#[derive(Debug)]
pub struct LinkTracker {
    settle: Duration,
    links: HashMap<u32, State>,
}

impl LinkTracker {
    /// A tracker treating a link that comes back within `settle` as the same link-up.
    pub fn new(settle: Duration) -> Self {
        LinkTracker {
            settle,
            links: HashMap::new(),
        }
    }

    /// Takes in the state at start: links already up are not link-ups (the start fetch is its
    /// own trigger).
    pub fn initial(&mut self, links: &Links) {
        for link in links.iter() {
            self.links.insert(
                link.index,
                State {
                    name: link.name.clone(),
                    addrs: link.addrs.clone(),
                    up_since: None,
                    down_since: None,
                },
            );
        }
    }

    /// Takes in a new snapshot at `now`; returns the links whose coming up should fetch.
    pub fn update(&mut self, links: &Links, now: Instant) -> Vec<LinkUp> {
        let settle = self.settle;
        let within_settle = |since: Instant| now.saturating_duration_since(since) < settle;
        let mut fire = Vec::new();
        for link in links.iter() {
            let cause = match self.links.get_mut(&link.index) {
                None => {
                    self.links.insert(
                        link.index,
                        State {
                            name: link.name.clone(),
                            addrs: link.addrs.clone(),
                            up_since: Some(now),
                            down_since: None,
                        },
                    );
                    Some(LinkUpCause::New)
                }
                Some(state) => {
                    let new_address = link.addrs.difference(&state.addrs).next().is_some();
                    let cause = match state.down_since {
                        // Down and back: a flap unless it stayed down long enough or came back
                        // with an address it did not have.
                        Some(since) if !within_settle(since) => Some(LinkUpCause::Back),
                        Some(_) => new_address.then_some(LinkUpCause::NewAddress),
                        // Up all along: addresses arriving in its first moments (IPv4, then
                        // IPv6 a second later) belong to the same link-up.
                        None => (new_address && !state.up_since.is_some_and(within_settle))
                            .then_some(LinkUpCause::NewAddress),
                    };
                    if state.down_since.is_some() {
                        state.up_since = Some(now);
                        state.down_since = None;
                    }
                    state.name.clone_from(&link.name);
                    state.addrs.clone_from(&link.addrs);
                    cause
                }
            };
            if let Some(cause) = cause {
                fire.push(LinkUp {
                    name: link.name.clone(),
                    cause,
                });
            }
        }
        for (index, state) in self.links.iter_mut() {
            if state.down_since.is_none() && links.get(*index).is_none() {
                state.down_since = Some(now);
            }
        }
        // Links gone for longer than the settle delay need no memory: a deleted interface's
        // index never comes back, and a known one back after that long is a new link-up anyway.
        self.links
            .retain(|_, s| s.down_since.is_none_or(&within_settle));
        fire
    }

    /// Whether any tracked link is up.
    pub fn any_up(&self) -> bool {
        self.links.values().any(|s| s.down_since.is_none())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::filter::Link;
    use super::*;

    /// `(index, name, address)` triples as a snapshot.
    fn links(up: &[(u32, &str, &str)]) -> Links {
        up.iter()
            .map(|(i, n, a)| Link::new(*i, *n, [a.parse::<IpAddr>().unwrap()]))
            .collect()
    }

    fn causes(fired: Vec<LinkUp>) -> Vec<(String, LinkUpCause)> {
        fired.into_iter().map(|f| (f.name, f.cause)).collect()
    }

    const PPP: (u32, &str, &str) = (5, "ppp0", "10.64.0.2");

    #[tokio::test(start_paused = true)]
    async fn first_link_up_fires_at_once_and_only_once() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        assert_eq!(
            causes(t.update(&links(&[PPP]), Instant::now())),
            [("ppp0".to_string(), LinkUpCause::New)]
        );
        // The same state again (a netlink event that changed nothing we watch): no link-up.
        assert!(t.update(&links(&[PPP]), Instant::now()).is_empty());
        assert!(t.any_up());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flap_within_the_settle_delay_counts_once() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        assert_eq!(t.update(&links(&[PPP]), Instant::now()).len(), 1);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(t.update(&links(&[]), Instant::now()).is_empty());
        assert!(!t.any_up());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(t.update(&links(&[PPP]), Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn down_for_longer_than_the_settle_delay_is_a_new_link_up() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[PPP]));
        // Up at start: no link-up.
        assert!(t.update(&links(&[PPP]), Instant::now()).is_empty());
        t.update(&links(&[]), Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.update(&links(&[PPP]), Instant::now()).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recreated_interface_is_a_new_link_up_however_fast() {
        // pppd: hang up deletes ppp0, the next dial-in creates a new one (a new index) with the
        // same name and often the same address — within a second, or within one netlink burst.
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        for index in 5..15 {
            let up = links(&[(index, "ppp0", "10.64.0.2")]);
            assert_eq!(
                causes(t.update(&up, Instant::now())),
                [("ppp0".to_string(), LinkUpCause::New)],
                "dial-in with index {index}"
            );
            tokio::time::advance(Duration::from_millis(200)).await;
            assert!(t.update(&links(&[]), Instant::now()).is_empty());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Deleted and re-created between two snapshots: the old index vanishes, a new one is up.
        t.update(&links(&[(20, "ppp0", "10.64.0.2")]), Instant::now());
        assert_eq!(
            causes(t.update(&links(&[(21, "ppp0", "10.64.0.2")]), Instant::now())),
            [("ppp0".to_string(), LinkUpCause::New)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_address_on_a_settled_link_is_a_link_up() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        assert_eq!(
            t.update(&links(&[(3, "eth0", "192.0.2.10")]), Instant::now())
                .len(),
            1
        );
        // IPv6 arriving a second after IPv4 is part of the same link-up.
        let both: Links = [Link::new(
            3,
            "eth0",
            [
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
        )]
        .into_iter()
        .collect();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.update(&both, Instant::now()).is_empty());
        // Later a DHCP renew keeps the address: nothing. One that changes it: a link-up.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(t.update(&both, Instant::now()).is_empty());
        assert_eq!(
            causes(t.update(&links(&[(3, "eth0", "192.0.2.77")]), Instant::now())),
            [("eth0".to_string(), LinkUpCause::NewAddress)]
        );
        // An address lost and a new one a moment later (no address in between): a link-up, even
        // though the link was "down" for less than the settle delay.
        tokio::time::advance(Duration::from_secs(60)).await;
        t.update(&links(&[]), Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(
            causes(t.update(&links(&[(3, "eth0", "192.0.2.99")]), Instant::now())),
            [("eth0".to_string(), LinkUpCause::NewAddress)]
        );
        // The old address back within the settle delay is a flap.
        t.update(&links(&[]), Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(t
            .update(&links(&[(3, "eth0", "192.0.2.99")]), Instant::now())
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rename_is_followed_by_index() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[(4, "eth0", "192.0.2.1")]));
        // Renamed, same index and address: the same link, no new link-up.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(t
            .update(&links(&[(4, "wan", "192.0.2.1")]), Instant::now())
            .is_empty());
        assert!(t.any_up());
        // Renamed to a name the filter leaves out (the snapshot no longer has it): down.
        assert!(t.update(&links(&[]), Instant::now()).is_empty());
        assert!(!t.any_up());
    }

    #[tokio::test(start_paused = true)]
    async fn links_are_tracked_apart() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        let eth = (2, "eth0", "192.0.2.1");
        t.initial(&links(&[eth]));
        assert_eq!(
            causes(t.update(&links(&[eth, PPP]), Instant::now())),
            [("ppp0".to_string(), LinkUpCause::New)]
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        t.update(&links(&[eth]), Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(t.update(&links(&[eth, PPP]), Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_settle_makes_every_link_up_count() {
        let mut t = LinkTracker::new(Duration::ZERO);
        t.initial(&links(&[]));
        assert_eq!(t.update(&links(&[PPP]), Instant::now()).len(), 1);
        t.update(&links(&[]), Instant::now());
        assert_eq!(t.update(&links(&[PPP]), Instant::now()).len(), 1);
    }
}
