//! The runner against a scripted LMTP server on 127.0.0.1: per-recipient replies honoured (a
//! 4xx for one recipient leaves only that copy queued, a 5xx holds it and says so), a server
//! that is down defers everything and the queue drains by itself when it is back, a restart
//! picks up what was queued, two runners never hand a message over twice, and a bounce puts a
//! DSN into the postmaster's Maildir.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::actions::{Action, Selection};
use super::runner::{self, Runner, RunnerOptions};
use super::*;
use crate::event::{Event, EventSink};
use crate::report::HandOverOutcome;
use crate::routing::Route;

const DEADLINE: Duration = Duration::from_secs(20);

/// What the scripted server took: (recipient, data) in order.
type Taken = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A scripted LMTP server: every recipient is taken unless `answers` says otherwise (its reply
/// after the data); what it took is in `delivered` (recipient, data).
#[derive(Clone, Default)]
struct FakeLmtp {
    answers: Arc<Mutex<HashMap<String, String>>>,
    delivered: Taken,
    sessions: Arc<Mutex<usize>>,
}

impl FakeLmtp {
    async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            *self.sessions.lock().unwrap() += 1;
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.session(sock).await;
            });
        }
    }

    async fn session(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut s = BufReader::new(sock);
        s.get_mut().write_all(b"220 lan.test LMTP\r\n").await?;
        let mut rcpts: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let reply = if upper.starts_with("LHLO") {
                "250-lan.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n".to_string()
            } else if upper.starts_with("MAIL") {
                rcpts.clear();
                "250 2.1.0 OK\r\n".into()
            } else if upper.starts_with("RCPT") {
                let addr = line[line.find('<').unwrap() + 1..line.find('>').unwrap()].to_string();
                rcpts.push(addr);
                "250 2.1.5 OK\r\n".into()
            } else if upper.starts_with("DATA") {
                s.get_mut().write_all(b"354 go\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    s.read_until(b'\n', &mut l).await?;
                    if l == b".\r\n" || l.is_empty() {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                let mut out = String::new();
                for r in &rcpts {
                    let answer = self.answers.lock().unwrap().get(r).cloned();
                    match answer {
                        Some(a) => out.push_str(&format!("{a}\r\n")),
                        None => {
                            self.delivered
                                .lock()
                                .unwrap()
                                .push((r.clone(), data.clone()));
                            out.push_str(&format!("250 2.0.0 <{r}> Saved\r\n"));
                        }
                    }
                }
                out
            } else if upper.starts_with("QUIT") {
                s.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                "250 2.0.0 OK\r\n".into()
            };
            s.get_mut().write_all(reply.as_bytes()).await?;
        }
    }

    fn delivered_to(&self, rcpt: &str) -> usize {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == rcpt)
            .count()
    }

    fn total(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }
}

