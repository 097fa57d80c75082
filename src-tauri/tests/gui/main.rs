//! The tray app end to end: the real `mailcall` binary on a throwaway X desktop (Xvfb, dunst,
//! a StatusNotifierItem tray) with a private D-Bus session and an unlocked gnome-keyring, its
//! window driven over WebDriver (tauri-driver + WebKitWebDriver), its tray icon and menu clicked
//! with xdotool and its tooltip read over D-Bus, against a real Postfix ISP with STARTTLS and
//! AUTH; ([`daemon`]) the tray as the front end of a running `mailcall-cli daemon`; ([`odmr`]) an
//! ODMR account against a real Exim ATRN provider with no listener bound; and ([`routes`]) routes
//! to a real Dovecot over LMTP set in the Delivery tab, with the Queue tab while Dovecot is down.
//! Screenshots go to `$CARGO_TARGET_TMPDIR/gui-screenshots` (copied into docs/ for the README).

mod daemon;
mod desktop;
mod odmr;
mod outgoing_queue;
mod routes;
mod sni;
mod webdriver;
mod window;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mailcall_core::control::Request;
use mailcall_e2e::{free_port, poll_until, IspOptions, KeyringEnv, Maildir, PostfixIsp};
use serde_json::{json, Value};

use desktop::{name_has_owner, Desktop};
use sni::{Item, Sni};
use webdriver::WebDriver;

const APP: &str = env!("CARGO_BIN_EXE_mailcall");
const PASSWORD: &str = "wonderland-pw-9";
/// The outgoing server the account form is given (nothing is sent to it here).
const SMARTHOST: &str = "smtp.example.net";
const SMARTHOST_PASSWORD: &str = "looking-glass-pw-7";
const SINGLE_INSTANCE: &str = "io.mailcall.Mailcall.SingleInstance";

/// One throwaway desktop at a time: each runs WebKit, Postfix and a keyring, and two at once
/// on a small machine only make both slow enough to miss their deadlines.
fn one_desktop_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    // A failed test (a panic while holding it) must not fail the next one as well.
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gui-screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot dir");
    dir
}

/// Polls a WebDriver condition for up to `secs`, panicking with `what` and the last error.
fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<Option<T>, String>) -> T {
    let mut last = String::new();
    let r = poll_until(
        Duration::from_secs(secs),
        Duration::from_millis(200),
        || match f() {
            Ok(v) => v,
            Err(e) => {
                last = e;
                None
            }
        },
    );
    r.unwrap_or_else(|| panic!("timed out after {secs} s waiting for {what}; last error: {last}"))
}

fn wait_text(wd: &WebDriver, css: &str, needle: &str, secs: u64) -> String {
    let mut seen = String::new();
    let shown = poll_until(
        Duration::from_secs(secs),
        Duration::from_millis(200),
        || match wd.text(css) {
            Ok(t) if t.contains(needle) => Some(t),
            Ok(t) => {
                seen = format!("it shows {t:?}");
                None
            }
            Err(e) => {
                seen = e;
                None
            }
        },
    );
    shown.unwrap_or_else(|| {
        panic!("timed out after {secs} s waiting for {css} to show {needle:?}; {seen}")
    })
}

/// Starts the tray app (unless it runs already), then its settings window over WebDriver:
/// tauri-driver starts `mailcall --window`, which reaches the tray.
fn open_session(desktop: &mut Desktop, keyring: &KeyringEnv) -> WebDriver {
    if desktop.app_pid().is_none() {
        desktop.stop_app();
        desktop.start_app(keyring);
    }
    let wd = WebDriver::start(desktop.driver_port, APP, &["--window"])
        .unwrap_or_else(|e| panic!("opening the app's window over WebDriver: {e}"));
    // Its scripts ran (the buttons do something) and its first load is shown: the page marks it.
    let page = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        wd.execute(
            "return document.readyState === 'complete' && document.body.dataset.ready === 'true';",
            json!([]),
        )
        .ok()
        .filter(|ready| *ready == json!(true))
    });
    if page.is_none() {
        let html = wd.execute(
            "return document.documentElement.outerHTML + ' @ ' + location.href",
            json!([]),
        );
        panic!(
            "the settings window did not show its first load within 30 s: {:?}; page: {html:.300?}",
            wd.find("#add-account")
        );
    }
    wd
}

