//! Link-up de-duplication: one fetch per link-up, and a link that flaps (goes down and comes back
//! within the settle delay) counts as the same link-up.
//!
//! The first appearance fires at once — the point is to ask the ISP the moment the link is up —
//! and the settle delay is how long a link must stay down before its next appearance counts as a
//! new link-up. A pure state machine over instants, so the rules are tested without any network.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::filter::Links;

#[derive(Debug, Clone, Copy)]
struct State {
    up: bool,
    /// When the link went down; `None` while up.
    down_since: Option<Instant>,
}

/// Tracks which links are up and decides which link-ups deserve a fetch.
#[derive(Debug)]
pub struct LinkTracker {
    settle: Duration,
    links: HashMap<String, State>,
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
        for name in links {
            self.links.insert(
                name.clone(),
                State {
                    up: true,
                    down_since: None,
                },
            );
        }
    }

    /// Takes in a new snapshot at `now`; returns the links whose coming up should fetch.
    pub fn update(&mut self, links: &Links, now: Instant) -> Vec<String> {
        let mut fire = Vec::new();
        for name in links {
            let state = self.links.entry(name.clone()).or_insert(State {
                up: false,
                down_since: None,
            });
            if state.up {
                continue;
            }
            let flapped = state
                .down_since
                .is_some_and(|since| now.saturating_duration_since(since) < self.settle);
            if !flapped {
                fire.push(name.clone());
            }
            *state = State {
                up: true,
                down_since: None,
            };
        }
        for (name, state) in self.links.iter_mut() {
            if state.up && !links.contains(name) {
                *state = State {
                    up: false,
                    down_since: Some(now),
                };
            }
        }
        // Links gone for longer than the settle delay need no memory.
        let settle = self.settle;
        self.links.retain(|_, s| {
            s.up || s
                .down_since
                .is_some_and(|since| now.saturating_duration_since(since) < settle)
        });
        fire
    }

    /// Whether any tracked link is up.
    pub fn any_up(&self) -> bool {
        self.links.values().any(|s| s.up)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn links(names: &[&str]) -> Links {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn first_link_up_fires_at_once_and_only_once() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        assert_eq!(t.update(&links(&["ppp0"]), Instant::now()), ["ppp0"]);
        // The same state again (an address added to a link already up) is no new link-up.
        assert!(t.update(&links(&["ppp0"]), Instant::now()).is_empty());
        assert!(t.any_up());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flap_within_the_settle_delay_counts_once() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&[]));
        assert_eq!(t.update(&links(&["ppp0"]), Instant::now()).len(), 1);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(t.update(&links(&[]), Instant::now()).is_empty());
        assert!(!t.any_up());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(t.update(&links(&["ppp0"]), Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn down_for_longer_than_the_settle_delay_is_a_new_link_up() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&["ppp0"]));
        // Up at start: no link-up.
        assert!(t.update(&links(&["ppp0"]), Instant::now()).is_empty());
        t.update(&links(&[]), Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.update(&links(&["ppp0"]), Instant::now()), ["ppp0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn links_are_tracked_apart() {
        let mut t = LinkTracker::new(Duration::from_secs(2));
        t.initial(&links(&["eth0"]));
        assert_eq!(
            t.update(&links(&["eth0", "ppp0"]), Instant::now()),
            ["ppp0"]
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        t.update(&links(&["eth0"]), Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(t
            .update(&links(&["eth0", "ppp0"]), Instant::now())
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_settle_makes_every_link_up_count() {
        let mut t = LinkTracker::new(Duration::ZERO);
        t.initial(&links(&[]));
        assert_eq!(t.update(&links(&["ppp0"]), Instant::now()).len(), 1);
        t.update(&links(&[]), Instant::now());
        assert_eq!(t.update(&links(&["ppp0"]), Instant::now()).len(), 1);
    }
}
