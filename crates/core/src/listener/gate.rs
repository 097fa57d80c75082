//! Who may open a session at all: the optional peer allowlist (CIDR networks) and the limits on
//! concurrent connections, overall and per peer — the latter not for the ISP a running fetch has
//! asked ([`AskedPeers`]). IPv6 peers count per /64 (one host usually holds a whole /64), and
//! strangers (neither asked nor in `allowed-peers`) never get the last `reserved` slots, so the
//! delivery a fetch asked for gets in while they hold the rest. Decided at connect, before the
//! greeting.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// An IPv4 or IPv6 network in CIDR form (`192.0.2.0/24`, `2001:db8::/32`); a bare address is a
/// network of one (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerNet {
    /// The network address, host bits cleared.
    addr: IpAddr,
    prefix: u8,
}

/// A peer network that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a peer address or network: write an IPv4 or IPv6 address, optionally with \
     a prefix length, such as `192.0.2.10`, `192.0.2.0/24` or `2001:db8::/32`"
)]
pub struct PeerNetError {
    input: String,
}

impl PeerNet {
    /// The network `addr/prefix`; host bits of `addr` are cleared. `None` if the prefix is longer
    /// than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix)))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix)))
            }
            _ => return None,
        };
        Some(PeerNet { addr, prefix })
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 peers (`::ffff:192.0.2.1`, as a
    /// dual-stack socket reports IPv4 clients) are judged by their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for PeerNet {
    type Err = PeerNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeerNetError {
            input: s.to_owned(),
        };
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            // Digits only: `u8::from_str` would also take `+24`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
            None => max,
        };
        PeerNet::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for PeerNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a connection was turned away at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not on the allowlist: 554 5.7.1.
    NotAllowed,
    /// Too many connections in all, or from this address: 421 4.7.0.
    TooMany,
}

/// The ISP addresses running fetches have asked for their mail: the addresses their ETRN clients
/// connected to. The per-peer limit does not apply to these, only the overall one: an MTA
/// delivers a queue run over as many connections at once as its destination concurrency allows
/// (Postfix: 20), and a session closing overlaps the next one opening, so a per-peer limit near
/// that figure would turn away the very deliveries the fetch asked for. Shared by the listener's
/// gate and the fetch sessions (through [`super::Reception`]).
#[derive(Debug, Clone, Default)]
pub struct AskedPeers {
    /// How many notes (fetch, account) stand for each address.
    notes: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AskedPeers {
    /// Whether a running fetch has asked `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        lock(&self.notes).contains_key(&ip.to_canonical())
    }

    /// A fetch's own notes: what it asks through them counts as asked until they are dropped.
    pub fn scope(&self) -> AskScope {
        AskScope {
            peers: self.clone(),
            asked: Mutex::new(Vec::new()),
        }
    }
}

/// The addresses one fetch has asked, each with its account; dropping it takes them back.
#[derive(Debug)]
pub struct AskScope {
    peers: AskedPeers,
    asked: Mutex<Vec<(String, IpAddr)>>,
}

impl AskScope {
    /// Notes that `account`'s ISP is asked at `ip`: from now on (before the ETRN goes out) its
    /// connections meet no per-peer limit.
    pub fn ask(&self, account: &str, ip: IpAddr) {
        let ip = ip.to_canonical();
        *lock(&self.peers.notes).entry(ip).or_default() += 1;
        lock(&self.asked).push((account.to_owned(), ip));
    }

    /// Whether this fetch has asked `ip`.
    pub fn has_asked(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        lock(&self.asked).iter().any(|(_, a)| *a == ip)
    }

    /// The accounts this fetch asked at `ip`, each once, in the order asked.
    pub fn accounts_at(&self, ip: IpAddr) -> Vec<String> {
        let ip = ip.to_canonical();
        let mut names: Vec<String> = Vec::new();
        for (name, _) in lock(&self.asked).iter().filter(|(_, a)| *a == ip) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

impl Drop for AskScope {
    fn drop(&mut self) {
        let asked = std::mem::take(&mut *lock(&self.asked));
        let mut notes = lock(&self.peers.notes);
        for (_, ip) in asked {
            if let Some(n) = notes.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    notes.remove(&ip);
                }
            }
        }
    }
}

/// A poisoned lock only means another task panicked mid-update of a few integers.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts live sessions; each admitted connection holds a `Ticket` that gives its slot back.
#[derive(Debug)]
pub(crate) struct Gate {
    allowed: Option<Vec<PeerNet>>,
    limits: Limits,
    asked: AskedPeers,
    counts: Arc<Mutex<Counts>>,
}