fn options(history: Option<crate::history::History>) -> RunnerOptions {
    RunnerOptions {
        retry_delay: Duration::from_millis(200),
        max_retry_delay: Duration::from_secs(1),
        send_retry_delay: Duration::from_millis(200),
        send_max_retry_delay: Duration::from_secs(1),
        max_queue_lifetime: Duration::from_secs(5 * 86_400),
        delay_warning: None,
        per_target: 2,
        client: crate::client::ClientSettings {
            connect_timeout: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        host: "mx.test".into(),
        history,
        accounts: None,
        router: None,
    }
}

async fn queue(spool: &Spool, n: usize, recipients: &[&str], dest: &str) {
    let target = Route::parse("*", dest, None, None).unwrap().target;
    for i in 0..n {
        let env = Envelope {
            received_at: Utc::now(),
            sender: "s@outside.test".into(),
            recipients: recipients
                .iter()
                .map(|a| QueuedRecipient {
                    address: a.to_string(),
                    target: target.clone(),
                })
                .collect(),
            peer: "127.0.0.1".into(),
        };
        let mut w = spool.begin(&env).await.unwrap();
        w.write(
            format!("Message-ID: <m{i}@x.test>\r\nSubject: n{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .await
        .unwrap();
        w.commit().await.unwrap();
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct World {
    dir: tempfile::TempDir,
    spool: Spool,
    postmaster: crate::maildir::Maildir,
    events: EventSink,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let postmaster = crate::maildir::Maildir::create(&dir.path().join("Maildir")).unwrap();
    World {
        dir,
        spool,
        postmaster,
        events: EventSink::new(10_000),
    }
}

impl World {
    fn start(&self) -> Runner {
        let history = crate::history::History::new(self.dir.path().join("history.jsonl"));
        runner::start(
            self.spool.clone(),
            self.postmaster.clone(),
            options(Some(history)),
            self.events.clone(),
        )
    }

    fn states(&self) -> Vec<Vec<Status>> {
        let (entries, _) = self.spool.entries().unwrap();
        entries
            .iter()
            .map(|e| e.state.recipients.iter().map(|r| r.status).collect())
            .collect()
    }
}

#[tokio::test]
async fn a_4xx_for_one_recipient_leaves_only_that_copy_queued_and_a_5xx_is_held_and_told() {
    let w = world();
    let mut rx = w.events.subscribe();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lmtp = FakeLmtp::default();
    lmtp.answers.lock().unwrap().insert(
        "b@x.test".into(),
        "451 4.3.0 <b@x.test> Temporary internal error".into(),
    );
    lmtp.answers.lock().unwrap().insert(
        "c@x.test".into(),
        "550 5.1.1 <c@x.test> User doesn't exist".into(),
    );
    tokio::spawn(lmtp.clone().serve(listener));
    queue(
        &w.spool,
        1,
        &["a@x.test", "b@x.test", "c@x.test"],
        &format!("lmtp:127.0.0.1:{port}"),
    )
    .await;
    let runner = w.start();

    wait_for("a delivered, c refused", || {
        w.states() == [vec![Status::Delivered, Status::Queued, Status::Failed]]
    })
    .await;
    assert_eq!(lmtp.delivered_to("a@x.test"), 1);
    let (entries, _) = w.spool.entries().unwrap();
    let b = &entries[0].state.recipients[1];
    assert!(
        b.attempts >= 1 && b.reply.as_deref().unwrap_or("").starts_with("451 4.3.0"),
        "{b:?}"
    );
    // b is retried by itself; once the server takes it, only c is left, held.
    lmtp.answers.lock().unwrap().remove("b@x.test");
    wait_for("b delivered on a retry", || {
        lmtp.delivered_to("b@x.test") == 1
    })
    .await;
    wait_for("b recorded", || {
        w.states() == [vec![Status::Delivered, Status::Delivered, Status::Failed]]
    })
    .await;
    assert_eq!(lmtp.delivered_to("a@x.test"), 1, "a is not sent again");
    // A refused recipient is not retried by itself...
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        w.states(),
        [vec![Status::Delivered, Status::Delivered, Status::Failed]]
    );
    // ...but on request, and once the server takes it the message leaves the spool.
    lmtp.answers.lock().unwrap().remove("c@x.test");
    let done = runner
        .handle()
        .act(Action::Retry, Selection::All)
        .await
        .unwrap();
    assert_eq!((done.messages, done.recipients), (1, 1));
    wait_for("the spool empty", || w.spool.names().unwrap().is_empty()).await;
    assert_eq!(
        (
            lmtp.delivered_to("a@x.test"),
            lmtp.delivered_to("b@x.test"),
            lmtp.delivered_to("c@x.test")
        ),
        (1, 1, 1)
    );
    // Each copy went in a transaction of its own, with the data as spooled.
    assert!(lmtp
        .delivered
        .lock()
        .unwrap()
        .iter()
        .all(|(_, d)| d.starts_with(b"Message-ID: <m0@x.test>\r\n")));
    runner.finish(None).await;

    let mut failed_told = false;
    let mut deferred_seen = false;
    let mut counts = Vec::new();
    let mut recorded = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Recorded(r) => recorded.push(r.id),
            Event::Error(p) if p.message.contains("refused c@x.test for good") => {
                failed_told = true
            }
            Event::HandOver(h) => {
                deferred_seen |= h.recipients.iter().any(|r| {
                    matches!(r.outcome, HandOverOutcome::Deferred { .. }) && r.address == "b@x.test"
                });
            }
            Event::QueueChanged { queued, failed } => counts.push((queued, failed)),
            _ => {}
        }
    }
    assert!(
        failed_told && deferred_seen,
        "events for the 5xx and the 4xx"
    );
    assert_eq!(counts.last(), Some(&(0, 0)), "{counts:?}");
    let (records, _) = crate::history::History::new(w.dir.path().join("history.jsonl"))
        .recent(100)
        .unwrap();
    assert!(records
        .iter()
        .all(|r| r.kind == crate::history::RecordKind::HandOver));
    // Each record written was announced (a History view reloads on it), and only those.
    let mut written: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    written.sort();
    recorded.sort();
    assert!(!written.is_empty());
    assert_eq!(
        recorded, written,
        "Recorded events against the history's records"
    );
    let headline = records[0].summary().headline;
    assert!(headline.contains("1 deferred, 1 refused"), "{headline}");
}

#[tokio::test]
async fn a_server_that_is_down_defers_everything_and_the_queue_drains_when_it_is_back() {
    let w = world();
    // A port nobody listens on (yet).
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    queue(
        &w.spool,
        20,
        &["a@x.test"],
        &format!("lmtp:127.0.0.1:{port}"),
    )
    .await;
    let runner = w.start();
    wait_for("every message tried once", || {
        let (entries, _) = w.spool.entries().unwrap();
        entries.len() == 20 && entries.iter().all(|e| e.state.recipients[0].attempts >= 1)
    })
    .await;
    let (entries, _) = w.spool.entries().unwrap();
    assert!(entries.iter().all(|e| e.state.recipients[0].unreachable
        && e.state.recipients[0]
            .reply
            .as_deref()
            .unwrap_or("")
            .contains("cannot connect")));
    // The server comes up: everything goes, each message once.
    let lmtp = FakeLmtp::default();
    tokio::spawn(
        lmtp.clone()
            .serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap()),
    );
    wait_for("the spool empty", || w.spool.names().unwrap().is_empty()).await;
    assert_eq!(lmtp.total(), 20);
    let mut ids: Vec<Vec<u8>> = lmtp
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d[..18].to_vec())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "each message exactly once");
    assert!(
        *lmtp.sessions.lock().unwrap() <= 20,
        "connections are reused"
    );
    runner.finish(None).await;
}

