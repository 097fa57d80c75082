//! The package in a normal user's hands: an ETRN fetch with the installed CLI on port 25 as
//! `nobody`, then the daemon started by the package's unit under a real `systemd --user`.

use std::path::Path;
use std::time::Duration;

use mailcall_e2e::process::Finished;
use mailcall_e2e::{Maildir, Message, PostfixIsp};

use crate::session::Session;
use crate::user_manager::UserManager;
use crate::{shown, CLI, LISTEN_HOST, UNIT};

/// `mailcall-cli` from /usr/bin, run by `nobody`, listens on port 25 (the capability) and
/// fetches a held message with ETRN from a Postfix ISP that delivers to port 25.
pub fn fetch_on_port_25_as_the_user(session: &mut Session, isp: &PostfixIsp, maildir: &Maildir) {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .is_some_and(|p| p <= 25)
    {
        eprintln!("note: net.ipv4.ip_unprivileged_port_start <= 25 here: port 25 would work without the capability too");
    }
    session.start_bus();
    session.start_keyring();
    let cli = |args: &[&str]| -> Finished {
        let out = session.run(CLI, args);
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{}\nISP maillog:\n{}",
            shown(
                &format!(
                    "(as {}) mailcall-cli {}",
                    session.user().name,
                    args.join(" ")
                ),
                &out
            ),
            isp.log()
        );
        out
    };
    let maildir_path = maildir.path().display().to_string();
    cli(&["config", "set", "hostname", "client.test"]);
    let listen = format!("{LISTEN_HOST}:25");
    cli(&["config", "set", "listen", &listen]);
    cli(&["config", "set", "maildir", &maildir_path]);
    // The daemon later fetches when asked, not by itself (a deterministic test).
    cli(&["config", "set", "fetch-at-start", "false"]);
    let port = isp.port().to_string();
    cli(&[
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--domain",
        "package.test",
    ]);

    let first = Message::numbered("package.test", 1);
    isp.queue_all(std::slice::from_ref(&first));
    isp.wait_deferred(1, Duration::from_secs(30));
    let out = cli(&["fetch", "--idle-timeout", "3", "--max-wait", "60"]);
    assert!(
        out.stdout.contains(&format!("listening on {listen}")),
        "the fetch should listen on port 25\n{}",
        shown("mailcall-cli fetch", &out)
    );
    assert_eq!(
        maildir.message_ids(),
        vec![first.message_id.clone()],
        "the held message must be in the Maildir\n{}\nISP maillog:\n{}",
        shown("mailcall-cli fetch", &out),
        isp.log()
    );
    isp.wait_queue_empty(Duration::from_secs(10));
    session.stop_bus();
}

/// The package's unit under a real user manager: `systemctl --user enable --now mailcall`
/// starts the daemon as the user on port 25, a fetch through it brings the next held message,
/// SIGHUP (reload) and a crash (Restart=on-failure) behave, and the journal holds its lines
/// with syslog priorities and nothing else (no timestamps, colours or `<N>` prefixes).
pub fn daemon_under_systemd_user(session: &mut Session, isp: &PostfixIsp, maildir: &Maildir) {
    let manager = match UserManager::start(session) {
        Ok(m) => m,
        Err(why) => panic!("systemd --user cannot run here: {why}"),
    };
    // The test's keyring, on the bus the manager's dbus.socket made.
    let bus = session.runtime_dir().join("bus");
    let bus_up =
        mailcall_e2e::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            bus.exists().then_some(())
        });
    assert!(
        bus_up.is_some(),
        "the user manager made no {} (dbus.socket, package dbus-user-session)\njournal:\n{}",
        bus.display(),
        manager.journal_text()
    );
    session.start_keyring();

    let second = Message::numbered("package.test", 2);
    isp.queue_all(std::slice::from_ref(&second));
    isp.wait_deferred(1, Duration::from_secs(30));

    let enable = manager.systemctl(&["enable", "--now", "mailcall.service"]);
    assert!(
        enable.status.is_some_and(|s| s.success()),
        "{}\njournal:\n{}",
        shown("systemctl --user enable --now mailcall.service", &enable),
        manager.journal_text()
    );
    let link = session
        .home()
        .join(".config/systemd/user/default.target.wants/mailcall.service");
    assert!(
        std::fs::read_link(&link).is_ok_and(|t| t == Path::new(UNIT)),
        "enable made no link {} -> {UNIT}",
        link.display()
    );
    let running = wait_until_running(session, &manager);
    let first_pid = manager.property("mailcall.service", "MainPID");
    assert!(
        running.contains(&format!("listening on: {LISTEN_HOST}:25")),
        "{running}"
    );

    let out = session.run(CLI, &["fetch", "--via-running"]);
    assert!(
        out.status.is_some_and(|s| s.success())
            && out.stdout.contains("asked the running Mailcall"),
        "{}\njournal:\n{}\nISP maillog:\n{}",
        shown("mailcall-cli fetch --via-running", &out),
        manager.journal_text(),
        isp.log()
    );
    let mut want = vec![
        Message::numbered("package.test", 1).message_id,
        second.message_id.clone(),
    ];
    want.sort();
    assert_eq!(
        maildir.message_ids(),
        want,
        "the daemon should have stored the second message\njournal:\n{}",
        manager.journal_text()
    );

    // ExecReload: SIGHUP reads the accounts again.
    let reload = manager.systemctl(&["reload", "mailcall.service"]);
    assert!(
        reload.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user reload", &reload)
    );
    wait_for_journal(&manager, "SIGHUP: reloaded the accounts");

    // Restart=on-failure: a crash (SIGKILL) brings it back after RestartSec.
    let kill = manager.systemctl(&["kill", "--signal=KILL", "mailcall.service"]);
    assert!(
        kill.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user kill", &kill)
    );
    let restarted =
        mailcall_e2e::poll_until(Duration::from_secs(40), Duration::from_millis(200), || {
            let pid = manager.property("mailcall.service", "MainPID");
            let state = manager.property("mailcall.service", "ActiveState");
            (state == "active" && pid != "0" && pid != first_pid).then_some(pid)
        });
    assert!(
        restarted.is_some(),
        "after SIGKILL the unit did not come back (Restart=on-failure): {}\njournal:\n{}",
        manager.systemctl(&["status", "mailcall.service"]).stdout,
        manager.journal_text()
    );
    assert_eq!(manager.property("mailcall.service", "NRestarts"), "1");
    wait_until_running(session, &manager);

    check_journal(session, &manager);

    let disable = manager.systemctl(&["disable", "--now", "mailcall.service"]);
    assert!(
        disable.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user disable --now", &disable)
    );
    assert_eq!(
        manager.property("mailcall.service", "ActiveState"),
        "inactive"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "disable left {}",
        link.display()
    );
    drop(manager);
    session.stop_bus();
}

