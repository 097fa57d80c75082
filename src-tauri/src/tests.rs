//! The window's commands on Tauri's mock runtime, through the real IPC path and capabilities,
//! with an in-memory account store and a config file in a temp dir.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use std::time::Duration;

use mailcall_core::account::{Account, LinkSettings, Secret, Security};
use mailcall_core::config::{Config, ConfigKey};
use mailcall_core::control::{Client, Request};
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

/// A second tray over `first`'s config, keyring and control socket: the front end of `first`
/// as a tray is of a daemon that runs with the same config.
fn harness_front_end(first: &Harness) -> Harness {
    harness_over(
        crate::window::LABEL,
        Some(first.socket.clone()),
        Some((first.config_path.clone(), first.store.clone())),
    )
}

fn harness_with(label: &str, socket: Option<std::path::PathBuf>) -> Harness {
    harness_over(label, socket, None)
}

fn harness_over(
    label: &str,
    socket: Option<std::path::PathBuf>,
    shared: Option<(std::path::PathBuf, Arc<MemoryStore>)>,
) -> Harness {
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
    let (config_path, store) =
        shared.unwrap_or_else(|| (config_path, Arc::new(MemoryStore::default())));
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

    /// One request on the tray's control socket, as a script would send it; its reply, which
    /// must say it was done.
    fn control(&self, request: Request) -> Value {
        control_at(&self.socket, request)
            .unwrap_or_else(|e| panic!("{e} on {}", self.socket.display()))
    }
}

/// One request on the control socket at `socket`, as a script would send it; its reply, or
/// why there is none (or why it was refused).
fn control_at(socket: &std::path::Path, request: Request) -> Result<Value, String> {
    let client = Client::new(socket.to_path_buf());
    let reply = tauri::async_runtime::block_on(client.send_line(&request.to_string()))
        .map_err(|e| format!("{request}: {e}"))?;
    match reply["ok"].as_bool() {
        Some(true) => Ok(reply),
        _ => Err(format!("{request}: {reply}")),
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
    assert_eq!(h.control(Request::Status)["paused"], true);
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
        outgoing: None,
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
    let status = h.control(Request::Status);
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
    assert_eq!(h.control(Request::Status)["paused"], true);
    h.wait_saved_pause(true);
    assert!(h.state().status().view().paused, "the check mark follows");

    // RESUME from a script shows in the window.
    h.control(Request::Resume);
    let data = h.invoke("load_settings", json!({})).unwrap();
    assert_eq!(data["settings"]["paused"], false, "{data}");

    // A restart (new settings) keeps the socket (the old server's clean-up does not remove the
    // new one's file) and the pause a script set.
    assert_eq!(h.control(Request::Pause)["paused"], true);
    h.wait_saved_pause(true);
    let mut settings = h.invoke("load_settings", json!({})).unwrap()["settings"].clone();
    assert_eq!(settings["paused"], true);
    settings["settle_delay"] = json!("3");
    h.invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert_eq!(
        h.control(Request::Status)["paused"],
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
            differs: Some(format!(
                "it runs with {}, this window's settings are {}",
                first.config_path.display(),
                second.config_path.display()
            )),
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
    assert_eq!(first.control(Request::Status)["paused"], true);
    assert!(second.state().status().view().paused);
    first.control(Request::Resume);
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

    // Paused again, from a script this time, just before the running one stops.
    first.control(Request::Pause);
    let paused =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            second.state().status().view().paused.then_some(())
        });
    assert!(
        paused.is_some(),
        "a PAUSE from a script shows in the front end"
    );

    // The running one stops: the front end starts Mailcall itself, on the same socket, and
    // keeps the switch the daemon had — whatever this tray's own data directory remembers
    // (here nothing: the daemon kept it in its own), as when the daemon's last save of it
    // lands after its socket closed.
    tauri::async_runtime::block_on(first.state().stop_service());
    let here = mailcall_e2e::poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        matches!(second.serving(), Serving::Here { .. }).then_some(())
    });
    assert!(here.is_some(), "no takeover: {:?}", second.serving());
    let status = control_at(&first.socket, Request::Status)
        .expect("the second tray answers on the socket now");
    assert_eq!(status["accounts"], json!(["isp"]), "{status}");
    assert_eq!(
        status["paused"], true,
        "the daemon's pause outlives it: {status}"
    );
    assert!(!second.state().status().view().line.contains("via daemon"));
}

