//! Fetching by itself: `mailcall-cli daemon` and a real Postfix ISP inside a network namespace
//! with a dial-up stand-in (`ppp0`, a TUN link with a peer address). The link coming up makes
//! the daemon ask (no command), flaps count once, and connect/disconnect commands dial and hang
//! up around a manual fetch (`fetch --via-running` over the control socket).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::process::ChildGuard;
use mailcall_e2e::{
    free_port, poll_until, AccountArgs, Cli, IspOptions, KeyringEnv, Maildir, Message, Netns,
    PostfixIsp,
};

const DOMAIN: &str = "dial.test";
/// Settle delay the daemon runs with (seconds).
const SETTLE: u64 = 2;

/// The history's records as JSON values (every line must parse).
fn history(env: &KeyringEnv) -> Vec<serde_json::Value> {
    let path = env.data_home().join("mailcall/history.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a history line is JSON"))
        .collect()
}

fn with_trigger<'a>(records: &'a [serde_json::Value], trigger: &str) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| {
            r["trigger"].as_str() == Some(trigger)
                && r["kind"] != "connect"
                && r["kind"] != "disconnect"
        })
        .collect()
}

/// The records of one kind (`connect`, `disconnect`, `fetch`, `delivery`).
fn with_kind<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| r["kind"].as_str() == Some(kind))
        .collect()
}

/// Postfix logs one `disconnect from ... etrn=1` line per SMTP session that sent one ETRN: the
/// ISP's own count of how often it was asked.
fn etrn_sessions(isp: &PostfixIsp) -> usize {
    std::fs::read_to_string(isp.dir().join("maillog"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("disconnect from") && l.contains(" etrn=1"))
        .count()
}

struct World {
    // Dropped in reverse order: daemon, ISP, namespace.
    ns: Netns,
    env: KeyringEnv,
    isp: PostfixIsp,
    maildir: Maildir,
    listen_port: u16,
    log: PathBuf,
}

/// The dial-up link's own address and its peer's.
const LOCAL: &str = "10.64.0.2";
const PEER: &str = "10.64.0.1";

impl World {
    /// Config, an ISP holding `queued` for `dial.test` (moved into the namespace), ppp0 down.
    fn new(queued: &[Message], extra_account_args: &[&str]) -> Self {
        Self::build(queued, extra_account_args, false)
    }

    /// As pppd has it: no `ppp0` until [`World::dial_in`] creates one, and [`World::hang_up`]
    /// deletes it. The ISP delivers to the link's own address, so mail waits at the ISP while
    /// the link is down; the daemon listens on every address.
    fn dialup() -> Self {
        Self::build(&[], &[], true)
    }

    fn build(queued: &[Message], extra_account_args: &[&str], dialup: bool) -> Self {
        let env = KeyringEnv::new();
        let listen_port = free_port();
        let mut options = IspOptions::new(&[DOMAIN], listen_port);
        if dialup {
            options = options.with_listener_host(LOCAL);
        }
        let isp = PostfixIsp::start(options);
        if !queued.is_empty() {
            isp.queue_all(queued);
            isp.wait_deferred(queued.len(), Duration::from_secs(30));
        }
        let maildir = Maildir::new(env.root().join("Maildir"));
        let cli = Cli::new(&env);
        let listen_host = if dialup { "0.0.0.0" } else { "127.0.0.1" };
        cli.write_config(&format!(
            "hostname = \"client.test\"\nlisten = \"{listen_host}:{listen_port}\"\nmaildir = \"{}\"\nidle-timeout = 2\nmax-wait = 60\ninterfaces = [\"ppp*\"]\nsettle-delay = {SETTLE}\n",
            maildir.path().display()
        ));
        cli.set_account(
            &AccountArgs::new("isp", isp.port())
                .domains(&[DOMAIN])
                .args(extra_account_args),
        );
        let ns = Netns::new();
        if !dialup {
            ns.add_tun("ppp0", LOCAL, PEER);
        }
        ns.adopt_isp(&isp);
        let log = env.root().join("daemon.log");
        World {
            ns,
            env,
            isp,
            maildir,
            listen_port,
            log,
        }
    }

    /// A dial-in as pppd does it: a new `ppp0` (a new interface index), its addresses, up.
    fn dial_in(&self) {
        self.ns.add_tun("ppp0", LOCAL, PEER);
        self.ns.link_up("ppp0");
    }

    /// A hang-up as pppd does it: `ppp0` is deleted.
    fn hang_up(&self) {
        self.ns.ip(&["link", "del", "ppp0"]);
    }

    fn cli(&self) -> Cli<'_> {
        Cli::new(&self.env)
    }

    /// Starts `mailcall-cli daemon` inside the namespace and waits until it runs.
    fn start_daemon(&self) -> ChildGuard {
        let cli = self.cli();
        let mut cmd = self.ns.command(cli.binary());
        cmd.env_clear()
            .envs(self.env.env())
            .env("MAILCALL_LOG", "info,mailcall_core::trigger=debug")
            .current_dir(self.env.home())
            .arg("--config")
            .arg(cli.config_path())
            .arg("daemon");
        let guard = self.ns.spawn("mailcall daemon", &mut cmd, &self.log);
        let port = self.listen_port;
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
            let log = mailcall_e2e::read_for_diagnostics(&self.log);
            (log.contains("mailcall daemon running") && self.ns.tcp_open(port)).then_some(())
        });
        assert!(up.is_some(), "the daemon did not start\n{}", self.context());
        guard
    }

    fn context(&self) -> String {
        format!(
            "daemon log:\n{}\nhistory:\n{:#?}\nISP maillog:\n{}",
            mailcall_e2e::read_for_diagnostics(&self.log),
            history(&self.env)
                .iter()
                .map(|r| format!(
                    "{} {} {} msgs, ended {}, errors {}",
                    r["trigger"],
                    r["id"],
                    r["messages"].as_array().map_or(0, |m| m.len()),
                    r["ended_because"],
                    r["errors"]
                ))
                .collect::<Vec<_>>(),
            self.isp.log()
        )
    }

    /// Waits until the history holds `n` sessions with `trigger`, or `n` dial-up steps of that
    /// kind (`connect`, `disconnect`); records are written when they end.
    fn wait_sessions(&self, trigger: &str, n: usize, timeout: Duration) {
        let done = poll_until(timeout, Duration::from_millis(50), || {
            let records = history(&self.env);
            let count = with_trigger(&records, trigger).len() + with_kind(&records, trigger).len();
            (count >= n).then_some(())
        });
        assert!(
            done.is_some(),
            "expected {n} `{trigger}` session(s) within {timeout:?}\n{}",
            self.context()
        );
    }
}

