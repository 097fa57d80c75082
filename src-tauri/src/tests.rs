//! The window's commands on Tauri's mock runtime, through the real IPC path and capabilities,
//! with an in-memory account store and a config file in a temp dir.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use std::time::Duration;

use mailcall_core::account::{Account, LinkSettings, Secret, Security};
use mailcall_core::config::Config;
use mailcall_core::instance::SavedState;
use mailcall_core::keystore::{AccountStore, MemoryStore};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use crate::state::AppState;
use crate::status::{IconState, Serving};

struct Harness {
    _dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    socket: std::path::PathBuf,
    store: Arc<MemoryStore>,
    _app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

fn harness() -> Harness {
    harness_with(crate::window::LABEL, None)
}

fn harness_with_label(label: &str) -> Harness {
    harness_with(label, None)
}

/// A second tray whose control socket is `first`'s (as a daemon's would be).
fn harness_sharing(first: &Harness) -> Harness {
    harness_with(crate::window::LABEL, Some(first.socket.clone()))
}

fn harness_with(label: &str, socket: Option<std::path::PathBuf>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        maildir: Some(dir.path().join("Maildir")),
        // The history and the pause switch stay in the test's dir.
        data_dir: Some(dir.path().join("data")),
        // No fetch of its own when a test starts the service (this machine is online).
        fetch_at_start: false,
        ..Config::default()
    };
    config.save(&config_path).unwrap();
    let store = Arc::new(MemoryStore::default());
    let socket = socket.unwrap_or_else(|| dir.path().join("run").join("control.sock"));
    let state =
        AppState::new(config_path.clone(), store.clone()).with_control_socket(socket.clone());
    state.notifier.set_enabled(false);
    let app = crate::builder(mock_builder(), state)
        .build(tauri::generate_context!())
        .unwrap();
    let window = WebviewWindowBuilder::new(&app, label, WebviewUrl::default())
        .build()
        .unwrap();
    Harness {
        _dir: dir,
        config_path,
        socket,
        store,
        _app: app,
        window,
    }
}

impl Harness {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        tauri::test::get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().unwrap())
    }

    fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap()
    }

    fn state(&self) -> tauri::State<'_, AppState> {
        self.window.state::<AppState>()
    }

    fn start_service(&self) {
        let app = self.window.app_handle().clone();
        tauri::async_runtime::block_on(self.state().start_service(&app)).unwrap();
    }

    fn serving(&self) -> Serving {
        tauri::async_runtime::block_on(self.state().serving())
    }

    /// The remembered pause switch (`state.toml` in the data dir), once it is `want`.
    fn wait_saved_pause(&self, want: bool) {
        let config = self.config();
        let saved =
            mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                (SavedState::load(&config).unwrap().paused == want).then_some(())
            });
        assert!(saved.is_some(), "the remembered pause switch is not {want}");
    }

    /// One request on the tray's control socket, as `mailcall-cli` would send it.
    fn control(&self, line: &str) -> Value {
        tauri::async_runtime::block_on(mailcall_core::control::request(&self.socket, line))
            .unwrap_or_else(|e| panic!("{line} on {}: {e}", self.socket.display()))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        tauri::async_runtime::block_on(self.state().stop_service());
    }
}

fn account_form(name: &str, port: u16, password: &str) -> Value {
    json!({
        "original": "",
        "name": name,
        "host": "127.0.0.1",
        "port": port.to_string(),
        "security": "starttls",
        "username": "alice",
        "password": password,
        "helo": "",
        "ca_file": "",
        "domains": [{"name": "example.com", "form": "domain"}]
    })
}

