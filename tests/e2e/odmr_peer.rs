//! The ODMR provider itself (Exim 4.99.1, [`EximIsp`]) checked over raw sockets, and fetchmail's
//! ODMR mode fetching through it into Postfix's `smtp-sink`: the peer Mailcall's ODMR client
//! will be tested against, shown to be a real and strict one before that client exists.
//!
//! fetchmail (6.4.37) cannot do STARTTLS in ODMR mode: its `odmr.c` sends EHLO, then AUTH
//! CRAM-MD5 (its only mechanism there), then ATRN, even when EHLO lists STARTTLS; TLS would only
//! be implicit TLS (`ssl`, the "odmrs" port). Against a provider that offers AUTH only after
//! STARTTLS it gets `503` and exits 3 (AUTHFAIL): `fetchmail_odmr_does_not_starttls`. So the
//! fetching test runs in plain, with AUTH allowed before TLS (the default of [`EximOptions`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mailcall_e2e::exim::{auth_plain_command, cram_md5_response, PROVIDER_HOSTNAME};
use mailcall_e2e::process::{run_with_timeout, ChildGuard};
use mailcall_e2e::{
    free_port, poll_until, AuthMechanisms, EximIsp, EximOptions, Message, RawSmtp, ReadOutcome,
};

const CUSTOMER: &str = "customer.test";
const OTHER: &str = "example.org";
/// Held by the provider too, but never asked for.
const UNASKED: &str = "unasked.test";

/// How long a line from the peer may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// The EHLO keyword lines (`ATRN`, `AUTH CRAM-MD5 PLAIN`, ...), without the greeting line.
fn keywords(ehlo: &mailcall_e2e::smtp::Reply) -> Vec<String> {
    ehlo.lines.iter().skip(1).cloned().collect()
}

/// Both ends of a line-based conversation: a raw socket, or `openssl s_client` over STARTTLS.
trait Wire {
    /// One line without CRLF; `None` when the peer closed (or went silent for [`LINE_TIMEOUT`]).
    fn line(&mut self) -> Option<String>;
    /// Writes `bytes` as they are.
    fn put(&mut self, bytes: &[u8]);
}

impl Wire for RawSmtp {
    fn line(&mut self) -> Option<String> {
        self.read_line()
    }

    fn put(&mut self, bytes: &[u8]) {
        self.send(bytes).expect("writing to the provider");
    }
}

/// One message as the customer side received it on the turned line.
#[derive(Debug, Clone, Default)]
struct Received {
    rcpts: Vec<String>,
    message_id: String,
}

/// What the customer side saw after `250` to ATRN.
#[derive(Debug, Default)]
struct Turned {
    commands: Vec<String>,
    messages: Vec<Received>,
}

/// Plays the customer's SMTP server on the turned line: greets, answers EHLO/MAIL/RCPT/DATA/
/// RSET/QUIT (RCPT with `rcpt_reply`), and records every command and message until QUIT or
/// until the provider closes the connection.
///
/// It stops reading after answering `QUIT` with 221, as an SMTP server does; the caller then
/// closes the connection. Exim's queue runner may turn the same line around once more for a
/// message whose retry time came meanwhile (seen on a busy machine): a customer that kept the
/// connection open without answering would leave that message locked for as long as Exim waits
/// for a greeting.
fn serve_turned_line(wire: &mut impl Wire, rcpt_reply: impl Fn(&str) -> &'static str) -> Turned {
    let mut seen = Turned::default();
    wire.put(b"220 customer.test ESMTP odmr test receiver\r\n");
    let mut current: Option<Received> = None;
    let mut in_data = false;
    // Bounded: a few messages of a few lines each.
    for _ in 0..100_000 {
        let Some(line) = wire.line() else {
            return seen;
        };
        if in_data {
            if line == "." {
                in_data = false;
                seen.messages.extend(current.take());
                wire.put(b"250 2.0.0 received\r\n");
            } else if let Some(id) = line.strip_prefix("Message-ID: ") {
                if let Some(m) = current.as_mut() {
                    m.message_id = id.to_string();
                }
            }
            continue;
        }
        seen.commands.push(line.clone());
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-customer.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "MAIL" => {
                current = Some(Received::default());
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" => {
                let reply = rcpt_reply(&line);
                if reply.starts_with('2') {
                    if let (Some(m), Some(addr)) = (current.as_mut(), line.split_once(':')) {
                        m.rcpts
                            .push(addr.1.trim_matches(['<', '>', ' ']).to_string());
                    }
                }
                wire.put(format!("{reply}\r\n").as_bytes());
                continue;
            }
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "RSET" => {
                current = None;
                b"250 2.0.0 reset\r\n"
            }
            "QUIT" => {
                wire.put(b"221 2.0.0 bye\r\n");
                return seen;
            }
            _ => b"502 5.5.1 not here\r\n",
        };
        wire.put(reply);
    }
    panic!("more than 100000 lines on the turned line: {seen:?}")
}

