//! The ETRN client against a scripted ISP on 127.0.0.1 ([`common::isp`]): every reply and its
//! retry decision, a server without ETRN, timeouts, a link dropping, TLS and AUTH refusals, the
//! transcript, and the address asked noted before the first ETRN.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailcall_core::account::{Account, Secret, Security};
use mailcall_core::client::{ClientSettings, IspError};
use mailcall_core::etrn;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::listener::AskedPeers;
use mailcall_core::report::{AccountResult, Direction, DomainOutcome};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::TryRecvError;

use common::account;
use common::isp::{by_domain, Act, EtrnScript, Isp, EHLO_WITHOUT_ETRN, EHLO_WITH_ETRN, GREETING};

fn settings() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        retries: 3,
        retry_delay: Duration::from_millis(10),
        default_helo: "client.test".into(),
    }
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => return events,
        }
    }
}

/// [`etrn::fetch_account`] for tests that do not look at the asked addresses.
async fn fetch_account(
    account: &Account,
    settings: &ClientSettings,
    events: &EventSink,
) -> AccountResult {
    let asked = AskedPeers::default();
    etrn::fetch_account(account, settings, events, &asked.scope()).await
}

fn outcomes(result: &AccountResult) -> Vec<DomainOutcome> {
    result.domains.iter().map(|d| d.outcome).collect()
}

#[tokio::test]
async fn a_459_does_not_stop_the_next_domains() {
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        by_domain(&[("b.test", "459 4.7.1 b.test: service unavailable")]),
    )
    .await;
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test", "c.test"]),
        &settings(),
        &events,
    )
    .await;

    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(
        outcomes(&result),
        [
            DomainOutcome::Started { expected: None },
            DomainOutcome::NotAllowed,
            DomainOutcome::Started { expected: None }
        ]
    );
    assert_eq!(
        server.etrns(),
        ["ETRN a.test", "ETRN b.test", "ETRN c.test"]
    );
    assert_eq!(server.received().last().map(String::as_str), Some("QUIT"));
    assert_eq!(result.domains[1].code, Some(459));
    assert!(result.domains[1].text.contains("service unavailable"));
    assert!(result
        .domains
        .iter()
        .all(|d| d.attempts == 1 && d.messages == 0));
    let replies: Vec<u16> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            Event::EtrnReply {
                code,
                will_retry: false,
                ..
            } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [250, 459, 250]);
}

#[tokio::test]
async fn no_mail_then_started() {
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        by_domain(&[
            ("a.test", "251 OK no messages waiting for node a.test"),
            ("b.test", "253 4 pending messages started"),
        ]),
    )
    .await;
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    assert_eq!(
        outcomes(&result),
        [
            DomainOutcome::NoMail,
            DomainOutcome::Started { expected: Some(4) }
        ]
    );
    assert_eq!(server.etrns().len(), 2);
}

#[tokio::test]
async fn a_4xx_is_retried_until_it_succeeds() {
    let mut calls = 0;
    let script: EtrnScript = Box::new(move |_| {
        calls += 1;
        Act::Reply(if calls <= 2 {
            "458 Unable to queue messages"
        } else {
            "250 Queuing started"
        })
    });
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, script).await;
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let result = fetch_account(&account(server.port, &["a.test"]), &settings(), &events).await;

    let d = &result.domains[0];
    assert_eq!(d.outcome, DomainOutcome::Started { expected: None });
    assert_eq!((d.attempts, d.code), (3, Some(250)));
    assert_eq!(server.etrns().len(), 3);
    let retries: Vec<bool> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            Event::EtrnReply { will_retry, .. } => Some(will_retry),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [true, true, false]);
}

#[tokio::test]
async fn a_4xx_forever_ends_deferred_after_the_retries() {
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        Box::new(|_| Act::Reply("451 4.3.0 try later")),
    )
    .await;
    let mut s = settings();
    s.retries = 2;
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &s,
        &EventSink::default(),
    )
    .await;
    for d in &result.domains {
        assert_eq!(d.outcome, DomainOutcome::Deferred);
        assert_eq!((d.attempts, d.code), (3, Some(451)));
    }
    assert_eq!(server.etrns().len(), 6);
    assert!(result.error.is_none());
}

#[tokio::test]
async fn already_processing_is_not_retried() {
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        Box::new(|_| Act::Reply("458 Already processing a.test")),
    )
    .await;
    let result = fetch_account(
        &account(server.port, &["#a.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    assert_eq!(outcomes(&result), [DomainOutcome::AlreadyRunning]);
    assert_eq!(result.domains[0].attempts, 1);
}

#[tokio::test]
async fn no_etrn_is_sent_when_the_server_does_not_advertise_it() {
    let server = Isp::start(Some(GREETING), EHLO_WITHOUT_ETRN, by_domain(&[])).await;
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &settings(),
        &events,
    )
    .await;

    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::EtrnNotAdvertised { .. }), "{err}");
    assert!(err.to_string().contains("does not advertise ETRN"));
    assert!(server.etrns().is_empty());
    assert_eq!(
        outcomes(&result),
        [DomainOutcome::NotSent, DomainOutcome::NotSent]
    );
    assert!(result
        .domains
        .iter()
        .all(|d| d.code.is_none() && d.attempts == 0));
    assert!(!result.server.advertises("ETRN"));
    assert!(result.server.extensions.contains(&"PIPELINING".to_owned()));
    assert!(drain(&mut rx)
        .iter()
        .any(|e| matches!(e, Event::Error(p) if p.message.contains("ETRN"))));
}

