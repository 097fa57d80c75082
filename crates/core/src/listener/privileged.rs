//! Ports below 1024 under `cap_net_bind_service` (issue 21 item 9). The package grants the
//! capability to the binaries for every local user, on every port below 1024; Mailcall uses it
//! only for the ports it serves by default — 25 (the ISP's deliveries) and 587 (submission) —
//! and refuses any other low port while it holds the capability without being root, so that the
//! binaries cannot be used to take another service's port (POP3 on 110, IMAP on 143 …).

/// The ports below 1024 Mailcall binds under the capability.
pub const SERVED_LOW_PORTS: [u16; 2] = [25, 587];

/// `CAP_NET_BIND_SERVICE`'s bit in the capability sets.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// What decides whether a low port may be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Privileges {
    /// The effective user id is 0.
    pub root: bool,
    /// The effective capability set holds `CAP_NET_BIND_SERVICE`.
    pub bind_capability: bool,
    /// `net.ipv4.ip_unprivileged_port_start`: ports from here on need no privilege.
    pub unprivileged_start: u16,
}

impl Privileges {
    /// This process's, from `/proc` (Linux); elsewhere none that this rule is about (under
    /// Wine a Windows program could read Linux's `/proc`, which is not about it: not read).
    pub(crate) fn of_this_process() -> Self {
        let status = if cfg!(target_os = "linux") {
            std::fs::read_to_string("/proc/self/status").unwrap_or_default()
        } else {
            String::new()
        };
        let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
        Privileges::from_status(&status, start)
    }

    /// From the text of `/proc/self/status` (`Uid:` and `CapEff:` lines).
    pub(crate) fn from_status(status: &str, unprivileged_start: u16) -> Self {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::split_whitespace)
        };
        // Uid: real, effective, saved, filesystem.
        let euid = field("Uid:").and_then(|mut f| f.nth(1)?.parse::<u32>().ok());
        let cap_eff = field("CapEff:")
            .and_then(|mut f| u64::from_str_radix(f.next()?, 16).ok())
            .unwrap_or(0);
        Privileges {
            root: euid == Some(0),
            bind_capability: cap_eff & (1 << CAP_NET_BIND_SERVICE) != 0,
            unprivileged_start,
        }
    }

    /// Whether `port` may be bound: anything a normal user could bind, anything as root, and
    /// under the capability only [`SERVED_LOW_PORTS`].
    pub(crate) fn allows(&self, port: u16) -> bool {
        port == 0
            || port >= 1024
            || port >= self.unprivileged_start
            || self.root
            || !self.bind_capability
            || SERVED_LOW_PORTS.contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY_WITH_CAP: &str = "Name:\tmailcall-cli\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n";
    const NOBODY: &str = "Uid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n";
    const ROOT: &str = "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";

    #[test]
    fn under_the_capability_only_25_and_587_below_1024() {
        let p = Privileges::from_status(NOBODY_WITH_CAP, 1024);
        assert!(!p.root && p.bind_capability);
        for port in [25, 587, 0, 1024, 2525, 65535] {
            assert!(p.allows(port), "{port}");
        }
        for port in [1, 22, 80, 110, 143, 443, 993, 1023] {
            assert!(!p.allows(port), "{port}");
        }
        // Where the sysctl lets everyone bind from 80 on, the capability is not what binds 110.
        assert!(Privileges::from_status(NOBODY_WITH_CAP, 80).allows(110));
    }

    #[test]
    fn root_and_users_without_the_capability_are_not_this_rules_business() {
        // Root binds what it likes; a user without the capability gets the system's own
        // "permission denied", whose message names the fixes.
        assert!(Privileges::from_status(ROOT, 1024).allows(110));
        assert!(Privileges::from_status(NOBODY, 1024).allows(110));
        assert!(Privileges::from_status("", 1024).allows(110));
    }
}
