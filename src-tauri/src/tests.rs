//! The window's commands on Tauri's mock runtime, through the real IPC path and capabilities,
//! with an in-memory account store and a config file in a temp dir.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use mailcall_core::config::Config;
use mailcall_core::keystore::{AccountStore, MemoryStore};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use crate::state::AppState;

struct Harness {
    _dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    store: Arc<MemoryStore>,
    _app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

fn harness() -> Harness {
    harness_with_label(crate::window::LABEL)
}

fn harness_with_label(label: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        maildir: Some(dir.path().join("Maildir")),
        ..Config::default()
    };
    config.save(&config_path).unwrap();
    let store = Arc::new(MemoryStore::default());
    let state = AppState::new(config_path.clone(), store.clone());
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
            .contains("ADDRESS:PORT"),
        "{e}"
    );
    assert!(e["fields"]["idle_timeout"].is_string(), "{e}");
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
    let prefs = crate::prefs::Prefs::load(&crate::prefs::prefs_path(&h.config_path));
    assert!(!prefs.notifications);
    assert!(prefs.paused);
    // The config stays readable by the CLI (no GUI keys in it).
    assert!(!std::fs::read_to_string(&h.config_path)
        .unwrap()
        .contains("notifications"));
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
    let addr = tauri::async_runtime::block_on(state.listen_addr()).unwrap();
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