#[tokio::test]
async fn a_421_greeting_is_a_transient_error() {
    let server = Isp::start(
        Some("421 4.3.2 isp.test Service not available\r\n"),
        EHLO_WITH_ETRN,
        by_domain(&[]),
    )
    .await;
    let result = fetch_account(
        &account(server.port, &["a.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::ServiceClosing { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("Service not available"), "{err}");
    assert_eq!(outcomes(&result), [DomainOutcome::NotSent]);
}

#[tokio::test]
async fn a_421_to_etrn_leaves_the_rest_unasked() {
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        Box::new(|_| Act::Reply("421 4.3.0 shutting down")),
    )
    .await;
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    assert!(matches!(
        result.error,
        Some(IspError::ServiceClosing { .. })
    ));
    assert_eq!(
        outcomes(&result),
        [DomainOutcome::Deferred, DomainOutcome::NotSent]
    );
    assert_eq!(
        (result.domains[0].attempts, result.domains[0].code),
        (1, Some(421))
    );
    assert_eq!(server.etrns(), ["ETRN a.test"]);
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_greeting() {
    let server = Isp::start(None, EHLO_WITH_ETRN, by_domain(&[])).await;
    let mut s = settings();
    s.reply_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let result = fetch_account(
        &account(server.port, &["a.test"]),
        &s,
        &EventSink::default(),
    )
    .await;
    let elapsed = start.elapsed();
    let err = result.error.clone().unwrap();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(err.to_string().contains("greeting"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(outcomes(&result), [DomainOutcome::NotSent]);
}

#[tokio::test]
async fn a_silent_etrn_reply_times_out_naming_the_step() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, Box::new(|_| Act::Silent)).await;
    let mut s = settings();
    s.reply_timeout = Duration::from_millis(300);
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &s,
        &EventSink::default(),
    )
    .await;
    let err = result.error.clone().unwrap();
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("did not answer ETRN a.test"),
        "{err}"
    );
    assert_eq!(
        outcomes(&result),
        [DomainOutcome::NotSent, DomainOutcome::NotSent]
    );
    assert_eq!(result.domains[0].attempts, 1);
    assert_eq!(server.etrns(), ["ETRN a.test"]);
}

#[tokio::test]
async fn connection_refused_says_cannot_connect() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let result = fetch_account(
        &account(port, &["a.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_password_is_never_sent_in_plain_text() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, by_domain(&[])).await;
    let mut acc = account(server.port, &["a.test"]);
    acc.username = Some("user".into());
    acc.password = Some(Secret::new("hunter2-secret"));
    let result = fetch_account(&acc, &settings(), &EventSink::default()).await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::PlaintextAuth { .. }), "{err}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert_eq!(
        err.fix("isp"),
        Some(mailcall_core::hint::Setting::account(
            "isp",
            mailcall_core::hint::AccountField::Security
        ))
    );
    assert!(server.received().is_empty(), "{:?}", server.received());
    assert!(!format!("{result:?}").contains("hunter2-secret"));
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, by_domain(&[])).await;
    let mut acc = account(server.port, &["a.test"]);
    acc.security = Security::Starttls;
    acc.username = Some("user".into());
    acc.password = Some(Secret::new("hunter2-secret"));
    let result = fetch_account(&acc, &settings(), &EventSink::default()).await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::StarttlsNotOffered { .. }), "{err}");
    let received = server.received();
    assert!(
        received.iter().all(|l| !l.starts_with("AUTH")
            && !l.starts_with("ETRN")
            && !l.starts_with("STARTTLS")),
        "{received:?}"
    );
    assert!(received[0].starts_with("EHLO client.test"));
    assert!(!result.server.tls);
    let all = format!("{result:?}");
    assert!(!all.contains("hunter2-secret"));
}

