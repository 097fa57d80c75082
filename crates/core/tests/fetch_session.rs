//! The fetch session end to end in-process: a scripted fake ISP answers ETRN and then delivers to
//! the real listener, which stores into a real Maildir. (The real-Postfix version is in tests/.)
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcall_core::account::{Account, Security};
use mailcall_core::client::ClientSettings;
use mailcall_core::event::{Event, EventSink};
use mailcall_core::fetch::FetchOptions;
use mailcall_core::history::{EndReason, History, RecordKind, SessionRecord, Trigger};
use mailcall_core::listener::ListenerSettings;
use mailcall_core::report::DomainOutcome;
use mailcall_core::service::{self, FetchRequest, ServiceHandle, ServiceOptions};
use mailcall_core::spool::copies::RoutingOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use common::account;
use common::isp::{Act, EtrnScript, Isp, EHLO_WITH_ETRN, GREETING};

/// What the fake ISP answers to `ETRN <arg>` and how many messages it then delivers.
#[derive(Clone)]
struct Plan {
    arg: &'static str,
    reply: &'static str,
    deliver: usize,
}

/// The scripted ISP ([`common::isp`]) answering each ETRN per `plans`, and delivering to
/// `target` after its reply.
async fn fake_isp(plans: Vec<Plan>, target: SocketAddr) -> Isp {
    let script: EtrnScript = Box::new(move |arg| {
        let plan = plans.iter().find(|p| p.arg == arg).expect("planned ETRN");
        if plan.deliver == 0 {
            return Act::Reply(plan.reply);
        }
        let domain = arg.trim_start_matches(['@', '#']).to_string();
        Act::ReplyThenRun(plan.reply, Box::pin(deliver(target, domain, plan.deliver)))
    });
    Isp::start(Some(GREETING), EHLO_WITH_ETRN, script).await
}

/// Delivers `n` messages for `domain` over one SMTP connection, as an ISP's queue run would.
async fn deliver(target: SocketAddr, domain: String, n: usize) {
    deliver_from(None, target, domain, n).await
}

/// [`deliver`] from the loopback address `from` (another host than the one asked), or from the
/// default one.
async fn deliver_from(from: Option<&str>, target: SocketAddr, domain: String, n: usize) {
    let sock = match from {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(target).await.unwrap()
        }
        None => TcpStream::connect(target).await.unwrap(),
    };
    let (r, mut w) = sock.into_split();
    let mut replies = BufReader::new(r).lines();
    async fn reply(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    ) -> String {
        loop {
            let l = lines.next_line().await.unwrap().expect("reply");
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    }
    assert!(reply(&mut replies).await.starts_with("220"));
    w.write_all(b"EHLO isp.fake\r\n").await.unwrap();
    assert!(reply(&mut replies).await.starts_with("250"));
    for i in 0..n {
        let msg =
            format!("MAIL FROM:<sender@remote.example>\r\nRCPT TO:<user@{domain}>\r\nDATA\r\n");
        w.write_all(msg.as_bytes()).await.unwrap();
        for _ in 0..2 {
            assert!(reply(&mut replies).await.starts_with("250"));
        }
        assert!(reply(&mut replies).await.starts_with("354"));
        let body = format!(
            "From: sender@remote.example\r\nSubject: note {i} for {domain}\r\nMessage-ID: <{i}.{domain}@remote.example>\r\n\r\nbody {i}\r\n.\r\n"
        );
        w.write_all(body.as_bytes()).await.unwrap();
        let r = reply(&mut replies).await;
        assert!(r.starts_with("250"), "{r}");
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
}

/// Where the service's listener listens: a service started with no account has one.
fn listening(service: &ServiceHandle) -> SocketAddr {
    service
        .listen_addr()
        .expect("a service with no accounts listens")
}

fn options(maildir: &std::path::Path, idle: Duration, history: Option<History>) -> ServiceOptions {
    ServiceOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        maildir: maildir.to_path_buf(),
        listener: ListenerSettings::new("mailcall.test".into(), 1 << 20),
        fetch: fetch_options(idle, history),
        routing: RoutingOptions::without_routes(maildir.with_extension("spool")),
    }
}

