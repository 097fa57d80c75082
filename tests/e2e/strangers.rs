//! Issue 21, item 2: strangers cannot keep the ISP out. In a network namespace, hosts at five
//! addresses (two IPv4, three in one IPv6 /64) open connections to the daemon's listener and
//! hold every one it greets — silent, a NOOP a second, a message's data a byte a second, a
//! MAIL/RCPT/RSET cycle — opening a new one whenever one ends. While they hold every slot open
//! to strangers, an ETRN fetch from the real Postfix ISP receives all of its mail through the
//! slots held back; every stranger's connection is ended by the listener with a 421.

use std::time::Duration;

use mailcall_e2e::{
    free_port, poll_until, Cli, IspOptions, KeyringEnv, Maildir, Message, Netns, PostfixIsp,
};

use crate::set_plain_account;

/// The domain the ISP holds mail for.
const DOMAIN: &str = "held.test";
/// Messages waiting at the ISP.
const QUEUED: usize = 30;
/// `max-connections`.
const MAX: usize = 40;
/// `max-connections-per-peer`: the strangers' three peers could hold 24, more than the 20 open
/// to them.
const PER_PEER: usize = 8;
/// `reserved-connections`: what they never get.
const RESERVED: usize = 20;

/// The strangers' sources: two IPv4 addresses and three addresses of one IPv6 /64 (one peer).
const SOURCES: [&str; 5] = [
    "127.0.0.2",
    "127.0.0.3",
    "2001:db8:77::a",
    "2001:db8:77::b",
    "2001:db8:77:0:ffff::c",
];