fn select(wd: &WebDriver, css: &str, value: &str) {
    wd.execute(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change')); return s.value;",
        json!([css, value]),
    )
    .unwrap_or_else(|e| panic!("selecting {value} in {css}: {e}"));
}

/// Waits until Mailcall's StatusNotifierItem is registered with the tray (30 s).
fn wait_tray_item(sni: &Sni) -> Item {
    let item = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        sni.mailcall()
    });
    item.unwrap_or_else(|| {
        panic!(
            "Mailcall's tray icon did not register with the StatusNotifierWatcher within 30 s; registered: {:?}",
            sni.registered()
        )
    })
}

/// The tooltip of Mailcall's tray icon now.
fn tray_tooltip(sni: &Sni) -> String {
    let item = wait_tray_item(sni);
    sni.tooltip(&item)
        .unwrap_or_else(|e| panic!("reading the tray icon's tooltip: {e}"))
}

/// Clicks Mailcall's icon in the tray with `button` (1 left, 3 right).
fn click_tray_icon(desktop: &Desktop, keyring: &KeyringEnv, button: &str) {
    let (x, y) = desktop.tray_icon_position(keyring);
    let (x, y) = (x.to_string(), y.to_string());
    desktop.run(keyring, "xdotool", &["mousemove", &x, &y, "click", button]);
}

/// Right-clicks the tray icon (the tray shows its dbusmenu) and returns the menu's x, y and
/// width.
fn open_tray_menu(desktop: &Desktop, keyring: &KeyringEnv, shots: &Path) -> (i32, i32, i32) {
    let before = desktop.visible_windows(keyring);
    click_tray_icon(desktop, keyring, "3");
    let menu = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let now = desktop.visible_windows(keyring);
        now.into_iter()
            .filter(|w| !before.contains(w))
            .filter_map(|w| desktop.geometry(keyring, &w).map(|g| (w, g)))
            .filter(|(_, (_, _, w, h))| *w > 60 && *h > 60)
            .max_by_key(|(_, (_, _, w, h))| w * h)
    });
    let (_, (mx, my, mw, _)) = menu.unwrap_or_else(|| {
        desktop.screenshot(keyring, &shots.join("no-tray-menu.png"));
        panic!(
            "no tray menu appeared after right-clicking the tray icon at {:?}; see no-tray-menu.png",
            desktop.tray_icon_position(keyring)
        )
    });
    (mx, my, mw)
}

/// The desktop the app runs on, with `config` as its config file (and the tray running, if
/// `tray`); the screenshot directory.
fn start_desktop(keyring: &KeyringEnv, config: &Path, tray: bool) -> (Desktop, PathBuf) {
    let start = if tray {
        Desktop::start
    } else {
        Desktop::start_without_tray
    };
    let desktop = start(
        keyring,
        vec![
            ("MAILCALL_CONFIG".into(), config.display().to_string()),
            ("MAILCALL_LOG".into(), "info".into()),
            // Software compositing under Xvfb left the window unrepainted until an X event.
            ("WEBKIT_DISABLE_COMPOSITING_MODE".into(), "1".into()),
        ],
    );
    eprintln!(
        "desktop on {}, logs in {}",
        desktop.display(),
        desktop.logs().display()
    );
    (desktop, screenshots())
}

/// Opens the tray menu and clicks its first item, "Fetch now".
fn fetch_from_tray_menu(desktop: &Desktop, keyring: &KeyringEnv, shots: &Path) {
    let (mx, my, mw) = open_tray_menu(desktop, keyring, shots);
    let (fx, fy) = ((mx + mw / 2).to_string(), (my + 16).to_string());
    desktop.run(keyring, "xdotool", &["mousemove", &fx, &fy, "click", "1"]);
}