/// An ODMR account as the window's form sends it.
fn odmr_form(name: &str) -> Value {
    let mut form = account_form(name, 0, "odmr-pw");
    form["mode"] = json!("odmr");
    form["port"] = json!("");
    form
}

#[test]
fn an_odmr_account_is_saved_with_its_mode_and_port_and_runs_without_a_listener() {
    let h = harness();
    // The form's port placeholder comes from the contract (contract::default_ports).
    assert_eq!(crate::contract::default_ports()["odmr"]["starttls"], 366);

    // ODMR without a login: the core's rule, at the user name field; nothing saved.
    let mut no_login = odmr_form("isp");
    no_login["username"] = json!("");
    no_login["password"] = json!("");
    let e = h
        .invoke("save_account", json!({"account": no_login.clone()}))
        .unwrap_err();
    assert!(
        e["fields"]["username"]
            .as_str()
            .unwrap()
            .starts_with("ODMR (ATRN) requires authentication"),
        "{e}"
    );
    assert!(h.config().accounts.is_empty());
    // Test connection says the same, at the same field, without connecting.
    let e = h
        .invoke("test_connection", json!({"account": no_login}))
        .unwrap_err();
    assert!(e["fields"]["username"].is_string(), "{e}");

    // A fresh tray with no account listens (an ISP may deliver on its own); once the only
    // account is ODMR, it restarts without the listener.
    h.start_service();
    assert!(tauri::async_runtime::block_on(h.state().listen_addr()).is_some());
    let saved = h
        .invoke("save_account", json!({"account": odmr_form("isp")}))
        .unwrap();
    assert_eq!(
        tauri::async_runtime::block_on(h.state().listen_addr()),
        None,
        "the listener nobody needs is closed"
    );
    assert_eq!(h.control(Request::Status)["accounts"], json!(["isp"]));
    assert_eq!(
        (saved["mode"].clone(), saved["port"].clone()),
        (json!("odmr"), json!(366))
    );
    let stored = h.store.load("isp").unwrap();
    assert_eq!(stored.mode, mailcall_core::account::FetchMode::Odmr);
    // A window that sends no mode (an older one) keeps it.
    let mut edit = account_form("isp", 3366, "");
    edit["original"] = json!("isp");
    h.invoke("save_account", json!({"account": edit})).unwrap();
    let stored = h.store.load("isp").unwrap();
    assert_eq!(
        (stored.mode, stored.port),
        (mailcall_core::account::FetchMode::Odmr, 3366)
    );

    // Only ODMR accounts: Mailcall runs here with no listener, and says so.
    h.start_service();
    assert_eq!(
        tauri::async_runtime::block_on(h.state().listen_addr()),
        None
    );
    let data = h.invoke("load_settings", json!({})).unwrap();
    assert_eq!(data["listening"], Value::Null, "{data}");
    assert!(
        data["listener"]
            .as_str()
            .unwrap()
            .starts_with("No listener (ODMR accounts only)"),
        "{data}"
    );
    assert_eq!(data["accounts"][0]["mode"], "odmr");
    assert_eq!(h.control(Request::Status)["listen"], Value::Null);
    // The tray names the account with its mode.
    assert_eq!(h.state().status().account_words("isp"), "isp (ODMR)");

    // A tray in front of it says the same (the daemon's STATUS has no listener).
    let front = harness_sharing(&h);
    front.start_service();
    let data = front.invoke("load_settings", json!({})).unwrap();
    assert!(matches!(front.serving(), Serving::Daemon { .. }));
    assert_eq!(data["listening"], Value::Null, "{data}");
}

