//! The ODMR client against a scripted provider on 127.0.0.1 that speaks real TLS (a test CA
//! signs its certificate): STARTTLS, AUTH, ATRN, and on `250` the provider turns into the SMTP
//! client inside the same TLS session and delivers to Mailcall's own listener session. Every
//! RFC 2645 reply; turns that deliver only part (Exim 4.99.1 over TLS) asked again; a silent
//! provider bounded by the idle timeout; the fetch's stop; and hostile input on the turned line
//! answered byte for byte as the TCP listener answers it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailcall_core::account::{Account, FetchMode, Secret, Security};
use mailcall_core::client::{ClientSettings, IspError};
use mailcall_core::event::EventSink;
use mailcall_core::hint::{AccountField, Setting};
use mailcall_core::listener::{
    Listener, ListenerEvent, ListenerSettings, Reception, RecipientPolicy,
};
use mailcall_core::maildir::Maildir;
use mailcall_core::odmr::{self, Turnaround};
use mailcall_core::report::{AccountResult, DomainOutcome};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::pki::{pki, Pki};

const USER: &str = "customer";
const PASSWORD: &str = "odmr-pa55";
/// Upper bound for anything a test waits for; never reached when the code works.
const DEADLINE: Duration = Duration::from_secs(20);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Wire = BufReader<Box<dyn Io>>;

