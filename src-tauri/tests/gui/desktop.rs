//! A throwaway desktop for the GUI test, inside the harness's private D-Bus session: Xvfb, a
//! notification daemon (dunst), a StatusNotifierItem tray (status-notifier-watcher, the registry,
//! and gtk-sni-tray-standalone, a panel that shows the items and their dbusmenu) and
//! tauri-driver; and the tray app itself (`mailcall --tray`), whose settings window tauri-driver
//! starts as `mailcall --window`. Every process is owned by a guard that kills it by PID.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, ChildGuard, Finished};
use mailcall_e2e::{free_port, poll_until, KeyringEnv};

use crate::sni::Sni;
use crate::APP;

/// The tray panel's height (its icons are this size).
const TRAY_HEIGHT: i32 = 32;

/// Xvfb + dunst + the SNI tray + tauri-driver on top of a [`KeyringEnv`].
pub struct Desktop {
    // Drop order: the driver (and the app it runs) first, then the tray, its watcher, dunst, X.
    driver: Option<ChildGuard>,
    /// The tray app, `mailcall --tray` (its log: `mailcall.log`).
    app: Option<ChildGuard>,
    tray: Option<ChildGuard>,
    watcher: Option<ChildGuard>,
    _dunst: ChildGuard,
    _xvfb: ChildGuard,
    display: String,
    /// tauri-driver's WebDriver port.
    pub driver_port: u16,
    /// Extra environment for the app (config path and so on).
    app_env: Vec<(String, String)>,
    logs: PathBuf,
}

fn log_file(dir: &Path, name: &str) -> (std::fs::File, std::fs::File) {
    let f = std::fs::File::create(dir.join(name)).expect("creating a log file");
    let g = f.try_clone().expect("cloning a log handle");
    (f, g)
}

impl Desktop {
    /// Starts X, dunst and the tray; `app_env` is added to the environment of everything here
    /// (tauri-driver passes its environment on to the app).
    pub fn start(keyring: &KeyringEnv, app_env: Vec<(String, String)>) -> Self {
        let mut desktop = Self::start_without_tray(keyring, app_env);
        desktop.start_tray(keyring);
        desktop
    }

    /// Starts X and dunst only: a desktop whose tray comes later ([`Desktop::start_tray`]).
    pub fn start_without_tray(keyring: &KeyringEnv, app_env: Vec<(String, String)>) -> Self {
        let logs = keyring.root().to_path_buf();
        // Xvfb picks a free display itself and prints its number on the fd we name.
        let mut xvfb = ChildGuard::new(
            "Xvfb",
            keyring
                .command("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-screen",
                    "0",
                    "1100x760x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file(&logs, "xvfb.log").0)
                .spawn()
                .expect("starting Xvfb (package xvfb)"),
        );
        let out = xvfb.child_mut().stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let number = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let number = number.trim();
        assert!(
            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
            "Xvfb did not report a display within 20 s ({number:?})"
        );
        let display = format!(":{number}");
        let mut desktop_env = app_env;
        desktop_env.push(("DISPLAY".into(), display.clone()));
        desktop_env.push(("NO_AT_BRIDGE".into(), "1".into()));

        let (o, e) = log_file(&logs, "dunst.log");
        let dunst = ChildGuard::new(
            "dunst",
            keyring
                .command("dunst")
                .envs(desktop_env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(o)
                .stderr(e)
                .spawn()
                .expect("starting dunst (package dunst)"),
        );
        let owned = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            name_has_owner(keyring, "org.freedesktop.Notifications").then_some(())
        });
        assert!(
            owned.is_some(),
            "dunst did not take org.freedesktop.Notifications within 15 s"
        );

        let mut desktop = Desktop {
            driver: None,
            app: None,
            tray: None,
            watcher: None,
            _dunst: dunst,
            _xvfb: xvfb,
            display,
            driver_port: 0,
            app_env: desktop_env,
            logs,
        };
        desktop.start_driver(keyring);
        desktop
    }