#[test]
fn strangers_holding_every_slot_open_to_them_cannot_keep_the_isps_delivery_out() {
    let env = KeyringEnv::new();
    let lp = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&[DOMAIN], lp));
    let mail: Vec<Message> = (0..QUEUED).map(|n| Message::numbered(DOMAIN, n)).collect();
    isp.queue_all(&mail);
    isp.wait_deferred(QUEUED, Duration::from_secs(30));
    let ns = Netns::new();
    ns.adopt_isp(&isp);
    for v6 in &SOURCES[2..] {
        ns.ip(&["addr", "add", &format!("{v6}/128"), "dev", "lo"]);
    }

    let cli = Cli::new(&env);
    cli.write_config(&format!(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"none-here\"]\n\
         idle-timeout = 3\nmax-wait = 120\n\
         max-connections = {MAX}\nmax-connections-per-peer = {PER_PEER}\n\
         reserved-connections = {RESERVED}\n\
         first-command-timeout = 3\nmax-junk-commands = 5\ncommand-timeout = 20\n\
         data-timeout = 20\nmax-data-time = 8\nmax-session-time = 12\n"
    ));
    set_plain_account(&cli, "isp", isp.port(), &[DOMAIN]).assert_success();
    let maildir = Maildir::new(env.root().join("Maildir"));
    let log = env.root().join("daemon.log");
    let mut cmd = ns.command(cli.binary());
    cmd.env_clear()
        .envs(env.env())
        .current_dir(env.home())
        // The gate's own count of each connection it admits: the truth about who held what.
        .env("MAILCALL_LOG", "info,mailcall_core::listener::gate=debug")
        .arg("--config")
        .arg(cli.config_path())
        .args(["daemon", "--listen", &format!("[::]:{lp}"), "--maildir"])
        .arg(maildir.path());
    let _daemon = ns.spawn("mailcall daemon", &mut cmd, &log);
    let socket = env.runtime_dir().join("mailcall/control.sock");
    let up = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let text = mailcall_e2e::read_for_diagnostics(&log);
        (text.contains("mailcall daemon running") && socket.exists()).then_some(())
    });
    let daemon_log = || mailcall_e2e::read_for_diagnostics(&log);
    assert!(up.is_some(), "the daemon must start\n{}", daemon_log());

    // The strangers, until the stop file appears.
    let stop = env.root().join("strangers.stop");
    let said = env.root().join("strangers.out");
    let mut strangers = ns.command(env!("CARGO_BIN_EXE_mailcall-strangers"));
    strangers
        .arg(lp.to_string())
        .arg(DOMAIN)
        .arg(&stop)
        .args(SOURCES);
    let mut strangers = ns.spawn("strangers", &mut strangers, &said);
    let out = || mailcall_e2e::read_for_diagnostics(&said);
    // Every slot open to strangers is taken.
    let full = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        out()
            .lines()
            .any(|l| l == format!("holding {}", MAX - RESERVED))
            .then_some(())
    });
    assert!(
        full.is_some(),
        "the strangers must fill their slots\n{}\n{}",
        out(),
        daemon_log()
    );

    let fetched = cli.run(&["fetch", "--via-running"]);
    let context = format!(
        "{fetched}\ndaemon log:\n{}\nISP maillog:\n{}",
        daemon_log(),
        isp.log()
    );
    std::fs::write(&stop, "").unwrap();
    assert_eq!(fetched.code(), Some(0), "the fetch must succeed\n{context}");
    fetched.assert_mentions(&format!("summary: {QUEUED} message(s)"));
    assert_eq!(maildir.message_ids().len(), QUEUED, "{context}");
    assert!(
        maildir.new_messages().iter().all(|m| m.complete),
        "{context}"
    );
    isp.wait_queue_empty(Duration::from_secs(10));
    assert!(
        !std::fs::read_to_string(isp.dir().join("maillog"))
            .unwrap_or_default()
            .contains("refused to talk to me"),
        "the ISP was never turned away\n{context}"
    );

    // The strangers end once the listener has cut every connection they held (their own bound
    // is 90 s after the stop file; one still open then is reported `open`).
    let ended = poll_until(Duration::from_secs(150), Duration::from_millis(100), || {
        strangers.exited()
    });
    assert!(ended.is_some(), "the strangers did not end\n{}", out());
    let report = out();
    // As the listener's gate counted them: the strangers held every slot open to them and never
    // one held back, and the /64 counted once (three addresses, one peer's share).
    let admitted = daemon_log();
    let most = |field: &str, peer: &str| -> usize {
        admitted
            .lines()
            .filter(|l| l.contains("connection admitted") && l.contains(&format!("peer={peer}")))
            .filter_map(|l| {
                let value = l.split(&format!(" {field}=")).nth(1)?;
                value.split(' ').next()?.parse().ok()
            })
            .max()
            .unwrap_or(0)
    };
    let strangers_most = SOURCES.iter().map(|s| most("strangers", s)).max();
    assert_eq!(strangers_most, Some(MAX - RESERVED), "{admitted}");
    let v6 = most("from_peer", "2001:db8:77:");
    assert!(v6 > 0 && v6 <= PER_PEER, "{admitted}");
    assert!(most("from_peer", "127.0.0.2") <= PER_PEER, "{admitted}");
    let held: Vec<&str> = report.lines().filter(|l| l.starts_with("conn ")).collect();
    assert!(held.len() >= MAX - RESERVED, "{report}");
    let open: Vec<&&str> = held.iter().filter(|l| l.contains(" open ")).collect();
    assert!(
        open.is_empty(),
        "connections the listener never ended: {open:#?}"
    );
    // Each tactic was cut by its own limit, with a 421.
    for (tactic, reply) in [
        (0, "421 4.4.2 client.test Error: timeout exceeded"),
        (
            1,
            "421 4.7.0 client.test Error: too many commands without mail",
        ),
        (2, "421 4.4.2 client.test Error: message data took too long"),
        (
            3,
            "421 4.4.2 client.test Error: session too long, please connect again",
        ),
    ] {
        let of_tactic: Vec<&&str> = held
            .iter()
            .filter(|l| l.split(' ').nth(2) == Some(&tactic.to_string()))
            .collect();
        assert!(
            !of_tactic.is_empty(),
            "no connection held with tactic {tactic}\n{report}"
        );
        for line in of_tactic {
            assert!(line.ends_with(reply), "tactic {tactic}: {line}\n{report}");
        }
    }
    // Shown with --nocapture: the peaks and how many connections the strangers held.
    eprintln!(
        "{}\n{} connections held, all ended by the listener",
        report
            .lines()
            .filter(|l| l.starts_with("peak "))
            .collect::<Vec<_>>()
            .join("\n"),
        held.len()
    );
}