/// One message to the listener at `addr` for `rcpt` (as an ISP delivers), checking each reply.
fn deliver(addr: &str, rcpt: &str, subject: &str) {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let mut expect = |code: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            lines.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "wanted {code}, got {line:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                return;
            }
        }
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO isp.test".to_string(), "250"),
        ("MAIL FROM:<sender@outside.test>".into(), "250"),
        (format!("RCPT TO:<{rcpt}>"), "250"),
        ("DATA".into(), "354"),
    ] {
        out.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        expect(code);
    }
    out.write_all(
        format!("From: sender@outside.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@outside.test>\r\n\r\nHello.\r\n.\r\n")
            .as_bytes(),
    )
    .unwrap();
    expect("250");
    out.write_all(b"QUIT\r\n").unwrap();
}

/// A scripted LMTP server that takes every message, or refuses every recipient for good;
/// returns its port and a counter of the messages it took.
fn fake_lmtp(accept: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = taken.clone();
    std::thread::spawn(move || {
        // Bounded: a few connections (the runner reconnects per retry).
        for _ in 0..8 {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            let _ = out.write_all(b"220 lan.test LMTP\r\n");
            let mut line = String::new();
            let mut rcpts = 0;
            for _ in 0..200 {
                line.clear();
                if lines.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.trim_end().to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("LHLO") {
                    b"250-lan.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("MAIL") || cmd == "RSET" || cmd == "NOOP" {
                    rcpts = 0;
                    b"250 2.1.0 OK\r\n"
                } else if cmd.starts_with("RCPT") && accept {
                    rcpts += 1;
                    b"250 2.1.5 OK\r\n"
                } else if cmd.starts_with("RCPT") {
                    b"550 5.1.1 <alice@example.com> User doesn't exist: alice@example.com\r\n"
                } else if cmd == "DATA" {
                    let _ = out.write_all(b"354 OK\r\n");
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                            break;
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    for _ in 0..rcpts {
                        let _ = out.write_all(b"250 2.0.0 <alice@example.com> Saved\r\n");
                    }
                    continue;
                } else if cmd == "QUIT" {
                    let _ = out.write_all(b"221 2.0.0 Bye\r\n");
                    break;
                } else {
                    b"502 5.5.2 no\r\n"
                };
                if out.write_all(reply).is_err() {
                    break;
                }
            }
        }
    });
    (port, taken)
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Harness {
    /// An ETRN account for example.com (the listener accepts mail for it).
    fn with_etrn_account(&self) {
        self.invoke(
            "save_account",
            json!({"account": account_form("isp", closed_port(), "pw")}),
        )
        .unwrap();
    }

    fn listen(&self) -> String {
        tauri::async_runtime::block_on(self.state().listen_addr()).expect("a listener runs")
    }

    fn add_route(&self, recipient: &str, destination: &str) -> Value {
        self.invoke(
            "add_route",
            json!({"route": {"recipient": recipient, "destination": destination}}),
        )
        .unwrap_or_else(|e| panic!("add_route {recipient} {destination}: {e}"))
    }

    /// The queue, once `ready` says it is as wanted (20 s).
    fn wait_queue(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let got =
            mailcall_e2e::poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
                last = self.invoke("load_queue", json!({})).unwrap();
                ready(&last).then(|| last.clone())
            });
        got.unwrap_or_else(|| panic!("the queue never showed {what}: {last}"))
    }
}