/// What the provider does on one connection, after STARTTLS and AUTH.
#[derive(Clone)]
enum Plan {
    /// Answers ATRN with this reply line and goes on (QUIT gets 221).
    Answer(&'static str),
    /// `250`, then the turn.
    Turn(Turn),
    /// Does not advertise ATRN (and answers it with 502 if sent anyway).
    NoAtrn,
}

/// The provider as the SMTP client on the turned line.
#[derive(Clone)]
enum Turn {
    /// EHLO, then these messages (Message-ID, recipient); then QUIT, or (`quit` false) the
    /// connection dropped after the last 250, as Exim 4.99.1 over TLS does.
    Deliver {
        msgs: Vec<(&'static str, &'static str)>,
        quit: bool,
    },
    /// Reads the greeting and then says nothing; records what Mailcall says next.
    Silent,
    /// Each chunk as it is, then that many replies read; then the connection dropped.
    Raw(Vec<(Vec<u8>, usize)>),
}

/// The scripted provider: one plan per connection, in order.
struct Provider {
    port: u16,
    /// What the provider read before the turn, one list per connection.
    seen: Arc<Mutex<Vec<Vec<String>>>>,
    /// The replies Mailcall gave on each turned line (the greeting first), one list per turn.
    turned: Arc<Mutex<Vec<Vec<String>>>>,
    connections: Arc<AtomicUsize>,
}

impl Provider {
    /// The replies of the first `n` turns, once the provider has recorded them (it does so when
    /// the connection ends, which may be just after the client's side returned).
    async fn turns(&self, n: usize) -> Vec<Vec<String>> {
        let started = Instant::now();
        loop {
            let turned = self.turned.lock().unwrap().clone();
            if turned.len() >= n {
                return turned;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "only {} turn(s) recorded",
                turned.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn provider(plans: Vec<Plan>, pki: &Pki) -> Provider {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let turned = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let (s, t, n) = (seen.clone(), turned.clone(), connections.clone());
    tokio::spawn(async move {
        for plan in plans {
            let Ok((sock, _)) = tcp.accept().await else {
                return;
            };
            n.fetch_add(1, Ordering::SeqCst);
            s.lock().unwrap().push(Vec::new());
            let log = s.clone();
            let turns = t.clone();
            let acceptor = acceptor.clone();
            // One connection at a time, as the client makes them.
            let _ =
                tokio::time::timeout(DEADLINE, connection(sock, plan, acceptor, log, turns)).await;
        }
    });
    Provider {
        port,
        seen,
        turned,
        connections,
    }
}

async fn connection(
    sock: TcpStream,
    plan: Plan,
    acceptor: tokio_rustls::TlsAcceptor,
    log: Arc<Mutex<Vec<Vec<String>>>>,
    turns: Arc<Mutex<Vec<Vec<String>>>>,
) {
    let note = |line: &str| {
        if let Some(last) = log.lock().unwrap().last_mut() {
            last.push(line.to_string());
        }
    };
    let mut plain = BufReader::new(sock);
    plain.write_all(b"220 isp.test ESMTP\r\n").await.unwrap();
    // Before TLS: EHLO, then STARTTLS.
    loop {
        let Some(line) = read_line(&mut plain).await else {
            return;
        };
        note(&line);
        if line.starts_with("EHLO") {
            plain
                .write_all(b"250-isp.test\r\n250-STARTTLS\r\n250 ATRN\r\n")
                .await
                .unwrap();
        } else if line == "STARTTLS" {
            plain.write_all(b"220 go ahead\r\n").await.unwrap();
            break;
        } else {
            plain.write_all(b"530 STARTTLS first\r\n").await.unwrap();
        }
    }
    let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
        return;
    };
    let mut wire: Wire = BufReader::new(Box::new(tls));
    loop {
        let Some(line) = read_line(&mut wire).await else {
            return;
        };
        note(&line);
        let reply = if line.starts_with("EHLO") {
            match plan {
                Plan::NoAtrn => "250-isp.test\r\n250 AUTH PLAIN\r\n".to_string(),
                _ => "250-isp.test\r\n250-AUTH PLAIN\r\n250 ATRN\r\n".to_string(),
            }
        } else if let Some(b64) = line.strip_prefix("AUTH PLAIN ") {
            let decoded = STANDARD.decode(b64).unwrap_or_default();
            if decoded == format!("\0{USER}\0{PASSWORD}").as_bytes() {
                "235 2.7.0 ok\r\n".into()
            } else {
                "535 5.7.8 bad credentials\r\n".into()
            }
        } else if line.starts_with("ATRN") {
            match &plan {
                Plan::NoAtrn => "502 5.5.1 not here\r\n".into(),
                Plan::Answer(reply) => format!("{reply}\r\n"),
                Plan::Turn(turn) => {
                    wire.write_all(b"250 ODMR provider turning line around\r\n")
                        .await
                        .unwrap();
                    let replies = run_turn(&mut wire, turn).await;
                    turns.lock().unwrap().push(replies);
                    return;
                }
            }
        } else if line == "QUIT" {
            let _ = wire.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "502 5.5.1 what\r\n".into()
        };
        wire.write_all(reply.as_bytes()).await.unwrap();
    }
}

/// One line without its line end; `None` at EOF or on an error.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut line = String::new();
    match r.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// One whole reply, its lines joined with `|`; `None` when the connection ended first.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(r).await?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Some(lines.join("|"));
        }
    }
}

/// The provider's side of a turn; returns Mailcall's replies, the greeting first.
async fn run_turn(wire: &mut Wire, turn: &Turn) -> Vec<String> {
    let mut replies = Vec::new();
    let Some(greeting) = read_reply(wire).await else {
        return replies;
    };
    replies.push(greeting);
    match turn {
        Turn::Silent => {
            // Whatever Mailcall says before it closes (a 421), then EOF.
            while let Some(r) = read_reply(wire).await {
                replies.push(r);
            }
        }
        Turn::Raw(steps) => {
            for (bytes, n) in steps {
                if wire.write_all(bytes).await.is_err() {
                    return replies;
                }
                for _ in 0..*n {
                    match read_reply(wire).await {
                        Some(r) => replies.push(r),
                        None => return replies,
                    }
                }
            }
        }
        Turn::Deliver { msgs, quit } => {
            wire.write_all(b"EHLO provider.test\r\n").await.unwrap();
            replies.extend(read_reply(wire).await);
            for (id, rcpt) in msgs {
                for cmd in [
                    "MAIL FROM:<sender@remote.example>\r\n".to_string(),
                    format!("RCPT TO:<{rcpt}>\r\n"),
                    "DATA\r\n".to_string(),
                ] {
                    wire.write_all(cmd.as_bytes()).await.unwrap();
                    replies.extend(read_reply(wire).await);
                }
                let body = format!(
                    "From: sender@remote.example\r\nSubject: held\r\nMessage-ID: <{id}>\r\n\r\nheld for the customer\r\n.\r\n"
                );
                wire.write_all(body.as_bytes()).await.unwrap();
                replies.extend(read_reply(wire).await);
            }
            if *quit {
                wire.write_all(b"QUIT\r\n").await.unwrap();
                replies.extend(read_reply(wire).await);
            }
        }
    }
    replies
}

/// The service's side: a reception over a Maildir, and what it reports.
struct Receiver {
    turnaround: Turnaround,
    events: mpsc::UnboundedReceiver<ListenerEvent>,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn new(settings: ListenerSettings, idle: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Arc::new(Maildir::create(dir.path()).unwrap());
        let policy =
            RecipientPolicy::new(vec!["a.test".parse().unwrap(), "b.test".parse().unwrap()]);
        let (tx, events) = mpsc::unbounded_channel();
        let reception = Reception::new(
            Arc::new(settings),
            Arc::new(policy),
            maildir,
            tx,
            CancellationToken::new(),
        );
        Receiver {
            turnaround: Turnaround {
                reception: Arc::new(reception),
                idle_timeout: idle,
                stop: CancellationToken::new(),
            },
            events,
            dir,
        }
    }

