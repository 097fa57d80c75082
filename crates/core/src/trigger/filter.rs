//! Which interfaces count as "the link": name globs, and which addresses make one usable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One watched interface that is up with a usable address.
///
/// The kernel's interface index is its identity, not the name: pppd creates a new `ppp0` (a new
/// index) at every dial-in and deletes it at hang-up, so a re-created `ppp0` is a new link even
/// when it comes back under the same name with the same address within a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The kernel's interface index.
    pub index: u32,
    /// The interface name (`ppp0`, `wlan0`); a rename keeps the index.
    pub name: String,
    /// Its usable addresses (see [`is_usable`]).
    pub addrs: BTreeSet<IpAddr>,
}

impl Link {
    /// A link from its index, name and usable addresses.
    pub fn new(
        index: u32,
        name: impl Into<String>,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        Link {
            index,
            name: name.into(),
            addrs: addrs.into_iter().collect(),
        }
    }
}

/// The watched interfaces that are up, by interface index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links(BTreeMap<u32, Link>);

impl Links {
    /// Whether no watched interface is up.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The links, by index.
    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.0.values()
    }

    /// The link with this index, if it is up.
    pub fn get(&self, index: u32) -> Option<&Link> {
        self.0.get(&index)
    }

    /// The names of the links that are up, sorted (for status output).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.values().map(|l| l.name.clone()).collect();
        names.sort();
        names
    }
}

impl FromIterator<Link> for Links {
    fn from_iter<I: IntoIterator<Item = Link>>(iter: I) -> Self {
        Links(iter.into_iter().map(|l| (l.index, l)).collect())
    }
}

/// The interface filter: glob patterns on the interface name (`*`, `?`); empty means any
/// interface that is not loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceFilter {
    patterns: Vec<String>,
}

impl InterfaceFilter {
    /// A filter from glob patterns such as `ppp*` or `wlan0`; none means any non-loopback one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        InterfaceFilter {
            patterns: patterns
                .iter()
                .map(|p| p.as_ref().trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether interface `name` with addresses `addrs` counts as a link that is up.
    ///
    /// Matching is on the name only: point-to-point links may report the peer's address, and
    /// an address says nothing about which link it came on.
    pub fn is_up_link(&self, name: &str, addrs: &[IpAddr]) -> bool {
        let named = if self.patterns.is_empty() {
            name != "lo"
        } else {
            self.patterns.iter().any(|p| glob_match(p, name))
        };
        named && addrs.iter().any(|a| is_usable(*a))
    }

    /// The [`Link`] interface `index` named `name` with addresses `addrs` makes, when it
    /// passes the filter and has a usable address; only the usable addresses are kept.
    pub fn link(&self, index: u32, name: &str, addrs: &[IpAddr]) -> Option<Link> {
        self.is_up_link(name, addrs)
            .then(|| Link::new(index, name, addrs.iter().copied().filter(|a| is_usable(*a))))
    }
}

/// An address that can reach beyond the machine: not loopback, link-local or unspecified.
///
/// An Ethernet port gets an IPv6 link-local address as soon as its link is up, long before
/// anything routes: that must not count as online.
pub fn is_usable(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_loopback() || a.is_link_local() || a.is_unspecified()),
        IpAddr::V6(a) => {
            !(a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Shell-style glob on a whole name: `*` any run, `?` one character, everything else literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        for (p, n, want) in [
            ("ppp*", "ppp0", true),
            ("ppp*", "ppp", true),
            ("ppp*", "xppp0", false),
            ("ppp?", "ppp0", true),
            ("ppp?", "ppp10", false),
            ("*", "eth0", true),
            ("wlan0", "wlan0", true),
            ("wlan0", "wlan01", false),
            ("*0", "eth0", true),
            ("e*h*", "eth0", true),
            ("e*x", "eth0", false),
            ("e*h*", "ehx", true),
            ("", "", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn default_is_any_non_loopback_with_a_usable_address() {
        let f = InterfaceFilter::default();
        let v4: IpAddr = "10.64.0.2".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let ll6: IpAddr = "fe80::1".parse().unwrap();
        let ll4: IpAddr = "169.254.3.4".parse().unwrap();
        let g6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(f.is_up_link("ppp0", &[v4]));
        assert!(f.is_up_link("eth0", &[ll6, g6]));
        assert!(!f.is_up_link("lo", &[lo]));
        assert!(!f.is_up_link("eth0", &[ll6]));
        assert!(!f.is_up_link("eth0", &[ll4]));
        assert!(!f.is_up_link("eth0", &[]));
    }

    #[test]
    fn a_link_keeps_only_its_usable_addresses() {
        let f = InterfaceFilter::default();
        let ll6: IpAddr = "fe80::1".parse().unwrap();
        let v4: IpAddr = "10.64.0.2".parse().unwrap();
        let link = f.link(7, "eth0", &[ll6, v4]).unwrap();
        assert_eq!((link.index, link.name.as_str()), (7, "eth0"));
        assert_eq!(link.addrs.into_iter().collect::<Vec<_>>(), [v4]);
        assert!(f.link(8, "eth1", &[ll6]).is_none());
        let links: Links = [Link::new(3, "ppp0", [v4]), Link::new(2, "eth0", [v4])]
            .into_iter()
            .collect();
        assert_eq!(links.names(), ["eth0", "ppp0"]);
        assert_eq!(links.get(3).map(|l| l.name.as_str()), Some("ppp0"));
    }

    #[test]
    fn patterns_restrict_by_name_not_address() {
        let f = InterfaceFilter::new(&["ppp*", " "]);
        assert_eq!(f.patterns(), ["ppp*".to_string()]);
        let a: IpAddr = "10.64.0.1".parse().unwrap();
        assert!(f.is_up_link("ppp0", &[a]));
        assert!(!f.is_up_link("eth0", &[a]));
    }
}
