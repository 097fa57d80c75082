//! A hermetic desktop-session stand-in per test: its own HOME and XDG dirs, a private D-Bus
//! session bus and gnome-keyring's Secret Service on it, unlocked with a known password.
//!
//! What the CLI writes there (keyring crate 4.2 with its default `v1` feature on Linux =
//! `zbus-secret-service-keyring-store` 1.0.1, `src/cred.rs`): one item in the default
//! collection ("login" here) with the attributes `service` = the entry's service (`mailcall`)
//! and `username` = the entry's user (the account name), label `keyring:{user}@{service}`;
//! a `target` attribute only when a target modifier is used (the CLI uses none). Lookups search
//! on exactly `service` + `username`, so `secret-tool lookup service mailcall username <name>`
//! prints the secret. `secret-tool search --all service mailcall` prints `[/path]`, `label`,
//! `secret`, `created`, `modified` on stdout but the `attribute.<name> = <value>` lines on
//! stderr (libsecret-tools 0.20.5).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::process::{run_with_timeout, ChildGuard, Finished};

/// The password that unlocks each test's login keyring.
pub const UNLOCK_PASSWORD: &str = "mailcall-e2e-unlock";

/// HOME + XDG dirs, and (unless made with [`KeyringEnv::without_secret_service`]) a session bus
/// with gnome-keyring on it. Dropping it kills gnome-keyring and the bus by PID.
pub struct KeyringEnv {
    // Field order is drop order: the keyring goes before the bus it sits on, both before the dir.
    keyring: Option<ChildGuard>,
    bus: Option<ChildGuard>,
    bus_address: Option<String>,
    /// (uid, gid) every command runs as, for [`KeyringEnv::for_user`]; `None`: as the test.
    user: Option<(u32, u32)>,
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl KeyringEnv {
    /// Starts a private session bus and an unlocked gnome-keyring; panics with the daemons'
    /// output when they do not come up within 10 s.
    pub fn new() -> Self {
        let mut env = Self::without_secret_service();
        env.start_bus();
        env.start_keyring(UNLOCK_PASSWORD);
        env
    }

    /// Restarts gnome-keyring with a wrong unlock password: the login keyring (made by `new`) and
    /// its items stay on disk but locked, as after a login that did not unlock the keyring.
    pub fn relock(&mut self) {
        drop(self.keyring.take());
        let gone = crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            (!self.secrets_name_has_owner()).then_some(())
        });
        assert!(
            gone.is_some(),
            "gnome-keyring still owns org.freedesktop.secrets after being killed"
        );
        self.start_keyring("not-the-unlock-password");
    }

    /// Only the dirs: no bus, no keyring (DBUS_SESSION_BUS_ADDRESS is not set, and
    /// XDG_RUNTIME_DIR has no `bus` socket, so D-Bus clients have nothing to fall back to).
    pub fn without_secret_service() -> Self {
        let dir = crate::test_dir("session");
        let root = dir.path().to_path_buf();
        for sub in ["home", "config", "data", "cache"] {
            fs::create_dir_all(root.join(sub)).expect("creating the test's HOME/XDG dirs");
        }
        let runtime = root.join("runtime");
        fs::create_dir_all(&runtime).expect("creating XDG_RUNTIME_DIR");
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 on XDG_RUNTIME_DIR");
        Self {
            keyring: None,
            bus: None,
            bus_address: None,
            user: None,
            root,
            dir: Some(dir),
        }
    }

    /// As [`KeyringEnv::new`], but for `user` ([`crate::TestUser`], which must run nothing
    /// yet): the HOME and XDG dirs (and `~/.config/mailcall`) are the user's, `home()` becomes
    /// the user's home in the password database, and the bus, the keyring and every
    /// [`KeyringEnv::command`] run as the user.
    pub fn for_user(user: &crate::TestUser) -> Self {
        let mut env = Self::without_secret_service();
        fs::create_dir_all(env.home().join(".config/mailcall"))
            .expect("creating ~/.config/mailcall");
        for sub in ["home", "config", "data", "cache", "runtime"] {
            user.chown(&env.root.join(sub));
        }
        user.set_home(&env.home());
        env.user = Some((user.uid(), user.gid()));
        env.start_bus();
        env.start_keyring(UNLOCK_PASSWORD);
        env
    }

    /// The (uid, gid) commands run as, when the env is a user's ([`KeyringEnv::for_user`]).
    pub fn user(&self) -> Option<(u32, u32)> {
        self.user
    }

    /// The test's temp root (holds home/, config/, data/, runtime/ and daemon logs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `$HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// `$XDG_CONFIG_HOME`.
    pub fn config_home(&self) -> PathBuf {
        self.root.join("config")
    }

    /// `$XDG_DATA_HOME`.
    pub fn data_home(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `$XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// The session bus address, when there is a bus.
    pub fn bus_address(&self) -> Option<&str> {
        self.bus_address.as_deref()
    }

    /// The complete environment for child processes (use with `env_clear()`): PATH, HOME,
    /// XDG dirs, and DBUS_SESSION_BUS_ADDRESS when there is a bus.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.display().to_string();
        let mut vars = vec![
            (
                "PATH".to_string(),
                std::env::var("PATH")
                    .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
            ),
            ("HOME".to_string(), path(self.home())),
            ("XDG_CONFIG_HOME".to_string(), path(self.config_home())),
            ("XDG_DATA_HOME".to_string(), path(self.data_home())),
            ("XDG_CACHE_HOME".to_string(), path(self.root.join("cache"))),
            ("XDG_RUNTIME_DIR".to_string(), path(self.runtime_dir())),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ];
        if let Some(addr) = &self.bus_address {
            vars.push(("DBUS_SESSION_BUS_ADDRESS".to_string(), addr.clone()));
        }
        vars
    }

    /// A command with a cleared environment plus [`KeyringEnv::env`] (as the env's user, if
    /// it has one).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.env_clear().envs(self.env()).current_dir(self.home());
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups too when root sets a uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Runs `secret-tool ARGS` against this keyring (e.g. `["search", "--all", "service",
    /// "mailcall"]`); 10 s timeout.
    pub fn secret_tool(&self, args: &[&str]) -> Finished {
        let mut cmd = self.command("secret-tool");
        cmd.args(args);
        run_with_timeout(&mut cmd, None, Duration::from_secs(10))
            .expect("running secret-tool (package libsecret-tools)")
    }

    /// The items matching all `attrs`, from `secret-tool search --all`: one map per item with
    /// `path`, `label`, `secret`, `created`, `modified`, and, when exactly one item matches,
    /// its `attribute.<name>` entries (secret-tool prints those to stderr, which cannot be
    /// matched to items when there are several).
    pub fn keyring_search(&self, attrs: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
        let mut args = vec!["search", "--all"];
        for (k, v) in attrs {
            args.extend([*k, *v]);
        }
        let out = self.secret_tool(&args);
        let mut items = parse_secret_tool_search(&out.stdout);
        if let [item] = items.as_mut_slice() {
            for line in out.stderr.lines() {
                if let Some((k, v)) = line.split_once(" = ") {
                    if k.starts_with("attribute.") {
                        item.insert(k.trim().to_string(), v.to_string());
                    }
                }
            }
        }
        items
    }

    /// `secret-tool lookup service SERVICE username USER`: the secret, if there is such an item.
    pub fn keyring_secret(&self, service: &str, user: &str) -> Option<String> {
        let out = self.secret_tool(&["lookup", "service", service, "username", user]);
        match out.status {
            Some(s) if s.success() && !out.stdout.is_empty() => Some(out.stdout),
            _ => None,
        }
    }

    fn start_bus(&mut self) {
        let socket = self.runtime_dir().join("bus");
        let address = format!("unix:path={}", socket.display());
        // Our own config instead of --session: the same policy, but no service directories, so
        // the bus never auto-starts a second (untracked) gnome-keyring or anything else.
        let config = self.root.join("session-bus.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
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
        let log = fs::File::create(self.root.join("dbus-daemon.log")).expect("creating bus log");
        let child = self
            .command("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting dbus-daemon (package dbus)");
        let mut guard = ChildGuard::new("dbus-daemon", child);
        // dbus-daemon prints the address once it listens: that line is the readiness signal.
        let stdout = guard.child_mut().stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        assert!(
            line.starts_with("unix:"),
            "dbus-daemon did not print its address within 10 s (got {line:?}); log:\n{}",
            crate::read_for_diagnostics(&self.root.join("dbus-daemon.log"))
        );
        self.bus_address = Some(line.trim().to_string());
        self.bus = Some(guard);
    }

    fn start_keyring(&mut self, password: &str) {
        let log = self.root.join("gnome-keyring.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("creating keyring log");
        let err = out.try_clone().expect("cloning the keyring log handle");
        let child = self
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting gnome-keyring-daemon (package gnome-keyring)");
        let mut guard = ChildGuard::new("gnome-keyring-daemon", child);
        {
            // --unlock reads the password until EOF: write it, then close stdin.
            let mut stdin = guard.child_mut().stdin.take().expect("stdin was piped");
            stdin
                .write_all(password.as_bytes())
                .expect("writing the unlock password to gnome-keyring-daemon");
        }
        self.keyring = Some(guard);
        let owned = crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            self.secrets_name_has_owner().then_some(())
        });
        assert!(
            owned.is_some(),
            "org.freedesktop.secrets has no owner 10 s after starting gnome-keyring-daemon; log:\n{}",
            crate::read_for_diagnostics(&log)
        );
    }

    fn secrets_name_has_owner(&self) -> bool {
        let mut cmd = self.command("dbus-send");
        cmd.args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.secrets",
        ]);
        run_with_timeout(&mut cmd, None, Duration::from_secs(5))
            .map(|f| f.stdout.contains("boolean true"))
            .unwrap_or(false)
    }
}

impl Default for KeyringEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KeyringEnv {
    fn drop(&mut self) {
        drop(self.keyring.take());
        drop(self.bus.take());
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "keyring env");
        }
    }
}

/// Parses `secret-tool search --all` output: blocks start with `[/path]`, then `key = value`.
pub fn parse_secret_tool_search(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut items: Vec<BTreeMap<String, String>> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') && line.ends_with(']') {
            let mut item = BTreeMap::new();
            item.insert("path".to_string(), line[1..line.len() - 1].to_string());
            items.push(item);
        } else if let (Some((k, v)), Some(item)) = (line.split_once(" = "), items.last_mut()) {
            item.insert(k.trim().to_string(), v.to_string());
        }
    }
    items
}
