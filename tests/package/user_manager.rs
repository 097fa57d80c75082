//! A real `systemd --user` instance for the package test's user, with a journald to log to,
//! although systemd is not PID 1 here.
//!
//! What it takes (systemd 252, Debian 12, measured on this container):
//! - `systemd --user` refuses to start ("the system has not been booted with systemd") unless
//!   `/run/systemd/system` exists. Creating it on the host would make every `systemctl` and
//!   maintainer script on the machine believe systemd runs, so the manager gets a private mount
//!   namespace (`unshare --mount --propagation private`) with its own tmpfs on `/run` holding
//!   that directory (and on `/var/log/journal`).
//! - It needs a cgroup of its own that the user may write: with the hybrid layout here
//!   (`/sys/fs/cgroup/systemd` named v1 hierarchy plus `/sys/fs/cgroup/unified`) it fails with
//!   EACCES on `/sys/fs/cgroup/unified/init.scope` otherwise. The test creates
//!   `mailcall-package-test-PID.slice/user@UID.service` in each hierarchy, gives it to the user
//!   and starts the manager inside; the path has the shape journald reads the user unit from
//!   (`_SYSTEMD_USER_UNIT`). With a pure cgroup v2 layout the same is done in `/sys/fs/cgroup`.
//! - `systemd-journald` started by hand (as root, in the namespace) creates its sockets itself;
//!   units' stdout/stderr then reach it as streams with `JOURNAL_STREAM` set, and it keeps a
//!   runtime journal in the namespace's `/run/log/journal`, read with `journalctl -D`.
//! - The user's D-Bus comes from dbus-user-session's `dbus.socket` (enabled for every user);
//!   `gnome-keyring-daemon.socket`/`.service`, which Debian enables for every user too, are
//!   masked in the test user's HOME: the test unlocks its own keyring on that bus instead.
//!
//! Every process is stopped by PID: the manager is told to exit, whatever still runs in its
//! cgroups is killed by the PIDs listed there, journald by the PID it was started with; then
//! the cgroups are removed. The mount namespace goes with its last process.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, ChildGuard, Finished};
use mailcall_e2e::{poll_until, read_for_diagnostics};

use crate::session::Session;

/// Runs in the new mount namespace as root: private /run and journal, journald, then the
/// manager as the user inside the prepared cgroups.
const SETUP_SCRIPT: &str = r#"set -eu
root=$1 uid=$2 gid=$3
shift 3
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system /run/systemd/journal /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=755 tmpfs /var/log/journal; fi
/usr/lib/systemd/systemd-journald </dev/null >"$root/journald.log" 2>&1 &
echo $! >"$root/journald.pid"
n=0
while [ ! -S /run/systemd/journal/stdout ]; do
    n=$((n + 1))
    if [ $n -gt 200 ]; then echo "journald made no /run/systemd/journal/stdout in 10 s" >&2; exit 1; fi
    sleep 0.05
done
for cg in "$@"; do echo $$ >"$cg/cgroup.procs"; done
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- env -i \
    HOME="$root/home" XDG_RUNTIME_DIR="$root/run" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    /usr/lib/systemd/systemd --user
"#;

/// A running user manager; dropping it stops everything it started.
pub struct UserManager {
    manager: Option<ChildGuard>,
    journald_pid: Option<u32>,
    /// The slices made for it (one per hierarchy), removed at the end.
    slices: Vec<PathBuf>,
    root: PathBuf,
    session_env: Vec<(String, String)>,
    uid: u32,
    gid: u32,
}

