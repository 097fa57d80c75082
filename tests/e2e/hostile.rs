//! Hostile input against the running listener (a `mailcall-cli fetch` held open by a fake ISP
//! that accepted ETRN), from `swaks` and from raw bytes: relay tricks, oversize, recipient and
//! pipelining floods, a 100 KB line, NUL bytes, bare-LF smuggling, 500 connections at once,
//! slowloris. After every case an ordinary message from swaks must still land in new/.

use std::io::Write;
use std::time::{Duration, Instant};

use mailcall_e2e::raw::REPLY_TIMEOUT;
use mailcall_e2e::swaks::{send_normal, server_lines, swaks};
use mailcall_e2e::{
    free_port, Cli, FakeIsp, KeyringEnv, Maildir, RawSmtp, ReadOutcome, RunningCli, Script,
    BODY_END,
};

use crate::write_base_config;

/// The domain the listener accepts mail for.
const OURS: &str = "hostile.test";
/// `command-timeout` for these tests: small, so slow and silent peers are dropped quickly.
const COMMAND_TIMEOUT: u64 = 2;
/// `max-message-size` for these tests.
const MAX_SIZE: usize = 100_000;
/// `max-connections` and `max-connections-per-peer` (every test peer is 127.0.0.1).
const MAX_CONNECTIONS: usize = 50;

/// A listener that stays up: `fetch` with a long idle timeout, its ETRN answered by a fake ISP.
struct World {
    // Drop order: the CLI process first, then the fake ISP, then the session env.
    run: RunningCli,
    _isp: FakeIsp,
    maildir: Maildir,
    port: u16,
    normal: usize,
    env: KeyringEnv,
}

impl World {
    fn start() -> Self {
        Self::start_with_command_timeout(COMMAND_TIMEOUT)
    }

    /// With another `command-timeout` (seconds).
    fn start_with_command_timeout(command_timeout: u64) -> Self {
        let env = KeyringEnv::new();
        // The ISP asked is at 127.0.0.2: the hostile peers (127.0.0.1) are strangers, and a
        // relay attempt gets the stranger's 5xx, not the 4xx the asked ISP gets (issue 21).
        let isp = FakeIsp::start_at(std::net::Ipv4Addr::new(127, 0, 0, 2), Script::EtrnOk);
        let port = free_port();
        let maildir = Maildir::new(env.root().join("Maildir"));
        let run = {
            let cli = Cli::new(&env);
            write_base_config(&cli);
            for (key, value) in [
                ("command-timeout", command_timeout.to_string()),
                ("data-timeout", "5".to_string()),
                ("max-message-size", MAX_SIZE.to_string()),
                ("max-connections", MAX_CONNECTIONS.to_string()),
                ("max-connections-per-peer", MAX_CONNECTIONS.to_string()),
                ("reserved-connections", "0".to_string()),
                // The floods here test other limits (the junk limit: listener_wire).
                ("max-junk-commands", "100000".to_string()),
                ("first-command-timeout", command_timeout.to_string()),
            ] {
                cli.run(&["config", "set", key, &value]).assert_success();
            }
            cli.set_account(
                &mailcall_e2e::AccountArgs::new("isp", isp.port())
                    .host("127.0.0.2")
                    .domains(&[OURS]),
            );
            let mut run = RunningCli::fetch(&env, &cli, port, maildir.path(), 600);
            run.wait_for_line(&format!("ETRN {OURS} (isp): 250"), Duration::from_secs(30));
            run
        };
        Self {
            run,
            _isp: isp,
            maildir,
            port,
            normal: 0,
            env,
        }
    }

    fn greeted(&self) -> RawSmtp {
        let mut c = RawSmtp::greeted(self.port);
        c.expect("EHLO raw.outside.test", 250);
        c
    }

    /// After a hostile case: the listener process lives, an ordinary message from swaks lands
    /// complete in new/, nothing else is in new/ and nothing is left in tmp/.
    fn still_serves(&mut self, case: &str) {
        self.still_serves_with_extra(case, &[]);
    }

    /// [`World::still_serves`] when earlier cases legitimately stored `extra` messages.
    fn still_serves_with_extra(&mut self, case: &str, extra: &[&str]) {
        if let Some(status) = self.run.exited() {
            panic!(
                "the listener died during {case}: {status}\n{}",
                self.run.output()
            );
        }
        self.normal += 1;
        let id = format!("normal-{}@outside.test", self.normal);
        send_normal(self.port, &format!("user@{OURS}"), &id);
        self.assert_only_ordinary_plus(case, extra);
    }

