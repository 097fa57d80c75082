//! Benchmark (not a test): time from a link's address appearing to the ETRN reaching the ISP.
//!
//! Inside a network namespace it creates: a TUN `ppp0` (10.64.0.2 peer 10.64.0.1), a minimal
//! scripted ISP (python3) that timestamps each `ETRN` line as it arrives, and
//! `mailcall-cli daemon` with `interfaces = ppp*`. Then 20 times: `ip link set ppp0 up` (the
//! address becomes visible), wait for the ETRN, wait for the session to end, link down, wait out
//! the settle delay. Prints each sample and the median.
//!
//! Run as root: `benches/linkup.sh` (builds the release CLI, then runs this example;
//! ROUNDS=N to change the count).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailcall_e2e::{free_port, poll_until, AccountArgs, Cli, KeyringEnv, Netns};

const ISP: &str = r#"
import socket, sys, threading, time
def links():
    # rtnetlink, groups RTMGRP_LINK | RTMGRP_IPV4_IFADDR: when the kernel announces the change.
    n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    n.bind((0, 0x1 | 0x10))
    while True:
        n.recv(65536)
        print("nl", time.time_ns(), flush=True)
threading.Thread(target=links, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); f = c.makefile("rb")
    c.sendall(b"220 isp.test ESMTP\r\n")
    for line in f:
        cmd = line.strip().upper()
        if cmd.startswith(b"ETRN"):
            print("etrn", time.time_ns(), flush=True)
            c.sendall(b"250 Queuing started\r\n")
        elif cmd.startswith(b"EHLO"):
            c.sendall(b"250-isp.test\r\n250 ETRN\r\n")
        elif cmd.startswith(b"QUIT"):
            c.sendall(b"221 bye\r\n"); break
        else:
            c.sendall(b"250 ok\r\n")
    c.close()
"#;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    let ns = Netns::new();
    ns.add_tun("ppp0", "10.64.0.2", "10.64.0.1");
    let isp_port = free_port();
    let listen_port = free_port();

    let script = env.root().join("isp.py");
    std::fs::write(&script, ISP).unwrap();
    let mut isp_cmd = ns.command("python3");
    isp_cmd
        .arg(&script)
        .arg(isp_port.to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut isp = mailcall_e2e::process::ChildGuard::new("fake ISP", isp_cmd.spawn().unwrap());
    let (tx, etrns) = mpsc::channel::<String>();
    let out = isp.child_mut().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(
        etrns.recv_timeout(Duration::from_secs(10)).unwrap(),
        "ready"
    );

    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{listen_port}\"\nmaildir = \"{}\"\nidle-timeout = 1\ninterfaces = [\"ppp*\"]\nsettle-delay = 1\n",
        env.root().join("Maildir").display()
    ));
    cli.set_account(&AccountArgs::new("isp", isp_port).domains(&["dial.test"]));
    let log = env.root().join("daemon.log");
    let mut cmd = ns.command(cli.binary());
    cmd.env_clear()
        .envs(env.env())
        .current_dir(env.home())
        .arg("--config")
        .arg(cli.config_path())
        .arg("daemon");
    let _daemon = ns.spawn("mailcall daemon", &mut cmd, &log);
    poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        mailcall_e2e::read_for_diagnostics(&log)
            .contains("mailcall daemon running")
            .then_some(())
    })
    .expect("the daemon did not start");
    // The daemon's netwatcher has its first snapshot within milliseconds of starting.
    std::thread::sleep(Duration::from_millis(300));

    let mut samples = Vec::new();
    for round in 0..rounds {
        // A plain blocking run: the harness's runner polls every 10 ms, too coarse to time.
        let before = now_ns();
        let status = std::process::Command::new("ip")
            .args(["-n", ns.name(), "link", "set", "ppp0", "up"])
            .status()
            .unwrap();
        let after = now_ns();
        assert!(status.success());
        // The kernel's announcement of the link (with its address) is "the address appearing".
        let mut appeared: Option<u128> = None;
        let at = loop {
            let line = etrns
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| {
                    panic!(
                        "no ETRN within 10 s of link-up {round}\n{}",
                        mailcall_e2e::read_for_diagnostics(&log)
                    )
                });
            let (kind, t) = line.split_once(' ').unwrap();
            let t: u128 = t.parse().unwrap();
            match kind {
                "nl" if t >= before && appeared.is_none() => appeared = Some(t),
                "etrn" => break t,
                _ => {}
            }
        };
        let appeared = appeared.expect("the kernel announced the link before the ETRN");
        let ms = at.saturating_sub(appeared) as f64 / 1e6;
        println!(
            "link-up {round:2}: ETRN {ms:6.2} ms after the address appeared (`ip link set up` took {:.2} ms)",
            after.saturating_sub(before) as f64 / 1e6
        );
        samples.push(ms);
        // Session ends 1 s after the 250 (idle); then down for longer than the settle delay.
        std::thread::sleep(Duration::from_millis(1300));
        ns.link_down("ppp0");
        std::thread::sleep(Duration::from_millis(1300));
        while etrns.try_recv().is_ok() {}
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if samples.len() % 2 == 1 {
        samples[samples.len() / 2]
    } else {
        (samples[samples.len() / 2 - 1] + samples[samples.len() / 2]) / 2.0
    };
    println!(
        "link-up to ETRN over {} link-ups: median {median:.2} ms, min {:.2} ms, max {:.2} ms (goal < 50 ms)",
        samples.len(),
        samples[0],
        samples[samples.len() - 1]
    );
    drop(isp);
}