    fn files(&self, sub: &str) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// The Message-IDs of the Stored events so far, in order.
    fn stored(&mut self) -> Vec<String> {
        let mut ids = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            if let ListenerEvent::Stored(info) = ev {
                ids.push(info.message_id.unwrap_or_default());
            }
        }
        ids
    }
}

fn listener_settings() -> ListenerSettings {
    ListenerSettings::new("mx.test".into(), 2048)
}

/// The test account in ODMR mode: STARTTLS with the test CA, a user and password, two domains.
fn account(port: u16, pki: &Pki) -> Account {
    Account {
        mode: FetchMode::Odmr,
        security: Security::Starttls,
        username: Some(USER.into()),
        password: Some(Secret::new(PASSWORD)),
        ca_file: Some(pki.ca_file.clone()),
        ..common::account(port, &["a.test", "b.test"])
    }
}

fn settings(retries: u32) -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        retries,
        retry_delay: Duration::from_millis(20),
        ..ClientSettings::default()
    }
}

async fn fetch(account: &Account, retries: u32, rx: &Receiver) -> AccountResult {
    tokio::time::timeout(
        DEADLINE,
        odmr::fetch_account(
            account,
            &settings(retries),
            &rx.turnaround,
            &EventSink::default(),
        ),
    )
    .await
    .expect("the ODMR session must end by itself")
}

fn outcomes(r: &AccountResult) -> Vec<DomainOutcome> {
    r.domains.iter().map(|d| d.outcome).collect()
}