/// Connects to the ATRN port, EHLO, AUTH PLAIN as the instance's user; returns the session.
fn authed_plain(isp: &EximIsp) -> RawSmtp {
    let mut c = RawSmtp::greeted(isp.atrn_port());
    c.expect("EHLO client.test", 250);
    let reply = c.command(&auth_plain_command(isp.user(), isp.password()));
    assert_eq!(
        reply.to_string(),
        "235 Authentication succeeded",
        "{}",
        isp.log()
    );
    c
}

/// AUTH CRAM-MD5 on `c` as the instance's user; returns the final reply.
fn cram_md5(c: &mut RawSmtp, user: &str, password: &str) -> mailcall_e2e::smtp::Reply {
    let challenge = c.expect("AUTH CRAM-MD5", 334);
    c.command(&cram_md5_response(user, password, &challenge.lines[0]))
}

fn ids(messages: &[Message]) -> Vec<String> {
    let mut v: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    v.sort();
    v
}

fn received_ids(turned: &Turned) -> Vec<String> {
    let mut v: Vec<String> = turned
        .messages
        .iter()
        .map(|m| m.message_id.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn exim_offers_atrn_auth_and_starttls_on_the_atrn_port_only() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER, OTHER]));
    eprintln!(
        "exim answered on both ports {:?} after spawn",
        isp.started_in()
    );

    let mut c = RawSmtp::connect(isp.atrn_port()).unwrap();
    let greeting = c.reply();
    assert_eq!(greeting.code, 220);
    assert!(
        greeting.lines[0].starts_with("provider.test ESMTP Exim 4.99.1 "),
        "{greeting}"
    );
    let ehlo = c.expect("EHLO client.test", 250);
    let kw = keywords(&ehlo);
    for want in ["ATRN", "AUTH CRAM-MD5 PLAIN", "STARTTLS"] {
        assert!(kw.iter().any(|k| k == want), "no {want} in {ehlo}");
    }
    // ATRN is only for an authenticated customer.
    let reply = c.command("ATRN customer.test");
    assert_eq!(
        reply.to_string(),
        "530 ATRN is not permitted without authentication"
    );
    let wrong = c.command(&auth_plain_command(isp.user(), "not-the-password"));
    assert_eq!(wrong.to_string(), "535 Incorrect authentication data");
    let reply = cram_md5(&mut c, isp.user(), "not-the-password");
    assert_eq!(reply.to_string(), "535 Incorrect authentication data");
    c.expect("QUIT", 221);

    // The injection port is plain SMTP: no ATRN, no AUTH, no STARTTLS.
    let mut c = RawSmtp::greeted(isp.inject_port());
    let ehlo = c.expect("EHLO client.test", 250);
    let kw = keywords(&ehlo);
    assert!(
        !kw.iter()
            .any(|k| k == "ATRN" || k.starts_with("AUTH") || k == "STARTTLS"),
        "{ehlo}"
    );
    let reply = c.command("ATRN customer.test");
    assert_eq!(
        reply.to_string(),
        "502 ATRN command used when not advertised"
    );
    let reply = c.command(&auth_plain_command(isp.user(), isp.password()));
    assert_eq!(
        reply.to_string(),
        "503 AUTH command used when not advertised"
    );
    c.expect("QUIT", 221);
}