/// Opens the tray menu (with a screenshot of it named `shot`, if given) and picks "Pause
/// automatic fetching" with the keyboard (GTK skips the disabled status line: Fetch now, Open
/// mail folder, Settings…, Pause).
fn pause_from_tray_menu(desktop: &Desktop, keyring: &KeyringEnv, shots: &Path, shot: Option<&str>) {
    open_tray_menu(desktop, keyring, shots);
    if let Some(name) = shot {
        desktop.screenshot(keyring, &shots.join(name));
    }
    desktop.run(
        keyring,
        "xdotool",
        &[
            "key", "--delay", "150", "Down", "Down", "Down", "Down", "Return",
        ],
    );
}

/// The tray menu's Settings… (GTK skips the disabled status line: Fetch now, Open mail folder,
/// Settings…) starts the window process, a child of the tray `tray`, whose window shows on the
/// display: its PID and X window.
fn open_window_from_tray_menu(
    desktop: &Desktop,
    keyring: &KeyringEnv,
    tray: u32,
    shots: &Path,
) -> (u32, String) {
    open_tray_menu(desktop, keyring, shots);
    desktop.run(
        keyring,
        "xdotool",
        &["key", "--delay", "150", "Down", "Down", "Down", "Return"],
    );
    let started = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let pids = desktop::window_processes(tray);
        let shown = desktop.run(
            keyring,
            "xdotool",
            &["search", "--onlyvisible", "--name", "^Mailcall$"],
        );
        let window = shown.stdout.lines().next().map(|w| w.trim().to_string());
        match (pids.as_slice(), window) {
            ([pid], Some(window)) => Some((*pid, window)),
            _ => None,
        }
    });
    started.unwrap_or_else(|| {
        desktop.screenshot(keyring, &shots.join("no-window-from-tray.png"));
        panic!(
            "the tray menu's Settings… did not start one window process with its window shown within 30 s: processes {:?}; see no-window-from-tray.png",
            desktop::window_processes(tray)
        )
    })
}

/// Waits (30 s) until the process `pid` has ended, panicking with `what`.
fn wait_ended(pid: u32, what: &str) {
    let ended = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (!desktop::process_runs(pid)).then_some(())
    });
    assert!(ended.is_some(), "{what} (PID {pid}) ran on");
}

/// The window opened from the tray menu is a process of its own: when its X window goes
/// (xdotool windowkill: this desktop has no window manager to ask it to close) that process
/// ends and the tray runs on; opened again, it is a new process, which ends when the tray app
/// is stopped (the test's last use of it).
fn window_opens_from_the_tray_menu_and_its_process_ends_with_it(
    desktop: &mut Desktop,
    keyring: &KeyringEnv,
    tray: u32,
    shots: &Path,
) {
    let (first, window) = open_window_from_tray_menu(desktop, keyring, tray, shots);
    desktop.run(keyring, "xdotool", &["windowkill", &window]);
    wait_ended(first, "the window process, after its window went,");
    assert!(
        desktop::process_runs(tray),
        "the tray app ended with its window"
    );
    let (second, _) = open_window_from_tray_menu(desktop, keyring, tray, shots);
    assert_ne!(
        second, first,
        "the window came back in the process that had ended"
    );
    desktop.stop_app();
    wait_ended(second, "the window process, after the tray app ended,");
}

/// Waits until the Settings tab's Pause box is checked (it follows the switch).
fn wait_pause_box(wd: &WebDriver) {
    wait(10, "the Pause box to be checked", || {
        Ok(wd
            .execute(
                "return document.querySelector('#set-paused').checked;",
                json!([]),
            )?
            .as_bool()
            .filter(|c| *c)
            .map(|_| ()))
    });
}

/// One request line on the app's control socket; the JSON reply.
fn control(keyring: &KeyringEnv, request: Request) -> Result<Value, String> {
    use std::io::{BufRead, BufReader, Write};
    let path = keyring.runtime_dir().join("mailcall").join("control.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply:?}"))
}

