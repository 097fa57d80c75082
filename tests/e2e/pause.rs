//! "Pause automatic fetching" is one remembered switch (`state.toml` in the data directory),
//! whoever flips it: `mailcall-cli pause`/`resume` with or without a daemon, `PAUSE` on the
//! control socket, across daemon restarts; `mailcall-cli status` shows it, and exits 3 when
//! nothing runs. Against a real Postfix in a namespace with a pppd-style `ppp0`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mailcall_e2e::{poll_until, Message};

use crate::linkworld::{stay_down, LinkWorld, WorldOptions, DOMAIN, IDLE, SETTLE};
use crate::set_plain_account;

/// One request line on the control socket, the reply line back.
fn control(world: &LinkWorld, line: &str) -> serde_json::Value {
    let path = world.env.runtime_dir().join("mailcall/control.sock");
    let mut s =
        UnixStream::connect(&path).unwrap_or_else(|e| panic!("connecting {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{line}: reply {reply:?}: {e}"))
}

/// The switch as the data directory remembers it (`None`: no state file).
fn saved_paused(world: &LinkWorld) -> Option<bool> {
    let text = std::fs::read_to_string(world.data_dir.join("state.toml")).ok()?;
    Some(text.contains("paused = true"))
}

/// A link-up that must not fetch: up, then long enough that a fetch would have started (the
/// settle delay) and ended (the idle timeout), plus a margin. An absence can only be watched
/// for a while.
fn link_up_fetches_nothing(world: &LinkWorld, why: &str) {
    let before = world.records().len();
    let etrns = world.etrn_sessions();
    world.dial_in();
    std::thread::sleep(Duration::from_secs(SETTLE + IDLE + 2));
    assert_eq!(
        world.records().len(),
        before,
        "{why}: the link-up fetched\n{}",
        world.context()
    );
    assert_eq!(world.etrn_sessions(), etrns, "{why}\n{}", world.context());
}

#[test]
fn pause_is_one_switch_for_the_cli_the_socket_and_the_next_start() {
    let mail: Vec<Message> = (0..2).map(|n| Message::numbered(DOMAIN, n)).collect();
    let world = LinkWorld::new(WorldOptions::new(&mail));
    let cli = world.cli();
    set_plain_account(&cli, "isp", world.isp.port(), &[DOMAIN]);

    // 1. Nothing runs: `pause` sets the switch for the next start; `status` says so, exit 3.
    let out = cli.run(&["pause"]);
    out.assert_success()
        .assert_mentions("no Mailcall runs now; the next one starts paused");
    assert_eq!(saved_paused(&world), Some(true));
    let out = cli.run(&["status"]);
    out.assert_code(3)
        .assert_mentions("running: no")
        .assert_mentions("automatic fetching: paused at the next start");
    assert!(out.stderr.is_empty(), "not running is not an error\n{out}");

    // 2. The daemon starts paused: STATUS says so, and a link-up fetches nothing.
    let daemon = world.start_daemon();
    let out = cli.run(&["status"]);
    out.assert_success()
        .assert_mentions("running: yes")
        .assert_mentions("automatic fetching: paused")
        .assert_mentions("accounts: isp");
    assert_eq!(control(&world, "STATUS")["paused"], true);
    // A preference changed meanwhile applies from the next start, and the CLI says so.
    cli.run(&["config", "set", "idle-timeout", "2"])
        .assert_success()
        .assert_mentions("uses the new idle-timeout from its next start");
    link_up_fetches_nothing(&world, "started paused");

    // 3. `resume` reaches the running daemon and is remembered; the next link-up fetches.
    let out = cli.run(&["resume"]);
    out.assert_success()
        .assert_mentions("resumed in the running Mailcall");
    cli.run(&["status"])
        .assert_success()
        .assert_mentions("automatic fetching: on");
    assert_eq!(saved_paused(&world), Some(false));
    world.hang_up();
    stay_down();
    world.dial_in();
    let landed = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (world.maildir.new_messages().len() == mail.len()).then_some(())
    });
    assert!(
        landed.is_some(),
        "resumed: the link-up fetches\n{}",
        world.context()
    );
    world.wait_history("the link-up's record", Duration::from_secs(20), |r| {
        r.iter().any(|x| x["trigger"] == "network")
    });

    // 4. PAUSE on the control socket: the same switch, remembered across a restart.
    let reply = control(&world, "PAUSE");
    assert_eq!(reply, serde_json::json!({"ok": true, "paused": true}));
    let saved = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (saved_paused(&world) == Some(true)).then_some(())
    });
    assert!(
        saved.is_some(),
        "PAUSE is written to state.toml\n{}",
        world.context()
    );
    cli.run(&["status"])
        .assert_success()
        .assert_mentions("automatic fetching: paused");
    world.stop_daemon(daemon);
    cli.run(&["status"])
        .assert_code(3)
        .assert_mentions("automatic fetching: paused at the next start");
    world.hang_up();
    stay_down();

    let daemon = world.start_daemon();
    let log = mailcall_e2e::read_for_diagnostics(&world.log);
    assert!(
        log.contains("paused=true"),
        "the daemon says it starts paused\n{log}"
    );
    assert_eq!(control(&world, "STATUS")["paused"], true);
    let records = world.records().len();
    link_up_fetches_nothing(&world, "paused over the socket before the restart");
    assert_eq!(world.records().len(), records);

    // 5. A manual fetch still works while paused (pause is about automatic fetching only).
    cli.run(&["fetch", "--via-running"])
        .assert_success()
        .assert_mentions("asked the running Mailcall");
    assert_eq!(world.fetches("control").len(), 1, "{}", world.context());
    assert_eq!(control(&world, "STATUS")["paused"], true);
    world.stop_daemon(daemon);
}
