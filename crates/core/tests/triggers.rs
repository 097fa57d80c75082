//! The trigger handle and the control socket against a real service (listener on 127.0.0.1:0),
//! with the link state supplied by the test: connect/disconnect around a manual fetch, pause,
//! and the socket's protocol and permissions.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use mailcall_core::account::{Account, LinkSettings};
use mailcall_core::client::ClientSettings;
use mailcall_core::control::{Client, ControlError, Request, Server, Verb};
use mailcall_core::event::EventSink;
use mailcall_core::fetch::FetchOptions;
use mailcall_core::hint::Problem;
use mailcall_core::history::{EndReason, History, ManualTrigger, RecordKind, Trigger};
use mailcall_core::instance::{Controls, QueueError};
use mailcall_core::listener::ListenerSettings;
use mailcall_core::service::{self, FetchRequest, Sending, ServiceHandle, ServiceOptions};
use mailcall_core::spool::actions::Selection;
use mailcall_core::spool::copies::RoutingOptions;
use mailcall_core::spool::Action;
use mailcall_core::trigger::{self, Link, Links, TriggerHandle, TriggerOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An account whose ISP port is closed: its fetch fails at once, which is all these tests need.
fn account(link: LinkSettings) -> Account {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    Account {
        link,
        ..common::account(port, &["dial.test"])
    }
}

async fn service(dir: &std::path::Path, history: &History) -> ServiceHandle {
    let options = ServiceOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        maildir: dir.join("Maildir"),
        listener: ListenerSettings::new("client.test".into(), 1 << 20),
        fetch: FetchOptions {
            trigger: Trigger::Unknown,
            idle_timeout: Duration::from_millis(300),
            max_wait: Duration::from_secs(10),
            client: ClientSettings {
                connect_timeout: Duration::from_secs(2),
                reply_timeout: Duration::from_secs(2),
                retries: 0,
                retry_delay: Duration::from_millis(10),
                default_helo: "client.test".into(),
            },
            history: Some(history.clone()),
        },
        routing: RoutingOptions::without_routes(dir.join("spool")),
    };
    service::start(
        options,
        Vec::new(),
        EventSink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The watched interfaces `names` up (index 5 each: these tests never re-create one).
fn links(names: &[&str]) -> Option<Links> {
    Some(
        names
            .iter()
            .map(|n| Link::new(5, *n, ["10.64.0.2".parse::<std::net::IpAddr>().unwrap()]))
            .collect(),
    )
}

fn triggers(
    service: &ServiceHandle,
    accounts: Vec<Account>,
    history: &History,
    rx: watch::Receiver<Option<Links>>,
) -> TriggerHandle {
    service.set_accounts(accounts);
    trigger::start_with_links(
        service.clone(),
        TriggerOptions {
            fetch_at_start: false,
            history: Some(history.clone()),
            ..TriggerOptions::default()
        },
        rx,
        CancellationToken::new(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_the_link_and_disconnect_follows_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("dialed");
    let hung = dir.path().join("hung-up");
    let history = History::new(dir.path().join("history.jsonl"));
    let svc = service(dir.path(), &history).await;
    // The same dial-up commands in each platform's own tools.
    #[cfg(unix)]
    let (dial, hang_up) = (
        format!("sh -c 'echo dialing; touch {}'", flag.display()),
        format!("touch {}", hung.display()),
    );
    #[cfg(windows)]
    let (dial, hang_up) = (
        format!("cmd /c '(echo dialing)&(type nul > {})'", flag.display()),
        format!("cmd /c 'type nul > {}'", hung.display()),
    );
    let acct = account(LinkSettings {
        connect_command: Some(dial),
        disconnect_command: Some(hang_up),
        link_timeout: Some(10),
    });
    let (tx, rx) = watch::channel(links(&[]));
    let t = triggers(&svc, vec![acct], &history, rx);
    // The "modem": the link comes up once the connect command has run.
    let modem = tokio::spawn(async move {
        for _ in 0..200 {
            if flag.exists() {
                tx.send_replace(links(&["ppp0"]));
                return tx;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the connect command never ran");
    });
    let record = t.fetch_now(FetchRequest::all(Trigger::Cli)).await.unwrap();
    // The link-up trigger may have started the session first; the manual request joined it.
    assert!([Trigger::Cli, Trigger::Network].contains(&record.trigger));
    let _tx = modem.await.unwrap();
    assert!(
        hung.exists(),
        "the disconnect command ran after the session"
    );
    let (records, _) = history.recent(10).unwrap();
    let kinds: Vec<RecordKind> = records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::Connect,
            RecordKind::Fetch,
            RecordKind::Disconnect
        ]
    );
    assert_eq!(
        records[0].trigger,
        Trigger::Cli,
        "the dial-up steps name the manual fetch's trigger"
    );
    let connect = &records[0];
    assert!(connect.errors.is_empty(), "{:?}", connect.errors);
    assert!(connect.transcripts[0].1.iter().any(|l| l.line == "dialing"));

    // Link already up: no command at all.
    std::fs::remove_file(&hung).unwrap();
    t.fetch_now(FetchRequest::all(Trigger::Tray)).await.unwrap();
    assert!(!hung.exists());
    let (records, _) = history.recent(10).unwrap();
    assert_eq!(records.len(), 4);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_never_comes_up_is_an_error_and_nothing_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path().join("history.jsonl"));
    let svc = service(dir.path(), &history).await;
    let acct = account(LinkSettings {
        connect_command: Some(if cfg!(windows) { "cmd /c rem" } else { "true" }.into()),
        disconnect_command: Some(
            if cfg!(windows) {
                "cmd /c exit 1"
            } else {
                "false"
            }
            .into(),
        ),
        link_timeout: Some(1),
    });
    let (_tx, rx) = watch::channel(links(&[]));
    let t = triggers(&svc, vec![acct], &history, rx);
    let record = t.fetch_now(FetchRequest::all(Trigger::Cli)).await.unwrap();
    assert_eq!(record.kind, RecordKind::Connect);
    assert_eq!(record.ended_because, EndReason::LinkDidNotComeUp);
    assert!(
        record.errors[0].message.contains("within 1 s"),
        "{:?}",
        record.errors
    );
    let (records, _) = history.recent(10).unwrap();
    assert_eq!(records.len(), 1, "no session, no disconnect");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_automatic_fetch_is_retried_and_a_pause_stops_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path().join("history.jsonl"));
    let svc = service(dir.path(), &history).await;
    svc.set_accounts(vec![account(LinkSettings::default())]);
    // Online from the start: the fetch at start is the automatic fetch (a link-up sent after
    // the start could race the triggers' first look and count as the start state).
    let (_tx, rx) = watch::channel(links(&["ppp0"]));
    let t = trigger::start_with_links(
        svc.clone(),
        TriggerOptions {
            fetch_at_start: true,
            first_retry_delay: Duration::from_millis(400),
            retry_for: Duration::from_secs(30),
            history: Some(history.clone()),
            ..TriggerOptions::default()
        },
        rx,
        CancellationToken::new(),
    );
    let fetches = || {
        history
            .recent(100)
            .unwrap()
            .0
            .into_iter()
            .filter(|r| r.kind == RecordKind::Fetch)
            .collect::<Vec<_>>()
    };
    let wait_for = |n: usize| async move {
        for _ in 0..300 {
            if fetches().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {n} fetch record(s) within 3 s: {:?}", fetches());
    };
    // The ISP's port is closed: attempt 1, then 400 ms later attempt 2, each a record.
    wait_for(2).await;
    let records = fetches();
    assert_eq!(
        records.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(records.iter().all(|r| r.trigger == Trigger::Start));
    assert!(records.iter().all(|r| r.retryable == ["isp"]));
    // Attempt 3 is due 800 ms after attempt 2. The scenario, not a synchronisation: the user
    // pauses while the retry waits (well after attempt 2 has returned), and it never comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.set_paused(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fetches().len(), 2, "no attempt after the pause");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_is_owner_only_and_speaks_its_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path().join("history.jsonl"));
    let svc = service(dir.path(), &history).await;
    let (_tx, rx) = watch::channel(links(&["eth0"]));
    let t = triggers(&svc, vec![account(LinkSettings::default())], &history, rx);
    let path = dir.path().join("run/mailcall/control.sock");

    // Nothing there yet: callers learn they may fall back.
    let client = Client::new(path.clone());
    let e = client
        .fetch(ManualTrigger::Control, vec![])
        .await
        .unwrap_err();
    assert!(e.is_not_running(), "{e}");

    let server = Server::bind(&path).unwrap();
    // Owner-only by mode bits on Unix (on Windows the file is in the user's own profile).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
    }
    assert!(matches!(Server::bind(&path), Err(ControlError::InUse(_))));
    let stop = CancellationToken::new();
    let controls = Controls::new(
        t.clone(),
        None,
        Some("/etc/mailcall/test.toml".into()),
        std::sync::Arc::new(|| Box::pin(async { Ok(vec![Problem::new("gone: unreadable")]) })),
    );
    let serving = tokio::spawn(server.serve(controls, stop.clone()));

    // The reply as a script reads it.
    let status = client
        .send_line(&Request::Status.to_string())
        .await
        .unwrap();
    assert_eq!(status["ok"], true);
    assert_eq!(status["paused"], false);
    assert_eq!(status["links"][0], "eth0");
    assert_eq!(status["accounts"][0], "isp");
    assert_eq!(status["config"], "/etc/mailcall/test.toml");
    let typed = client.status().await.unwrap();
    assert_eq!((typed.paused, typed.accounts.len()), (false, 1));
    assert_eq!(client.reload().await.unwrap(), ["gone: unreadable"]);
    // Lines a script may write, that no typed request can: the server refuses them. An
    // automatic trigger over the socket would be a lie in the history.
    let fetch = Request::Fetch {
        trigger: ManualTrigger::Control,
        accounts: vec![],
        sending: Sending::First,
    };
    let refused = client
        .send_line(&format!("{fetch} trigger=network"))
        .await
        .unwrap();
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("tray, window"),
        "{refused}"
    );
    // A front end over the socket (a tray using the daemon) is named in the record.
    let record = client.fetch(ManualTrigger::Tray, vec![]).await.unwrap();
    assert_eq!(record.trigger, Trigger::Tray);
    let (recorded, _) = history.recent(10).unwrap();
    assert_eq!(recorded.last().map(|r| r.trigger), Some(Trigger::Tray));
    // EVENTS streams the instance's events as they happen.
    let mut events = client.subscribe().await.unwrap();
    assert!(client.set_paused(true).await.unwrap());
    assert!(t.is_paused());
    assert!(!client.set_paused(false).await.unwrap());
    assert!(!t.is_paused());
    let e = client.send_line("REBOOT").await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains(Verb::Fetch.as_str()),
        "it lists what to send: {e}"
    );
    // A name that is none is not even sent; the server would refuse it too.
    let e = client
        .fetch(ManualTrigger::Control, vec!["../x".into()])
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::Invalid(_)), "{e}");
    let refused = client.send_line(&format!("{fetch} ../x")).await.unwrap();
    assert_eq!(refused["ok"], false);
    // This one has no spool: a queue action is refused, and says why.
    let e = client
        .queue(Action::Retry, Selection::All)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the running Mailcall refused: {}", QueueError::Unavailable)
    );
    // Nor can it send, or read its spool again: each says why.
    let sent = client.send().await.unwrap_err();
    let woken = client.wake().await.unwrap_err();
    for e in [sent, woken] {
        assert_eq!(
            e.to_string(),
            format!("the running Mailcall refused: {}", QueueError::Unavailable)
        );
    }

    let record = client
        .fetch(ManualTrigger::Control, vec!["isp".into()])
        .await
        .unwrap();
    assert_eq!(record.trigger, Trigger::Control);
    assert_eq!(record.domains.len(), 1);
    let mut seen = Vec::new();
    while let Ok(Ok(Some(ev))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        let done = matches!(ev, mailcall_core::event::Event::SessionFinished(_));
        seen.push(ev);
        if done {
            break;
        }
    }
    assert!(
        matches!(
            seen.first(),
            Some(mailcall_core::event::Event::SessionStarted {
                trigger: Trigger::Control,
                ..
            })
        ),
        "{seen:?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(mailcall_core::event::Event::SessionFinished(_))
        ),
        "{seen:?}"
    );

    stop.cancel();
    serving.await.unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
    // The event stream ends with the instance.
    let end = tokio::time::timeout(Duration::from_secs(15), events.next()).await;
    assert!(
        matches!(end, Ok(Ok(None))),
        "the event stream ends when the instance stops: {end:?}"
    );
    // A stale socket file (nobody behind it) is replaced on the next start (the Windows
    // channel's stale file: tcp_token's a_file_left_by_a_killed_server_is_replaced).
    #[cfg(unix)]
    {
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        Server::bind(&path).unwrap();
    }
    svc.stop().await;
}