#[tokio::test]
async fn argument_forms_are_sent_literally() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, by_domain(&[])).await;
    let result = fetch_account(
        &account(server.port, &["#q.test", "@d.test", "plain.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    assert_eq!(
        server.etrns(),
        ["ETRN #q.test", "ETRN @d.test", "ETRN plain.test"]
    );
    let sent: Vec<&str> = result.domains.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(sent, ["#q.test", "@d.test", "plain.test"]);
}

#[tokio::test]
async fn the_transcript_and_server_info_are_filled() {
    let server = Isp::start(
        Some("220-isp.test ESMTP\r\n220 welcome\r\n"),
        EHLO_WITH_ETRN,
        by_domain(&[("b.test", "554 5.7.1 Etrn command rejected")]),
    )
    .await;
    let result = fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    assert_eq!(result.server.greeting, "220 isp.test ESMTP welcome");
    assert!(result.server.advertises("ETRN") && !result.server.tls && !result.server.authenticated);
    assert_eq!(result.server.extensions, ["PIPELINING", "ETRN", "8BITMIME"]);
    assert_eq!(outcomes(&result)[1], DomainOutcome::Rejected);
    let lines: Vec<(Direction, &str)> = result
        .transcript
        .iter()
        .map(|l| (l.dir, l.line.as_str()))
        .collect();
    let expected = [
        (Direction::Received, "220-isp.test ESMTP"),
        (Direction::Received, "220 welcome"),
        (Direction::Sent, "EHLO client.test"),
        (Direction::Received, "250-isp.test"),
        (Direction::Received, "250-PIPELINING"),
        (Direction::Received, "250-ETRN"),
        (Direction::Received, "250 8BITMIME"),
        (Direction::Sent, "ETRN a.test"),
        (Direction::Received, "250 OK"),
        (Direction::Sent, "ETRN b.test"),
        (Direction::Received, "554 5.7.1 Etrn command rejected"),
        (Direction::Sent, "QUIT"),
        (Direction::Received, "221 2.0.0 Bye"),
    ];
    let talk: Vec<(Direction, &str)> = lines
        .iter()
        .copied()
        .filter(|(d, _)| *d != Direction::Note)
        .collect();
    // One EHLO, every line both ways.
    assert_eq!(talk, expected);
    assert!(lines
        .iter()
        .any(|(d, l)| *d == Direction::Note && l.contains("connecting to 127.0.0.1")));
}

#[tokio::test]
async fn check_account_sends_no_etrn() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, by_domain(&[])).await;
    let (info, err, transcript) =
        etrn::check_account(&account(server.port, &["a.test"]), &settings()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(info.advertises("ETRN"));
    assert!(server.etrns().is_empty());
    assert!(!transcript.is_empty());
}

#[tokio::test]
async fn a_bad_ca_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [garbage, missing] {
        let mut acc = account(1, &["a.test"]);
        acc.security = Security::Tls;
        acc.ca_file = Some(path.clone());
        let result = fetch_account(&acc, &settings(), &EventSink::default()).await;
        let err = result.error.clone().unwrap();
        assert!(matches!(err, IspError::CaFile { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn implicit_tls_against_a_plain_server_is_a_tls_error() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, by_domain(&[])).await;
    let mut acc = account(server.port, &["a.test"]);
    acc.security = Security::Tls;
    let result = fetch_account(&acc, &settings(), &EventSink::default()).await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::Tls { .. }), "{err}");
    assert!(server.etrns().is_empty());
}

#[test]
fn default_settings() {
    let s = ClientSettings::default();
    assert_eq!(s.connect_timeout, Duration::from_secs(30));
    assert_eq!(s.reply_timeout, Duration::from_secs(60));
    assert_eq!(s.retries, 3);
    assert_eq!(s.retry_delay, Duration::from_secs(2));
    assert!(!s.default_helo.is_empty());
}

#[tokio::test]
async fn a_link_dropping_at_etrn_is_a_lost_connection() {
    let server = Isp::start(Some(GREETING), EHLO_WITH_ETRN, Box::new(|_| Act::Hangup)).await;
    let result = fetch_account(
        &account(server.port, &["a.test"]),
        &settings(),
        &EventSink::default(),
    )
    .await;
    let err = result.error.clone().unwrap();
    assert!(matches!(err, IspError::ConnectionLost { .. }), "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("connection to 127.0.0.1 was closed") && text.contains("ETRN"),
        "{text}"
    );
    assert_eq!(server.etrns(), ["ETRN a.test"]);
}

#[tokio::test]
async fn the_address_asked_is_noted_before_the_etrn_goes_out() {
    let asked = AskedPeers::default();
    let seen = asked.clone();
    let noted_at_etrn = Arc::new(Mutex::new(Vec::new()));
    let log = noted_at_etrn.clone();
    let server = Isp::start(
        Some(GREETING),
        EHLO_WITH_ETRN,
        Box::new(move |_| {
            // The ISP starts delivering right after its reply: the note must be there already.
            let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
            log.lock().unwrap().push(seen.contains(loopback));
            Act::Reply("250 Queuing started")
        }),
    )
    .await;
    let scope = asked.scope();
    let result = etrn::fetch_account(
        &account(server.port, &["a.test", "b.test"]),
        &settings(),
        &EventSink::default(),
        &scope,
    )
    .await;
    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(*noted_at_etrn.lock().unwrap(), [true, true]);
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    assert_eq!(scope.accounts_at(loopback), ["isp"]);
    // The fetch is over: the address is no longer asked.
    drop(scope);
    assert!(!asked.contains(loopback));
}