#[test]
fn exim_atrn_turns_the_line_around_and_delivers_only_the_asked_domain() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER, OTHER]).without_tls());
    // Nothing held yet: 453, and the session goes on.
    let mut c = authed_plain(&isp);
    assert_eq!(
        c.command("ATRN customer.test").to_string(),
        "453 You have no mail"
    );
    // A domain this customer is not set up for.
    assert_eq!(
        c.command("ATRN other.test").to_string(),
        "450 ATRN request refused"
    );
    assert_eq!(
        c.command("ATRN customer.test,other.test").to_string(),
        "450 ATRN request refused"
    );
    c.expect("QUIT", 221);

    let customer = isp.queue_numbered(CUSTOMER, 3);
    let other = isp.queue_numbered(OTHER, 2);
    assert_eq!(isp.queue_len(), 5, "{:#?}", isp.queue());

    let mut c = authed_plain(&isp);
    let reply = c.command("ATRN customer.test");
    assert_eq!(
        reply.to_string(),
        "250 ODMR provider turning line around",
        "{}",
        isp.log()
    );
    // Exim speaks only after the customer's greeting (the turned line starts with its 220): in
    // a short window nothing arrives (a premature EHLO would fail here as "not a reply line").
    c.set_read_timeout(Duration::from_millis(300));
    assert_eq!(c.read(), ReadOutcome::TimedOut);
    c.set_read_timeout(LINE_TIMEOUT);
    let turned = serve_turned_line(&mut c, |_| "250 2.1.5 ok");
    assert_eq!(
        turned.commands.first().map(String::as_str),
        Some(format!("EHLO {PROVIDER_HOSTNAME}").as_str()),
        "{turned:#?}"
    );
    assert_eq!(turned.commands.last().map(String::as_str), Some("QUIT"));
    assert_eq!(
        received_ids(&turned),
        ids(&customer),
        "{turned:#?}\n{}",
        isp.log()
    );
    assert!(
        turned
            .messages
            .iter()
            .all(|m| m.rcpts == ["user@customer.test"]),
        "{turned:#?}"
    );
    // The delivered ones leave the spool a moment after their 250; example.org stays.
    let left = isp.wait_queue("only example.org left", Duration::from_secs(10), |q| {
        q.len() == 2 && q.iter().all(|m| m.is_for(OTHER))
    });
    let mut left_ids: Vec<String> = left.iter().filter_map(|m| m.message_id.clone()).collect();
    left_ids.sort();
    assert_eq!(left_ids, ids(&other));

    // Again for customer.test: nothing left, 453. The session cannot ATRN again: looking for
    // customer.test mail, Exim read example.org's spool files, which reset $received_port and
    // $authenticated_id (Exim 4.99.1, see tests/exim.rs): 502 here, 530 without the port test.
    let mut c = RawSmtp::greeted(isp.atrn_port());
    c.expect("EHLO client.test", 250);
    assert_eq!(
        cram_md5(&mut c, isp.user(), isp.password()).to_string(),
        "235 Authentication succeeded"
    );
    assert_eq!(
        c.command("ATRN customer.test").to_string(),
        "453 You have no mail"
    );
    assert_eq!(
        c.command("ATRN example.org").to_string(),
        "502 ATRN command used when not advertised"
    );
    c.expect("QUIT", 221);
    // A new session for example.org, with CRAM-MD5.
    let mut c = RawSmtp::greeted(isp.atrn_port());
    c.expect("EHLO client.test", 250);
    assert_eq!(
        cram_md5(&mut c, isp.user(), isp.password()).to_string(),
        "235 Authentication succeeded"
    );
    assert_eq!(
        c.command("ATRN example.org").to_string(),
        "250 ODMR provider turning line around"
    );
    let turned = serve_turned_line(&mut c, |_| "250 2.1.5 ok");
    assert_eq!(
        received_ids(&turned),
        ids(&other),
        "{turned:#?}\n{}",
        isp.log()
    );
    isp.wait_queue("empty", Duration::from_secs(10), |q| q.is_empty());

    let requests = isp.atrn_requests();
    let seen: Vec<(&str, &str, &str)> = requests
        .iter()
        .map(|r| {
            (
                r.authenticator.as_str(),
                r.user.as_str(),
                r.domains.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("plain", "customer", "customer.test"),
            ("plain", "customer", "other.test"),
            ("plain", "customer", "customer.test,other.test"),
            ("plain", "customer", "customer.test"),
            ("cram_md5", "customer", "customer.test"),
            ("cram_md5", "customer", "example.org"),
        ],
        "{}",
        isp.log()
    );
}

