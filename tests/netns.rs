//! A network namespace per test, with a dial-up stand-in (a TUN device named like `ppp0` with a
//! peer address): the ISP and the daemon run inside it, the test brings the link up and down.
//!
//! Facts (kernel here, measured): no `dummy` links and no PPP, but TUN works; a TUN link with an
//! address is reported by netwatcher once it is set up, even without carrier. Unix sockets on
//! paths (D-Bus, the control socket, Postfix's queue) work across namespaces; TCP does not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{run_checked, run_with_timeout, ChildGuard, Finished};
use crate::PostfixIsp;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace created for one test; dropping it deletes it by name.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `mc-<pid>-<n>` with loopback up.
    pub fn new() -> Self {
        let name = format!(
            "mc-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run_checked(Command::new("ip").args(["netns", "add", &name]), None)
            .unwrap_or_else(|e| panic!("creating the network namespace failed (root needed): {e}"));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_checked(&mut cmd, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds a TUN device `dev` (left down) with `local` and a point-to-point `peer` address.
    pub fn add_tun(&self, dev: &str, local: &str, peer: &str) {
        self.ip(&["tuntap", "add", "dev", dev, "mode", "tun"]);
        self.ip(&["addr", "add", local, "peer", peer, "dev", dev]);
    }

    /// Sets `dev` up.
    pub fn link_up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Sets `dev` down.
    pub fn link_down(&self, dev: &str) {
        self.ip(&["link", "set", dev, "down"]);
    }

    /// Whether `dev` is administratively up.
    pub fn is_up(&self, dev: &str) -> bool {
        let out = self.ip(&["-o", "link", "show", dev]).stdout;
        out.split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(flags, _)| flags.split(',').any(|f| f == "UP"))
            .unwrap_or(false)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port` inside the namespace.
    pub fn tcp_open(&self, port: u16) -> bool {
        let mut cmd = self.command("bash");
        cmd.args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")]);
        run_with_timeout(&mut cmd, None, Duration::from_secs(5))
            .map(|f| f.status.is_some_and(|s| s.success()))
            .unwrap_or(false)
    }

    /// Moves a running test ISP into the namespace: its queue stays on disk, the instance is
    /// stopped and started again inside (so deferred mail stays deferred until ETRN).
    pub fn adopt_isp(&self, isp: &PostfixIsp) {
        stop_isp(isp);
        self.start_isp(isp);
    }

    /// Starts a stopped test ISP (see [`stop_isp`]) inside the namespace, from its queue on
    /// disk, and waits until it accepts connections there: an ISP that comes up after the link.
    pub fn start_isp(&self, isp: &PostfixIsp) {
        let conf = isp.dir().join("conf");
        let mut start = self.command("postfix");
        start.arg("-c").arg(&conf).arg("start");
        run_checked(&mut start, None)
            .unwrap_or_else(|e| panic!("starting the ISP inside {} failed: {e}", self.name));
        let port = isp.port();
        let up = crate::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            self.tcp_open(port).then_some(())
        });
        assert!(
            up.is_some(),
            "the ISP does not listen inside {} on port {port}\n{}",
            self.name,
            isp.log()
        );
    }

    /// Starts `cmd` (from [`Netns::command`]) with stdout and stderr into `log`, owned by a
    /// guard that kills it by PID.
    pub fn spawn(&self, name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
        let file = std::fs::File::create(log).expect("creating the log file");
        let err = file.try_clone().expect("cloning the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} in {} failed: {e}", self.name));
        ChildGuard::new(name, child)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes inside are owned (and killed by PID) by their own guards, dropped first.
        let _ = run_with_timeout(
            Command::new("ip").args(["netns", "delete", &self.name]),
            None,
            Duration::from_secs(10),
        );
    }
}

/// Stops a running test ISP (wherever it runs) and waits until its master is gone; its queue
/// stays on disk for [`Netns::start_isp`]. Dropping the [`PostfixIsp`] later is still safe.
pub fn stop_isp(isp: &PostfixIsp) {
    let conf = isp.dir().join("conf");
    let pid_file = isp.dir().join("queue/pid/master.pid");
    let pid = std::fs::read_to_string(&pid_file).ok();
    run_checked(
        Command::new("postfix").arg("-c").arg(&conf).arg("stop"),
        None,
    )
    .unwrap_or_else(|e| panic!("stopping the ISP failed: {e}"));
    if let Some(pid) = pid.and_then(|p| p.trim().parse::<u32>().ok()) {
        let gone = crate::poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
        assert!(gone.is_some(), "the ISP's master {pid} did not stop");
    }
}