/// The records in a history file, oldest first.
fn history(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A config the tray (and a daemon) share, written by the CLI on `keyring`: the listener on
/// 127.0.0.1:`listener_port`, the Maildir and the data directory in the keyring's root, no fetch
/// at start (the tests fetch when they say), and the account `isp` (ETRN, no TLS) at `isp` for
/// example.com. Returns the CLI, the Maildir's path and the data directory.
fn shared_config<'a>(
    keyring: &'a KeyringEnv,
    listener_port: u16,
    isp: &PostfixIsp,
) -> (mailcall_e2e::Cli<'a>, PathBuf, PathBuf) {
    let cli = mailcall_e2e::Cli::new(keyring);
    let root = keyring.root().to_path_buf();
    let maildir = root.join("Maildir");
    let data_dir = root.join("data").join("mailcall");
    cli.write_config(&format!(
        "listen = \"127.0.0.1:{listener_port}\"\nmaildir = \"{}\"\ndata-dir = \"{}\"\nidle-timeout = 3\nfetch-at-start = false\nsubmit-listen = \"off\"\n",
        maildir.display(),
        data_dir.display()
    ));
    cli.set_account(&mailcall_e2e::AccountArgs::new("isp", isp.port()).domains(&["example.com"]));
    (cli, maildir, data_dir)
}

fn keyring_account(keyring: &KeyringEnv) -> Option<Value> {
    keyring
        .keyring_secret("mailcall", "isp")
        .map(|s| serde_json::from_str(s.trim()).expect("the keyring entry is JSON"))
}