/// Sends SIGTERM and waits for a clean exit (status 0).
fn stop_daemon(mut daemon: ChildGuard, world: &World) {
    let pid = daemon.pid().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        daemon.exited()
    });
    match status {
        Some(s) => assert!(s.success(), "daemon exit {s}\n{}", world.context()),
        None => panic!("the daemon did not stop on SIGTERM\n{}", world.context()),
    }
    let log = mailcall_e2e::read_for_diagnostics(&world.log);
    assert!(
        log.contains("SIGTERM received") && log.contains("stopped"),
        "{log}"
    );
}

/// Time for a link to count as down for good (the settle delay plus a margin). This is the
/// behaviour under test — a link must stay down that long — not a stand-in for synchronisation.
fn stay_down() {
    std::thread::sleep(Duration::from_millis(SETTLE * 1000 + 700));
}

#[test]
fn link_up_fetches_by_itself_once_per_link_up() {
    let mail: Vec<Message> = (0..3).map(|n| Message::numbered(DOMAIN, n)).collect();
    let world = World::new(&mail, &[]);
    let daemon = world.start_daemon();

    // ppp0 is down and the filter is ppp*: nothing to do at start.
    assert!(history(&world.env).is_empty(), "{}", world.context());
    assert!(world.maildir.new_messages().is_empty());

    // 1. The link comes up: the ETRN reaches Postfix and the mail lands, with no command.
    world.ns.link_up("ppp0");
    let landed = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (world.maildir.new_messages().len() == mail.len()).then_some(())
    });
    assert!(
        landed.is_some(),
        "the mail did not land\n{}",
        world.context()
    );
    let mut ids: Vec<String> = mail.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    assert_eq!(world.maildir.message_ids(), ids, "{}", world.context());
    world.wait_sessions("network", 1, Duration::from_secs(30));
    world.isp.wait_queue_empty(Duration::from_secs(10));
    let first = &with_trigger(&history(&world.env), "network")[0].clone();
    assert_eq!(first["domains"][0]["code"], 250, "{}", world.context());
    assert_eq!(first["messages"].as_array().map(|m| m.len()), Some(3));
    assert_eq!(etrn_sessions(&world.isp), 1, "{}", world.context());

    // 2. Down long enough to count, up again: exactly one more fetch.
    world.ns.link_down("ppp0");
    stay_down();
    world.ns.link_up("ppp0");
    world.wait_sessions("network", 2, Duration::from_secs(30));
    // Idle timeout (2 s) plus margin: a second session would have finished by now.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        with_trigger(&history(&world.env), "network").len(),
        2,
        "{}",
        world.context()
    );
    assert_eq!(etrn_sessions(&world.isp), 2, "{}", world.context());

    // 3. Two link-ups in quick succession (a flap while coming up): one session.
    world.ns.link_down("ppp0");
    stay_down();
    world.ns.link_up("ppp0");
    world.ns.link_down("ppp0");
    world.ns.link_up("ppp0");
    world.wait_sessions("network", 3, Duration::from_secs(30));
    // An absence can only be watched for a while: a second session for the flap would have
    // started within the settle delay and ended within the idle timeout (2 s) plus margin.
    std::thread::sleep(Duration::from_secs(SETTLE + 4));
    let records = history(&world.env);
    assert_eq!(
        with_trigger(&records, "network").len(),
        3,
        "{}",
        world.context()
    );
    assert_eq!(etrn_sessions(&world.isp), 3, "{}", world.context());
    assert!(
        with_trigger(&records, "start").is_empty() && with_trigger(&records, "interval").is_empty(),
        "no start or interval fetch was configured to happen\n{}",
        world.context()
    );

    // Mail the ISP sends on its own while the daemon runs is stored and recorded too.
    let mut queue = world.ns.command("smtp-source");
    queue.args([
        "-m",
        "1",
        "-f",
        "sender@outside.test",
        "-t",
        "user@dial.test",
    ]);
    queue.args(["-S", "late", "-M", "outside.test"]);
    queue.arg(format!("127.0.0.1:{}", world.isp.port()));
    mailcall_e2e::process::run_checked(&mut queue, None).unwrap();
    world.wait_sessions("isp", 1, Duration::from_secs(30));
    assert_eq!(world.maildir.new_messages().len(), 4, "{}", world.context());

    stop_daemon(daemon, &world);
}