impl UserManager {
    /// Starts the manager for the session's user and waits until it has booted
    /// (`is-system-running --wait` says running or degraded). `Err` says why it cannot run here.
    pub fn start(session: &Session) -> Result<Self, String> {
        let user = session.user();
        // Units that would compete with the test's own keyring.
        let units = session.home().join(".config/systemd/user");
        fs::create_dir_all(&units).map_err(|e| format!("creating {}: {e}", units.display()))?;
        for unit in [
            "gnome-keyring-daemon.socket",
            "gnome-keyring-daemon.service",
        ] {
            let link = units.join(unit);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink("/dev/null", &link)
                    .map_err(|e| format!("masking {unit}: {e}"))?;
            }
        }
        for p in [
            session.home().join(".config"),
            session.home().join(".config/systemd"),
            units.clone(),
        ] {
            session.give(&p);
        }
        for entry in fs::read_dir(&units).map_err(|e| e.to_string())?.flatten() {
            session.give(&entry.path());
        }

        let mut manager = UserManager {
            manager: None,
            journald_pid: None,
            slices: Vec::new(),
            root: session.root().to_path_buf(),
            session_env: session.env(),
            uid: user.uid,
            gid: user.gid,
        };
        let service_dirs = manager.make_cgroups()?;

        let log = fs::File::create(manager.root.join("systemd-user.log"))
            .map_err(|e| format!("creating the manager's log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(SETUP_SCRIPT)
            .arg("sh")
            .arg(&manager.root)
            .arg(user.uid.to_string())
            .arg(user.gid.to_string())
            .args(&service_dirs)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run unshare (package util-linux): {e}"))?;
        manager.manager = Some(ChildGuard::new("systemd --user", child));

        let private = session.runtime_dir().join("systemd/private");
        let up = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            if manager.exited() {
                return Some(false);
            }
            private.exists().then_some(true)
        });
        manager.journald_pid = fs::read_to_string(manager.root.join("journald.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if up != Some(true) {
            return Err(format!(
                "systemd --user did not open {} within 30 s (exited: {}); its output:\n{}\njournald's output:\n{}\nthe journal:\n{}",
                private.display(),
                manager.exited(),
                read_for_diagnostics(&manager.root.join("systemd-user.log")),
                read_for_diagnostics(&manager.root.join("journald.log")),
                manager.journal_text(),
            ));
        }
        let state = manager.systemctl(&["is-system-running", "--wait"]);
        let state_line = state.stdout.trim().to_string();
        if state_line != "running" && state_line != "degraded" {
            return Err(format!(
                "systemd --user did not finish starting: is-system-running says {state_line:?} ({:?}); {}\nthe journal:\n{}",
                state.status,
                state.stderr,
                manager.journal_text()
            ));
        }
        if state_line == "degraded" {
            let failed = manager.systemctl(&["--failed", "--no-legend", "--plain"]);
            eprintln!(
                "note: systemd --user is degraded (units of other packages failed here):\n{}",
                failed.stdout
            );
        }
        Ok(manager)
    }