fn maildir_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn routes_are_added_and_removed_in_the_delivery_tab_and_the_running_mailcall_uses_them_at_once() {
    let h = harness();
    h.with_etrn_account();
    h.start_service();
    let view = h.invoke("load_delivery", json!({})).unwrap();
    assert_eq!(view["routes"], json!([]));
    assert_eq!(view["settings"]["unknown_recipients"], "catch-all");
    assert!(
        view["everything_else"]
            .as_str()
            .unwrap()
            .contains("Maildir"),
        "{view}"
    );

    // Faults at their fields, nothing saved.
    let e = h
        .invoke(
            "add_route",
            json!({"route": {"recipient": "alice", "destination": "maildir:relative"}}),
        )
        .unwrap_err();
    assert!(e["fields"]["recipient"].is_string(), "{e}");
    assert!(e["fields"]["destination"].is_string(), "{e}");
    assert!(h.config().routes.is_empty());

    // A route to a Maildir folder: mail for alice goes there from now on, without a restart.
    let folder = h._dir.path().join("Maildir").join(".Alice");
    let saved = h.add_route(
        "alice@example.com",
        &format!("maildir:{}", folder.display()),
    );
    assert_eq!(
        saved["delivery"]["routes"][0]["recipient"],
        "alice@example.com"
    );
    assert_eq!(saved["delivery"]["routes"][0]["kind"], "maildir");
    assert_eq!(h.config().routes.len(), 1);
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    assert!(text.contains("[[routes]]"), "the CLI's table: {text}");
    let control_before = h.control(Request::Status);
    deliver(&h.listen(), "alice@example.com", "routed-1");
    let arrived =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            (maildir_files(&folder) == 1).then_some(())
        });
    assert!(arrived.is_some(), "the route was not used at once");
    assert_eq!(maildir_files(&h._dir.path().join("Maildir")), 0);
    assert_eq!(
        h.control(Request::Status)["listen"],
        control_before["listen"],
        "no restart"
    );

    // unknown-recipients reject needs routes: with one, it is taken; the last one cannot go.
    let mut settings = saved["delivery"]["settings"].clone();
    settings["unknown_recipients"] = json!("reject");
    let saved = h
        .invoke("save_delivery", json!({"settings": settings}))
        .unwrap();
    assert_eq!(saved["note"], Value::Null);
    assert!(
        saved["delivery"]["everything_else"]
            .as_str()
            .unwrap()
            .contains("refused with 550 5.1.1"),
        "{saved}"
    );
    let e = h
        .invoke("remove_route", json!({"recipient": "alice@example.com"}))
        .unwrap_err();
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("To fix: Settings → Delivery → Unknown recipients"),
        "{e}"
    );
    assert!(e["fields"]["unknown_recipients"].is_string(), "{e}");
    assert_eq!(h.config().routes.len(), 1, "the route stays");
    settings["unknown_recipients"] = json!("catch-all");
    h.invoke("save_delivery", json!({"settings": settings}))
        .unwrap();
    let saved = h
        .invoke("remove_route", json!({"recipient": "alice@example.com"}))
        .unwrap();
    assert_eq!(saved["delivery"]["routes"], json!([]));
    deliver(&h.listen(), "alice@example.com", "unrouted-2");
    let arrived =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            (maildir_files(&h._dir.path().join("Maildir")) == 1).then_some(())
        });
    assert!(
        arrived.is_some(),
        "without the route, mail goes into the Maildir again"
    );
    let e = h
        .invoke("remove_route", json!({"recipient": "alice@example.com"}))
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("no route"), "{e}");

    // New retry delays restart Mailcall here (the control socket answers again).
    let mut settings = h.invoke("load_delivery", json!({})).unwrap()["settings"].clone();
    settings["retry_delay"] = json!("5");
    settings["max_retry_delay"] = json!("2");
    let e = h
        .invoke("save_delivery", json!({"settings": settings.clone()}))
        .unwrap_err();
    assert!(e["fields"]["max_retry_delay"].is_string(), "{e}");
    settings["max_retry_delay"] = json!("600");
    let saved = h
        .invoke("save_delivery", json!({"settings": settings}))
        .unwrap();
    assert_eq!(saved["note"], Value::Null);
    assert_eq!(
        (h.config().retry_delay, h.config().max_retry_delay),
        (5, 600)
    );
    assert_eq!(h.control(Request::Status)["ok"], true);
}

#[test]
fn a_front_end_of_a_daemon_with_another_config_shows_the_daemons_history_and_queue() {
    let first = harness();
    first.with_etrn_account();
    first.start_service();
    // Its own config file (and data directory); the control socket is the daemon's.
    let front = harness_sharing(&first);
    front.start_service();
    assert!(matches!(front.serving(), Serving::Daemon { .. }));
    deliver(&first.listen(), "alice@example.com", "for-the-daemon");
    let shown =
        mailcall_e2e::poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let records = front.invoke("history", json!({})).unwrap();
            (!records.as_array().unwrap().is_empty()).then_some(records)
        })
        .expect("the daemon's record in the front end's History");
    assert_eq!(shown, first.invoke("history", json!({})).unwrap());
    assert!(
        !front.config().history().unwrap().path().exists(),
        "nothing was written where the front end's own config points"
    );
    let queue = front.invoke("load_queue", json!({})).unwrap();
    assert!(
        queue["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("The running Mailcall daemon")),
        "{queue}"
    );
}