#[test]
fn exim_rejected_and_deferred_recipients_on_the_turned_line() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]).without_tls());
    let held = isp.queue_numbered(CUSTOMER, 3);
    let first = &held[0].message_id;
    // The first message's recipient is refused for good: Exim says RSET and goes on; the
    // refused message turns into a bounce (queue_only keeps it at the provider).
    let mut c = authed_plain(&isp);
    c.expect("ATRN customer.test", 250);
    let rcpts = std::cell::Cell::new(0);
    let turned = serve_turned_line(&mut c, |_| {
        rcpts.set(rcpts.get() + 1);
        if rcpts.get() == 1 {
            "550 5.1.1 no such user"
        } else {
            "250 2.1.5 ok"
        }
    });
    drop(c);
    assert_eq!(rcpts.get(), 3, "{turned:#?}");
    assert!(turned.commands.iter().any(|l| l == "RSET"), "{turned:#?}");
    assert_eq!(received_ids(&turned), ids(&held[1..]), "{turned:#?}");
    let q = isp.wait_queue("only the bounce left", Duration::from_secs(10), |q| {
        q.len() == 1 && q[0].sender.is_empty()
    });
    assert_eq!(q[0].recipients, ["sender@outside.test"], "{q:#?}");
    assert!(!isp.queued_message_ids(CUSTOMER).contains(first));

    // A 4xx ends the turn: QUIT at once, the rest stays; after the retry interval (1 s) the
    // next ATRN takes them all.
    let more: Vec<Message> = (10..12).map(|n| Message::numbered(CUSTOMER, n)).collect();
    isp.queue_all(&more);
    let mut c = authed_plain(&isp);
    c.expect("ATRN customer.test", 250);
    let turned = serve_turned_line(&mut c, |_| "451 4.3.0 try later");
    // Closed, as a customer does after QUIT: a second turnaround of this line (the other
    // message's retry time may come while Exim's runner is still at it) ends at once.
    drop(c);
    assert!(turned.messages.is_empty(), "{turned:#?}");
    assert_eq!(turned.commands.last().map(String::as_str), Some("QUIT"));
    assert_eq!(isp.queued_message_ids(CUSTOMER).len(), 2, "{}", isp.log());
    // Within that second a turn gets 250 and then an immediate close (nothing is due yet).
    let mut got = Vec::new();
    let mut turns = 0;
    let delivered = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        turns += 1;
        let mut c = authed_plain(&isp);
        c.expect("ATRN customer.test", 250);
        got.extend(received_ids(&serve_turned_line(&mut c, |_| "250 2.1.5 ok")));
        got.sort();
        (got.len() >= more.len()).then_some(())
    });
    assert!(delivered.is_some(), "got {got:?}\n{}", isp.log());
    assert_eq!(got, ids(&more), "each exactly once");
    eprintln!("the refused pair arrived after {turns} turn(s)");
    isp.wait_queue("only the bounce left", Duration::from_secs(10), |q| {
        q.len() == 1 && q[0].sender.is_empty()
    });
}

/// `openssl s_client -starttls smtp` verifying the server against `ca`, as a [`Wire`]: lines
/// typed into its stdin go over TLS, what the server says comes out of its stdout.
struct SClient {
    lines: mpsc::Receiver<String>,
    stdin: std::process::ChildStdin,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _guard: ChildGuard,
}