fn transcript(r: &AccountResult) -> String {
    r.transcript
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn atrn_turns_the_tls_line_and_the_listener_session_stores_the_mail() {
    let pki = pki();
    let isp = provider(
        vec![
            Plan::Turn(Turn::Deliver {
                msgs: vec![
                    ("m1@remote.example", "user@a.test"),
                    ("m2@remote.example", "user@a.test"),
                ],
                quit: true,
            }),
            Plan::Answer("453 You have no mail"),
        ],
        &pki,
    )
    .await;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    let text = transcript(&result);
    assert!(result.error.is_none(), "{:?}\n{text}", result.error);
    assert_eq!(
        outcomes(&result),
        [DomainOutcome::Started { expected: None }; 2],
        "the turn is the domains' result; the 453 after it only says nothing is left"
    );
    assert!(result
        .domains
        .iter()
        .all(|d| d.code == Some(250) && d.attempts == 2 && d.mode == FetchMode::Odmr));
    assert_eq!(
        rx.stored(),
        ["m1@remote.example", "m2@remote.example"],
        "{text}"
    );
    assert_eq!(rx.files("new").len(), 2);
    assert!(rx.files("tmp").is_empty());
    // The stored message came over TLS: the trace header says ESMTPS (RFC 3848).
    let file = std::fs::read_to_string(&rx.files("new")[0]).unwrap();
    assert!(file.contains("with ESMTPS"), "{file}");

    let seen = isp.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "a second connection for the second ATRN: {seen:?}"
    );
    assert!(seen[0].contains(&"STARTTLS".to_string()), "{seen:?}");
    assert!(
        seen[0].contains(&"ATRN a.test,b.test".to_string()),
        "{seen:?}"
    );
    let turned = isp.turns(1).await;
    assert_eq!(turned[0][0], "220 mx.test ESMTP Mailcall", "{turned:?}");
    assert!(
        turned[0][1].starts_with("250-mx.test|") && !turned[0][1].contains("STARTTLS"),
        "inside TLS already: no STARTTLS on the turned line: {turned:?}"
    );
    assert_eq!(turned[0].last().unwrap(), "221 2.0.0 Bye");
    // The transcript has the client side with AUTH redacted, and the turn.
    assert!(text.contains("C: AUTH PLAIN <redacted>"), "{text}");
    assert!(!text.contains(&STANDARD.encode(format!("\0{USER}\0{PASSWORD}"))));
    assert!(!text.contains(PASSWORD));
    assert!(text.contains("line turned around (inside TLS)"), "{text}");
    assert!(
        text.contains("the turn ended (the ISP said QUIT): 2 message(s) stored, 2 new"),
        "{text}"
    );
    assert_eq!(result.server.mechanism.as_deref(), Some("PLAIN"));
}