#[test]
fn a_front_end_adds_routes_the_daemon_uses_and_is_told_that_retry_delays_wait_for_its_restart() {
    let first = harness();
    first.with_etrn_account();
    first.start_service();
    let front = harness_front_end(&first);
    front.start_service();
    assert!(matches!(front.serving(), Serving::Daemon { .. }));
    let folder = first._dir.path().join("Maildir").join(".Bob");
    front.add_route("bob@example.com", &format!("maildir:{}", folder.display()));
    deliver(&first.listen(), "bob@example.com", "via-front-end");
    let arrived =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            (maildir_files(&folder) == 1).then_some(())
        });
    assert!(
        arrived.is_some(),
        "the daemon did not take the route (RELOAD)"
    );
    let mut settings = front.invoke("load_delivery", json!({})).unwrap()["settings"].clone();
    settings["retry_delay"] = json!("30");
    let saved = front
        .invoke("save_delivery", json!({"settings": settings}))
        .unwrap();
    let note = saved["note"].as_str().unwrap();
    assert!(
        note.starts_with("The running Mailcall daemon") && note.contains("once it restarts"),
        "{saved}"
    );
    assert!(
        matches!(front.serving(), Serving::Daemon { .. }),
        "not restarted"
    );
}

#[test]
fn mail_for_a_lan_server_waits_in_the_queue_and_is_retried_bounced_or_deleted_here_and_through_a_front_end(
) {
    let h = harness();
    h.with_etrn_account();
    // Long delays: only Retry now hands the mail on again.
    let mut config = h.config();
    config.set(ConfigKey::RetryDelay, "600").unwrap();
    config.save(&h.config_path).unwrap();
    h.start_service();
    let down = closed_port();
    h.add_route("alice@example.com", &format!("lmtp:127.0.0.1:{down}"));
    deliver(&h.listen(), "alice@example.com", "waits");
    let q = h.wait_queue("one waiting message with a failed attempt", |q| {
        q["waiting"] == 1 && q["messages"][0]["recipients"][0]["attempts"] == 1
    });
    let m = &q["messages"][0];
    let r = &m["recipients"][0];
    assert_eq!(m["subject"], "waits");
    assert_eq!(r["address"], "alice@example.com");
    assert_eq!(r["destination"], format!("lmtp:127.0.0.1:{down}"));
    assert_eq!(r["state"], "waiting");
    assert!(r["next_attempt"].is_string(), "{q}");
    assert!(!r["reply"].as_str().unwrap_or_default().is_empty(), "{q}");
    assert_eq!(q["note"], Value::Null);
    // The tray: waiting mail is no error; the tooltip and the menu's queue item count it.
    let counted =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let v = h.state().status().view();
            (v.queued == 1).then_some(v)
        });
    let view = counted.expect("QueueChanged reached the tray");
    assert_ne!(view.state, IconState::Error, "{view:?}");
    assert!(
        view.tooltip
            .ends_with("; 1 waiting for the LAN mail server"),
        "{}",
        view.tooltip
    );
    assert_eq!(
        view.queue_line.as_deref(),
        Some("1 waiting for the LAN mail server")
    );

    // The server comes (it refuses alice): Retry now hands it over, and it is held as refused.
    let id = m["id"].as_str().unwrap().to_string();
    let (refusing, _) = fake_lmtp(false);
    h.add_route("alice@example.com", &format!("lmtp:127.0.0.1:{refusing}"));
    // The queued copy keeps the target it was routed to: a new message goes to the new server.
    deliver(&h.listen(), "alice@example.com", "refused");
    let q = h.wait_queue("the refused message", |q| q["refused"] == 1);
    let refused = q["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "refused")
        .unwrap()
        .clone();
    assert_eq!(refused["recipients"][0]["state"], "refused");
    assert!(
        refused["recipients"][0]["reply"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1"),
        "{q}"
    );
    let refused_view =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let v = h.state().status().view();
            (v.refused == 1).then_some(v)
        })
        .expect("the tray counts the refused recipient");
    assert_eq!(
        refused_view.state,
        IconState::Error,
        "refused mail needs the user"
    );

    // Bounce the refused one: a delivery report goes into the Maildir.
    let said = h
        .invoke(
            "queue_action",
            json!({"action": "bounce", "ids": [refused["id"]]}),
        )
        .unwrap();
    assert!(
        said.as_str().unwrap().starts_with(
            "Bounced: 1 message(s), 1 recipient(s). The delivery report is in the Maildir"
        ),
        "{said}"
    );
    assert_eq!(maildir_files(&h._dir.path().join("Maildir")), 1, "the DSN");
    // Nothing chosen: nothing done.
    let e = h
        .invoke("queue_action", json!({"action": "delete", "ids": []}))
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("Choose"), "{e}");

    // Retry now through a front end: the daemon hands it on (again to the closed port).
    let front = harness_front_end(&h);
    front.start_service();
    let q = front.invoke("load_queue", json!({})).unwrap();
    assert_eq!(q["messages"].as_array().unwrap().len(), 1, "{q}");
    assert!(
        q["note"]
            .as_str()
            .unwrap()
            .starts_with("The running Mailcall daemon"),
        "{q}"
    );
    let said = front
        .invoke("queue_action", json!({"action": "retry", "ids": [id]}))
        .unwrap();
    assert_eq!(said, "Handing on now: 1 message(s), 1 recipient(s).");
    front.wait_queue("the second attempt", |q| {
        q["messages"][0]["recipients"][0]["attempts"] == 2
    });
    // Delete through the front end, with "all": the queue is empty here and there.
    let said = front
        .invoke(
            "queue_action",
            json!({"action": "delete", "ids": [], "all": true}),
        )
        .unwrap();
    assert_eq!(said, "Deleted: 1 message(s), 1 recipient(s).");
    let q = h.wait_queue("an empty queue", |q| q["messages"] == json!([]));
    assert_eq!(
        (q["waiting"].clone(), q["refused"].clone()),
        (json!(0), json!(0))
    );
}

