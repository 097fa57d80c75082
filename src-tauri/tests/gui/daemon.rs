//! Tray and daemon together (issue 9): with `mailcall-cli daemon` (the real binary) already
//! serving the listener and the control socket for the same config, the tray comes up as its
//! front end — Fetch now in the tray menu makes the daemon fetch (recorded as the tray's), the
//! daemon's events become the tray's notifications, Pause in the menu pauses the daemon — and
//! when the daemon stops, the tray runs Mailcall itself, with the same remembered pause switch.
//! The desktop's tray starts only after the app (a panel that comes up late): the app runs
//! without it, and its icon appears when the tray does.

use std::time::Duration;

use mailcall_core::control::Request;
use mailcall_e2e::{
    free_port, poll_until, IspOptions, KeyringEnv, Maildir, PostfixIsp, RunningCli,
};
use serde_json::json;

use crate::sni::Sni;
use crate::{
    control, fetch_from_tray_menu, history, one_desktop_at_a_time, open_session,
    pause_from_tray_menu, shared_config, start_desktop, tray_tooltip, wait, wait_pause_box,
    wait_text,
};

#[test]
fn tray_is_a_front_end_to_a_running_daemon() {
    let _one = one_desktop_at_a_time();
    let keyring = KeyringEnv::new();
    let listener_port = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.com"], listener_port));
    isp.queue(
        "news@sender.test",
        "bob@example.com",
        "Fetched by the daemon",
        "<gui-daemon-1@sender.test>",
        "The daemon asked, the tray showed it.",
    );
    isp.wait_deferred(1, Duration::from_secs(30));

    // One config for both: the CLI's account in the keyring, the daemon started from it.
    let (cli, maildir_path, data_dir) = shared_config(&keyring, listener_port, &isp);
    let daemon = RunningCli::spawn(&keyring, &cli, &["daemon"], &[("MAILCALL_LOG", "info")]);
    let running = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        control(&keyring, Request::Status)
            .ok()
            .filter(|s| s["ok"] == true)
    });
    let status =
        running.unwrap_or_else(|| panic!("the daemon did not answer STATUS\n{}", daemon.output()));
    assert_eq!(
        status["listen"],
        format!("127.0.0.1:{listener_port}"),
        "{status}"
    );

    let (mut desktop, shots) = start_desktop(&keyring, cli.config_path(), false);

    // 1. The tray comes up as the daemon's front end: it says so, and binds nothing itself. No
    //    tray on the desktop yet: the app runs without its icon, which appears once one starts.
    let wd = open_session(&mut desktop, &keyring);
    wait_text(&wd, "#status-line", "via daemon", 30);
    let sni = Sni::connect(&keyring);
    assert_eq!(sni.registered(), [], "no StatusNotifierWatcher runs yet");
    desktop.start_tray(&keyring);
    let tooltip = tray_tooltip(&sni);
    assert!(
        tooltip.ends_with("(using the running daemon)"),
        "tooltip: {tooltip:?}"
    );
    wd.click("#tab-settings").expect("Settings tab");
    let socket = keyring.runtime_dir().join("mailcall").join("control.sock");
    let note = wait_text(
        &wd,
        "#control-note",
        "Using the running Mailcall daemon at",
        20,
    );
    assert!(note.contains(&socket.display().to_string()), "{note}");
    let app_log =
        || std::fs::read_to_string(desktop.logs().join("mailcall.log")).unwrap_or_default();
    let log = app_log();
    assert!(
        !log.contains("cannot listen") && !log.contains("in use"),
        "the tray tried to bind what the daemon owns:\n{log}"
    );
    wd.execute(
        "document.querySelector('#control-note').scrollIntoView({block: 'end'});",
        json!([]),
    )
    .expect("scrolling to the note");
    desktop.screenshot(&keyring, &shots.join("settings-daemon.png"));

    // 2. Fetch now in the tray menu: the daemon fetches, recorded as the tray's fetch.
    fetch_from_tray_menu(&desktop, &keyring, &shots);
    let maildir = Maildir::new(&maildir_path);
    let arrived = poll_until(Duration::from_secs(90), Duration::from_millis(250), || {
        (!maildir.new_messages().is_empty()).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the daemon did not fetch after the tray's Fetch now; queue: {:?}\n{}\ntray log:\n{}",
        isp.queue_entries(),
        daemon.output(),
        app_log()
    );
    assert_eq!(
        maildir.message_ids(),
        ["<gui-daemon-1@sender.test>".to_string()]
    );
    let history_file = data_dir.join("history.jsonl");
    let recorded = poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        history(&history_file).into_iter().find(|r| {
            r["kind"] == "fetch" && r["messages"].as_array().is_some_and(|m| !m.is_empty())
        })
    });
    let record = recorded.unwrap_or_else(|| {
        panic!(
            "no fetch in {}\n{}",
            history_file.display(),
            daemon.output()
        )
    });
    assert_eq!(
        record["trigger"], "tray",
        "the daemon records the tray's Fetch now as the tray's: {record}"
    );

    // 3. The daemon's events are the tray's: a notification for the new mail.
    let notes = poll_until(Duration::from_secs(20), Duration::from_millis(250), || {
        let h = desktop.notification_history(&keyring);
        h.contains("Fetched by the daemon").then_some(h)
    });
    assert!(
        notes.is_some(),
        "dunst has no notification for the daemon's new mail: {}",
        desktop.notification_history(&keyring)
    );
    wd.click("#tab-history").expect("History tab");
    let shown = wait_text(&wd, "#history-list", "Fetched by the daemon", 30);
    assert!(shown.contains("tray"), "{shown}");

    // 4. Pause in the tray menu pauses the daemon.
    pause_from_tray_menu(&desktop, &keyring, &shots, None);
    let paused = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let out = cli.run(&["status"]);
        out.stdout
            .contains("automatic fetching: paused")
            .then_some(out)
    });
    assert!(
        paused.is_some(),
        "Pause in the tray menu did not pause the daemon: {}",
        cli.run(&["status"])
    );
    // The box follows the daemon's switch without a reload (the status event).
    wd.click("#tab-settings").expect("Settings tab");
    wait_pause_box(&wd);

    // 5. The daemon stops: the tray says so and runs Mailcall itself, still paused (one switch).
    let term = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .expect("running kill");
    assert!(term.success(), "kill -TERM failed");
    let mut daemon = daemon;
    let exited = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        daemon.exited()
    });
    assert!(
        exited.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly\n{}",
        daemon.output()
    );
    let line = wait(60, "the tray to run Mailcall itself", || {
        let line = wd.text("#status-line")?;
        Ok((!line.contains("via daemon") && !line.starts_with("Not running")).then_some(line))
    });
    let status = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        control(&keyring, Request::Status)
            .ok()
            .filter(|s| s["ok"] == true)
    })
    .unwrap_or_else(|| {
        panic!(
            "nobody answers on the control socket after the takeover ({line})\n{}",
            app_log()
        )
    });
    assert_eq!(
        status["paused"],
        true,
        "the daemon's pause is the tray's: {status}\ndaemon:\n{}\ntray log:\n{}",
        daemon.output(),
        app_log()
    );
    wait_text(&wd, "#control-note", "Mailcall runs in this tray", 20);
    assert_eq!(
        status["listen"],
        format!("127.0.0.1:{listener_port}"),
        "{status}"
    );
    let told = poll_until(Duration::from_secs(20), Duration::from_millis(250), || {
        let h = desktop.notification_history(&keyring);
        h.contains("The Mailcall daemon stopped").then_some(())
    });
    assert!(
        told.is_some(),
        "no notification that the daemon went away: {}",
        desktop.notification_history(&keyring)
    );
    wd.quit().expect("ending the session");
}