#[test]
fn tray_app_adds_tests_fetches_and_removes_an_account() {
    let _one = one_desktop_at_a_time();
    let keyring = KeyringEnv::new();
    let listener_port = free_port();
    let isp = PostfixIsp::start(
        IspOptions::new(&["example.com", "example.org"], listener_port)
            .with_tls()
            .with_auth("alice", PASSWORD),
    );
    isp.queue(
        "news@sender.test",
        "bob@example.com",
        "Quarterly report",
        "<gui-1@sender.test>",
        "The numbers are in.",
    );
    isp.queue(
        "billing@sender.test",
        "carol@example.org",
        "Invoice 42",
        "<gui-2@sender.test>",
        "Please pay.",
    );
    isp.wait_deferred(2, Duration::from_secs(30));

    let root = keyring.root().to_path_buf();
    let config_path = root.join("config").join("mailcall").join("config.toml");
    std::fs::create_dir_all(config_path.parent().expect("has a parent")).expect("config dir");
    let maildir_path = root.join("Maildir");
    std::fs::write(
        &config_path,
        format!(
            // No fetch at start: the mail must come from the tray menu's Fetch now.
            "listen = \"127.0.0.1:{listener_port}\"\nmaildir = \"{}\"\nidle-timeout = 3\nfetch-at-start = false\n",
            maildir_path.display()
        ),
    )
    .expect("writing the config");
    let (mut desktop, shots) = start_desktop(&keyring, &config_path, true);

    // 1. Add an account in the form (wrong port first; the edit fixes it).
    let wd = open_session(&mut desktop, &keyring);
    let wrong_port = free_port();
    wd.click("#add-account").expect("Add account");
    wd.type_into("#acct-name", "isp").expect("name");
    wd.type_into("#acct-host", "127.0.0.1").expect("host");
    wd.type_into("#acct-port", &wrong_port.to_string())
        .expect("port");
    select(&wd, "#acct-security", "starttls");
    wd.type_into("#acct-username", "alice").expect("user");
    wd.type_into("#acct-password", PASSWORD).expect("password");
    wd.type_into("#acct-ca-file", &isp.ca_file().display().to_string())
        .expect("CA file");
    wd.type_into("#domain-rows li:nth-child(1) .domain-name", "example.com")
        .expect("domain");
    // Inline validation first: a bad HELO name is refused with a message next to the field.
    wd.type_into("#acct-helo", "not a name").expect("helo");
    wd.click("#acct-save").expect("Save");
    wait_text(&wd, "small.error[data-for=helo]", "is not a host name", 15);
    wd.type_into("#acct-helo", "").expect("helo cleared");
    wd.click("#acct-save").expect("Save");
    wait_text(&wd, "#account-list", &format!("127.0.0.1:{wrong_port}"), 20);
    let stored = keyring_account(&keyring).expect("the keyring holds account isp");
    assert_eq!(stored["port"], wrong_port);
    assert_eq!(stored["password"], PASSWORD);
    let config_text = std::fs::read_to_string(&config_path).expect("config");
    assert!(config_text.contains("\"isp\""), "{config_text}");
    assert!(
        !config_text.contains(PASSWORD),
        "password in the config file:\n{config_text}"
    );

    // 2. Edit: the right port and a second domain; the password stays (field left empty).
    //    And an outgoing server with a login of its own and TLS: the port's placeholder is
    //    TLS's default (the core's rule, through contract.js), an empty port takes it, and a
    //    bad port is refused next to its field first.
    wd.click("[data-edit=isp]").expect("Edit");
    wait(10, "the edit form", || {
        Ok((wd.text("#account-form-title")? == "Edit isp").then_some(()))
    });
    wd.type_into("#acct-port", &isp.port().to_string())
        .expect("port");
    wd.click("#add-domain").expect("Add domain");
    wd.type_into("#domain-rows li:nth-child(2) .domain-name", "example.org")
        .expect("second domain");
    let ca_file = isp.ca_file().display().to_string();
    wd.type_into("#acct-smarthost-host", SMARTHOST)
        .expect("outgoing server");
    select(&wd, "#acct-smarthost-security", "tls");
    let placeholder = wd
        .execute(
            "return document.querySelector('#acct-smarthost-port').placeholder;",
            json!([]),
        )
        .expect("reading the outgoing port's placeholder");
    assert_eq!(
        placeholder, "465",
        "the outgoing port's placeholder for TLS"
    );
    select(&wd, "#acct-smarthost-login", "own");
    wd.type_into("#acct-smarthost-username", "office-out")
        .expect("outgoing user name");
    wd.type_into("#acct-smarthost-password", SMARTHOST_PASSWORD)
        .expect("outgoing password");
    wd.type_into("#acct-smarthost-ca-file", &ca_file)
        .expect("outgoing CA file");
    wd.type_into("#acct-smarthost-port", "0")
        .expect("outgoing port");
    wd.click("#acct-save").expect("Save");
    wait_text(
        &wd,
        "small.error[data-for=smarthost_port]",
        "is not a port",
        15,
    );
    wd.type_into("#acct-smarthost-port", "")
        .expect("outgoing port cleared");
    wd.click("#acct-save").expect("Save");
    wait_text(
        &wd,
        "#account-list",
        &format!("127.0.0.1:{}", isp.port()),
        20,
    );
    let stored = keyring_account(&keyring).expect("still in the keyring");
    assert_eq!(stored["port"], isp.port());
    assert_eq!(
        stored["domains"],
        json!([{"name": "example.com", "form": "domain"}, {"name": "example.org", "form": "domain"}])
    );
    assert_eq!(
        stored["password"], PASSWORD,
        "an empty password field keeps the password"
    );
    assert_eq!(
        stored["outgoing"],
        json!({
            "host": SMARTHOST,
            "port": 465,
            "security": "tls",
            "username": "office-out",
            "password": SMARTHOST_PASSWORD,
            "ca-file": ca_file,
        })
    );
    let shown =
        mailcall_e2e::Cli::with_config(&keyring, &config_path).run(&["account", "show", "isp"]);
    shown.assert_success();
    assert!(
        shown
            .stdout
            .contains(&format!("smarthost: {SMARTHOST}:465 tls"))
            && shown
                .stdout
                .contains("smarthost-login: office-out (its own password)")
            && shown
                .stdout
                .contains(&format!("smarthost-ca-file: {ca_file}"))
            && !shown.all_output().contains(SMARTHOST_PASSWORD),
        "{shown}"
    );

    // 3. The window is a process of its own: closing it leaves the tray running, and the tray
    //    menu's Settings… starts it again, by PID, with its window on the display; when that
    //    window goes, so does its process, and when the tray goes, so does a window still open.
    //    Then restart the app: the edit shows.
    wd.quit().expect("ending the WebDriver session");
    let tray = desktop
        .app_pid()
        .expect("the tray app runs on without its window");
    window_opens_from_the_tray_menu_and_its_process_ends_with_it(
        &mut desktop,
        &keyring,
        tray,
        &shots,
    );
    let gone = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        (!name_has_owner(&keyring, SINGLE_INSTANCE)).then_some(())
    });
    assert!(gone.is_some(), "the first app instance did not exit");
    let wd = open_session(&mut desktop, &keyring);
    let list = wait_text(
        &wd,
        "#account-list",
        &format!("127.0.0.1:{}", isp.port()),
        20,
    );
    assert!(list.contains("example.com, example.org"), "{list}");
    assert!(
        list.contains(&format!("sends via {SMARTHOST}:465")),
        "{list}"
    );

    // 4. Test connection; the form shows the outgoing server, its password only as saved.
    wd.click("[data-edit=isp]").expect("Edit");
    let outgoing = wd
        .execute(
            "const v = (id) => document.querySelector(id); \
             return [v('#acct-smarthost-host').value, v('#acct-smarthost-port').value, \
             v('#acct-smarthost-security').value, v('#acct-smarthost-login').value, \
             v('#acct-smarthost-username').value, v('#acct-smarthost-password').value, \
             v('#acct-smarthost-password').placeholder, v('#acct-smarthost-username').offsetParent !== null];",
            json!([]),
        )
        .expect("reading the outgoing server's fields");
    assert_eq!(
        outgoing,
        json!([
            SMARTHOST,
            "465",
            "tls",
            "own",
            "office-out",
            "",
            "(saved; type to replace)",
            true
        ])
    );
    wd.click("#acct-test").expect("Test connection");
    let result = wait_text(&wd, "#test-result", "ETRN advertised", 60);
    assert!(!result.contains("ETRN not advertised"), "{result}");
    assert!(result.contains("TLS: encrypted"), "{result}");
    assert!(result.contains("AUTH: yes"), "{result}");
    wd.execute(
        "document.querySelector('#test-result').scrollIntoView({block: 'end'});",
        json!([]),
    )
    .expect("scrolling to the result");
    desktop.screenshot(&keyring, &shots.join("settings-window.png"));
    wd.click("#acct-cancel").expect("Cancel");

    // 5. One left click on the tray icon fetches (xdotool, in the StatusNotifierItem tray);
    //    its tooltip (read over D-Bus) goes idle → fetching with the messages so far → new mail.
    let sni = Sni::connect(&keyring);
    let before = tray_tooltip(&sni);
    assert!(
        before.starts_with("Mailcall — idle"),
        "tooltip before the fetch: {before:?}"
    );
    click_tray_icon(&desktop, &keyring, "1");
    let maildir = Maildir::new(&maildir_path);
    let mut tooltips: Vec<String> = vec![before];
    let done = poll_until(Duration::from_secs(90), Duration::from_millis(100), || {
        let now = tray_tooltip(&sni);
        if tooltips.last() != Some(&now) {
            tooltips.push(now.clone());
        }
        (maildir.new_messages().len() >= 2 && !now.contains("fetching")).then_some(now)
    });
    assert!(
        done.is_some(),
        "the queued mail did not arrive (or the fetch did not end) after a left click on the tray icon; tooltips: {tooltips:?}; queue: {:?}\nmaillog:\n{}",
        isp.queue_entries(),
        isp.log()
    );
    eprintln!("tray tooltips during the fetch: {tooltips:?}");
    assert_eq!(
        maildir.message_ids(),
        ["<gui-1@sender.test>", "<gui-2@sender.test>"].map(String::from)
    );
    assert!(
        tooltips
            .iter()
            .any(|t| t == "Mailcall — fetching from isp (ETRN)… 2 messages so far"),
        "the tooltip never showed the fetch's progress: {tooltips:?}"
    );
    assert_eq!(
        tooltips.last().map(String::as_str),
        Some("Mailcall — 2 messages new"),
        "{tooltips:?}"
    );
    let history_file = keyring.data_home().join("mailcall").join("history.jsonl");
    let fetches = || -> Vec<Value> {
        history(&history_file)
            .into_iter()
            .filter(|r| r["kind"] == "fetch")
            .collect()
    };
    let recorded = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let f = fetches();
        (!f.is_empty()).then_some(f)
    });
    let recorded = recorded.unwrap_or_else(|| panic!("no fetch in {}", history_file.display()));
    assert!(
        recorded.len() == 1 && recorded[0]["trigger"] == "tray",
        "one fetch, recorded as the tray's: {recorded:?}"
    );

    wd.click("#tab-history").expect("History tab");
    let history = wait_text(&wd, "#history-list", "Invoice 42", 60);
    assert!(history.contains("Quarterly report"), "{history}");
    assert!(history.contains("tray"), "{history}");
    desktop.screenshot(&keyring, &shots.join("history.png"));
    let notes = poll_until(Duration::from_secs(20), Duration::from_millis(250), || {
        let h = desktop.notification_history(&keyring);
        (h.contains("Quarterly report") && h.contains("Invoice 42")).then_some(h)
    });
    let notes = notes.unwrap_or_else(|| {
        panic!(
            "dunst has no notification naming the new mail: {}",
            desktop.notification_history(&keyring)
        )
    });
    assert!(notes.contains("news@sender.test"), "{notes}");

    // 6. The tray serves the control socket; "Pause automatic fetching" in the tray menu
    //    reaches the triggers (STATUS says paused).
    let status =
        control(&keyring, Request::Status).expect("the tray answers on its control socket");
    assert_eq!(status["paused"], false, "{status}");
    pause_from_tray_menu(&desktop, &keyring, &shots, Some("tray-menu.png"));
    let paused = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        control(&keyring, Request::Status)
            .ok()
            .filter(|s| s["paused"] == true)
    });
    assert!(
        paused.is_some(),
        "Pause in the tray menu did not pause the triggers: {:?}",
        control(&keyring, Request::Status)
    );
    wd.click("#tab-settings").expect("Settings tab");
    wd.execute(
        "window.dispatchEvent(new Event('mailcall:reload'));",
        json!([]),
    )
    .expect("reloading the window");
    wait_pause_box(&wd);
    desktop.screenshot(&keyring, &shots.join("settings-tab.png"));

    // 7. `mailcall --fetch` asks the running instance over the control socket and prints the
    //    outcome; a manual fetch works while automatic fetching is paused.
    let forwarded = desktop.run(&keyring, APP, &["--fetch"]);
    assert!(
        forwarded
            .stdout
            .contains("asked the running Mailcall to fetch")
            && forwarded.stdout.contains("control.sock")
            && forwarded.stdout.contains("summary: 0 message(s)"),
        "stdout: {}\nstderr: {}",
        forwarded.stdout,
        forwarded.stderr
    );
    assert!(
        forwarded.status.is_some_and(|s| s.success()),
        "mailcall --fetch failed: {}",
        forwarded.stderr
    );

    // 8. Remove the account.
    wd.click("#tab-accounts").expect("Accounts tab");
    wd.click("[data-remove=isp]").expect("Remove");
    wd.click("#remove-confirm").expect("confirm");
    let removed = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        keyring_account(&keyring).is_none().then_some(())
    });
    assert!(removed.is_some(), "account isp is still in the keyring");
    let config_text = std::fs::read_to_string(&config_path).expect("config");
    assert!(!config_text.contains("\"isp\""), "{config_text}");
    wait(10, "the empty account list", || {
        Ok(wd
            .text("#no-accounts")?
            .contains("No accounts")
            .then_some(()))
    });
    wd.quit().expect("ending the session");
    eprintln!("screenshots in {}", shots.display());
}