#[test]
fn a_lan_server_that_takes_the_mail_shows_as_a_hand_over_in_history() {
    let h = harness();
    h.with_etrn_account();
    h.start_service();
    let (port, taken) = fake_lmtp(true);
    h.add_route("alice@example.com", &format!("lmtp:127.0.0.1:{port}"));
    deliver(&h.listen(), "alice@example.com", "handed");
    let record =
        mailcall_e2e::poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let records = h.invoke("history", json!({})).unwrap();
            records
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["kind"] == "handover")
                .cloned()
        })
        .expect("a hand-over record in the history");
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(record["label"], "hand-over");
    assert_eq!(record["result"], "OK");
    assert_eq!(record["trigger"], "queue");
    let ho = &record["handovers"][0];
    assert_eq!(ho["target"], format!("lmtp:127.0.0.1:{port}"));
    assert_eq!(ho["subject"], "handed");
    assert_eq!(ho["recipients"][0]["address"], "alice@example.com");
    assert_eq!(ho["recipients"][0]["outcome"]["kind"], "delivered");
    assert!(
        record["headline"]
            .as_str()
            .unwrap()
            .starts_with("handed 1 recipient(s) to lmtp:"),
        "{record}"
    );
    // The delivery itself (outside a fetch) says where the copy went.
    let records = h.invoke("history", json!({})).unwrap();
    let delivery = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "delivery")
        .expect("the ISP's delivery");
    assert_eq!(
        delivery["messages"][0]["copies"][0]["queued"], true,
        "{delivery}"
    );
}

#[test]
fn history_explains_an_odmr_domain_in_atrn_words_and_names_its_mode() {
    use mailcall_core::history::{EndReason, RecordKind, SessionRecord, Trigger};
    use mailcall_core::report::{DomainOutcome, DomainReport};
    let mut r = SessionRecord::new(
        RecordKind::Fetch,
        Trigger::Window,
        chrono::Utc::now(),
        EndReason::DeliveriesEnded,
    );
    r.domains = vec![DomainReport {
        account: "isp".into(),
        mode: mailcall_core::account::FetchMode::Odmr,
        domain: "alpha.test".into(),
        code: Some(250),
        text: "ODMR provider turning line around".into(),
        outcome: DomainOutcome::Started { expected: None },
        attempts: 1,
        messages: 2,
    }];
    let entry = crate::commands::HistoryEntry::of(r);
    assert_eq!(
        entry.explanations,
        ["the ISP turned the line around to deliver"]
    );
    assert!(
        entry.headline.ends_with("ended: odmr deliveries ended"),
        "{}",
        entry.headline
    );
    assert_eq!((entry.label.as_str(), entry.result), ("window", "OK"));
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["domains"][0]["mode"], "odmr");
}