    /// Creates `mailcall-package-test-PID.slice/user@UID.service` in every cgroup hierarchy
    /// systemd uses here, owned by the user; returns the service dirs to move the manager into.
    fn make_cgroups(&mut self) -> Result<Vec<PathBuf>, String> {
        let base = Path::new("/sys/fs/cgroup");
        let hierarchies: Vec<PathBuf> = if base.join("cgroup.controllers").exists() {
            vec![base.to_path_buf()]
        } else if base.join("systemd/cgroup.procs").exists() {
            let mut h = vec![base.join("systemd")];
            if base.join("unified/cgroup.procs").exists() {
                h.push(base.join("unified"));
            }
            h
        } else {
            return Err(
                "no cgroup hierarchy systemd can use: neither /sys/fs/cgroup (v2) nor /sys/fs/cgroup/systemd (v1) is mounted"
                    .into(),
            );
        };
        let slice_name = format!("mailcall-package-test-{}.slice", std::process::id());
        let mut service_dirs = Vec::new();
        for h in hierarchies {
            let slice = h.join(&slice_name);
            let service = slice.join(format!("user@{}.service", self.uid));
            fs::create_dir_all(&service)
                .map_err(|e| format!("creating the cgroup {}: {e}", service.display()))?;
            self.slices.push(slice);
            // Delegation: the directory and its control files belong to the user.
            let mut paths = vec![service.clone()];
            for entry in fs::read_dir(&service).map_err(|e| e.to_string())?.flatten() {
                paths.push(entry.path());
            }
            for p in paths {
                std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
            service_dirs.push(service);
        }
        Ok(service_dirs)
    }

    fn exited(&mut self) -> bool {
        match self.manager.as_mut() {
            Some(m) => m.exited().is_some(),
            None => true,
        }
    }

    fn pid(&self) -> u32 {
        self.manager.as_ref().map(|m| m.pid()).unwrap_or_default()
    }

    /// `systemctl --user ARGS` as the user, inside the manager's mount namespace (60 s). Entering
    /// a mount namespace puts the caller at that namespace's root: `--root` keeps it in the
    /// manager's own root directory, which is not `/` in the throwaway root of `run.sh`.
    pub fn systemctl(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid()))
            .args(["--mount", "--root", "--", "setpriv"])
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--", "systemctl", "--user", "--no-pager"])
            .args(args)
            .env_clear()
            .envs(self.session_env.iter().cloned())
            .current_dir("/");
        run_with_timeout(&mut cmd, None, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("cannot run nsenter ... systemctl --user: {e}"))
    }

    /// `systemctl --user show UNIT -p PROPERTY` → the value.
    pub fn property(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", unit, "-p", property, "--value"]);
        out.stdout.trim().to_string()
    }

    /// Every journal entry so far, as JSON objects (`journalctl -D` on the namespace's runtime
    /// journal, as root).
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid()))
            .args([
                "--mount",
                "--root",
                "--",
                "journalctl",
                "-D",
                "/run/log/journal",
            ])
            .args(["--no-pager", "-o", "json"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        let out = run_with_timeout(&mut cmd, None, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("cannot run journalctl: {e}"));
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The journal as text (`PRIORITY IDENTIFIER: MESSAGE` per line), for failure messages.
    pub fn journal_text(&self) -> String {
        let field = |e: &serde_json::Value, k: &str| {
            e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
        };
        self.journal()
            .iter()
            .filter(|e| field(e, "SYSLOG_IDENTIFIER") != "kernel")
            .map(|e| {
                format!(
                    "{} {}: {}",
                    field(e, "PRIORITY"),
                    field(e, "SYSLOG_IDENTIFIER"),
                    field(e, "MESSAGE")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asks the manager to exit (it stops its units first), then kills by PID whatever is left.
    pub fn stop(&mut self) {
        if self.manager.is_none() {
            return;
        }
        if !self.exited() {
            let _ = self.systemctl(&["exit"]);
            let gone = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
                self.exited().then_some(())
            });
            if gone.is_none() {
                eprintln!("systemd --user did not exit within 30 s of `systemctl --user exit`: killing it");
            }
        }
        drop(self.manager.take());
        for slice in self.slices.clone() {
            for pid in pids_under(&slice) {
                kill(pid, "KILL");
            }
        }
        if let Some(pid) = self.journald_pid.take() {
            kill(pid, "TERM");
            let gone = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
            if gone.is_none() {
                kill(pid, "KILL");
            }
        }
        for slice in std::mem::take(&mut self.slices) {
            let emptied = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                pids_under(&slice).is_empty().then_some(())
            });
            if emptied.is_none() {
                eprintln!("processes still in {} after SIGKILL", slice.display());
            }
            remove_cgroup_tree(&slice);
        }
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PIDs in the cgroup `dir` and every cgroup below it.
fn pids_under(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Bounded: a user manager makes a few dozen cgroups.
    for _ in 0..10_000 {
        let Some(d) = stack.pop() else { break };
        if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// Removes the cgroup `dir` and those below it, deepest first (cgroups are removed with rmdir).
fn remove_cgroup_tree(dir: &Path) {
    let mut dirs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    for _ in 0..10_000 {
        let Some(d) = stack.pop() else { break };
        if let Ok(entries) = fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        if let Err(e) = fs::remove_dir(d) {
            eprintln!("cannot remove the cgroup {}: {e}", d.display());
        }
    }
}

/// `kill -SIGNAL PID` (one process, by its id).
fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}