    /// new/ holds exactly the ordinary messages sent so far (all complete), plus `extra`
    /// Message-IDs; tmp/ empties (a session dropped mid-DATA removes its file as it ends).
    fn assert_only_ordinary_plus(&self, case: &str, extra: &[&str]) {
        let mut want: Vec<String> = (1..=self.normal)
            .map(|n| format!("<normal-{n}@outside.test>"))
            .chain(extra.iter().map(|e| e.to_string()))
            .collect();
        want.sort();
        let stored = self.maildir.new_messages();
        assert_eq!(
            self.maildir.message_ids(),
            want,
            "after {case}: unexpected files in new/: {stored:#?}"
        );
        assert!(
            stored.iter().all(|m| m.complete),
            "after {case}: incomplete files in new/: {stored:#?}"
        );
        let tmp_empty =
            mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                self.maildir.files("tmp").is_empty().then_some(())
            });
        assert!(
            tmp_empty.is_some(),
            "after {case}: files left in tmp/: {:?}",
            self.maildir.files("tmp")
        );
    }

    /// Waits until a new connection is greeted with 220 (sessions of closed test connections
    /// have given back their slots).
    fn wait_for_a_free_slot(&self) {
        let free =
            mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                let mut c = RawSmtp::connect(self.port).ok()?;
                match c.read() {
                    ReadOutcome::Reply(r) if r.code == 220 => Some(()),
                    _ => None,
                }
            });
        assert!(
            free.is_some(),
            "no connection slot came free within 10 s after the test's connections closed"
        );
    }
}

fn data_with_id(id: &str, body: &str) -> String {
    format!(
        "From: <sender@outside.test>\r\nTo: <user@{OURS}>\r\nSubject: hostile\r\nMessage-ID: {id}\r\n\r\n{body}\r\n{BODY_END}\r\n.\r\n"
    )
}

#[test]
fn relay_attempts_are_refused_and_the_listener_carries_on() {
    let mut w = World::start();

    // A real client asking for a foreign domain.
    let done = swaks(
        w.port,
        &[
            "--from",
            "sender@outside.test",
            "--to",
            "victim@foreign.test",
            "--quit-after",
            "RCPT",
        ],
    );
    let replies = server_lines(&done.stdout);
    assert!(
        replies.iter().any(|l| l.starts_with("550 5.7.1")),
        "swaks RCPT to a foreign domain must get 550 5.7.1: {replies:#?}\n{}",
        done.stdout
    );
    assert_ne!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        done.stdout
    );
    w.still_serves("swaks to a foreign domain");

    // The old routing tricks and anything quoted, each judged alone in one transaction.
    let tricks = [
        "<victim@foreign.test>",
        "<victim%foreign.test@hostile.test>",
        "<foreign.test!victim@hostile.test>",
        "<@hostile.test:victim@foreign.test>",
        "<@hostile.test,@relay.test:victim@foreign.test>",
        "<\"victim@foreign.test\"@hostile.test>",
        "<\"victim\"@hostile.test>",
        "<victim@[127.0.0.1]>",
        "<victim@hostile.test.foreign.test>",
        "<victim@foreign.test.>",
    ];
    let mut c = w.greeted();
    c.expect("MAIL FROM:<sender@outside.test>", 250);
    for trick in tricks {
        let reply = c.command(&format!("RCPT TO:{trick}"));
        assert!(
            reply.code == 550 || reply.code == 501,
            "RCPT TO:{trick} must be refused (550 relay denied or 501), got {reply}"
        );
    }
    // Nobody was accepted, so there is nothing to send data to.
    let reply = c.command("DATA");
    assert_eq!(reply.code, 503, "DATA without a recipient: {reply}");
    c.expect("QUIT", 221);
    w.still_serves("routing tricks");

    // One good and one foreign recipient: the message is stored for the good one only.
    let mut c = w.greeted();
    c.expect("MAIL FROM:<sender@outside.test>", 250);
    c.expect(&format!("RCPT TO:<user@{OURS}>"), 250);
    c.expect("RCPT TO:<victim@foreign.test>", 550);
    c.expect("DATA", 354);
    c.send(data_with_id("<mixed@outside.test>", "mixed recipients").as_bytes())
        .unwrap();
    assert_eq!(c.reply().code, 250);
    let stored = w
        .maildir
        .new_messages()
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some("<mixed@outside.test>"))
        .expect("the mixed message is stored");
    let text = std::fs::read_to_string(&stored.path).unwrap();
    assert!(
        !text.contains("victim"),
        "the refused recipient must not be in the stored message: {text}"
    );
    c.expect("QUIT", 221);
    w.still_serves_with_extra(
        "a mixed good and foreign recipient",
        &["<mixed@outside.test>"],
    );

    // The listener's STARTTLS works for a real client (opportunistic TLS, as ISPs use it).
    let done = swaks(
        w.port,
        &[
            "--tls",
            "--from",
            "sender@outside.test",
            "--to",
            &format!("user@{OURS}"),
            "--header",
            "Message-Id: <tls@outside.test>",
            "--body",
            &format!("Sent over TLS.\n{BODY_END}\n"),
        ],
    );
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "swaks --tls: {}\n{}",
        done.stdout,
        done.stderr
    );
    w.still_serves_with_extra(
        "a delivery over STARTTLS",
        &["<mixed@outside.test>", "<tls@outside.test>"],
    );
}