#[test]
fn accounts_are_added_edited_and_removed_and_the_password_never_comes_back() {
    let h = harness();
    let data = h.invoke("load_settings", json!({})).unwrap();
    assert_eq!(data["accounts"], json!([]));
    assert_eq!(data["settings"]["listen"], "127.0.0.1:0");

    let saved = h
        .invoke(
            "save_account",
            json!({"account": account_form("isp", 2525, "hunter2")}),
        )
        .unwrap();
    assert_eq!(saved["has_password"], true);
    assert_eq!(
        h.store.load("isp").unwrap().password.unwrap().expose(),
        "hunter2"
    );
    assert_eq!(h.config().accounts, ["isp"]);
    let on_disk = std::fs::read_to_string(&h.config_path).unwrap();
    assert!(!on_disk.contains("hunter2"), "{on_disk}");

    // Edit: port changed, a domain added, password left empty (kept).
    let mut edit = account_form("isp", 2626, "");
    edit["original"] = json!("isp");
    edit["domains"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "example.org", "form": "subdomains"}));
    h.invoke("save_account", json!({"account": edit})).unwrap();
    let stored = h.store.load("isp").unwrap();
    assert_eq!(stored.port, 2626);
    assert_eq!(stored.domains.len(), 2);
    assert_eq!(stored.password.unwrap().expose(), "hunter2");

    let data = h.invoke("load_settings", json!({})).unwrap();
    let text = data.to_string();
    assert!(
        !text.contains("hunter2"),
        "password sent to the window: {text}"
    );
    assert_eq!(data["accounts"][0]["port"], 2626);
    assert_eq!(data["accounts"][0]["domains"][1]["name"], "example.org");

    // A second account may not take the same name.
    let dup = h
        .invoke(
            "save_account",
            json!({"account": account_form("isp", 25, "x")}),
        )
        .unwrap_err();
    assert!(
        dup["fields"]["name"]
            .as_str()
            .unwrap()
            .contains("exists already"),
        "{dup}"
    );

    h.invoke("remove_account", json!({"name": "isp"})).unwrap();
    assert!(h.store.load("isp").is_err());
    assert!(h.config().accounts.is_empty());
    let gone = h
        .invoke("remove_account", json!({"name": "isp"}))
        .unwrap_err();
    assert!(
        gone["message"].as_str().unwrap().contains("no account"),
        "{gone}"
    );
}

#[test]
fn bad_forms_come_back_with_per_field_messages() {
    let h = harness();
    let mut bad = account_form("my isp", 0, "");
    bad["domains"] = json!([]);
    let e = h
        .invoke("save_account", json!({"account": bad}))
        .unwrap_err();
    for field in ["name", "port", "password", "domains"] {
        assert!(e["fields"][field].is_string(), "{field} missing: {e}");
    }
    assert!(h.config().accounts.is_empty());

    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    settings["listen"] = json!("nowhere");
    settings["idle_timeout"] = json!("-1");
    let e = h
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap_err();
    assert!(
        e["fields"]["listen"]
            .as_str()
            .unwrap()
            .contains("ADDR:PORT"),
        "{e}"
    );
    assert!(e["fields"]["idle_timeout"].is_string(), "{e}");
}

#[test]
fn a_listener_that_cannot_start_is_shown_at_its_field_in_the_windows_words() {
    let h = harness();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    settings["listen"] = json!(taken.local_addr().unwrap().to_string());
    let e = h
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap_err();
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with("Saved, but Mailcall cannot run"), "{e}");
    assert!(
        message.contains("To fix: Settings → Settings tab → Listen on"),
        "{e}"
    );
    assert!(
        !message.contains("--listen") && !message.contains("mailcall-cli config"),
        "{e}"
    );
    assert!(e["fields"]["listen"].is_string(), "{e}");
    assert_eq!(h.state().status().view().state, IconState::Error);
    assert!(h.state().status().view().tooltip.contains("Listen on"));
}

#[test]
fn settings_are_saved_to_the_shared_config_and_the_tray_prefs() {
    let h = harness();
    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    settings["idle_timeout"] = json!("7");
    settings["max_size_mib"] = json!("2");
    settings["notifications"] = json!(false);
    settings["paused"] = json!(true);
    h.invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    let c = h.config();
    assert_eq!(c.idle_timeout, 7);
    assert_eq!(c.max_message_size, 2 * 1024 * 1024);
    let prefs_path = crate::prefs::prefs_path(&h.config_path);
    let prefs = crate::prefs::Prefs::load(&prefs_path);
    assert!(!prefs.notifications);
    // Pause is the core's remembered switch (the daemon's too), not a tray preference.
    h.wait_saved_pause(true);
    assert!(!std::fs::read_to_string(&prefs_path)
        .unwrap()
        .contains("paused"));
    // The config stays readable by the CLI (no GUI keys in it).
    assert!(!std::fs::read_to_string(&h.config_path)
        .unwrap()
        .contains("notifications"));
}