impl SClient {
    fn connect(port: u16, ca: &Path) -> Self {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-starttls",
                "smtp",
                "-verify_return_error",
            ])
            .args(["-verify_ip", "127.0.0.1", "-CAfile"])
            .arg(ca)
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting openssl s_client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let guard = ChildGuard::new("openssl s_client", child);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Self {
            lines,
            stdin,
            stderr,
            _guard: guard,
        }
    }

    /// One reply (multi-line replies joined as in [`mailcall_e2e::smtp::Reply`]).
    fn reply(&mut self) -> mailcall_e2e::smtp::Reply {
        let mut lines = Vec::new();
        for _ in 0..100 {
            let line = self.line().unwrap_or_else(|| {
                panic!(
                    "s_client ended after {lines:?}; its stderr:\n{}",
                    self.stderr()
                )
            });
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return mailcall_e2e::smtp::Reply { code, lines };
            }
        }
        panic!("a reply of more than 100 lines: {lines:?}")
    }

    fn command(&mut self, line: &str) -> mailcall_e2e::smtp::Reply {
        self.put(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Wire for SClient {
    fn line(&mut self) -> Option<String> {
        self.lines.recv_timeout(LINE_TIMEOUT).ok()
    }

    fn put(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("writing to s_client");
        self.stdin.flush().expect("flushing s_client's stdin");
    }
}

/// STARTTLS, EHLO, AUTH PLAIN, `ATRN customer.test` through s_client; requires the 250.
fn tls_atrn(isp: &EximIsp) -> SClient {
    let mut tls = SClient::connect(isp.atrn_port(), &isp.ca_file());
    let ehlo = tls.command("EHLO client.test");
    assert_eq!(ehlo.code, 250, "{ehlo}\n{}", tls.stderr());
    let auth = tls.command(&auth_plain_command(isp.user(), isp.password()));
    assert_eq!(auth.code, 235, "{auth}");
    let atrn = tls.command("ATRN customer.test");
    assert_eq!(atrn.to_string(), "250 ODMR provider turning line around");
    tls
}

#[test]
fn exim_starttls_verifies_against_its_own_ca_only() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]));
    // The instance's CA verifies the server certificate (SAN IP:127.0.0.1).
    let mut tls = SClient::connect(isp.atrn_port(), &isp.ca_file());
    let ehlo = tls.command("EHLO client.test");
    assert_eq!(ehlo.code, 250, "{ehlo}\n{}", tls.stderr());
    let kw = keywords(&ehlo);
    assert!(kw.iter().any(|k| k == "AUTH CRAM-MD5 PLAIN"), "{ehlo}");
    assert!(kw.iter().any(|k| k == "ATRN"), "{ehlo}");
    assert!(
        !kw.iter().any(|k| k == "STARTTLS"),
        "STARTTLS again inside TLS: {ehlo}"
    );
    assert_eq!(tls.command("QUIT").code, 221);

    // Another CA does not verify it: the handshake fails and nothing is said.
    let other = mailcall_e2e::test_dir("exim-other-ca");
    let other_ca = mailcall_e2e::tls::make_ca_and_server_cert(other.path(), "Some other CA")
        .unwrap()
        .ca_pem;
    let mut wrong = SClient::connect(isp.atrn_port(), &other_ca);
    wrong.put(b"EHLO client.test\r\n");
    assert_eq!(
        wrong.line(),
        None,
        "a reply through an unverified TLS session"
    );
    assert!(
        wrong.stderr().contains("verify error"),
        "s_client's stderr: {}",
        wrong.stderr()
    );
}

#[test]
fn exim_atrn_over_starttls_turns_the_tls_session_around() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]));
    let held = isp.queue_numbered(CUSTOMER, 1);
    let mut tls = tls_atrn(&isp);
    // The turned line is the same TLS session: Exim, now the client, speaks inside it (and does
    // not try STARTTLS again).
    let turned = serve_turned_line(&mut tls, |_| "250 2.1.5 ok");
    assert_eq!(
        received_ids(&turned),
        ids(&held),
        "{turned:#?}\n{}",
        isp.log()
    );
    assert_eq!(turned.commands.last().map(String::as_str), Some("QUIT"));
    assert!(
        !turned
            .commands
            .iter()
            .any(|l| l.eq_ignore_ascii_case("STARTTLS")),
        "{turned:#?}"
    );
    isp.wait_queue("empty", Duration::from_secs(10), |q| q.is_empty());
    // Exim logs the delivery with the cipher of the turned TLS connection.
    let log = isp.main_log();
    let delivery = log.lines().find(|l| l.contains(" => user@customer.test "));
    assert!(
        delivery.is_some_and(|l| l.contains(" X=TLS")),
        "{delivery:?}\n{}",
        isp.log()
    );
}