    /// Starts the StatusNotifierWatcher and the tray panel (top edge, icons at the right end)
    /// and waits until the panel is mapped and registered as the host.
    pub fn start_tray(&mut self, keyring: &KeyringEnv) {
        assert!(self.tray.is_none(), "the tray runs already");
        let (o, e) = log_file(&self.logs, "sni-watcher.log");
        let watcher = keyring
            .command("status-notifier-watcher")
            .envs(self.app_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .expect(
                "starting status-notifier-watcher (package haskell-status-notifier-item-utils)",
            );
        self.watcher = Some(ChildGuard::new("status-notifier-watcher", watcher));
        let owned = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            name_has_owner(keyring, "org.kde.StatusNotifierWatcher").then_some(())
        });
        assert!(
            owned.is_some(),
            "status-notifier-watcher did not take org.kde.StatusNotifierWatcher within 15 s"
        );
        let (o, e) = log_file(&self.logs, "sni-tray.log");
        let height = TRAY_HEIGHT.to_string();
        let tray = keyring
            .command("gtk-sni-tray-standalone")
            .envs(self.app_env.iter().cloned())
            .args(["--top", "--end", "--size", &height, "--color", "#dddddd"])
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .expect("starting gtk-sni-tray-standalone (package haskell-gtk-sni-tray-utils)");
        self.tray = Some(ChildGuard::new("gtk-sni-tray-standalone", tray));
        let sni = Sni::connect(keyring);
        let shown = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            (self.tray_window(keyring).is_some() && sni.host_registered()).then_some(())
        });
        assert!(
            shown.is_some(),
            "the tray panel did not appear and register as a StatusNotifierHost within 15 s; see {}",
            self.logs.join("sni-tray.log").display()
        );
    }

    /// Starts the tray app (`mailcall --tray`) and waits until its channel for the settings
    /// window takes connections, so a `mailcall --window` started next finds it. Its PID.
    pub fn start_app(&mut self, keyring: &KeyringEnv) -> u32 {
        assert!(self.app.is_none(), "the tray app runs already");
        let (o, e) = log_file(&self.logs, "mailcall.log");
        let child = keyring
            .command(APP)
            .envs(self.app_env.iter().cloned())
            .arg("--tray")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .expect("starting mailcall --tray");
        let mut app = ChildGuard::new("mailcall --tray", child);
        let socket = keyring.runtime_dir().join("mailcall").join("window.sock");
        let up = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
            if let Some(status) = app.exited() {
                return Some(Err(status));
            }
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(|_| Ok(()))
        });
        let log = self.logs.join("mailcall.log");
        match up {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "the tray app exited ({status}) before its window channel was up; see {}",
                log.display()
            ),
            None => panic!(
                "the tray app did not open its window channel {} within 30 s; see {}",
                socket.display(),
                log.display()
            ),
        }
        let pid = app.pid();
        self.app = Some(app);
        pid
    }

    /// The tray app's PID, while it runs.
    pub fn app_pid(&mut self) -> Option<u32> {
        let app = self.app.as_mut()?;
        app.exited().is_none().then(|| app.pid())
    }

    /// Stops the tray app (by its PID) and waits for it.
    pub fn stop_app(&mut self) {
        self.app = None;
    }

    fn start_driver(&mut self, keyring: &KeyringEnv) {
        let port = free_port();
        let native = free_port();
        let (o, e) = log_file(&self.logs, "tauri-driver.log");
        let child = keyring
            .command(tauri_driver())
            .envs(self.app_env.iter().cloned())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .expect("starting tauri-driver (cargo install tauri-driver --locked)");
        self.driver = Some(ChildGuard::new("tauri-driver", child));
        // tauri-driver listens at once, and starts WebKitWebDriver beside it; until that one
        // listens too, tauri-driver answers a new session with an empty reply (seen on a busy
        // machine). Ready means both ports take connections.
        for (what, p) in [("tauri-driver", port), ("WebKitWebDriver", native)] {
            let up = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            });
            assert!(
                up.is_some(),
                "{what} did not listen on {p} within 30 s; see {}",
                self.logs.join("tauri-driver.log").display()
            );
        }
        self.driver_port = port;
    }

    /// The X display.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Runs a desktop tool (xdotool, import, dunstctl) with this desktop's environment.
    pub fn run(&self, keyring: &KeyringEnv, program: &str, args: &[&str]) -> Finished {
        let mut cmd: Command = keyring.command(program);
        cmd.envs(self.app_env.iter().cloned()).args(args);
        run_with_timeout(&mut cmd, None, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// The tray panel's window id, once mapped (its menus have the same name, but not the
    /// panel's place and height).
    pub fn tray_window(&self, keyring: &KeyringEnv) -> Option<String> {
        let out = self.run(
            keyring,
            "xdotool",
            &[
                "search",
                "--onlyvisible",
                "--name",
                "^gtk-sni-tray-standalone$",
            ],
        );
        out.stdout.lines().map(|l| l.trim().to_string()).find(|w| {
            self.geometry(keyring, w)
                .is_some_and(|(_, y, _, h)| y == 0 && h == TRAY_HEIGHT)
        })
    }

    /// Where Mailcall's icon is: the panel's only item, at its right end.
    pub fn tray_icon_position(&self, keyring: &KeyringEnv) -> (i32, i32) {
        // The panel is mapped once the desktop starts, but it may be redrawn (unmapped a
        // moment) while items come and go: wait for it, and say what was there if it never is.
        let panel = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            self.tray_window(keyring)
        })
        .unwrap_or_else(|| {
            let all = self.run(
                keyring,
                "xdotool",
                &["search", "--name", "^gtk-sni-tray-standalone$"],
            );
            let seen: Vec<_> = all
                .stdout
                .lines()
                .map(|w| (w.trim().to_string(), self.geometry(keyring, w.trim())))
                .collect();
            panic!("the tray panel is not mapped at the top with height {TRAY_HEIGHT}: windows so named and their geometry {seen:?}")
        });
        let (x, y, w, h) = self
            .geometry(keyring, &panel)
            .expect("the panel's geometry");
        (x + w - TRAY_HEIGHT / 2, y + h / 2)
    }

    /// A window's geometry: x, y, width, height.
    pub fn geometry(&self, keyring: &KeyringEnv, window: &str) -> Option<(i32, i32, i32, i32)> {
        let out = self.run(
            keyring,
            "xdotool",
            &["getwindowgeometry", "--shell", window],
        );
        let get = |k: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.trim().parse::<i32>().ok())
        };
        Some((get("X")?, get("Y")?, get("WIDTH")?, get("HEIGHT")?))
    }

    /// Every mapped window id (xdotool's view).
    pub fn visible_windows(&self, keyring: &KeyringEnv) -> Vec<String> {
        let out = self.run(
            keyring,
            "xdotool",
            &["search", "--onlyvisible", "--name", ""],
        );
        out.stdout.lines().map(|l| l.trim().to_string()).collect()
    }

    /// A PNG of the whole screen.
    pub fn screenshot(&self, keyring: &KeyringEnv, file: &Path) {
        let f = file.display().to_string();
        let out = self.run(keyring, "import", &["-window", "root", &f]);
        assert!(
            out.status.is_some_and(|s| s.success()),
            "import -window root failed: {}",
            out.stderr
        );
    }

    /// The notification daemon's history (JSON).
    pub fn notification_history(&self, keyring: &KeyringEnv) -> String {
        self.run(keyring, "dunstctl", &["history"]).stdout
    }

    /// Every notification so far (JSON): those still on screen are closed first, since dunst
    /// keeps a critical one (an error) on screen and out of its history until it is closed.
    pub fn all_notifications(&self, keyring: &KeyringEnv) -> String {
        self.run(keyring, "dunstctl", &["close-all"]);
        self.notification_history(keyring)
    }

    /// Where the daemons' logs are.
    pub fn logs(&self) -> &Path {
        &self.logs
    }
}

/// Whether `name` has an owner on the test's session bus.
pub fn name_has_owner(keyring: &KeyringEnv, name: &str) -> bool {
    let mut cmd = keyring.command("dbus-send");
    cmd.args([
        "--session",
        "--print-reply",
        "--dest=org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.NameHasOwner",
        &format!("string:{name}"),
    ]);
    run_with_timeout(&mut cmd, None, Duration::from_secs(10))
        .map(|f| f.stdout.contains("boolean true"))
        .unwrap_or(false)
}

fn tauri_driver() -> PathBuf {
    // cargo install puts it in ~/.cargo/bin, which a cleared PATH may lack.
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v tauri-driver"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    home.join("bin").join("tauri-driver")
}

/// The settings-window processes (`mailcall --window`) whose parent is `parent`.
pub fn window_processes(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // The parent is the second field after the command's closing parenthesis.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(parent) && cmdline.split(|b| *b == 0).any(|a| a == b"--window")
        })
        .collect()
}

/// Whether the process `pid` exists (and is not a zombie).
pub fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}