#[test]
fn oversize_recipient_floods_and_a_100_kb_line_are_refused() {
    let mut w = World::start();

    // SIZE= announces too much: refused before any data.
    let mut c = w.greeted();
    let reply = c.command(&format!(
        "MAIL FROM:<sender@outside.test> SIZE={}",
        MAX_SIZE * 2
    ));
    assert_eq!(
        (reply.code, reply.lines[0].get(..5)),
        (552, Some("5.3.4")),
        "{reply}"
    );
    c.expect("QUIT", 221);
    w.still_serves("SIZE= above the limit");

    // Real data above the limit, from swaks: drained, refused with 552, nothing kept.
    let big = w.env.root().join("big-body.txt");
    let line = "y".repeat(76);
    let body: String = std::iter::repeat_n(line.as_str(), MAX_SIZE / 70)
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&big, format!("{body}\n{BODY_END}\n")).unwrap();
    let big = big.display().to_string();
    let done = swaks(
        w.port,
        &[
            "--from",
            "sender@outside.test",
            "--to",
            &format!("user@{OURS}"),
            "--header",
            "Message-Id: <too-big@outside.test>",
            "--body",
            &big,
        ],
    );
    let replies = server_lines(&done.stdout);
    assert!(
        replies.iter().any(|l| l.starts_with("552 5.3.4")),
        "a {} byte message must get 552 5.3.4 after its data: {replies:#?}",
        body.len()
    );
    w.still_serves("oversize data");

    // 1000 recipients pipelined in one write: the first 100 (max-recipients) are taken, the
    // rest get 452 4.5.3 (the sender retries them later); the message is stored once.
    let mut c = w.greeted();
    let mut batch = String::from("MAIL FROM:<sender@outside.test>\r\n");
    for n in 0..1000 {
        batch.push_str(&format!("RCPT TO:<user{n}@{OURS}>\r\n"));
    }
    c.send(batch.as_bytes()).unwrap();
    assert_eq!(c.reply().code, 250, "MAIL");
    let codes: Vec<u16> = (0..1000).map(|_| c.reply().code).collect();
    let accepted = codes.iter().filter(|&&c| c == 250).count();
    let deferred = codes.iter().filter(|&&c| c == 452).count();
    assert_eq!(
        (accepted, deferred),
        (100, 900),
        "1000 recipients: expected 100 x 250 then 900 x 452, got {codes:?}"
    );
    assert!(codes[..100].iter().all(|&c| c == 250), "{codes:?}");
    c.expect("DATA", 354);
    c.send(data_with_id("<many-rcpts@outside.test>", "to a hundred").as_bytes())
        .unwrap();
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
    w.still_serves_with_extra("1000 recipients", &["<many-rcpts@outside.test>"]);

    // A 100 KB command line: refused as too long, never buffered; the session goes on.
    let mut c = w.greeted();
    let long = format!("NOOP {}\r\n", "a".repeat(100 * 1024));
    c.send(long.as_bytes()).unwrap();
    let reply = c.reply();
    assert_eq!(
        (reply.code, reply.lines[0].get(..5)),
        (500, Some("5.5.2")),
        "a 100 KB line: {reply}"
    );
    c.expect("NOOP", 250);
    c.expect("QUIT", 221);
    // The same line as MAIL FROM: no transaction starts from it.
    let mut c = w.greeted();
    let long = format!("MAIL FROM:<{}@outside.test>\r\n", "b".repeat(100 * 1024));
    c.send(long.as_bytes()).unwrap();
    assert_eq!(c.reply().code, 500);
    c.expect(&format!("RCPT TO:<user@{OURS}>"), 503);
    c.expect("QUIT", 221);
    w.still_serves_with_extra("a 100 KB command line", &["<many-rcpts@outside.test>"]);
}