/// Pins an Exim 4.99.1 bug (see tests/exim.rs): over TLS a turn delivers only its first message.
/// The next delivery process writes through the TLS proxy it was handed but reads the socket
/// itself with a stale copy of the TLS state, so after MAIL/RCPT/DATA of message 2 the customer
/// gets a corrupt record and the connection ends; message 2 stays queued. If this test fails
/// because both arrive, Exim fixed it: drop this test and that note in tests/exim.rs.
#[test]
fn exim_atrn_over_starttls_delivers_only_the_first_of_two() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]));
    let held = isp.queue_numbered(CUSTOMER, 2);
    let mut tls = tls_atrn(&isp);
    let turned = serve_turned_line(&mut tls, |_| "250 2.1.5 ok");
    assert_eq!(
        received_ids(&turned),
        ids(&held[..1]),
        "{turned:#?}\n{}",
        isp.log()
    );
    assert_ne!(turned.commands.last().map(String::as_str), Some("QUIT"));
    let left = isp.wait_queue("the second one left", Duration::from_secs(10), |q| {
        q.len() == 1
    });
    assert_eq!(left[0].message_id.as_ref(), Some(&held[1].message_id));
}

#[test]
fn exim_auth_only_after_starttls_when_required() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]).with_tls_before_auth());
    let mut c = RawSmtp::greeted(isp.atrn_port());
    let ehlo = c.expect("EHLO client.test", 250);
    let kw = keywords(&ehlo);
    assert!(kw.iter().any(|k| k == "STARTTLS"), "{ehlo}");
    assert!(!kw.iter().any(|k| k.starts_with("AUTH")), "{ehlo}");
    let reply = c.command(&auth_plain_command(isp.user(), isp.password()));
    assert_eq!(
        reply.to_string(),
        "503 AUTH command used when not advertised"
    );
    c.expect("QUIT", 221);

    let mut tls = SClient::connect(isp.atrn_port(), &isp.ca_file());
    let ehlo = tls.command("EHLO client.test");
    assert!(
        keywords(&ehlo).iter().any(|k| k == "AUTH CRAM-MD5 PLAIN"),
        "{ehlo}"
    );
    let auth = tls.command(&auth_plain_command(isp.user(), isp.password()));
    assert_eq!(auth.to_string(), "235 Authentication succeeded");
    assert_eq!(tls.command("ATRN").to_string(), "453 You have no mail");
}

#[test]
fn exim_knobs_one_mechanism_no_auth_and_no_atrn() {
    let cram_only = EximIsp::start(
        EximOptions::new(&[CUSTOMER])
            .without_tls()
            .with_mechanisms(AuthMechanisms::CramMd5),
    );
    let mut c = RawSmtp::greeted(cram_only.atrn_port());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        keywords(&ehlo).iter().any(|k| k == "AUTH CRAM-MD5"),
        "{ehlo}"
    );
    let reply = c.command(&auth_plain_command(cram_only.user(), cram_only.password()));
    assert_eq!(reply.code, 504, "{reply}");
    eprintln!("AUTH PLAIN where only CRAM-MD5 is offered: {reply}");
    assert_eq!(
        cram_md5(&mut c, cram_only.user(), cram_only.password()).code,
        235
    );

    let plain_only = EximIsp::start(
        EximOptions::new(&[CUSTOMER])
            .without_tls()
            .with_mechanisms(AuthMechanisms::Plain),
    );
    let mut c = RawSmtp::greeted(plain_only.atrn_port());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(keywords(&ehlo).iter().any(|k| k == "AUTH PLAIN"), "{ehlo}");
    assert_eq!(c.command("AUTH CRAM-MD5").code, 504);

    let no_auth = EximIsp::start(
        EximOptions::new(&[CUSTOMER])
            .without_tls()
            .with_mechanisms(AuthMechanisms::None),
    );
    let mut c = RawSmtp::greeted(no_auth.atrn_port());
    let ehlo = c.expect("EHLO client.test", 250);
    let kw = keywords(&ehlo);
    assert!(kw.iter().any(|k| k == "ATRN"), "{ehlo}");
    assert!(!kw.iter().any(|k| k.starts_with("AUTH")), "{ehlo}");
    assert_eq!(c.command("ATRN").code, 530);

    // A password with what an Exim expansion treats specially, an address as the user.
    let (user, password) = ("odd.user@customer.test", r#"p{a}$s\w"rd: x"#);
    let odd = EximIsp::start(
        EximOptions::new(&[CUSTOMER])
            .without_tls()
            .with_credentials(user, password),
    );
    let mut c = RawSmtp::greeted(odd.atrn_port());
    c.expect("EHLO client.test", 250);
    assert_eq!(c.command(&auth_plain_command(user, "p{a}")).code, 535);
    let reply = c.command(&auth_plain_command(user, password));
    assert_eq!(reply.code, 235, "{reply}\n{}", odd.log());
    let mut c = RawSmtp::greeted(odd.atrn_port());
    c.expect("EHLO client.test", 250);
    let reply = cram_md5(&mut c, user, password);
    assert_eq!(reply.code, 235, "{reply}\n{}", odd.log());
    assert_eq!(c.command("ATRN").to_string(), "453 You have no mail");
    assert_eq!(odd.atrn_requests()[0].user, user);
    // Exim's CRAM-MD5 takes the user name up to the first space (auths/cram_md5.c): a user
    // with a space can log in with PLAIN only.
    let spaced = EximIsp::start(
        EximOptions::new(&[CUSTOMER])
            .without_tls()
            .with_credentials("odd user", "secret"),
    );
    let mut c = RawSmtp::greeted(spaced.atrn_port());
    c.expect("EHLO client.test", 250);
    assert_eq!(cram_md5(&mut c, "odd user", "secret").code, 535);
    assert_eq!(
        c.command(&auth_plain_command("odd user", "secret")).code,
        235
    );

    let no_atrn = EximIsp::start(EximOptions::new(&[CUSTOMER]).without_atrn());
    no_atrn.queue_numbered(CUSTOMER, 1);
    let mut c = authed_plain(&no_atrn);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!keywords(&ehlo).iter().any(|k| k == "ATRN"), "{ehlo}");
    assert_eq!(
        c.command("ATRN customer.test").to_string(),
        "502 ATRN command used when not advertised"
    );
    assert_eq!(no_atrn.queue_len(), 1);
}