#[test]
fn one_domain_refused_and_one_fetched_is_a_partial_success_with_the_fix_for_the_refused_one() {
    use mailcall_core::history::{EndReason, RecordKind, SessionRecord, Trigger};
    use mailcall_core::report::{DomainOutcome, DomainReport};
    let mut r = SessionRecord::new(
        RecordKind::Fetch,
        Trigger::Window,
        chrono::Utc::now(),
        EndReason::Idle,
    );
    let domain = |name: &str, code, outcome| DomainReport {
        account: "isp".into(),
        mode: mailcall_core::account::FetchMode::Etrn,
        domain: name.into(),
        code: Some(code),
        text: "reply".into(),
        outcome,
        attempts: 1,
        messages: 0,
    };
    r.domains = vec![
        domain(
            "example.com",
            250,
            DomainOutcome::Started { expected: None },
        ),
        domain("unknown.test", 459, DomainOutcome::NotAllowed),
    ];
    let entry = crate::commands::HistoryEntry::of(r);
    assert_eq!(entry.result, "partly OK");
    assert!(!entry.ok);
    assert_eq!(entry.accepted, [true, false]);
    assert_eq!(entry.problems.len(), 1, "{:?}", entry.problems);
    assert!(
        entry.problems[0].starts_with("unknown.test (isp): the ISP does not hold mail for")
            && entry.problems[0].ends_with("To fix: Settings → Accounts → isp → Domains"),
        "{:?}",
        entry.problems
    );
}

/// The window process's commands run in the tray (`window_link::dispatch`): each answers as
/// Tauri's own IPC answered the window when it lived in the tray — values, a form's per-field
/// errors, a missing argument — and every command the window may call is known there.
#[test]
fn the_window_process_gets_from_the_tray_what_the_window_got_in_process() {
    let h = harness();
    let app = h.window.app_handle().clone();
    let call = |cmd: &str, args: Value| {
        tauri::async_runtime::block_on(crate::window_link::dispatch(&app, cmd, args))
    };
    let saved = call(
        "save_account",
        json!({"account": account_form("isp", 2525, "hunter2")}),
    )
    .unwrap();
    assert_eq!(saved["has_password"], true);
    let over_link = call("load_settings", json!({})).unwrap();
    let in_process = h.invoke("load_settings", json!({})).unwrap();
    assert_eq!(over_link["accounts"], in_process["accounts"]);
    assert_eq!(over_link["settings"], in_process["settings"]);
    assert_eq!(over_link["accounts"][0]["name"], "isp");

    let mut bad = account_form("my isp", 0, "");
    bad["domains"] = json!([]);
    let args = json!({"account": bad});
    let over_link = call("save_account", args.clone()).unwrap_err();
    assert_eq!(over_link, h.invoke("save_account", args).unwrap_err());
    assert!(over_link["fields"]["port"].is_string(), "{over_link}");

    let missing = call("remove_route", json!({})).unwrap_err();
    assert!(
        missing.as_str().unwrap().contains("`recipient`"),
        "{missing}"
    );
    let unknown = call("format_disk", json!({})).unwrap_err();
    assert_eq!(unknown, "command format_disk not found");
    // Every command the window may call is one the tray runs: none is "not found".
    for cmd in crate::contract::COMMANDS {
        if *cmd == "fetch_now" {
            continue; // it would fetch; the GUI test's Fetch now goes through the link
        }
        // Without their arguments the others stop at reading them, or only read.
        let answer = call(cmd, json!({}));
        assert!(
            answer
                .as_ref()
                .err()
                .and_then(Value::as_str)
                .is_none_or(|e| !e.contains("not found")),
            "{cmd}: {answer:?}"
        );
    }
}