#[test]
fn an_old_pause_in_gui_toml_becomes_the_remembered_switch() {
    let h = harness();
    let prefs_path = crate::prefs::prefs_path(&h.config_path);
    std::fs::write(&prefs_path, "notifications = false\npaused = true\n").unwrap();
    h.start_service();
    assert_eq!(h.control("STATUS")["paused"], true);
    h.wait_saved_pause(true);
    let text = std::fs::read_to_string(&prefs_path).unwrap();
    assert!(
        !text.contains("paused") && text.contains("notifications = false"),
        "{text}"
    );
}

#[test]
fn fetch_now_without_accounts_says_what_to_do() {
    let h = harness();
    let e = h.invoke("fetch_now", json!({})).unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("add your ISP account"),
        "{e}"
    );
}

/// A scripted SMTP server: greets, answers EHLO with ETRN (or not), then QUIT.
fn fake_isp(etrn: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        out.write_all(b"220 isp.test ESMTP\r\n").unwrap();
        let mut line = String::new();
        for _ in 0..10 {
            line.clear();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.trim().to_ascii_uppercase();
            if cmd.starts_with("EHLO") {
                let ext = if etrn { "250-ETRN\r\n" } else { "" };
                out.write_all(format!("250-isp.test\r\n{ext}250 8BITMIME\r\n").as_bytes())
                    .unwrap();
            } else if cmd == "QUIT" {
                out.write_all(b"221 bye\r\n").unwrap();
                return;
            } else {
                out.write_all(b"502 no\r\n").unwrap();
            }
        }
    });
    port
}

#[test]
fn test_connection_reports_whether_etrn_is_advertised() {
    let h = harness();
    for etrn in [true, false] {
        let port = fake_isp(etrn);
        let mut form = account_form("isp", port, "");
        form["security"] = json!("none");
        form["username"] = json!("");
        let r = h
            .invoke("test_connection", json!({"account": form}))
            .unwrap();
        assert_eq!(r["etrn_advertised"], etrn, "{r}");
        assert_eq!(r["tls"], false);
        assert_eq!(r["auth"], "not configured");
        assert_eq!(r["error"].is_null(), etrn, "{r}");
        assert!(r["transcript"].as_array().unwrap().len() > 2, "{r}");
    }
}

#[test]
fn other_windows_get_no_command() {
    let h = harness_with_label("intruder");
    let e = h.invoke("load_settings", json!({})).unwrap_err();
    assert!(e.to_string().contains("not allowed"), "{e}");
}

#[test]
fn the_service_starts_on_the_configured_listener_and_takes_new_accounts() {
    let h = harness();
    let app = h.window.app_handle().clone();
    let state = app.state::<AppState>();
    tauri::async_runtime::block_on(state.start_service(&app)).unwrap();
    let addr: std::net::SocketAddr = tauri::async_runtime::block_on(state.listen_addr())
        .unwrap()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert_eq!(
        h.invoke("load_settings", json!({})).unwrap()["listening"],
        addr.to_string()
    );
    h.invoke(
        "save_account",
        json!({"account": account_form("isp", 1, "pw")}),
    )
    .unwrap();
    tauri::async_runtime::block_on(state.stop_service());
    assert!(tauri::async_runtime::block_on(state.listen_addr()).is_none());
}

/// An account as `mailcall-cli account set ... --connect-command ...` leaves it in the keyring.
fn cli_account_with_link() -> Account {
    Account {
        mode: Default::default(),
        name: "isp".into(),
        host: "127.0.0.1".into(),
        port: 2525,
        security: Security::Starttls,
        username: Some("alice".into()),
        password: Some(Secret::new("hunter2")),
        password_command: None,
        helo: None,
        ca_file: None,
        domains: vec!["example.com".parse().unwrap()],
        link: LinkSettings {
            connect_command: Some("pon isp".into()),
            disconnect_command: Some("poff isp".into()),
            link_timeout: Some(90),
        },
    }
}

