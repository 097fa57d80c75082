//! The README's pppd ip-up.d recipe (`contrib/ppp/ip-up.d/mailcall`), run the way pppd runs it:
//! as root inside the dial-up's network namespace, with an environment holding only pppd's link
//! variables, Debian's PPP_* ones and a minimal PATH, stdin on /dev/null, and pppd's six
//! arguments. The user is a throwaway system user (no login shell) whose daemon, keyring and
//! config the script must find: (a) the daemon runs and is asked over its control socket;
//! (b) nothing runs and the script's one-shot fetch gets the mail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, Finished};
use mailcall_e2e::{poll_until, Message};

use crate::linkworld::{LinkWorld, WorldOptions, DOMAIN, LOCAL, PEER};
use crate::set_plain_account;

/// The recipe as shipped, from the repository.
fn recipe() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/ppp/ip-up.d/mailcall");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recipe installed as a user would: the settings at its top filled in, nothing else
/// changed; root-owned, mode 755, in a directory only root may write (as /etc/ppp/ip-up.d).
fn install(world: &LinkWorld, dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let user = world.user.as_ref().expect("the recipe runs for a user");
    let binary = mailcall_e2e::cli::cli_binary();
    let mut text = recipe();
    for (setting, value) in [
        ("USER_NAME=me", format!("USER_NAME={}", user.name())),
        (
            "MAILCALL_CLI=/usr/bin/mailcall-cli",
            format!("MAILCALL_CLI={}", binary.display()),
        ),
        (
            "LOG=/var/log/mailcall-ip-up.log",
            format!("LOG={}", log.display()),
        ),
    ] {
        let line = format!("\n{setting}\n");
        assert_eq!(
            text.matches(&line).count(),
            1,
            "the recipe sets {setting} once"
        );
        text = text.replace(&line, &format!("\n{value}\n"));
    }
    let script = dir.join("mailcall");
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Runs the script as pppd does after IPCP came up on ppp0.
fn run_as_pppd(world: &LinkWorld, script: &Path) -> Finished {
    let mut cmd = world.ns.command("env");
    cmd.env_clear().current_dir("/").arg("-i");
    // pppd's own variables (pppd(8) SCRIPTS), then what Debian's /etc/ppp/ip-up exports.
    for (k, v) in [
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ("DEVICE", "/dev/ttyS0"),
        ("IFNAME", "ppp0"),
        ("IPLOCAL", LOCAL),
        ("IPREMOTE", PEER),
        ("SPEED", "115200"),
        ("ORIG_UID", "0"),
        ("PPPLOGNAME", "root"),
        ("LINKNAME", "isp"),
        ("PPP_IFACE", "ppp0"),
        ("PPP_TTY", "/dev/ttyS0"),
        ("PPP_SPEED", "115200"),
        ("PPP_LOCAL", LOCAL),
        ("PPP_REMOTE", PEER),
        ("PPP_IPPARAM", "isp"),
    ] {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(script)
        .args(["ppp0", "/dev/ttyS0", "115200", LOCAL, PEER, "isp"]);
    run_with_timeout(&mut cmd, None, Duration::from_secs(20)).expect("running the script")
}

/// Waits until the script's log says mailcall-cli has exited, and returns the log.
fn wait_for_exit(log: &Path, runs: usize, world: &LinkWorld) -> String {
    let done = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        (text.matches("mailcall-cli exited with status").count() >= runs).then_some(text)
    });
    done.unwrap_or_else(|| {
        panic!(
            "the script's mailcall-cli did not finish\nscript log:\n{}\n{}",
            mailcall_e2e::read_for_diagnostics(log),
            world.context()
        )
    })
}

/// The script ends at once (the fetch runs in the background) and prints nothing (pppd throws
/// its output away: the log is where it goes).
fn assert_script_returned(done: &Finished) {
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "the script failed: {done:?}"
    );
    assert!(
        done.elapsed < Duration::from_secs(3),
        "the script waited for the fetch ({:?})",
        done.elapsed
    );
    assert!(done.stdout.is_empty() && done.stderr.is_empty(), "{done:?}");
}

#[test]
fn the_ip_up_recipe_asks_the_running_daemon_or_fetches_by_itself() {
    let first: Vec<Message> = (0..2).map(|n| Message::numbered(DOMAIN, n)).collect();
    // The daemon leaves ppp0 to the script (as when its interfaces filter does not cover the
    // link): whatever fetches below, the script asked for it.
    let world = LinkWorld::new(WorldOptions {
        as_user: true,
        interfaces: "wlan*".into(),
        ..WorldOptions::new(&first)
    });
    set_plain_account(&world.cli(), "isp", world.isp.port(), &[DOMAIN]);
    let dir = mailcall_e2e::test_dir("ip-up.d");
    let log = dir.path().join("mailcall-ip-up.log");
    let script = install(&world, dir.path(), &log);

    // (a) The user's daemon runs: the script's fetch --via-running reaches it.
    let daemon = world.start_daemon();
    world.dial_in();
    let done = run_as_pppd(&world, &script);
    assert_script_returned(&done);
    let text = wait_for_exit(&log, 1, &world);
    assert!(
        text.contains("ppp0 up (local 10.64.0.2): fetching as")
            && text.contains("asked the running Mailcall")
            && text.contains("mailcall-cli exited with status 0"),
        "script log:\n{text}\n{}",
        world.context()
    );
    let landed = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        (world.maildir.new_messages().len() == first.len()).then_some(())
    });
    assert!(landed.is_some(), "{text}\n{}", world.context());
    let asked = world.fetches("control");
    assert_eq!(asked.len(), 1, "{}", world.context());
    assert_eq!(
        world.records().len(),
        1,
        "only the script's fetch\n{}",
        world.context()
    );
    world.stop_daemon(daemon);
    world.hang_up();

    // (b) Nothing runs: the script's fallback fetches once by itself, as the user (config,
    // keyring over the user's session bus, listener in the namespace).
    let second: Vec<Message> = (10..13).map(|n| Message::numbered(DOMAIN, n)).collect();
    world.isp.submit_all(&second);
    world
        .isp
        .wait_deferred(second.len(), Duration::from_secs(30));
    world.dial_in();
    let done = run_as_pppd(&world, &script);
    assert_script_returned(&done);
    let text = wait_for_exit(&log, 2, &world);
    let run = text.split("fetching as").nth(2).unwrap_or_default();
    assert!(
        run.contains("no running Mailcall") && run.contains("mailcall-cli exited with status 0"),
        "script log:\n{text}\n{}",
        world.context()
    );
    assert_eq!(
        world.maildir.new_messages().len(),
        first.len() + second.len(),
        "script log:\n{text}\n{}",
        world.context()
    );
    world.isp.wait_queue_empty(Duration::from_secs(10));
    assert_eq!(world.fetches("cli").len(), 1, "{}", world.context());
    let user = world.user.as_ref().unwrap();
    assert!(
        user.processes().iter().all(|pid| !is_mailcall(*pid)),
        "the script's mailcall-cli is gone once it said so"
    );
    // The fetch ran as the user: the files it wrote are the user's.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(world.data_dir.join("history.jsonl")).unwrap(),
    );
    assert_eq!(owner, user.uid());
}

/// Whether `pid` runs mailcall-cli.
fn is_mailcall(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "mailcall-cli")
        .unwrap_or(false)
}