fn fetch_options(idle: Duration, history: Option<History>) -> FetchOptions {
    FetchOptions {
        trigger: Trigger::Unknown,
        idle_timeout: idle,
        max_wait: Duration::from_secs(30),
        client: ClientSettings {
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(5),
            retries: 0,
            retry_delay: Duration::from_millis(10),
            default_helo: "client.test".into(),
        },
        history,
    }
}

/// Starts the service (listener up), then points the fake ISP at it.
async fn start(options: ServiceOptions, events: EventSink) -> ServiceHandle {
    service::start(options, Vec::new(), events, CancellationToken::new())
        .await
        .unwrap()
}

async fn fetch_with(service: &ServiceHandle, acct: Account) -> SessionRecord {
    service.set_accounts(vec![acct]);
    let record = service
        .fetch(FetchRequest::all(Trigger::Cli))
        .await
        .unwrap();
    service.stop().await;
    record
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_released_by_etrn_lands_in_maildir_and_the_session_ends_idle() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let history = History::new(dir.path().join("history.jsonl"));
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let service = start(
        options(&maildir, Duration::from_millis(700), Some(history.clone())),
        events,
    )
    .await;
    let plans = vec![
        Plan {
            arg: "alpha.test",
            reply: "250 Queuing started",
            deliver: 3,
        },
        Plan {
            arg: "unknown.test",
            reply: "459 <unknown.test>: service unavailable",
            deliver: 0,
        },
        Plan {
            arg: "#beta.test",
            reply: "250 OK",
            deliver: 2,
        },
    ];
    let isp = fake_isp(plans, listening(&service)).await;
    let acct = account(isp.port, &["alpha.test", "unknown.test", "#beta.test"]);
    let record = fetch_with(&service, acct).await;

    assert_eq!(record.ended_because, EndReason::Idle, "{record:#?}");
    assert_eq!(record.messages.len(), 5, "{record:#?}");
    assert_eq!(files_in(&maildir.join("new")), 5);
    assert_eq!(files_in(&maildir.join("tmp")), 0);
    let by_domain: Vec<(&str, DomainOutcome, u32)> = record
        .domains
        .iter()
        .map(|d| (d.domain.as_str(), d.outcome, d.messages))
        .collect();
    assert_eq!(
        by_domain,
        [
            ("alpha.test", DomainOutcome::Started { expected: None }, 3),
            ("unknown.test", DomainOutcome::NotAllowed, 0),
            ("#beta.test", DomainOutcome::Started { expected: None }, 2),
        ]
    );
    assert!(!record.succeeded(), "a 459 must make the fetch fail");
    // The later domain was still asked after the 459.
    assert!(isp.etrns().iter().any(|l| l == "ETRN #beta.test"));
    // The history holds the same record.
    let (saved, bad) = history.recent(10).unwrap();
    assert_eq!((saved.len(), bad), (1, 0));
    assert_eq!(saved[0].messages.len(), 5);
    // Events came in order: started, replies and stored messages, finished last.
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(match ev {
            Event::SessionStarted { .. } => "started",
            Event::EtrnReply { .. } | Event::AtrnReply { .. } => "reply",
            Event::AskingAgain { .. } => "asking again",
            Event::Connected { .. } => "connected",
            Event::MessageStored(_) => "stored",
            Event::Error { .. } => "error",
            Event::SessionFinished(_) => "finished",
            Event::HandOver(_) | Event::QueueChanged { .. } | Event::Recorded(_) => "queue",
        });
    }
    assert_eq!(seen.first(), Some(&"started"));
    assert_eq!(seen.last(), Some(&"finished"));
    assert_eq!(seen.iter().filter(|s| **s == "reply").count(), 3);
    assert_eq!(seen.iter().filter(|s| **s == "stored").count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_253_count_ends_the_session_when_that_many_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    // An idle timeout far beyond the test's patience: only the count can end it in time.
    let service = start(
        options(&maildir, Duration::from_secs(25), None),
        EventSink::default(),
    )
    .await;
    let plans = vec![Plan {
        arg: "alpha.test",
        reply: "253 2 pending messages started",
        deliver: 2,
    }];
    let isp = fake_isp(plans, listening(&service)).await;
    let acct = account(isp.port, &["alpha.test"]);
    let started = std::time::Instant::now();
    let record = fetch_with(&service, acct).await;
    assert_eq!(
        record.ended_because,
        EndReason::ExpectedArrived,
        "{record:#?}"
    );
    assert_eq!(record.messages.len(), 2);
    assert!(record.succeeded(), "{record:#?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mail_everywhere_ends_at_once_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(
        options(&dir.path().join("Maildir"), Duration::from_secs(25), None),
        EventSink::default(),
    )
    .await;
    let plans = vec![Plan {
        arg: "alpha.test",
        reply: "251 OK, no messages waiting",
        deliver: 0,
    }];
    let isp = fake_isp(plans, listening(&service)).await;
    let acct = account(isp.port, &["alpha.test"]);
    let record = fetch_with(&service, acct).await;
    assert_eq!(record.ended_because, EndReason::NothingToWaitFor);
    assert_eq!(record.domains[0].outcome, DomainOutcome::NoMail);
    assert!(record.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_session_join_it_instead_of_starting_another() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(
        options(
            &dir.path().join("Maildir"),
            Duration::from_millis(700),
            None,
        ),
        EventSink::default(),
    )
    .await;
    let plans = vec![Plan {
        arg: "alpha.test",
        reply: "250 Queuing started",
        deliver: 1,
    }];
    // The fake ISP takes one connection only: a second session could not even connect.
    let isp = fake_isp(plans, listening(&service)).await;
    service.set_accounts(vec![account(isp.port, &["alpha.test"])]);
    let (a, b, c) = tokio::join!(
        service.fetch(FetchRequest::all(Trigger::Tray)),
        service.fetch(FetchRequest::all(Trigger::Network)),
        service.fetch(FetchRequest::named(Trigger::Interval, vec!["isp".into()])),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, c.id);
    assert!(a.succeeded(), "{a:#?}");
    assert_eq!(a.messages.len(), 1);
    assert_eq!(isp.etrns().len(), 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_delivered_outside_a_fetch_is_stored_announced_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let history = History::new(dir.path().join("history.jsonl"));
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let service = start(
        options(&maildir, Duration::from_millis(700), Some(history.clone())),
        events,
    )
    .await;
    let acct = account(9, &["alpha.test"]);
    service.set_accounts(vec![acct]);
    // The ISP retries on its own while we are online: no ETRN, no session.
    deliver(listening(&service), "alpha.test".into(), 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let (records, _) = history.recent(10).unwrap();
        if records.len() == 2 || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(records.iter().all(|r| r.trigger == Trigger::Isp
        && r.kind == RecordKind::Delivery
        && r.messages.len() == 1));
    assert_eq!(files_in(&maildir.join("new")), 2);
    let mut stored = 0;
    while let Ok(ev) = rx.try_recv() {
        if matches!(ev, Event::MessageStored(_)) {
            stored += 1;
        }
    }
    assert_eq!(stored, 2);
    service.stop().await;
}

/// A free loopback port (bound and let go at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odmr_accounts_alone_bind_no_listener_until_an_etrn_account_comes() {
    use mailcall_core::account::FetchMode;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut opts = options(&dir.path().join("Maildir"), Duration::from_secs(1), None);
    opts.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let mut odmr = account(1, &["odmr.test"]);
    odmr.name = "odmr".into();
    odmr.mode = FetchMode::Odmr;
    odmr.security = Security::Starttls;
    odmr.username = Some("customer".into());
    odmr.password = Some(mailcall_core::account::Secret::new("pw"));
    let service = service::start(
        opts,
        vec![odmr.clone()],
        EventSink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(service.listen_addr(), None);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "nothing may listen on {port} with ODMR accounts only"
    );
    // Reloading with the same accounts binds nothing.
    assert_eq!(service.listen_if_needed().await.unwrap(), None);
    // An ETRN account arrives (account set + reload): the listener comes up then.
    let mut etrn = account(1, &["etrn.test"]);
    etrn.name = "etrn".into();
    service.set_accounts(vec![odmr, etrn]);
    let addr = service.listen_if_needed().await.unwrap();
    assert_eq!(addr.map(|a| a.port()), Some(port));
    assert_eq!(service.listen_addr(), addr);
    let mut greeting = BufReader::new(TcpStream::connect(addr.unwrap()).await.unwrap());
    let mut line = String::new();
    greeting.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220 mailcall.test"), "{line}");
    service.stop().await;
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

/// An ISP holding `held` messages for `domain` that, on each ETRN, opens one connection per
/// message (at most `parallel` at once) and delivers one message on each connection greeted
/// with 220, as an MTA's queue run does: all of them are open and greeted (or turned away)
/// before the first message goes. A message whose connection was turned away stays held until
/// the next ETRN. Returns its address and how many messages it still holds.
async fn queue_running_isp(
    domain: &'static str,
    held: usize,
    parallel: usize,
    target: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
) -> (SocketAddr, Arc<Mutex<usize>>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let queue = Arc::new(Mutex::new(held));
    let left = queue.clone();
    tokio::spawn(async move {
        let mut next_id = 0usize;
        while let Ok((sock, _)) = tcp.accept().await {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"220 isp.fake ESMTP\r\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line.clone());
                if line.starts_with("EHLO") {
                    w.write_all(b"250-isp.fake\r\n250 ETRN\r\n").await.unwrap();
                } else if line.starts_with("ETRN") {
                    w.write_all(b"250 Queuing started\r\n").await.unwrap();
                    let count = (*queue.lock().unwrap()).min(parallel);
                    let first = next_id;
                    next_id += count;
                    let queue = queue.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        let delivered = queue_run(target, domain, first, count, &log).await;
                        *queue.lock().unwrap() -= delivered;
                    });
                } else if line.starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
            }
        }
    });
    (addr, left)
}