#[test]
fn nul_bytes_smuggling_and_pipelining_floods_cannot_inject_or_wedge() {
    let mut w = World::start();

    // NUL bytes in commands: answered, never a crash, no transaction from them.
    let mut c = w.greeted();
    c.send(b"EHLO nul\0host.test\r\n").unwrap();
    let ehlo = c.reply();
    assert!(ehlo.code == 250 || ehlo.code == 501, "{ehlo}");
    c.send(b"MAIL FROM:<a\0b@outside.test>\r\n").unwrap();
    let mail = c.reply();
    assert!(
        mail.code >= 500,
        "a NUL in the sender must be refused: {mail}"
    );
    c.send(b"\0\0\0\0\r\n").unwrap();
    assert!(c.reply().code >= 500);
    c.expect("NOOP", 250);
    c.expect("QUIT", 221);
    w.still_serves("NUL bytes in commands");

    // NUL bytes in the data: stored byte for byte (8BITMIME data is opaque) or refused whole —
    // never cut short at the NUL.
    let mut c = w.greeted();
    c.expect("MAIL FROM:<sender@outside.test>", 250);
    c.expect(&format!("RCPT TO:<user@{OURS}>"), 250);
    c.expect("DATA", 354);
    c.send(data_with_id("<nul-data@outside.test>", "before\0after").as_bytes())
        .unwrap();
    let reply = c.reply();
    let mut extra = Vec::new();
    if reply.code == 250 {
        let m = w
            .maildir
            .new_messages()
            .into_iter()
            .find(|m| m.message_id.as_deref() == Some("<nul-data@outside.test>"))
            .expect("250 means stored");
        let bytes = std::fs::read(&m.path).unwrap();
        assert!(
            bytes.windows(12).any(|x| x == b"before\0after") && m.complete,
            "the NUL message must be stored whole"
        );
        extra.push("<nul-data@outside.test>");
    } else {
        assert!(reply.code >= 500, "{reply}");
    }
    c.expect("QUIT", 221);
    w.still_serves_with_extra("NUL bytes in data", &extra);

    // Smuggling: a bare-LF (or bare-CR) "end of data" followed by a second transaction. One
    // refusal for the whole thing, no second message, and the next reply belongs to our NOOP.
    for (n, fake_end) in ["\n.\r\n", "\r\n.\n", "\n.\n", "\r.\r\n", "\r\n.\r"]
        .iter()
        .enumerate()
    {
        let mut c = w.greeted();
        c.expect("MAIL FROM:<sender@outside.test>", 250);
        c.expect(&format!("RCPT TO:<user@{OURS}>"), 250);
        c.expect("DATA", 354);
        let smuggled = format!(
            "From: <sender@outside.test>\r\nMessage-ID: <outer-{n}@outside.test>\r\n\r\nouter\
             {fake_end}MAIL FROM:<evil@outside.test>\r\nRCPT TO:<user@{OURS}>\r\nDATA\r\n\
             Message-ID: <smuggled-{n}@evil.test>\r\n\r\nsmuggled\r\n.\r\n"
        );
        c.send(smuggled.as_bytes()).unwrap();
        let reply = c.reply();
        assert_eq!(
            (reply.code, reply.lines[0].get(..5)),
            (550, Some("5.5.2")),
            "smuggling with {fake_end:?}: the whole data must be refused once: {reply}"
        );
        let next = c.command("NOOP");
        assert_eq!(
            next.code, 250,
            "smuggling with {fake_end:?}: the reply after the refusal must answer our NOOP \
             (anything else means the smuggled commands were read): {next}"
        );
        c.expect("QUIT", 221);
        w.still_serves_with_extra(&format!("smuggling with {fake_end:?}"), &extra);
    }

    // A pipelining flood: 5000 NOOPs in one go while the replies are read: every one answered,
    // in order, then QUIT.
    let mut c = w.greeted();
    let mut writer = c.writer_clone();
    let flood = std::thread::spawn(move || {
        let mut batch = "NOOP\r\n".repeat(5000);
        batch.push_str("QUIT\r\n");
        writer.write_all(batch.as_bytes())
    });
    let codes: Vec<u16> = (0..5001).map(|_| c.reply().code).collect();
    flood.join().unwrap().unwrap();
    assert!(codes[..5000].iter().all(|&c| c == 250), "NOOP flood");
    assert_eq!(codes[5000], 221);
    w.still_serves_with_extra("a NOOP flood", &extra);

    // An error flood: dropped with 421 4.7.0 after max-errors (20), not served forever.
    let mut c = w.greeted();
    c.send("BOGUS\r\n".repeat(200).as_bytes()).unwrap();
    let mut errors = 0;
    let last = loop {
        let reply = c.reply();
        if reply.code != 500 {
            break reply;
        }
        errors += 1;
        assert!(errors <= 200, "never cut off");
    };
    assert_eq!(
        (last.code, last.lines[0].get(..5)),
        (421, Some("4.7.0")),
        "after {errors} errors: {last}"
    );
    assert!(errors <= 21, "{errors} errors answered before the cut-off");
    assert!(c.closed_within(Duration::from_secs(5)), "closed after 421");
    w.still_serves_with_extra("an error flood", &extra);
}

