//! The window's contract with Rust, in one place: the commands it may call, the events it hears,
//! the fields of the forms it sends and the ports an ISP usually offers. The window does not
//! spell them itself: `ui/js/contract.js` is generated from here ([`javascript`]) and committed,
//! and the page's scripts import their names from it. A unit test fails while the committed file
//! differs; `MAILCALL_WRITE_CONTRACT=1 cargo test -p mailcall contract` writes it anew.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mailcall_core::account::outgoing::default_port;
use mailcall_core::account::{FetchMode, Security};
use serde_aux::serde_introspection::serde_introspect;
use tauri::Runtime;

use crate::forms::{AccountForm, DeliveryForm, DomainRow, RouteForm, SettingsForm};

/// Declares [`COMMANDS`] and [`handler`] from the one list in `window_commands.in` (build.rs
/// reads the same list), so the names the window calls are the ones Tauri registers.
macro_rules! window_commands {
    ($($name:ident),* $(,)?) => {
        /// Every command the window may call, by name, as [`handler`] registers them.
        pub const COMMANDS: &[&str] = &[$(stringify!($name)),*];

        /// The handler of [`COMMANDS`] (each a function of [`crate::commands`]), for
        /// `Builder::invoke_handler`.
        pub fn handler<R: Runtime>(
        ) -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
            tauri::generate_handler![$(crate::commands::$name),*]
        }
    };
}

include!("window_commands.in");

/// An event Mailcall sends the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEvent {
    /// The status changed (payload: [`crate::status::StatusView`]).
    Status,
    /// A fetch session has been recorded in the history.
    History,
    /// Mailcall's queue for LAN servers changed.
    Queue,
    /// Show one of the window's tabs (payload: the tab's name).
    ShowTab,
    /// Something the tray could not do for the user (payload: the text for the banner).
    Notice,
}

impl WindowEvent {
    /// Every event, in the order contract.js lists them.
    pub const ALL: [WindowEvent; 5] = [
        WindowEvent::Status,
        WindowEvent::History,
        WindowEvent::Queue,
        WindowEvent::ShowTab,
        WindowEvent::Notice,
    ];

    /// The event's name, as emitted and listened to.
    pub const fn name(self) -> &'static str {
        match self {
            WindowEvent::Status => "mailcall://status",
            WindowEvent::History => "mailcall://history",
            WindowEvent::Queue => "mailcall://queue",
            WindowEvent::ShowTab => "mailcall://show-tab",
            WindowEvent::Notice => "mailcall://notice",
        }
    }
}

