//! Self-tests of the harness against the real peers, without the CLI: the keyring answers,
//! the ISP defers mail and releases exactly the ETRN'd domain to a listener, AUTH gates ETRN.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mailcall_e2e::smtp::SmtpClient;
use mailcall_e2e::{free_port, IspOptions, KeyringEnv, Message, PostfixIsp};

/// A minimal receiving SMTP server for the self-test: sends the Message-ID of every message it
/// accepts down a channel. Serves `max_conns` connections, then stops.
fn sink(listener: TcpListener, max_conns: usize) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(max_conns) {
            let Ok(stream) = stream else { break };
            let tx = tx.clone();
            thread::spawn(move || serve(stream, tx));
        }
    });
    rx
}

fn serve(stream: TcpStream, tx: mpsc::Sender<String>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP\r\n").unwrap();
    let mut in_data = false;
    let mut id = String::new();
    for _ in 0..100_000 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if in_data {
            if l == "." {
                in_data = false;
                let _ = tx.send(std::mem::take(&mut id));
                w.write_all(b"250 ok\r\n").unwrap();
            } else if let Some(v) = l.strip_prefix("Message-ID: ") {
                id = v.to_string();
            }
            continue;
        }
        let verb = l.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "DATA" => {
                in_data = true;
                b"354 go\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                return;
            }
            _ => b"250 ok\r\n",
        };
        w.write_all(reply).unwrap();
    }
}

#[test]
fn keyring_env_stores_and_finds_items() {
    let env = KeyringEnv::new();
    let mut cmd = env.command("secret-tool");
    cmd.args([
        "store",
        "--label=probe",
        "service",
        "mailcall",
        "username",
        "probe",
    ]);
    let done =
        mailcall_e2e::process::run_with_timeout(&mut cmd, Some(b"s3cret"), Duration::from_secs(10))
            .unwrap();
    assert!(
        done.status.unwrap().success(),
        "secret-tool store: {done:?}"
    );
    assert_eq!(
        env.keyring_secret("mailcall", "probe").as_deref(),
        Some("s3cret")
    );
    let items = env.keyring_search(&[("service", "mailcall")]);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["label"], "probe");
    assert_eq!(items[0]["attribute.username"], "probe");
    assert_eq!(items[0]["attribute.service"], "mailcall");
    assert_eq!(env.keyring_secret("mailcall", "nobody-here"), None);
}

#[test]
fn postfix_isp_releases_only_the_etrn_domain() {
    let lp = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test", "beta.test"], lp));
    let alpha: Vec<Message> = (0..3).map(|n| Message::numbered("alpha.test", n)).collect();
    let beta: Vec<Message> = (0..2).map(|n| Message::numbered("beta.test", n)).collect();
    isp.queue_all(&alpha);
    isp.queue_all(&beta);
    isp.wait_deferred(5, Duration::from_secs(20));

    let received = sink(TcpListener::bind(("127.0.0.1", lp)).unwrap(), 10);
    let (mut smtp, greeting) = SmtpClient::connect(isp.port()).unwrap();
    assert_eq!(greeting.lines[0], "isp.test ESMTP Postfix");
    let ehlo = smtp.expect("EHLO client.test", 250).unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "ETRN"), "{ehlo}");
    let reply = smtp.command("ETRN alpha.test").unwrap();
    assert_eq!(reply.to_string(), "250 Queuing started");
    let reply = smtp.command("ETRN unknown.test").unwrap();
    assert_eq!(reply.to_string(), "459 <unknown.test>: service unavailable");
    smtp.command("QUIT").unwrap();

    let mut got = BTreeSet::new();
    while got.len() < 3 {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(id) => {
                got.insert(id);
            }
            Err(_) => panic!("only {got:?} arrived\nmaillog:\n{}", isp.log()),
        }
    }
    let want: BTreeSet<String> = alpha.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(got, want);
    // beta.test was not asked for: it stays deferred. The delivered ones leave the active queue
    // a moment after their 250, so wait for that rather than read the queue at once.
    let settled =
        mailcall_e2e::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let entries = isp.queue_entries();
            (entries.len() == 2).then_some(entries)
        });
    let left = settled.unwrap_or_else(|| isp.queue_entries());
    assert_eq!(left.len(), 2, "{left:#?}");
    assert!(
        left.iter().all(|e| e.recipients == ["user@beta.test"]),
        "{left:#?}"
    );
}

#[test]
fn postfix_isp_with_auth_refuses_etrn_before_auth() {
    let isp = PostfixIsp::start(
        IspOptions::new(&["alpha.test"], free_port())
            .with_tls()
            .with_auth("alice", "s3cret"),
    );
    assert!(isp.ca_file().is_file());
    let (mut smtp, _) = SmtpClient::connect(isp.port()).unwrap();
    let ehlo = smtp.expect("EHLO client.test", 250).unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo}");
    // smtpd_tls_auth_only: no AUTH offered before STARTTLS.
    assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")), "{ehlo}");
    let reply = smtp.command("ETRN alpha.test").unwrap();
    assert_eq!(reply.code, 554, "{reply}\nmaillog:\n{}", isp.log());
    smtp.command("QUIT").unwrap();
}