#[tokio::test]
async fn a_turn_cut_short_is_asked_again_until_nothing_new_comes() {
    let pki = pki();
    // As Exim 4.99.1 over TLS: each turn delivers one message and the connection breaks. The
    // third turn brings only a message already stored (its 250 was "lost"): no progress, stop.
    let isp = provider(
        vec![
            Plan::Turn(Turn::Deliver {
                msgs: vec![("m1@remote.example", "user@a.test")],
                quit: false,
            }),
            Plan::Turn(Turn::Deliver {
                msgs: vec![("m2@remote.example", "user@a.test")],
                quit: false,
            }),
            Plan::Turn(Turn::Deliver {
                msgs: vec![("m2@remote.example", "user@a.test")],
                quit: true,
            }),
            Plan::Answer("453 You have no mail"),
        ],
        &pki,
    )
    .await;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(
        rx.stored(),
        [
            "m1@remote.example",
            "m2@remote.example",
            "m2@remote.example"
        ]
    );
    assert_eq!(
        isp.connections.load(Ordering::SeqCst),
        3,
        "a turn with nothing new ends the asking"
    );
    assert!(result.domains.iter().all(|d| d.attempts == 3));
    let text = transcript(&result);
    assert!(
        text.contains(
            "the turn ended (the connection ended without QUIT): 1 message(s) stored, 1 new"
        ),
        "{text}"
    );
    assert!(
        text.contains("the turn ended (the ISP said QUIT): 1 message(s) stored, 0 new"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cut_turn_that_only_repeats_a_message_is_settled_by_one_more_atrn() {
    let pki = pki();
    // Exim 4.99.1 over TLS when the 250 of the last message was lost in the break: the next
    // turn brings that message again and breaks too. Asked once more, the ISP holds nothing:
    // every message is here, and the fetch is a success.
    let cut = |id| {
        Plan::Turn(Turn::Deliver {
            msgs: vec![(id, "user@a.test")],
            quit: false,
        })
    };
    let isp = provider(
        vec![
            cut("m1@remote.example"),
            cut("m1@remote.example"),
            Plan::Answer("453 You have no mail"),
        ],
        &pki,
    )
    .await;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(rx.stored(), ["m1@remote.example", "m1@remote.example"]);
    assert_eq!(isp.connections.load(Ordering::SeqCst), 3);
    assert!(
        transcript(&result).contains("asking once more whether the ISP still holds mail"),
        "{}",
        transcript(&result)
    );
}

#[tokio::test]
async fn a_cut_turn_with_nothing_new_twice_in_a_row_is_the_fetchs_error() {
    let pki = pki();
    // A provider whose turns keep breaking without bringing anything new: mail may be left
    // there, and the fetch says so (transient: an automatic fetch tries again).
    let cut = || {
        Plan::Turn(Turn::Deliver {
            msgs: vec![("m1@remote.example", "user@a.test")],
            quit: false,
        })
    };
    let isp = provider(vec![cut(), cut(), cut(), cut()], &pki).await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    assert!(
        matches!(&result.error, Some(e @ IspError::ConnectionLost { .. }) if e.is_transient()),
        "{:?}",
        result.error
    );
    assert_eq!(
        isp.connections.load(Ordering::SeqCst),
        3,
        "one turn with mail, then two without: the second settles nothing"
    );
}

#[tokio::test]
async fn every_refusal_of_rfc_2645_is_reported_and_not_retried() {
    let pki = pki();
    let cases: &[(&str, DomainOutcome, Option<AccountField>, bool)] = &[
        ("453 You have no mail", DomainOutcome::NoMail, None, true),
        (
            "450 ATRN request refused",
            DomainOutcome::NotAllowed,
            None,
            false,
        ),
        (
            "530 5.7.0 Authentication required",
            DomainOutcome::AuthRequired,
            None,
            false,
        ),
        (
            "502 5.5.1 Command not implemented",
            DomainOutcome::Unsupported,
            Some(AccountField::Mode),
            false,
        ),
        (
            "554 5.7.1 not for you",
            DomainOutcome::Rejected,
            None,
            false,
        ),
    ];
    for &(reply, outcome, fix, accepted) in cases {
        let isp = provider(vec![Plan::Answer(reply)], &pki).await;
        let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
        let result = fetch(&account(isp.port, &pki), 3, &rx).await;
        assert_eq!(outcomes(&result), [outcome; 2], "{reply}");
        assert_eq!(outcome.is_accepted(), accepted, "{reply}");
        assert_eq!(
            result.error.as_ref().and_then(|e| e.fix("isp")),
            fix.map(|f| Setting::account("isp", f)),
            "{reply}: {:?}",
            result.error
        );
        assert_eq!(isp.connections.load(Ordering::SeqCst), 1, "{reply}");
        assert!(rx.files("new").is_empty());
        let seen = isp.seen.lock().unwrap().clone();
        assert_eq!(
            seen[0].last().map(String::as_str),
            Some("QUIT"),
            "{reply}: {seen:?}"
        );
        let explained = result.domains[0].explain();
        assert!(
            !explained.contains("ETRN") || reply.starts_with("502"),
            "{explained}"
        );
    }
    // 421: the ISP is closing; a transient failure, no QUIT sent into it.
    let isp = provider(vec![Plan::Answer("421 4.3.2 shutting down")], &pki).await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 3, &rx).await;
    assert!(
        matches!(&result.error, Some(IspError::ServiceClosing { .. })),
        "{:?}",
        result.error
    );
    assert!(result.error.as_ref().unwrap().is_transient());
}

#[tokio::test]
async fn a_451_is_asked_again_with_backoff_on_a_new_connection() {
    let pki = pki();
    let isp = provider(
        vec![
            Plan::Answer("451 Unable to process ATRN request now"),
            Plan::Answer("451 Unable to process ATRN request now"),
            Plan::Turn(Turn::Deliver {
                msgs: vec![("late@remote.example", "user@a.test")],
                quit: true,
            }),
            Plan::Answer("453 You have no mail"),
        ],
        &pki,
    )
    .await;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(rx.stored(), ["late@remote.example"]);
    assert_eq!(isp.connections.load(Ordering::SeqCst), 4);
    assert_eq!(
        outcomes(&result),
        [DomainOutcome::Started { expected: None }; 2]
    );
    let text = transcript(&result);
    assert!(text.contains("asking again with ATRN in 0.0 s"), "{text}");
    assert!(text.contains("asking again with ATRN in 0.0 s, on a new connection"));

    // Retries exhausted: Deferred, worth another fetch later.
    let isp = provider(
        vec![
            Plan::Answer("451 Unable to process ATRN request now"),
            Plan::Answer("451 Unable to process ATRN request now"),
        ],
        &pki,
    )
    .await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 1, &rx).await;
    assert_eq!(outcomes(&result), [DomainOutcome::Deferred; 2]);
    assert!(result
        .domains
        .iter()
        .all(|d| d.outcome.is_transient() && d.attempts == 2));
    assert_eq!(isp.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn atrn_not_advertised_sends_no_atrn() {
    let pki = pki();
    let isp = provider(vec![Plan::NoAtrn], &pki).await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::AtrnNotAdvertised { .. }), "{err:?}");
    assert_eq!(
        err.fix("isp"),
        Some(Setting::account("isp", AccountField::Mode))
    );
    assert!(!err.is_transient());
    assert_eq!(outcomes(&result), [DomainOutcome::NotSent; 2]);
    let seen = isp.seen.lock().unwrap().clone();
    assert!(!seen[0].iter().any(|l| l.starts_with("ATRN")), "{seen:?}");

    // `check` reports the same, and sends no ATRN either.
    let isp = provider(vec![Plan::NoAtrn], &pki).await;
    let (info, error, _) = odmr::check_account(&account(isp.port, &pki), &settings(0)).await;
    assert!(info.tls && info.authenticated && !info.advertises("ATRN"));
    assert!(matches!(error, Some(IspError::AtrnNotAdvertised { .. })));
    let isp = provider(vec![Plan::Answer("453 You have no mail")], &pki).await;
    let (info, error, _) = odmr::check_account(&account(isp.port, &pki), &settings(0)).await;
    assert!(info.advertises("ATRN") && error.is_none(), "{error:?}");
    let seen = isp.seen.lock().unwrap().clone();
    assert!(!seen[0].iter().any(|l| l.starts_with("ATRN")), "{seen:?}");
}

#[tokio::test]
async fn without_a_user_nothing_is_sent() {
    let pki = pki();
    let isp = provider(vec![Plan::Answer("453 You have no mail")], &pki).await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(5));
    let mut acct = account(isp.port, &pki);
    acct.username = None;
    acct.password = None;
    let result = fetch(&acct, 2, &rx).await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::OdmrNeedsAuth { .. }), "{err:?}");
    assert_eq!(
        err.fix("isp"),
        Some(Setting::account("isp", AccountField::User))
    );
    assert_eq!(
        isp.connections.load(Ordering::SeqCst),
        0,
        "refused before connecting"
    );
    // And a password never goes out in clear, ODMR or not.
    let mut plain = account(isp.port, &pki);
    plain.security = Security::None;
    let result = fetch(&plain, 2, &rx).await;
    assert!(matches!(result.error, Some(IspError::PlaintextAuth { .. })));
    assert_eq!(isp.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_silent_provider_ends_the_turn_at_the_idle_timeout() {
    let pki = pki();
    let isp = provider(vec![Plan::Turn(Turn::Silent)], &pki).await;
    // The listener's own command timeout is 5 minutes; the turn must not wait for it.
    let rx = Receiver::new(listener_settings(), Duration::from_millis(400));
    let started = Instant::now();
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        matches!(&result.error, Some(IspError::Timeout { secs, .. }) if *secs < 1.0),
        "a silent ISP is a transient failure: {:?}",
        result.error
    );
    assert!(rx.files("new").is_empty());
    let turned = isp.turns(1).await;
    assert_eq!(
        turned[0],
        [
            "220 mx.test ESMTP Mailcall".to_string(),
            "421 4.4.2 mx.test Error: timeout exceeded".to_string()
        ]
    );
    assert_eq!(
        isp.connections.load(Ordering::SeqCst),
        1,
        "an empty turn ends the asking"
    );
}