/// One queue run: `count` connections opened and greeted at once, then one message (numbered
/// from `first`) on each one greeted with 220; a greeting that is not goes into `log`.
/// Returns how many messages were delivered.
async fn queue_run(
    target: SocketAddr,
    domain: &str,
    first: usize,
    count: usize,
    log: &Mutex<Vec<String>>,
) -> usize {
    let mut greeted = Vec::new();
    for _ in 0..count {
        let sock = TcpStream::connect(target).await.unwrap();
        let (r, w) = sock.into_split();
        let mut replies = BufReader::new(r).lines();
        let greeting = replies.next_line().await.unwrap().unwrap_or_default();
        if greeting.starts_with("220") {
            greeted.push((replies, w));
        } else {
            log.lock().unwrap().push(format!("greeting: {greeting}"));
        }
    }
    let delivered = greeted.len();
    for (n, (mut replies, mut w)) in greeted.into_iter().enumerate() {
        let id = first + n;
        let msg = format!(
            "EHLO isp.fake\r\nMAIL FROM:<sender@remote.example>\r\nRCPT TO:<user@{domain}>\r\nDATA\r\n"
        );
        w.write_all(msg.as_bytes()).await.unwrap();
        let mut seen = 0;
        while seen < 4 {
            let l = replies.next_line().await.unwrap().expect("reply");
            if l.as_bytes().get(3) != Some(&b'-') {
                seen += 1;
            }
        }
        let body = format!(
            "Subject: run {id}\r\nMessage-ID: <{id}.{domain}@remote.example>\r\n\r\nbody\r\n.\r\nQUIT\r\n"
        );
        w.write_all(body.as_bytes()).await.unwrap();
        let stored = replies.next_line().await.unwrap().unwrap_or_default();
        assert!(stored.starts_with("250"), "{stored}");
    }
    delivered
}