/// How many sessions the gate lets in at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From everyone.
    pub(crate) total: usize,
    /// From one peer (an IPv4 address, an IPv6 /64), unless a running fetch asked it.
    pub(crate) per_peer: usize,
    /// Slots strangers never get: kept for `allowed-peers` and the ISP a fetch asked. At most
    /// half of `total`.
    pub(crate) reserved: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    strangers: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// A live session's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Ticket {
    key: IpAddr,
    stranger: bool,
    counts: Arc<Mutex<Counts>>,
}

/// The unit the per-peer limit counts: an IPv4 address, or an IPv6 address's /64 — one host
/// (or one customer) usually has a whole /64 and can connect from any address in it.
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(64))),
        v4 => v4,
    }
}

impl Gate {
    pub(crate) fn new(allowed: Option<Vec<PeerNet>>, limits: Limits, asked: AskedPeers) -> Self {
        Gate {
            allowed,
            limits,
            asked,
            counts: Arc::default(),
        }
    }

    /// Admits `ip` (taking a slot) or says why not. An address a running fetch asked is held to
    /// the overall limit only; a stranger (neither asked nor in `allowed-peers`) to its per-peer
    /// limit and to the slots not reserved.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = ip.to_canonical();
        let listed = match &self.allowed {
            Some(nets) if !nets.iter().any(|net| net.contains(ip)) => {
                return Err(Refusal::NotAllowed)
            }
            Some(_) => true,
            None => false,
        };
        let asked = self.asked.contains(ip);
        let stranger = !asked && !listed;
        let key = peer_key(ip);
        let limits = self.limits;
        let mut counts = lock(&self.counts);
        let mine = counts.per_peer.get(&key).copied().unwrap_or(0);
        // At most half is held back: an ISP delivering on its own, outside a fetch, is a
        // stranger too unless `allowed-peers` names it.
        let open_to_strangers = limits.total - limits.reserved.min(limits.total / 2);
        if counts.total >= limits.total
            || (!asked && mine >= limits.per_peer)
            || (stranger && counts.strangers >= open_to_strangers)
        {
            return Err(Refusal::TooMany);
        }
        counts.total += 1;
        counts.strangers += usize::from(stranger);
        counts.per_peer.insert(key, mine + 1);
        tracing::debug!(
            peer = %ip,
            from_peer = mine + 1,
            strangers = counts.strangers,
            total = counts.total,
            "connection admitted"
        );
        Ok(Ticket {
            key,
            stranger,
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if self.stranger {
            counts.strangers = counts.strangers.saturating_sub(1);
        }
        if let Some(n) = counts.per_peer.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_peer.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(total: usize, per_peer: usize, reserved: usize) -> Limits {
        Limits {
            total,
            per_peer,
            reserved,
        }
    }

    #[test]
    fn parses_and_normalises_networks() {
        let net: PeerNet = "192.0.2.77/24".parse().unwrap();
        assert_eq!(net.to_string(), "192.0.2.0/24");
        assert_eq!(
            "10.1.2.3".parse::<PeerNet>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "2001:db8::1/32".parse::<PeerNet>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!("::1".parse::<PeerNet>().unwrap().to_string(), "::1/128");
        assert_eq!(
            " 0.0.0.0/0 ".parse::<PeerNet>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        for bad in [
            "",
            "/24",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/8/9",
            "10.0.0.0/0008",
            "[::1]",
        ] {
            let err = bad.parse::<PeerNet>().unwrap_err();
            assert!(err.to_string().contains("192.0.2.0/24"), "{bad}: {err}");
        }
    }

    #[test]
    fn membership() {
        let net: PeerNet = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains(ip("192.0.2.0")));
        assert!(net.contains(ip("192.0.2.255")));
        assert!(net.contains(ip("::ffff:192.0.2.9")));
        assert!(!net.contains(ip("192.0.3.0")));
        assert!(!net.contains(ip("::1")));
        let all4: PeerNet = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("255.255.255.255")));
        assert!(!all4.contains(ip("2001:db8::1")));
        let v6: PeerNet = "2001:db8:abcd::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:abcd:ffff::1")));
        assert!(!v6.contains(ip("2001:db8:abce::1")));
        let one: PeerNet = "2001:db8::5".parse().unwrap();
        assert!(one.contains(ip("2001:db8::5")));
        assert!(!one.contains(ip("2001:db8::6")));
        let odd: PeerNet = "10.0.0.0/9".parse().unwrap();
        assert!(odd.contains(ip("10.127.255.255")));
        assert!(!odd.contains(ip("10.128.0.0")));
    }

    #[test]
    fn gate_counts_and_frees_slots() {
        let gate = Gate::new(None, limits(3, 2, 0), AskedPeers::default());
        let a1 = gate.admit(ip("10.0.0.1")).unwrap();
        let _a2 = gate.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), Refusal::TooMany);
        let _b1 = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), Refusal::TooMany);
        drop(a1);
        let _c1 = gate.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), Refusal::TooMany);
    }

    #[test]
    fn gate_allowlist() {
        let nets = vec!["192.0.2.0/24".parse().unwrap(), "::1".parse().unwrap()];
        let gate = Gate::new(Some(nets), limits(10, 10, 0), AskedPeers::default());
        assert!(gate.admit(ip("192.0.2.1")).is_ok());
        assert!(gate.admit(ip("::1")).is_ok());
        assert_eq!(
            gate.admit(ip("127.0.0.1")).unwrap_err(),
            Refusal::NotAllowed
        );
        let empty = Gate::new(Some(Vec::new()), limits(10, 10, 0), AskedPeers::default());
        assert_eq!(
            empty.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::NotAllowed
        );
    }

    #[test]
    fn the_asked_isp_meets_only_the_overall_limit_while_a_fetch_asks_it() {
        let asked = AskedPeers::default();
        let gate = Gate::new(None, limits(4, 2, 0), asked.clone());
        let isp = ip("192.0.2.25");
        let _t: Vec<Ticket> = (0..2).map(|_| gate.admit(isp).unwrap()).collect();
        assert_eq!(gate.admit(isp).unwrap_err(), Refusal::TooMany);
        let fetch = asked.scope();
        fetch.ask("isp", ip("::ffff:192.0.2.25"));
        assert!(fetch.has_asked(isp) && asked.contains(isp));
        let third = gate.admit(isp).unwrap();
        let _fourth = gate.admit(isp).unwrap();
        // The overall limit still holds, for the ISP and for everyone else.
        assert_eq!(gate.admit(isp).unwrap_err(), Refusal::TooMany);
        assert_eq!(gate.admit(ip("192.0.2.26")).unwrap_err(), Refusal::TooMany);
        drop(third);
        // Two fetches' notes, and one account asked twice, are taken back one by one.
        let other = asked.scope();
        other.ask("work", isp);
        fetch.ask("isp", isp);
        assert_eq!(fetch.accounts_at(isp), ["isp"]);
        assert_eq!(other.accounts_at(isp), ["work"]);
        assert!(!other.has_asked(ip("192.0.2.26")));
        drop(fetch);
        assert!(asked.contains(isp));
        drop(other);
        assert!(!asked.contains(isp));
        // The fetches are over: three live sessions from the ISP, its per-peer limit is back.
        assert_eq!(gate.admit(isp).unwrap_err(), Refusal::TooMany);
    }

    #[test]
    fn ipv6_peers_count_per_64() {
        let gate = Gate::new(None, limits(10, 2, 0), AskedPeers::default());
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = gate.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        // A third address in the same /64 is the same peer.
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:abcd::1")).unwrap_err(),
            Refusal::TooMany
        );
        // The next /64 is another.
        let _c = gate.admit(ip("2001:db8:1:3::1")).unwrap();
        // IPv4 (also mapped into IPv6) still counts per address.
        let _d = gate.admit(ip("192.0.2.1")).unwrap();
        let _e = gate.admit(ip("::ffff:192.0.2.1")).unwrap();
        let _f = gate.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.1")).unwrap_err(), Refusal::TooMany);
        assert_eq!(peer_key(ip("2001:db8::1:2:3:4")), ip("2001:db8::"));
    }

    #[test]
    fn strangers_never_get_the_reserved_slots() {
        let asked = AskedPeers::default();
        let gate = Gate::new(None, limits(6, 2, 2), asked.clone());
        let strangers: Vec<Ticket> = ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]
            .into_iter()
            .map(|s| gate.admit(ip(s)).unwrap())
            .collect();
        // Four of six slots taken by strangers: the other two are held back.
        assert_eq!(gate.admit(ip("10.0.0.3")).unwrap_err(), Refusal::TooMany);
        // Not for the ISP a fetch asked: it gets them (and meets no per-peer limit).
        let fetch = asked.scope();
        fetch.ask("isp", ip("192.0.2.25"));
        let isp: Vec<Ticket> = (0..2)
            .map(|_| gate.admit(ip("192.0.2.25")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("192.0.2.25")).unwrap_err(), Refusal::TooMany);
        // A stranger leaving frees a stranger's slot; the ISP leaving frees a reserved one.
        drop(strangers);
        drop(isp);
        let _again: Vec<Ticket> = (0..4)
            .map(|i| gate.admit(ip(&format!("10.0.1.{i}"))).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("10.0.2.1")).unwrap_err(), Refusal::TooMany);
        let _isp = gate.admit(ip("192.0.2.25")).unwrap();
    }

    #[test]
    fn listed_peers_may_use_the_reserved_slots() {
        let nets = vec!["192.0.2.0/24".parse().unwrap()];
        let gate = Gate::new(Some(nets), limits(3, 3, 3), AskedPeers::default());
        let _all: Vec<Ticket> = (0..3)
            .map(|_| gate.admit(ip("192.0.2.7")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("192.0.2.8")).unwrap_err(), Refusal::TooMany);
    }
}