#[tokio::test]
async fn stopping_the_fetch_ends_a_turn_as_the_listener_ends_its_sessions() {
    let pki = pki();
    let isp = provider(vec![Plan::Turn(Turn::Silent)], &pki).await;
    let rx = Receiver::new(listener_settings(), Duration::from_secs(60));
    let stop = rx.turnaround.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
    });
    let started = Instant::now();
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(result.error.is_none(), "{:?}", result.error);
    let turned = isp.turns(1).await;
    assert_eq!(
        turned[0].last().map(String::as_str),
        Some("421 4.3.2 mx.test Service shutting down"),
        "{turned:?}"
    );
}

/// A delivery that tries every trick on the turned line: relaying, address quoting, source
/// routes, bare LF in the data and `\n.\n` smuggling, SIZE and real oversize, an overlong line,
/// ATRN back at us, and a message cut mid-DATA at the end.
fn hostile_steps() -> Vec<(Vec<u8>, usize)> {
    let mail = |rcpt: &str| format!("MAIL FROM:<s@remote.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
    let mut oversize = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..60 {
        oversize.extend_from_slice(&[b'z'; 70]);
        oversize.extend_from_slice(b"\r\n");
    }
    oversize.extend_from_slice(b".\r\n");
    vec![
        (b"EHLO provider.test\r\n".to_vec(), 1),
        (b"MAIL FROM:<s@remote.example>\r\n".to_vec(), 1),
        (b"RCPT TO:<victim@elsewhere.example>\r\n".to_vec(), 1),
        (
            b"RCPT TO:<\"user@a.test\"@elsewhere.example>\r\n".to_vec(),
            1,
        ),
        (
            b"RCPT TO:<@a.test:victim@elsewhere.example>\r\n".to_vec(),
            1,
        ),
        (b"RCPT TO:<victim%elsewhere.example@a.test>\r\n".to_vec(), 1),
        (b"RCPT TO:<user@a.test.elsewhere.example>\r\n".to_vec(), 1),
        (b"RCPT TO:<user@a.test>\r\n".to_vec(), 1),
        (b"DATA\r\n".to_vec(), 1),
        (b"Subject: bare\r\n\r\none\nbare LF\r\n.\r\n".to_vec(), 1),
        (mail("user@a.test").into_bytes(), 3),
        (
            b"Subject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<evil@x.example>\r\n.\r\n".to_vec(),
            1,
        ),
        (b"MAIL FROM:<s@remote.example> SIZE=999999\r\n".to_vec(), 1),
        (mail("user@b.test").into_bytes(), 3),
        (oversize, 1),
        ([vec![b'A'; 5000], b"\r\n".to_vec()].concat(), 1),
        (b"ATRN a.test\r\n".to_vec(), 1),
        (b"ETRN a.test\r\n".to_vec(), 1),
        (b"AUTH PLAIN AGZvbwBiYXI=\r\n".to_vec(), 1),
        (b"NOOP\r\n".to_vec(), 1),
        (mail("user@a.test").into_bytes(), 3),
        (b"Subject: cut\r\n\r\nhalf a mess".to_vec(), 0),
    ]
}

/// The replies with what differs between runs (queue ids) taken out.
fn normalized(replies: &[String]) -> Vec<String> {
    replies
        .iter()
        .map(|r| match r.find("queued as ") {
            Some(i) => format!("{}queued as <id>", &r[..i]),
            None => r.clone(),
        })
        .collect()
}

#[tokio::test]
async fn hostile_input_on_the_turned_line_gets_the_listeners_answers() {
    // The TCP listener with the same settings and domains, fed the same bytes.
    let direct = Receiver::new(listener_settings(), Duration::from_secs(5));
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(listener.serve(direct.turnaround.reception.clone()));
    let sock = TcpStream::connect(addr).await.unwrap();
    let mut wire: Wire = BufReader::new(Box::new(sock));
    let expected = tokio::time::timeout(DEADLINE, run_turn(&mut wire, &Turn::Raw(hostile_steps())))
        .await
        .unwrap();
    drop(wire);

    let pki = pki();
    let isp = provider(vec![Plan::Turn(Turn::Raw(hostile_steps()))], &pki).await;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(2));
    let result = fetch(&account(isp.port, &pki), 2, &rx).await;
    // The script ends by cutting a message mid-DATA: a lost connection, worth another try.
    assert!(
        matches!(&result.error, Some(e @ IspError::ConnectionLost { .. }) if e.is_transient()),
        "{:?}",
        result.error
    );
    let turned = isp.turns(1).await;
    assert_eq!(
        normalized(&turned[0]),
        normalized(&expected),
        "the turned line must answer exactly as the listener does"
    );
    // What the listener's answers are (so that "the same" is not "the same and wrong").
    let joined = expected.join("\n");
    for want in [
        "550 5.7.1 <victim@elsewhere.example>: relay access denied",
        "550 5.5.2 Error: bare CR or LF in message data",
        "552 5.3.4 Error: message too big for this system",
        "500 5.5.2 Line too long",
        "502 5.5.1 Error: command not implemented",
        "250 2.1.5 Ok",
    ] {
        assert!(joined.contains(want), "no {want:?} in:\n{joined}");
    }
    // Nothing stored: every message was refused or cut.
    assert!(rx.stored().is_empty());
    assert!(rx.files("new").is_empty(), "{:?}", rx.files("new"));
    assert!(rx.files("tmp").is_empty(), "{:?}", rx.files("tmp"));
}