#[test]
fn every_dial_in_fetches_once_like_pppd_creating_a_new_ppp0() {
    // pppd creates a new ppp0 (a new interface index) at every dial-in and deletes it at
    // hang-up; here the next dial-in follows within the settle delay of the hang-up, as it does
    // when the user dials again right away. Each must be one session, and all the mail arrive.
    const DIAL_INS: usize = 10;
    const PER_DIAL_IN: usize = 2;
    let world = World::dialup();
    let daemon = world.start_daemon();
    let mut expected: Vec<String> = Vec::new();
    for round in 0..DIAL_INS {
        let mail: Vec<Message> = (0..PER_DIAL_IN)
            .map(|n| Message::numbered(DOMAIN, round * PER_DIAL_IN + n))
            .collect();
        // Offline: the ISP's first attempt finds no route to 10.64.0.2 and defers the mail.
        world.isp.submit_all(&mail);
        world
            .isp
            .wait_deferred(PER_DIAL_IN, Duration::from_secs(30));
        expected.extend(mail.iter().map(|m| m.message_id.clone()));
        expected.sort();

        world.dial_in();
        world.wait_sessions("network", round + 1, Duration::from_secs(30));
        world.isp.wait_queue_empty(Duration::from_secs(10));
        assert_eq!(
            world.maildir.message_ids(),
            expected,
            "after dial-in {}\n{}",
            round + 1,
            world.context()
        );
        let records = history(&world.env);
        let sessions = with_trigger(&records, "network");
        assert_eq!(
            sessions.len(),
            round + 1,
            "dial-in {} made more than one session\n{}",
            round + 1,
            world.context()
        );
        assert_eq!(
            sessions[round]["messages"].as_array().map(|m| m.len()),
            Some(PER_DIAL_IN),
            "dial-in {}: its session should hold its own mail\n{}",
            round + 1,
            world.context()
        );
        world.hang_up();
    }
    assert_eq!(etrn_sessions(&world.isp), DIAL_INS, "{}", world.context());

    // A link that stays up but gets another address (a renewed lease with a new address):
    // the ISP must now reach a new address, so that is one more fetch. First let the link
    // settle — addresses arriving in its first moments belong to its link-up.
    world.dial_in();
    world.wait_sessions("network", DIAL_INS + 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(SETTLE * 1000 + 300));
    world
        .ns
        .ip(&["addr", "add", "10.64.0.3", "peer", PEER, "dev", "ppp0"]);
    world
        .ns
        .ip(&["addr", "del", LOCAL, "peer", PEER, "dev", "ppp0"]);
    world.wait_sessions("network", DIAL_INS + 2, Duration::from_secs(30));
    assert_eq!(
        etrn_sessions(&world.isp),
        DIAL_INS + 2,
        "{}",
        world.context()
    );
    stop_daemon(daemon, &world);
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn connect_and_disconnect_commands_dial_around_a_manual_fetch() {
    let mail: Vec<Message> = (0..2).map(|n| Message::numbered(DOMAIN, n)).collect();
    let dir = mailcall_e2e::test_dir("dial");
    // The daemon runs them inside the namespace, so `ip link` acts on the test's ppp0.
    let connect = script(
        dir.path(),
        "connect.sh",
        "echo dialing isp\nip link set ppp0 up",
    );
    let disconnect = script(
        dir.path(),
        "disconnect.sh",
        "ip link set ppp0 down\necho hung up",
    );
    let connect = connect.display().to_string();
    let disconnect = disconnect.display().to_string();
    let world = World::new(
        &mail,
        &[
            "--connect-command",
            &connect,
            "--disconnect-command",
            &disconnect,
            "--link-timeout",
            "20",
        ],
    );
    let daemon = world.start_daemon();
    assert!(!world.ns.is_up("ppp0"));

    // A script's manual fetch through the control socket, from outside the namespace.
    let out = world.cli().run(&["fetch", "--via-running"]);
    out.assert_success();
    out.assert_mentions("asked the running Mailcall");
    assert_eq!(
        world.maildir.new_messages().len(),
        2,
        "{out}\n{}",
        world.context()
    );

    let records = history(&world.env);
    let connects = with_kind(&records, "connect");
    assert_eq!(connects.len(), 1, "{}", world.context());
    assert!(
        connects[0].to_string().contains("dialing isp"),
        "the connect command's output is in the history\n{}",
        world.context()
    );
    // One session: the link-up trigger and the manual request merge.
    let sessions: Vec<_> = records
        .iter()
        .filter(|r| !r["domains"].as_array().is_none_or(|d| d.is_empty()))
        .collect();
    assert_eq!(sessions.len(), 1, "{}", world.context());
    assert_eq!(etrn_sessions(&world.isp), 1, "{}", world.context());

    // The disconnect command ran after the session and brought the link down again.
    world.wait_sessions("disconnect", 1, Duration::from_secs(20));
    let records = history(&world.env);
    let disc = with_kind(&records, "disconnect");
    assert!(
        disc[0].to_string().contains("hung up"),
        "{}",
        world.context()
    );
    assert_eq!(disc[0]["errors"].as_array().map(|e| e.len()), Some(0));
    assert!(!world.ns.is_up("ppp0"), "{}", world.context());

    // With the link already up (not ours), no command runs and nothing is hung up.
    let sessions_now = || {
        history(&world.env)
            .iter()
            .filter(|r| !r["domains"].as_array().is_none_or(|d| d.is_empty()))
            .count()
    };
    // Down for longer than the settle delay first, so the next link-up is a new one.
    stay_down();
    world.ns.link_up("ppp0");
    let by_itself = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (sessions_now() == 2).then_some(())
    });
    assert!(by_itself.is_some(), "{}", world.context());
    let out = world.cli().run(&["fetch", "--via-running"]);
    out.assert_success();
    assert_eq!(sessions_now(), 3, "{out}\n{}", world.context());
    let records = history(&world.env);
    assert_eq!(
        with_kind(&records, "connect").len(),
        1,
        "{}",
        world.context()
    );
    assert_eq!(
        with_kind(&records, "disconnect").len(),
        1,
        "{}",
        world.context()
    );
    assert!(world.ns.is_up("ppp0"));

    stop_daemon(daemon, &world);

    // Nothing runs any more: the same command falls back to fetching here (outside the
    // namespace the ISP cannot be reached, which is what the output must say).
    let out = world
        .cli()
        .run(&["fetch", "--via-running", "--idle-timeout", "1"]);
    out.assert_mentions("no running Mailcall");
}