/// Postfix's `smtp-sink` on 127.0.0.1: accepts everything, writes each message to its own file
/// under `dir` (`-d`); killed by PID when dropped.
struct SmtpSink {
    port: u16,
    dir: PathBuf,
    _guard: ChildGuard,
}

impl SmtpSink {
    fn start(dir: &Path) -> Self {
        fs_make_nobody_dir(dir);
        let port = free_port();
        let child = Command::new("smtp-sink")
            // Root must name a user to switch to after binding: nobody writes the dumps.
            .args(["-u", "nobody", "-h", "sink.test", "-d"])
            .arg(format!("{}/msg.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("50")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting smtp-sink (Debian package postfix)");
        let guard = ChildGuard::new("smtp-sink", child);
        let up = poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "smtp-sink does not listen on {port}");
        Self {
            port,
            dir: dir.to_path_buf(),
            _guard: guard,
        }
    }

    /// Message-ID → how many dumped files carry it.
    fn message_ids(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for file in mailcall_e2e::files_under(&self.dir) {
            let text = mailcall_e2e::read_for_diagnostics(&file);
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap_or("<none>")
                .to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
        seen
    }
}

fn fs_make_nobody_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("chown")
        .arg("nobody")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown nobody: {out:?}");
}

/// fetchmail in ODMR mode with its own HOME and a 0600 rc file in `dir`, relaying to
/// 127.0.0.1:`smtp_port`.
struct Fetchmail {
    home: PathBuf,
    rc: PathBuf,
}