#[tokio::test]
async fn a_restart_picks_up_what_was_queued_and_two_runners_never_send_twice() {
    let w = world();
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    queue(
        &w.spool,
        5,
        &["a@x.test"],
        &format!("lmtp:127.0.0.1:{port}"),
    )
    .await;
    let first = w.start();
    wait_for("tried once", || {
        let (entries, _) = w.spool.entries().unwrap();
        entries.iter().all(|e| e.state.recipients[0].attempts >= 1)
    })
    .await;
    first.finish(None).await;
    // Two runners over the same spool (a second Mailcall): one holds the lock, one waits.
    let other = Spool::open(w.spool.root()).unwrap();
    let second = w.start();
    let third = runner::start(
        other,
        w.postmaster.clone(),
        options(None),
        EventSink::default(),
    );
    let lmtp = FakeLmtp::default();
    tokio::spawn(
        lmtp.clone()
            .serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap()),
    );
    wait_for("the spool empty", || w.spool.names().unwrap().is_empty()).await;
    assert_eq!(
        lmtp.total(),
        5,
        "each message once, whichever runner sent it"
    );
    second.finish(None).await;
    third.finish(Some(Duration::from_secs(2))).await;
    assert_eq!(lmtp.total(), 5);
}

#[tokio::test]
async fn a_bounce_puts_a_dsn_with_the_message_into_the_postmaster_maildir() {
    let w = world();
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    queue(
        &w.spool,
        2,
        &["a@x.test", "b@x.test"],
        &format!("lmtp:127.0.0.1:{port}"),
    )
    .await;
    let runner = w.start();
    wait_for("tried", || {
        let (entries, _) = w.spool.entries().unwrap();
        entries
            .iter()
            .all(|e| e.state.recipients.iter().all(|r| r.attempts >= 1))
    })
    .await;
    let (entries, _) = w.spool.entries().unwrap();
    let first = entries[0].id.clone();
    let wrong = runner
        .handle()
        .act(Action::Delete, Selection::Ids(vec!["nonesuch".into()]))
        .await
        .unwrap_err();
    assert!(wrong.is_selection(), "{wrong}");
    assert!(wrong.to_string().contains("no message"), "{wrong}");
    // The runner may be on it right now; a retry a moment later goes through.
    let mut result = None;
    for _ in 0..100 {
        match runner
            .handle()
            .act(Action::Bounce, Selection::Ids(vec![first.clone()]))
            .await
        {
            Ok(r) => {
                result = Some(r);
                break;
            }
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let result = result.unwrap();
    assert_eq!(
        (result.messages, result.recipients, result.reports.len()),
        (1, 2, 1)
    );
    let report = std::fs::read_to_string(&result.reports[0]).unwrap();
    assert!(
        report.starts_with("Return-Path: <>\r\nDelivered-To: postmaster\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Final-Recipient: rfc822; a@x.test")
            && report.contains("Final-Recipient: rfc822; b@x.test"),
        "{report}"
    );
    assert!(
        report.contains("Message-ID: <m0@x.test>") || report.contains("Message-ID: <m1@x.test>")
    );
    assert_eq!(
        w.spool.names().unwrap().len(),
        1,
        "the bounced message left the spool"
    );
    let deleted = runner.handle().act(Action::Delete, Selection::All).await;
    // (or it is in flight this instant; then once more)
    if deleted.is_err() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        runner
            .handle()
            .act(Action::Delete, Selection::All)
            .await
            .unwrap();
    }
    wait_for("the spool empty", || w.spool.names().unwrap().is_empty()).await;
    runner.finish(None).await;
}

/// An account `isp` for office.test whose outgoing server is plain SMTP on 127.0.0.1:`port`.
fn sending_account(port: u16) -> crate::account::Account {
    use crate::account::{Account, OutgoingServer, Security};
    let mut outgoing = OutgoingServer::new("127.0.0.1", Security::None);
    outgoing.port = port;
    Account {
        name: "isp".into(),
        mode: Default::default(),
        host: "mail.isp.test".into(),
        port: 25,
        security: Security::None,
        username: None,
        password: None,
        password_command: None,
        helo: None,
        ca_file: None,
        domains: vec!["office.test".parse().unwrap()],
        link: Default::default(),
        outgoing: Some(outgoing),
    }
}

#[tokio::test]
async fn outgoing_mail_another_process_queued_leaves_once_online_or_woken_and_never_offline() {
    let w = world();
    // The smarthost only counts who connects (and hangs up: the message stays deferred).
    let smarthost = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = smarthost.local_addr().unwrap().port();
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connected.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = smarthost.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let count = || connected.load(std::sync::atomic::Ordering::SeqCst);
    let (_accounts, rx) = tokio::sync::watch::channel(Arc::new(vec![sending_account(port)]));
    let mut opts = options(None);
    opts.accounts = Some(rx);
    // A message tried and deferred waits a minute: each connection below is a new message's.
    opts.send_retry_delay = Duration::from_secs(60);
    opts.send_max_retry_delay = Duration::from_secs(60);
    let runner = runner::start(
        w.spool.clone(),
        w.postmaster.clone(),
        opts,
        w.events.clone(),
    );
    let handle = runner.handle();
    // `mailcall-cli sendmail` is another process: its commit is not announced to this runner.
    let other = Spool::open(w.spool.root()).unwrap();
    let submit = |n: usize| {
        let other = other.clone();
        async move {
            crate::outgoing::queue::submit(
                &other,
                "isp",
                "me@office.test",
                &[format!("r{n}@example.org")],
                "Received: from local user\r\n",
                format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes(),
                "local user",
            )
            .await
            .unwrap()
        }
    };
    submit(1).await;
    // Woken while no link is up: read, and kept (an absence, watched for a while).
    assert!(handle.rescan());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), 0, "offline: nothing is sent");
    // The link comes up: what waited is tried at once.
    handle.set_online(true);
    wait_for("the send at link-up", || count() >= 1).await;
    // Online, a message another process queues is tried as soon as the runner is woken, not
    // at its next rescan a minute later.
    let before = count();
    submit(2).await;
    assert!(handle.rescan());
    wait_for("the send after the wake", || count() > before).await;
    assert_eq!(count(), 2, "each message tried once");
    // Offline again: a new message waits.
    handle.set_online(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = count();
    submit(3).await;
    assert!(handle.rescan());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), before, "offline again: nothing is sent");
    runner.finish(None).await;
}