#[tokio::test]
async fn a_fetch_of_odmr_accounts_ends_when_the_turns_end_and_counts_per_domain() {
    use mailcall_core::fetch::{self, FetchOptions, Receiving};
    use mailcall_core::history::{EndReason, Trigger};
    let pki = pki();
    let isp = provider(
        vec![
            Plan::Turn(Turn::Deliver {
                msgs: vec![
                    ("a1@remote.example", "user@a.test"),
                    ("b1@remote.example", "user@b.test"),
                    ("a2@remote.example", "user@a.test"),
                ],
                quit: true,
            }),
            Plan::Answer("453 You have no mail"),
        ],
        &pki,
    )
    .await;
    // A long idle timeout: the session must not wait for it once the turns ended.
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(30));
    let options = FetchOptions {
        trigger: Trigger::Cli,
        idle_timeout: Duration::from_secs(30),
        max_wait: Duration::from_secs(60),
        client: settings(1),
        history: None,
    };
    let started = Instant::now();
    let receiving = Receiving {
        listen: None,
        reception: rx.turnaround.reception.clone(),
        deliveries: &mut rx.events,
    };
    let record = tokio::time::timeout(
        DEADLINE,
        fetch::run(
            vec![account(isp.port, &pki)],
            receiving,
            &options,
            1,
            &EventSink::default(),
            CancellationToken::new(),
        ),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(record.ended_because, EndReason::DeliveriesEnded);
    assert!(record.succeeded(), "{:#?}", record);
    assert_eq!(record.messages.len(), 3);
    let per_domain: Vec<(&str, u32, FetchMode)> = record
        .domains
        .iter()
        .map(|d| (d.domain.as_str(), d.messages, d.mode))
        .collect();
    assert_eq!(
        per_domain,
        [
            ("a.test", 2, FetchMode::Odmr),
            ("b.test", 1, FetchMode::Odmr)
        ]
    );
    let summary = record.summary();
    assert!(
        summary.domains[0].contains("the ISP turned the line around"),
        "{summary:?}"
    );
    assert!(record.transcripts[0]
        .1
        .iter()
        .any(|l| l.line.starts_with("ATRN a.test,b.test")));

    // An ETRN account with no listener is not asked, and says why.
    let mut etrn = account(isp.port, &pki);
    etrn.mode = FetchMode::Etrn;
    let mut rx = Receiver::new(listener_settings(), Duration::from_secs(1));
    let receiving = Receiving {
        listen: None,
        reception: rx.turnaround.reception.clone(),
        deliveries: &mut rx.events,
    };
    let record = fetch::run(
        vec![etrn],
        receiving,
        &options,
        1,
        &EventSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert!(!record.succeeded());
    assert!(
        record.errors[0].message.contains("no listener runs"),
        "{:?}",
        record.errors
    );
    assert_eq!(record.domains[0].outcome, DomainOutcome::NotSent);
}