impl Fetchmail {
    fn new(dir: &Path, isp: &EximIsp, fetchdomains: &str, smtp_port: u16) -> Self {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let rc = home.join(".fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "set no syslog\n\
                 poll 127.0.0.1 port {port} protocol ODMR\n  \
                 user \"{user}\" password \"{password}\"\n  \
                 fetchdomains {fetchdomains}\n  \
                 smtphost 127.0.0.1/{smtp_port}\n",
                port = isp.atrn_port(),
                user = isp.user(),
                password = isp.password(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Self { home, rc }
    }

    /// One poll (`-v`, no daemon), killed after 60 s.
    fn run(&self) -> mailcall_e2e::process::Finished {
        run_with_timeout(
            Command::new("fetchmail")
                .args(["-v", "--nodetach", "-f"])
                .arg(&self.rc)
                .arg("--pidfile")
                .arg(self.home.join("fetchmail.pid"))
                .env("HOME", &self.home)
                .env("FETCHMAILHOME", &self.home),
            None,
            Duration::from_secs(60),
        )
        .expect("running fetchmail (Debian package fetchmail)")
    }
}

#[test]
fn fetchmail_odmr_fetches_the_asked_domains_through_exim() {
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER, OTHER, UNASKED]));
    let mut held = isp.queue_numbered(CUSTOMER, 12);
    held.extend(isp.queue_numbered(OTHER, 10));
    let unasked = isp.queue_numbered(UNASKED, 3);
    assert_eq!(isp.queue_len(), 25);

    let dir = mailcall_e2e::test_dir("fetchmail");
    let sink = SmtpSink::start(&dir.path().join("sink"));
    let fetchmail = Fetchmail::new(dir.path(), &isp, &format!("{CUSTOMER},{OTHER}"), sink.port);
    let fetchmail = |what: &str| {
        let done = fetchmail.run();
        eprintln!("fetchmail ({what}) took {:?}", done.elapsed);
        assert!(
            done.status.is_some_and(|s| s.success()),
            "fetchmail ({what}) exited {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
            done.status,
            done.stdout,
            done.stderr,
            isp.log()
        );
        done
    };
    let run = fetchmail("first run");

    // Every held Message-ID exactly once at the sink (the dumps are complete when the sink has
    // answered the final dot, so they may trail fetchmail's exit by a moment).
    let want: BTreeMap<String, usize> = held.iter().map(|m| (m.message_id.clone(), 1)).collect();
    let mut got = BTreeMap::new();
    let done = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        got = sink.message_ids();
        (got.values().sum::<usize>() >= want.len()).then_some(())
    });
    assert!(
        done.is_some() && got == want,
        "at the sink: {got:#?}\nwanted each of {want:#?} once\nfetchmail: {}\n{}",
        run.stdout,
        isp.log()
    );

    // The asked domains are gone from Exim's queue; the unasked one stays, whole.
    let left = isp.wait_queue("only unasked.test left", Duration::from_secs(10), |q| {
        q.iter().all(|m| !m.is_for(CUSTOMER) && !m.is_for(OTHER))
    });
    let mut left_ids: Vec<String> = left.iter().filter_map(|m| m.message_id.clone()).collect();
    left_ids.sort();
    assert_eq!(left_ids, ids(&unasked), "{left:#?}");

    // fetchmail authenticated with CRAM-MD5 (its only ODMR mechanism) and asked for both.
    let requests = isp.atrn_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].authenticator, "cram_md5", "{}", isp.log());
    assert_eq!(requests[0].user, isp.user());
    assert_eq!(requests[0].domains, format!("{CUSTOMER},{OTHER}"));

    // A second run finds nothing: Exim says 453, fetchmail says so and still exits 0.
    let again = fetchmail("second run");
    assert!(
        format!("{}{}", again.stdout, again.stderr).contains("You have no mail"),
        "{again:?}"
    );
    assert_eq!(sink.message_ids(), want, "nothing new at the sink");
}

#[test]
fn fetchmail_odmr_does_not_starttls() {
    // A provider that offers AUTH only after STARTTLS: fetchmail goes straight to AUTH CRAM-MD5.
    let isp = EximIsp::start(EximOptions::new(&[CUSTOMER]).with_tls_before_auth());
    isp.queue_numbered(CUSTOMER, 1);
    let dir = mailcall_e2e::test_dir("fetchmail-tls");
    let fetchmail = Fetchmail::new(dir.path(), &isp, CUSTOMER, free_port());
    let done = fetchmail.run();
    // fetchmail's exit status 3 is AUTHFAIL: EHLO (which lists STARTTLS), then AUTH CRAM-MD5.
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(3),
        "fetchmail got through without TLS?\n{done:?}"
    );
    assert!(
        done.stdout.contains("ODMR> AUTH CRAM-MD5")
            && done
                .stdout
                .contains("ODMR< 503 AUTH command used when not advertised"),
        "{}",
        done.stdout
    );
    let log = isp.main_log();
    assert!(!log.contains("STARTTLS"), "{log}");
    assert!(isp.atrn_requests().is_empty(), "{}", isp.log());
    assert_eq!(isp.queue_len(), 1);
}