/// Polls `mailcall-cli status` until it reports the running daemon; returns its output.
fn wait_until_running(session: &Session, manager: &UserManager) -> String {
    let mut last = String::new();
    let up = mailcall_e2e::poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let out = session.run(CLI, &["status"]);
        last = out.stdout.clone() + &out.stderr;
        out.stdout.contains("running: yes").then_some(out.stdout)
    });
    up.unwrap_or_else(|| {
        panic!(
            "the daemon started by the unit does not answer `mailcall-cli status` within 30 s: {last}\n{}\njournal:\n{}",
            manager.systemctl(&["status", "mailcall.service"]).stdout,
            manager.journal_text()
        )
    })
}

/// Waits until the daemon's journal has a line containing `needle`.
fn wait_for_journal(manager: &UserManager, needle: &str) {
    let found =
        mailcall_e2e::poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            daemon_entries(manager)
                .iter()
                .any(|e| text(e, "MESSAGE").contains(needle))
                .then_some(())
        });
    assert!(
        found.is_some(),
        "no journal line with {needle:?}\njournal:\n{}",
        manager.journal_text()
    );
}

fn text(e: &serde_json::Value, key: &str) -> String {
    e.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

/// The journal entries the daemon wrote (its stream: identifier mailcall-cli).
fn daemon_entries(manager: &UserManager) -> Vec<serde_json::Value> {
    manager
        .journal()
        .into_iter()
        .filter(|e| text(e, "SYSLOG_IDENTIFIER") == "mailcall-cli")
        .collect()
}

/// The daemon's lines reached journald as entries of the user unit with the right priorities,
/// and carry only the message.
fn check_journal(session: &Session, manager: &UserManager) {
    let entries = daemon_entries(manager);
    let all = manager.journal_text();
    assert!(
        !entries.is_empty(),
        "no journal entries from mailcall-cli\njournal:\n{all}"
    );
    let uid = session.user().uid.to_string();
    for e in &entries {
        let message = text(e, "MESSAGE");
        assert_eq!(text(e, "_UID"), uid, "an entry not from the user: {e}");
        assert_eq!(
            text(e, "_SYSTEMD_USER_UNIT"),
            "mailcall.service",
            "the entry is not attributed to the user unit: {e}"
        );
        let bare = !message.starts_with('<')
            && !message.contains('\u{1b}')
            && !message.starts_with(|c: char| c.is_ascii_digit())
            && !["ERROR", "WARN", "INFO", "DEBUG"]
                .iter()
                .any(|l| message.split_whitespace().next() == Some(l));
        assert!(
            bare,
            "a journal line with a prefix, timestamp or colour: {message:?}"
        );
    }
    let priority_of = |needle: &str| {
        entries
            .iter()
            .find(|e| text(e, "MESSAGE").contains(needle))
            .map(|e| text(e, "PRIORITY"))
            .unwrap_or_else(|| panic!("no journal line with {needle:?}\njournal:\n{all}"))
    };
    // info → 6 (the daemon's start line and its fetch).
    assert_eq!(priority_of("mailcall daemon running"), "6");
    assert_eq!(priority_of("fetch finished"), "6");
    assert_eq!(priority_of("SIGHUP: reloaded the accounts"), "6");
}