#[test]
fn dial_up_settings_show_round_trip_and_survive_a_window_that_leaves_them_out() {
    let h = harness();
    h.store.save(&cli_account_with_link()).unwrap();
    let mut config = h.config();
    config.add_account("isp");
    config.save(&h.config_path).unwrap();

    let data = h.invoke("load_settings", json!({})).unwrap();
    let view = &data["accounts"][0];
    assert_eq!(view["connect_command"], "pon isp", "{view}");
    assert_eq!(view["disconnect_command"], "poff isp");
    assert_eq!(view["link_timeout"], "90");

    // A form without the dial-up keys (an older window) keeps what the CLI set.
    let mut edit = account_form("isp", 2626, "");
    edit["original"] = json!("isp");
    h.invoke("save_account", json!({"account": edit.clone()}))
        .unwrap();
    let stored = h.store.load("isp").unwrap();
    assert_eq!(stored.port, 2626);
    assert_eq!(stored.link, cli_account_with_link().link);

    // The form as the window sends it: changed, then cleared.
    edit["connect_command"] = json!("sh -c 'pon isp && sleep 1'");
    edit["disconnect_command"] = json!("poff isp");
    edit["link_timeout"] = json!("30");
    h.invoke("save_account", json!({"account": edit.clone()}))
        .unwrap();
    let link = h.store.load("isp").unwrap().link;
    assert_eq!(
        link.connect_command.as_deref(),
        Some("sh -c 'pon isp && sleep 1'")
    );
    assert_eq!(link.link_timeout, Some(30));
    edit["connect_command"] = json!("");
    edit["disconnect_command"] = json!("  ");
    edit["link_timeout"] = json!("");
    h.invoke("save_account", json!({"account": edit.clone()}))
        .unwrap();
    assert_eq!(h.store.load("isp").unwrap().link, LinkSettings::default());

    // Bad values are refused field by field, and nothing is saved.
    edit["connect_command"] = json!("pon 'isp");
    edit["link_timeout"] = json!("0");
    let e = h
        .invoke("save_account", json!({"account": edit}))
        .unwrap_err();
    assert!(e["fields"]["connect_command"].is_string(), "{e}");
    assert!(
        e["fields"]["link_timeout"]
            .as_str()
            .unwrap()
            .contains("1 to 3600"),
        "{e}"
    );
    assert_eq!(h.store.load("isp").unwrap().link, LinkSettings::default());
}

#[test]
fn trigger_options_are_saved_as_config_keys_and_checked() {
    let h = harness();
    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    assert_eq!(settings["interfaces"], "");
    assert_eq!(settings["settle_delay"], "2");
    assert_eq!(settings["fetch_interval"], "0");
    assert_eq!(settings["fetch_at_start"], false);
    settings["interfaces"] = json!("ppp*, wlan0");
    settings["settle_delay"] = json!("5");
    settings["fetch_interval"] = json!("15");
    settings["fetch_at_start"] = json!(true);
    h.invoke("save_settings", json!({"settings": settings.clone()}))
        .unwrap();
    let c = h.config();
    assert_eq!(c.interfaces, ["ppp*", "wlan0"]);
    assert_eq!(c.settle_delay, 5);
    assert_eq!(c.fetch_interval, 15);
    assert!(c.fetch_at_start);
    // The CLI reads them under its own key names.
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    assert!(text.contains("fetch-interval = 15"), "{text}");
    let shown = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    assert_eq!(shown["interfaces"], "ppp*, wlan0");

    settings["interfaces"] = json!("eth0/1");
    settings["settle_delay"] = json!("soon");
    settings["fetch_interval"] = json!("-5");
    let e = h
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap_err();
    for field in ["interfaces", "settle_delay", "fetch_interval"] {
        assert!(e["fields"][field].is_string(), "{field} missing: {e}");
    }
    assert_eq!(h.config().interfaces, ["ppp*", "wlan0"], "nothing saved");
}