/// Each form the window sends, by the name contract.js gives it, with its fields as the form's
/// type reads them (which are also the keys of [`crate::forms::UiError::fields`]).
pub fn form_fields() -> [(&'static str, &'static [&'static str]); 5] {
    [
        ("ACCOUNT", serde_introspect::<AccountForm>()),
        ("DOMAIN_ROW", serde_introspect::<DomainRow>()),
        ("SETTINGS", serde_introspect::<SettingsForm>()),
        ("DELIVERY", serde_introspect::<DeliveryForm>()),
        ("ROUTE", serde_introspect::<RouteForm>()),
    ]
}

/// The port an ISP usually offers, by mode and security (`odmr` → `starttls` → 366), from the
/// core's rule: the account form's placeholder follows it.
pub fn default_ports() -> BTreeMap<&'static str, BTreeMap<String, u16>> {
    [FetchMode::Etrn, FetchMode::Odmr]
        .into_iter()
        .map(|mode| {
            let ports = [Security::None, Security::Starttls, Security::Tls]
                .into_iter()
                .map(|security| (security.to_string(), mode.default_port(security)))
                .collect();
            (mode.as_str(), ports)
        })
        .collect()
}

/// The port an outgoing (submission) server usually has, by security (`tls` → 465), from the
/// core's rule: the outgoing port's placeholder follows it.
pub fn smarthost_ports() -> BTreeMap<String, u16> {
    [Security::None, Security::Starttls, Security::Tls]
        .into_iter()
        .map(|security| (security.to_string(), default_port(security)))
        .collect()
}

/// A name as a JavaScript constant's: `load_settings`, `show-tab` → `LOAD_SETTINGS`, `SHOW_TAB`.
fn constant(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// A JavaScript string literal.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `export const NAME = Object.freeze({ ... });` of `entries` (already-rendered values).
fn frozen(out: &mut String, indent: &str, entries: impl IntoIterator<Item = (String, String)>) {
    out.push_str("Object.freeze({\n");
    for (name, value) in entries {
        let _ = writeln!(out, "{indent}  {name}: {value},");
    }
    let _ = write!(out, "{indent}}})");
}

/// `ui/js/contract.js` as Rust has it.
pub fn javascript() -> String {
    let mut out = String::from(
        "// The window's contract with Rust: the commands it may call, the events it hears, the fields of\n\
         // the forms it sends and the ports an ISP usually offers. Generated from src-tauri/src/contract.rs:\n\
         // do not edit; `MAILCALL_WRITE_CONTRACT=1 cargo test -p mailcall contract` writes it anew.\n",
    );
    out.push_str("\n// The commands (src-tauri/src/commands.rs).\nexport const COMMANDS = ");
    frozen(
        &mut out,
        "",
        COMMANDS.iter().map(|c| (constant(c), quoted(c))),
    );
    out.push_str(";\n\n// The events Mailcall sends the window.\nexport const EVENTS = ");
    frozen(
        &mut out,
        "",
        WindowEvent::ALL.iter().map(|e| {
            let name = e.name();
            (
                constant(name.trim_start_matches("mailcall://")),
                quoted(name),
            )
        }),
    );
    out.push_str(
        ";\n\n// The fields of each form the window sends; a refused value comes back under its field.\nexport const FIELDS = ",
    );
    let forms = form_fields().map(|(form, fields)| {
        let mut object = String::new();
        frozen(
            &mut object,
            "  ",
            fields.iter().map(|f| (constant(f), quoted(f))),
        );
        (form.to_string(), object)
    });
    frozen(&mut out, "", forms);
    out.push_str(
        ";\n\n// The port an ISP usually offers, by mode and security (the account form's placeholder).\nexport const DEFAULT_PORTS = ",
    );
    let ports = default_ports().into_iter().map(|(mode, ports)| {
        let by_security = ports
            .iter()
            .map(|(security, port)| format!("{security}: {port}"))
            .collect::<Vec<_>>()
            .join(", ");
        (
            mode.to_string(),
            format!("Object.freeze({{ {by_security} }})"),
        )
    });
    frozen(&mut out, "", ports);
    out.push_str(
        ";\n\n// The port an outgoing (submission) server usually has, by security (its port's placeholder).\nexport const SMARTHOST_PORTS = ",
    );
    let ports = smarthost_ports()
        .into_iter()
        .map(|(security, port)| format!("{security}: {port}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "Object.freeze({{ {ports} }});");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;

    fn project(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(project(path)).unwrap()
    }

    #[test]
    fn the_committed_contract_is_what_rust_generates() {
        let path = project("ui/js/contract.js");
        let generated = javascript();
        if std::env::var_os("MAILCALL_WRITE_CONTRACT").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "ui/js/contract.js is not what Rust generates; write it anew with \
             `MAILCALL_WRITE_CONTRACT=1 cargo test -p mailcall contract` and commit it.\n\
             --- generated ---\n{generated}"
        );
    }

    #[test]
    fn the_capability_grants_the_commands_and_listening_nothing_else() {
        let capability: serde_json::Value =
            serde_json::from_str(&read("src-tauri/capabilities/settings.json")).unwrap();
        let granted: BTreeSet<String> = capability["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let mut wanted: BTreeSet<String> = COMMANDS
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-")))
            .collect();
        wanted.extend([
            "core:event:allow-listen".into(),
            "core:event:allow-unlisten".into(),
        ]);
        assert_eq!(granted, wanted);
    }

    #[test]
    fn the_ports_are_the_cores() {
        let ports = default_ports();
        assert_eq!(ports["odmr"]["starttls"], 366);
        assert_eq!(ports["etrn"]["tls"], 465);
        assert_eq!(ports["etrn"]["none"], 25);
        let smarthost = smarthost_ports();
        assert_eq!((smarthost["starttls"], smarthost["tls"]), (587, 465));
    }

    /// The names after `prefix` in `text`, dots included (`COMMANDS.` → `LOAD_SETTINGS`,
    /// `FIELDS.` → `ACCOUNT.DOMAINS`).
    fn uses<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.match_indices(prefix)
            .map(|(at, _)| {
                let rest = &text[at + prefix.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    #[test]
    fn the_window_calls_and_hears_only_names_in_the_contract_and_spells_none() {
        let commands: BTreeSet<String> = COMMANDS.iter().map(|c| constant(c)).collect();
        let events: BTreeSet<String> = WindowEvent::ALL
            .iter()
            .map(|e| constant(e.name().trim_start_matches("mailcall://")))
            .collect();
        let forms: BTreeMap<&str, BTreeSet<String>> = form_fields()
            .into_iter()
            .map(|(form, fields)| (form, fields.iter().map(|f| constant(f)).collect()))
            .collect();
        let mut called = BTreeSet::new();
        let mut heard = BTreeSet::new();
        let dir = project("ui/js");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "contract.js" || !name.ends_with(".js") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for spelled in ["call(\"", "on(\"", "mailcall://"] {
                assert!(
                    !text.contains(spelled),
                    "{name} spells a command or event ({spelled}): import it from contract.js"
                );
            }
            for c in uses(&text, "COMMANDS.") {
                assert!(
                    commands.contains(c),
                    "{name}: no command {c} in the contract"
                );
                called.insert(c.to_string());
            }
            for e in uses(&text, "EVENTS.") {
                assert!(events.contains(e), "{name}: no event {e} in the contract");
                heard.insert(e.to_string());
            }
            for f in uses(&text, "FIELDS.") {
                let (form, field) = f.split_once('.').unwrap_or((f, ""));
                let Some(known) = forms.get(form) else {
                    panic!("{name}: no form {form} in the contract");
                };
                assert!(
                    field.is_empty() || known.contains(field),
                    "{name}: no field {field} in the form {form}"
                );
            }
        }
        assert_eq!(called, commands, "every command is the window's to call");
        assert_eq!(heard, events, "every event is one the window hears");
    }

    #[test]
    fn the_fields_hints_and_problems_point_at_are_fields_of_their_forms() {
        use crate::forms::{ACCOUNT_FIELDS, DELIVERY_FIELDS, SETTINGS_FIELDS};
        let [account, _, settings, delivery, _] = form_fields().map(|(_, fields)| fields);
        for (_, name, _) in ACCOUNT_FIELDS {
            assert!(
                account.contains(name),
                "{name} is no field of the account form"
            );
        }
        for (key, name, _) in SETTINGS_FIELDS {
            assert!(
                settings.contains(name),
                "{name} is no field of the settings form"
            );
            assert!(key.is_settable(), "{key}");
        }
        for (key, name, _) in DELIVERY_FIELDS {
            assert!(
                delivery.contains(name),
                "{name} is no field of the delivery form"
            );
            assert!(key.is_settable(), "{key}");
        }
    }

    /// The `name="…"` and `data-for="…"` attributes inside `<form id="{id}"…>…</form>`.
    fn form_names(page: &str, id: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let start = page
            .find(&format!("<form id=\"{id}\""))
            .unwrap_or_else(|| panic!("no form {id} in the page"));
        let form = &page[start..start + page[start..].find("</form>").unwrap()];
        let attribute = |name: &str| -> BTreeSet<String> {
            form.split(&format!(" {name}=\""))
                .skip(1)
                .map(|rest| rest[..rest.find('"').unwrap()].to_string())
                .collect()
        };
        (attribute("name"), attribute("data-for"))
    }

    #[test]
    fn the_pages_forms_carry_the_fields_rust_reads() {
        let page = read("ui/index.html");
        let fields: BTreeMap<&str, BTreeSet<String>> = form_fields()
            .into_iter()
            .map(|(form, fields)| (form, fields.iter().map(|f| f.to_string()).collect()))
            .collect();
        // The window fills these itself: the name an account had, and its domain rows.
        let by_script = ["original", "domains"];
        for (id, form) in [
            ("account-form", "ACCOUNT"),
            ("settings-form", "SETTINGS"),
            ("delivery-form", "DELIVERY"),
            ("route-form", "ROUTE"),
        ] {
            let (inputs, messages) = form_names(&page, id);
            let expected: BTreeSet<String> = fields[form]
                .iter()
                .filter(|f| !(form == "ACCOUNT" && by_script.contains(&f.as_str())))
                .cloned()
                .collect();
            assert_eq!(inputs, expected, "the inputs of {id}");
            for message in &messages {
                assert!(
                    fields[form].contains(message),
                    "{id}: a message for {message}, which is no field of it"
                );
            }
        }
    }
}