/// Waits (up to 10 s) until the ISP holds `want` messages; its last queue run finishes its
/// bookkeeping a moment after our last 250. Returns what it holds then.
async fn held_settles_at(held: &Mutex<usize>, want: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = *held.lock().unwrap();
        if now == want || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn etrns(log: &Mutex<Vec<String>>) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("ETRN"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isp_asked_is_not_held_to_the_per_peer_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(
        &dir.path().join("Maildir"),
        Duration::from_millis(700),
        None,
    );
    opts.listener.max_connections_per_peer = 2;
    let service = start(opts, EventSink::default()).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    // Four connections at once from the ISP's address, the one the ETRN went to.
    let (isp, held) = queue_running_isp("alpha.test", 4, 4, listening(&service), log.clone()).await;
    let record = fetch_with(&service, account(isp.port(), &["alpha.test"])).await;
    let said = log.lock().unwrap().clone();
    let turned_away: Vec<&String> = said.iter().filter(|l| l.starts_with("greeting")).collect();
    assert!(turned_away.is_empty(), "{said:?}");
    assert_eq!(record.messages.len(), 4, "{record:#?}");
    assert_eq!(held_settles_at(&held, 0).await, 0);
    assert_eq!((record.turned_away, record.asked_again), (0, 0));
    assert!(record.succeeded(), "{record:#?}");
    assert_eq!(etrns(&log), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_turned_away_is_asked_for_again_once_the_others_closed() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path().join("history.jsonl"));
    let mut opts = options(
        &dir.path().join("Maildir"),
        Duration::from_millis(700),
        Some(history.clone()),
    );
    opts.listener.max_connections = 1;
    let events = EventSink::default();
    let mut rx = events.subscribe();
    let service = start(opts, events).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    // Two at once against one slot: the second is turned away and its message stays held.
    let (isp, held) = queue_running_isp("alpha.test", 2, 2, listening(&service), log.clone()).await;
    let record = fetch_with(&service, account(isp.port(), &["alpha.test"])).await;
    let said = log.lock().unwrap().clone();
    assert!(
        said.iter().any(|l| l.starts_with("greeting: 421 4.7.0")),
        "{said:?}"
    );
    assert_eq!(etrns(&log), 2, "asked again once: {said:?}");
    assert_eq!(held_settles_at(&held, 0).await, 0, "{said:?}");
    assert_eq!(record.messages.len(), 2, "{record:#?}");
    assert_eq!((record.turned_away, record.asked_again), (1, 1));
    assert!(
        record.succeeded(),
        "the second ETRN brought it: {record:#?}"
    );
    assert_eq!(record.domains[0].attempts, 2);
    assert_eq!(record.transcripts.len(), 2, "both ETRN sessions are kept");
    assert!(
        record
            .summary()
            .headline
            .contains("turned the ISP away 1 time(s), asked it again"),
        "{}",
        record.summary().headline
    );
    let mut asking_again = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Event::AskingAgain { .. } = &ev {
            asking_again.push(ev.line().unwrap());
        }
    }
    assert_eq!(asking_again.len(), 1, "{asking_again:?}");
    assert!(
        asking_again[0].contains("421 4.7.0") && asking_again[0].contains("asking isp again"),
        "{asking_again:?}"
    );
    let (saved, _) = history.recent(10).unwrap();
    assert_eq!((saved[0].turned_away, saved[0].asked_again), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_turned_away_after_asking_again_fails_the_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path().join("history.jsonl"));
    let mut opts = options(
        &dir.path().join("Maildir"),
        Duration::from_millis(700),
        Some(history.clone()),
    );
    opts.listener.max_connections = 1;
    let service = start(opts, EventSink::default()).await;
    // Someone else holds the only slot for the whole fetch.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let other = other.connect(listening(&service)).await.unwrap();
    let mut greeting = String::new();
    let mut other = BufReader::new(other);
    other.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (isp, held) = queue_running_isp("alpha.test", 1, 1, listening(&service), log.clone()).await;
    let record = fetch_with(&service, account(isp.port(), &["alpha.test"])).await;
    assert_eq!(etrns(&log), 2, "{:?}", log.lock().unwrap());
    assert_eq!(held_settles_at(&held, 1).await, 1);
    assert!(record.messages.is_empty());
    assert_eq!((record.turned_away, record.asked_again), (2, 1));
    assert!(!record.succeeded(), "{record:#?}");
    let problem = record
        .errors
        .iter()
        .find(|p| {
            p.message.contains(
                "turned away the ISP at 127.0.0.1 1 time(s) even after Mailcall asked it again",
            )
        })
        .unwrap_or_else(|| panic!("{:#?}", record.errors));
    assert!(problem.message.contains("421 4.7.0"), "{problem:?}");
    assert_eq!(problem.account.as_deref(), Some("isp"));
    assert_eq!(
        problem.fix,
        Some(mailcall_core::hint::Setting::config(
            mailcall_core::config::ConfigKey::MaxConnections
        ))
    );
    assert_eq!(
        record.retryable,
        ["isp"],
        "an automatic fetch tries again later"
    );
    let (saved, _) = history.recent(10).unwrap();
    assert!(!saved[0].succeeded());
    assert_eq!(saved[0].turned_away, 2);
}

