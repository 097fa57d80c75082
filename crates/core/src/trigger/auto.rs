//! The automatic triggers: a link coming up, the interval while a link is up, and once at start
//! when already online. Pausing silences all three; the link state is still followed meanwhile.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::filter::Links;
use super::settle::LinkTracker;
use crate::history::Trigger;

/// How the automatic triggers behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoOptions {
    /// How long a link must stay down before coming back counts as a new link-up.
    pub settle: Duration,
    /// Fetch this often while a link is up; `None`: never.
    pub interval: Option<Duration>,
    /// Fetch once at start when a link is already up.
    pub fetch_at_start: bool,
}

/// A fetch the automatic triggers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoFetch {
    /// [`Trigger::Network`], [`Trigger::Interval`] or [`Trigger::Start`].
    pub trigger: Trigger,
    /// The link that came up, for `network`.
    pub interface: Option<String>,
}

/// Follows `links` (`None` until the first snapshot) and sends the fetches the triggers ask for.
pub async fn run(
    mut links: watch::Receiver<Option<Links>>,
    paused: watch::Receiver<bool>,
    options: AutoOptions,
    out: mpsc::UnboundedSender<AutoFetch>,
    shutdown: CancellationToken,
) {
    let initial = loop {
        if let Some(l) = links.borrow_and_update().clone() {
            break l;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = links.changed() => if changed.is_err() { return },
        }
    };
    let mut tracker = LinkTracker::new(options.settle);
    tracker.initial(&initial);
    let now = Instant::now();
    let mut next_tick = if initial.is_empty() {
        None
    } else {
        options.interval.map(|i| now + i)
    };
    if !initial.is_empty() && options.fetch_at_start && !*paused.borrow() {
        let _ = out.send(AutoFetch {
            trigger: Trigger::Start,
            interface: None,
        });
    }
    loop {
        let tick = async {
            match next_tick {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = links.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = Instant::now();
                let current = links.borrow_and_update().clone().unwrap_or_default();
                let was_up = tracker.any_up();
                let fire = tracker.update(&current, now);
                let up = tracker.any_up();
                if !up {
                    next_tick = None;
                } else if !was_up || !fire.is_empty() {
                    // A fresh fetch restarts the interval: no second fetch right after the first.
                    next_tick = options.interval.map(|i| now + i);
                }
                // Two links up at once still make one request: the session would merge them anyway.
                if let Some(up) = fire.into_iter().next() {
                    tracing::debug!(interface = %up.name, cause = ?up.cause, "link up");
                    if !*paused.borrow() {
                        let _ = out.send(AutoFetch { trigger: Trigger::Network, interface: Some(up.name) });
                    }
                }
            }
            _ = tick => {
                if !*paused.borrow() {
                    let _ = out.send(AutoFetch { trigger: Trigger::Interval, interface: None });
                }
                next_tick = options.interval.map(|i| Instant::now() + i);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Rig {
        links: watch::Sender<Option<Links>>,
        paused: watch::Sender<bool>,
        out: mpsc::UnboundedReceiver<AutoFetch>,
        shutdown: CancellationToken,
    }

    fn rig(options: AutoOptions) -> Rig {
        let (links, lrx) = watch::channel(None);
        let (paused, prx) = watch::channel(false);
        let (tx, out) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        tokio::spawn(run(lrx, prx, options, tx, shutdown.clone()));
        Rig {
            links,
            paused,
            out,
            shutdown,
        }
    }

    /// The watched interfaces `names` up, each with a fixed index and address.
    fn set(r: &Rig, names: &[&str]) {
        use super::super::filter::Link;
        let links = names.iter().map(|n| {
            let index = match *n {
                "eth0" => 2,
                "ppp0" => 5,
                _ => 9,
            };
            Link::new(
                index,
                *n,
                ["10.64.0.2".parse::<std::net::IpAddr>().unwrap()],
            )
        });
        r.links.send(Some(links.collect())).unwrap();
    }

    /// Lets the trigger task run until it waits again (paused time does not move by itself
    /// while a task is runnable).
    async fn settle_tasks() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn drain(r: &mut Rig) -> Vec<&'static str> {
        let mut v = Vec::new();
        while let Ok(f) = r.out.try_recv() {
            v.push(f.trigger.as_str());
        }
        v
    }

    const OPTS: AutoOptions = AutoOptions {
        settle: Duration::from_secs(2),
        interval: None,
        fetch_at_start: true,
    };

    #[tokio::test(start_paused = true)]
    async fn start_fetch_only_when_online() {
        let mut r = rig(OPTS);
        set(&r, &["eth0"]);
        settle_tasks().await;
        assert_eq!(drain(&mut r), ["start"]);
        let mut r = rig(OPTS);
        set(&r, &[]);
        settle_tasks().await;
        assert!(drain(&mut r).is_empty());
        let mut r = rig(AutoOptions {
            fetch_at_start: false,
            ..OPTS
        });
        set(&r, &["eth0"]);
        settle_tasks().await;
        assert!(drain(&mut r).is_empty());
        r.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn one_fetch_per_link_up_and_flaps_merge() {
        let mut r = rig(OPTS);
        set(&r, &[]);
        settle_tasks().await;
        set(&r, &["ppp0"]);
        settle_tasks().await;
        let first = r.out.try_recv().unwrap();
        assert_eq!(
            first,
            AutoFetch {
                trigger: Trigger::Network,
                interface: Some("ppp0".into())
            }
        );
        // Quick succession: down and up again within the settle delay.
        tokio::time::sleep(Duration::from_millis(200)).await;
        set(&r, &[]);
        settle_tasks().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        set(&r, &["ppp0"]);
        settle_tasks().await;
        assert!(drain(&mut r).is_empty());
        // Down for longer than the settle delay: the next link-up is a new one.
        set(&r, &[]);
        settle_tasks().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        set(&r, &["ppp0"]);
        settle_tasks().await;
        assert_eq!(drain(&mut r), ["network"]);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_runs_only_while_a_link_is_up() {
        let mut r = rig(AutoOptions {
            interval: Some(Duration::from_secs(600)),
            fetch_at_start: false,
            ..OPTS
        });
        set(&r, &[]);
        settle_tasks().await;
        tokio::time::sleep(Duration::from_secs(1800)).await;
        assert!(drain(&mut r).is_empty(), "no interval fetch while offline");
        set(&r, &["ppp0"]);
        settle_tasks().await;
        assert_eq!(drain(&mut r), ["network"]);
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert!(drain(&mut r).is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(drain(&mut r), ["interval"]);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(drain(&mut r), ["interval"]);
        set(&r, &[]);
        settle_tasks().await;
        tokio::time::sleep(Duration::from_secs(3000)).await;
        assert!(drain(&mut r).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn pause_stops_every_automatic_fetch() {
        let mut r = rig(AutoOptions {
            interval: Some(Duration::from_secs(60)),
            ..OPTS
        });
        r.paused.send(true).unwrap();
        set(&r, &["eth0"]);
        settle_tasks().await;
        tokio::time::sleep(Duration::from_secs(200)).await;
        set(&r, &["eth0", "ppp0"]);
        settle_tasks().await;
        assert!(
            drain(&mut r).is_empty(),
            "paused: nothing at start, on link-up or interval"
        );
        r.paused.send(false).unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(drain(&mut r), ["interval"]);
    }
}