#[test]
fn the_control_socket_answers_and_pause_reaches_the_triggers() {
    let h = harness();
    h.start_service();
    let status = h.control("STATUS");
    assert_eq!(status["paused"], false, "{status}");
    let data = h.invoke("load_settings", json!({})).unwrap();
    assert!(
        data["control"]
            .as_str()
            .unwrap()
            .contains(&h.socket.display().to_string()),
        "{data}"
    );

    // The window's Pause: the running triggers and the remembered switch.
    let mut settings = data["settings"].clone();
    settings["paused"] = json!(true);
    h.invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert_eq!(h.control("STATUS")["paused"], true);
    h.wait_saved_pause(true);
    assert!(h.state().status().view().paused, "the check mark follows");

    // RESUME from a script shows in the window.
    h.control("RESUME");
    let data = h.invoke("load_settings", json!({})).unwrap();
    assert_eq!(data["settings"]["paused"], false, "{data}");

    // A restart (new settings) keeps the socket (the old server's clean-up does not remove the
    // new one's file) and the pause a script set.
    assert_eq!(h.control("PAUSE")["paused"], true);
    h.wait_saved_pause(true);
    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    assert_eq!(settings["paused"], true);
    settings["settle_delay"] = json!("3");
    h.invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert_eq!(
        h.control("STATUS")["paused"],
        true,
        "paused survives a restart"
    );
}

#[test]
fn a_tray_finding_mailcall_running_is_its_front_end_and_takes_over_when_it_goes() {
    let first = harness();
    first.start_service();
    // A second tray over the same control socket, as a running daemon would hold it.
    let second = harness_sharing(&first);
    let app = second.window.app_handle().clone();
    second.start_service();
    assert_eq!(
        second.serving(),
        Serving::Daemon {
            socket: first.socket.display().to_string(),
            differs: None,
        }
    );
    let data = second.invoke("load_settings", json!({})).unwrap();
    let note = data["control"].as_str().unwrap();
    assert!(
        note.starts_with(&format!(
            "Using the running Mailcall daemon at {}",
            first.socket.display()
        )),
        "{note}"
    );
    assert_eq!(
        data["listening"],
        tauri::async_runtime::block_on(first.state().listen_addr()).unwrap()
    );
    assert!(
        data["status"]["line"]
            .as_str()
            .unwrap()
            .ends_with("· via daemon"),
        "{data}"
    );
    assert_eq!(
        second.state().status().view().state,
        IconState::Idle,
        "not an error"
    );

    // Pause goes to the running one; its switch shows here (the check mark) and in the window.
    tauri::async_runtime::block_on(second.state().set_paused(&app, true)).unwrap();
    assert_eq!(first.control("STATUS")["paused"], true);
    assert!(second.state().status().view().paused);
    first.control("RESUME");
    let resumed =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            (!second.state().status().view().paused).then_some(())
        });
    assert!(
        resumed.is_some(),
        "a RESUME from a script shows in the front end"
    );
    assert_eq!(
        second.invoke("load_settings", json!({})).unwrap()["settings"]["paused"],
        false
    );
    // An account saved in the window reaches the running one (RELOAD).
    second
        .invoke(
            "save_account",
            json!({"account": account_form("isp", 2525, "pw")}),
        )
        .unwrap();

    // The running one stops: the front end starts Mailcall itself, on the same socket.
    tauri::async_runtime::block_on(first.state().stop_service());
    let here = mailcall_e2e::poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        matches!(second.serving(), Serving::Here { .. }).then_some(())
    });
    assert!(here.is_some(), "no takeover: {:?}", second.serving());
    let status =
        tauri::async_runtime::block_on(mailcall_core::control::request(&first.socket, "STATUS"))
            .expect("the second tray answers on the socket now");
    assert_eq!(status["accounts"], json!(["isp"]), "{status}");
    assert!(!second.state().status().view().line.contains("via daemon"));
}