/// Issue 21: a stranger holding a connection to the listener is no sign of the delivery asked
/// for — the fetch ends idle once the ISP's own connections are done, not at `max-wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_holding_a_connection_does_not_keep_the_fetch_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let events = EventSink::default();
    let service = start(options(&maildir, Duration::from_millis(700), None), events).await;
    let target = listening(&service);
    // The stranger, from another loopback address, greeted and then silent.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let stranger = socket.connect(target).await.unwrap();
    let mut stranger = BufReader::new(stranger);
    let mut greeting = String::new();
    stranger.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    let plans = vec![Plan {
        arg: "alpha.test",
        reply: "250 Queuing started",
        deliver: 2,
    }];
    let isp = fake_isp(plans, target).await;
    let record = fetch_with(&service, account(isp.port, &["alpha.test"])).await;
    assert_eq!(record.ended_because, EndReason::Idle, "{record:#?}");
    assert_eq!(record.messages.len(), 2, "{record:#?}");
    drop(stranger);
}

/// An ISP that delivered and closed its connection has plainly finished: the fetch ends after
/// a short grace ([`mailcall_core::fetch::FINISHED_GRACE`]) instead of the whole idle timeout,
/// and the record says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_ends_once_the_isp_has_delivered_and_closed_not_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    // An idle timeout longer than the grace: the record's reason shows which one ended it.
    let idle = mailcall_core::fetch::FINISHED_GRACE * 4;
    let service = start(options(&maildir, idle, None), EventSink::default()).await;
    let plans = vec![Plan {
        arg: "alpha.test",
        reply: "250 Queuing started",
        deliver: 2,
    }];
    let isp = fake_isp(plans, listening(&service)).await;
    let record = fetch_with(&service, account(isp.port, &["alpha.test"])).await;
    assert_eq!(record.messages.len(), 2, "{record:#?}");
    assert_eq!(record.ended_because, EndReason::IspFinished, "{record:#?}");
    assert!(
        record
            .summary()
            .headline
            .ends_with("ended: the ISP finished"),
        "{}",
        record.summary().headline
    );
}

/// Only the host asked can say it finished: a stranger's message during the fetch (from another
/// address) does not end the fetch early; it ends at the idle timeout as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_message_is_no_sign_that_the_isp_finished() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let idle = mailcall_core::fetch::FINISHED_GRACE + Duration::from_secs(1);
    let service = start(options(&maildir, idle, None), EventSink::default()).await;
    let target = listening(&service);
    // The ISP answers the ETRN; the only delivery that follows comes from 127.0.0.7.
    let script: EtrnScript = Box::new(move |_arg| {
        Act::ReplyThenRun(
            "250 Queuing started",
            Box::pin(deliver_from(
                Some("127.0.0.7"),
                target,
                "alpha.test".to_string(),
                1,
            )),
        )
    });
    let isp = Isp::start(Some(GREETING), EHLO_WITH_ETRN, script).await;
    let record = fetch_with(&service, account(isp.port, &["alpha.test"])).await;
    assert_eq!(record.messages.len(), 1, "{record:#?}");
    assert_eq!(record.messages[0].peer, "127.0.0.7", "{record:#?}");
    assert_eq!(record.ended_because, EndReason::Idle, "{record:#?}");
}
