//! A normal user's session for the package test: the user `nobody` with its own HOME and
//! XDG_RUNTIME_DIR (owned by it, 0700), the installed binaries run as that user with `setpriv`,
//! and a Secret Service of its own — a private session bus and gnome-keyring unlocked with a
//! known password, both running as the user — as a desktop login would give it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, ChildGuard, Finished};
use mailcall_e2e::{poll_until, read_for_diagnostics, test_dir};

/// The password that unlocks the user's login keyring.
const UNLOCK_PASSWORD: &str = "mailcall-package-unlock";

/// A user account on this machine, by name and ids.
#[derive(Debug, Clone)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

impl User {
    /// `nobody` (its ids from `id`, so no libc call is needed).
    pub fn nobody() -> Self {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "nobody"])
                .output()
                .expect("running id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| {
                    panic!("`id {flag} nobody` gave no number: is there a user nobody?")
                })
        };
        User {
            name: "nobody".to_string(),
            uid: id("-u"),
            gid: id("-g"),
        }
    }
}

/// The user's directories and, while [`Session::start_keyring`] is in effect, its bus and
/// keyring. Dropping it stops them by PID; the directories go with the temp dir.
pub struct Session {
    // Field order is drop order: the keyring before its bus, both before the dir.
    keyring: Option<ChildGuard>,
    bus: Option<ChildGuard>,
    bus_address: Option<String>,
    user: User,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Session {
    /// Makes HOME and XDG_RUNTIME_DIR for `user` under a fresh 0755 temp dir.
    pub fn new(user: User) -> Self {
        let dir = test_dir("package-session");
        let root = dir.path().to_path_buf();
        let session = Session {
            keyring: None,
            bus: None,
            bus_address: None,
            user,
            root,
            _dir: dir,
        };
        for d in [session.home(), session.runtime_dir()] {
            fs::create_dir_all(&d).expect("creating the user's HOME/XDG_RUNTIME_DIR");
            session.give(&d);
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .expect("chmod 0700 on the user's dirs");
        }
        session
    }

    /// The user.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The test's directory (root-owned, 0755; logs of the helpers go here).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `$HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// `$XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The session bus address the user's programs get (our bus, or the user manager's).
    pub fn bus_address(&self) -> String {
        self.bus_address
            .clone()
            .unwrap_or_else(|| format!("unix:path={}", self.runtime_dir().join("bus").display()))
    }

    /// Makes `path` the user's (chown, not following symlinks).
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.user.uid), Some(self.user.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), self.user.name));
    }

    /// The environment a login gives the user's programs: only these variables.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), self.home().display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                self.runtime_dir().display().to_string(),
            ),
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus_address()),
            ("LANG".into(), "C.UTF-8".into()),
        ]
    }

    /// `program args` as the user (setpriv, groups cleared), in HOME, with only [`Session::env`].
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .args(["--clear-groups", "--", program])
            .args(args)
            .env_clear()
            .envs(self.env())
            .current_dir(self.home());
        cmd
    }

    /// Runs `program args` as the user to completion (60 s at most).
    pub fn run(&self, program: &str, args: &[&str]) -> Finished {
        let mut cmd = self.command(program, args);
        run_with_timeout(&mut cmd, None, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("cannot run {program} as {}: {e}", self.user.name))
    }

    /// Starts a private session bus as the user, at its own socket (not `$XDG_RUNTIME_DIR/bus`,
    /// which a user manager would take later), and uses it from now on.
    pub fn start_bus(&mut self) {
        // The user makes the socket: its directory is the user's (the test dir is root's).
        let sockdir = self.root.join("bus-dir");
        fs::create_dir_all(&sockdir).expect("creating the bus socket dir");
        self.give(&sockdir);
        let address = format!("unix:path={}", sockdir.join("bus").display());
        // No service directories: the bus never starts anything by itself.
        let config = self.root.join("session-bus.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
            ),
        )
        .expect("writing the session bus config");
        let config_arg = format!("--config-file={}", config.display());
        let log = fs::File::create(self.root.join("dbus-daemon.log")).expect("creating bus log");
        let mut cmd = self.command(
            "dbus-daemon",
            &[&config_arg, "--nofork", "--nopidfile", "--print-address=1"],
        );
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting dbus-daemon (package dbus)");
        let mut guard = ChildGuard::new("dbus-daemon", child);
        let stdout = guard.child_mut().stdout.take().expect("stdout was piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        assert!(
            line.starts_with("unix:"),
            "dbus-daemon (as {}) did not print its address within 10 s (got {line:?}); log:\n{}",
            self.user.name,
            read_for_diagnostics(&self.root.join("dbus-daemon.log"))
        );
        self.bus_address = Some(line.trim().to_string());
        self.bus = Some(guard);
    }

    /// Stops our bus and keyring (by PID) and goes back to `$XDG_RUNTIME_DIR/bus`.
    pub fn stop_bus(&mut self) {
        drop(self.keyring.take());
        drop(self.bus.take());
        self.bus_address = None;
    }

    /// Starts gnome-keyring's Secret Service as the user on the current bus, unlocking (or
    /// creating) the login keyring in HOME; waits until it owns `org.freedesktop.secrets`.
    pub fn start_keyring(&mut self) {
        let log_path = self.root.join("gnome-keyring.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("creating the keyring log");
        let err = log.try_clone().expect("cloning the keyring log handle");
        // Its own control directory: the user manager's gnome-keyring socket must not be asked.
        let control = self.root.join("keyring-control");
        fs::create_dir_all(&control).expect("creating the keyring control dir");
        self.give(&control);
        let control_arg = format!("--control-directory={}", control.display());
        let child = self
            .command(
                "gnome-keyring-daemon",
                &[
                    "--foreground",
                    "--unlock",
                    "--components=secrets",
                    &control_arg,
                ],
            )
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting gnome-keyring-daemon (package gnome-keyring)");
        let mut guard = ChildGuard::new("gnome-keyring-daemon", child);
        {
            let mut stdin = guard.child_mut().stdin.take().expect("stdin was piped");
            stdin
                .write_all(UNLOCK_PASSWORD.as_bytes())
                .expect("writing the unlock password to gnome-keyring-daemon");
        }
        self.keyring = Some(guard);
        let owned = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            self.name_has_owner("org.freedesktop.secrets").then_some(())
        });
        assert!(
            owned.is_some(),
            "org.freedesktop.secrets has no owner 15 s after starting gnome-keyring-daemon as {}; log:\n{}",
            self.user.name,
            read_for_diagnostics(&log_path)
        );
    }

    /// Whether `name` has an owner on the current bus.
    pub fn name_has_owner(&self, name: &str) -> bool {
        let arg = format!("string:{name}");
        let out = self.run(
            "dbus-send",
            &[
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &arg,
            ],
        );
        out.stdout.contains("boolean true")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_bus();
        if std::env::var_os("MAILCALL_E2E_KEEP").is_some() {
            eprintln!("the session's files are under {}", self.root.display());
        }
    }
}