#[test]
fn a_connection_flood_gets_421_beyond_the_limit_and_nothing_hangs() {
    // Greeted sessions must not time out while the 500 are answered: a longer command-timeout.
    let mut w = World::start_with_command_timeout(60);

    // 500 connections at once: max-connections are greeted, every other one gets 421 4.7.0
    // at once, and none is left hanging without an answer.
    let started = Instant::now();
    let mut conns: Vec<RawSmtp> = (0..500)
        .map(|n| RawSmtp::connect(w.port).unwrap_or_else(|e| panic!("connection {n} failed: {e}")))
        .collect();
    let mut greeted = 0;
    let mut refused = 0;
    for (n, c) in conns.iter_mut().enumerate() {
        match c.read() {
            ReadOutcome::Reply(r) if r.code == 220 => greeted += 1,
            ReadOutcome::Reply(r) if r.code == 421 && r.lines[0].starts_with("4.7.0") => {
                refused += 1;
                assert!(c.closed_within(Duration::from_secs(5)), "421 then close");
            }
            other => panic!("connection {n} got {other:?} instead of 220 or 421"),
        }
    }
    assert_eq!(
        (greeted, refused),
        (MAX_CONNECTIONS, 500 - MAX_CONNECTIONS),
        "500 connections at once with max-connections = {MAX_CONNECTIONS}"
    );
    assert!(
        started.elapsed() < REPLY_TIMEOUT,
        "answering 500 connections took {:?}",
        started.elapsed()
    );
    drop(conns);
    w.wait_for_a_free_slot();
    w.still_serves("500 connections at once");
}

#[test]
fn silent_and_trickling_peers_are_cut_off_at_the_command_timeout() {
    let mut w = World::start();

    // A silent peer is dropped at command-timeout with 421 4.4.2.
    let mut c = RawSmtp::greeted(w.port);
    let t = Instant::now();
    let reply = c.reply();
    assert_eq!(
        (reply.code, reply.lines[0].get(..5)),
        (421, Some("4.4.2")),
        "{reply}"
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(COMMAND_TIMEOUT) - Duration::from_millis(100)
            && waited < Duration::from_secs(COMMAND_TIMEOUT + 3),
        "a silent peer was dropped after {waited:?}, command-timeout is {COMMAND_TIMEOUT} s"
    );
    w.still_serves("a silent peer");

    // Slowloris: a peer trickling one byte of a command every 300 ms never completes a line; it
    // must be dropped once command-timeout has passed since the command began, however steadily
    // it sends.
    let mut c = w.greeted();
    let t = Instant::now();
    let trickle = b"NOOP and then some more bytes that never end in a line break, slowly..";
    let mut dropped_after = None;
    for &byte in trickle.iter() {
        if c.send(&[byte]).is_err() {
            dropped_after = Some(t.elapsed());
            break;
        }
        // Pacing the trickle (the behaviour under test), and at the same time the check for
        // the server's close: at most 300 ms each, at most the trickle's length in all.
        if c.closed_within(Duration::from_millis(300)) {
            dropped_after = Some(t.elapsed());
            break;
        }
    }
    let dropped_after = dropped_after.unwrap_or_else(|| {
        panic!(
            "a peer trickling a byte every 300 ms was still connected after {:?} \
             (command-timeout {COMMAND_TIMEOUT} s): slowloris holds a session forever",
            t.elapsed()
        )
    });
    assert!(
        dropped_after < Duration::from_secs(COMMAND_TIMEOUT + 3),
        "slowloris dropped only after {dropped_after:?}"
    );
    w.still_serves("slowloris");
}
