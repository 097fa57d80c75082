//! The runner's outgoing half against a scripted smarthost on 127.0.0.1: a held message is never
//! tried until released (and stays held across a restart), a deferral waits by the `send-`
//! delays, a link coming up makes deferred mail due at once, `max-queue-lifetime` gives a
//! recipient up with one report for the sender (none for the null sender), and `delay-warning`
//! tells the sender once. The real Postfix smarthost is in the e2e suite.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::actions::{Action, Selection};
use super::copies::Router;
use super::runner::{self, Runner, RunnerOptions};
use super::*;
use crate::event::EventSink;

const DEADLINE: Duration = Duration::from_secs(20);

/// A scripted smarthost: `RCPT` gets the reply `rcpt` names for its address (250 otherwise);
/// it counts connections and keeps the recipients whose data it took.
#[derive(Clone, Default)]
struct Smarthost {
    rcpt: Arc<Mutex<HashMap<String, &'static str>>>,
    connections: Arc<AtomicUsize>,
    taken: Arc<Mutex<Vec<String>>>,
}

impl Smarthost {
    async fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                me.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(me.clone().session(stream));
            }
        });
        port
    }

    async fn session(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let _ = write.write_all(b"220 scripted ESMTP\r\n").await;
        let mut to: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => "250-scripted\r\n250 8BITMIME\r\n".into(),
                "MAIL" => {
                    to.clear();
                    "250 2.1.0 Ok\r\n".into()
                }
                "RCPT" => {
                    let start = line.find('<').map_or(0, |i| i + 1);
                    let end = line.rfind('>').unwrap_or(line.len());
                    let rcpt = line[start..end].to_string();
                    match self.rcpt.lock().unwrap().get(&rcpt) {
                        Some(r) => format!("{r}\r\n"),
                        None => {
                            to.push(rcpt);
                            "250 2.1.5 Ok\r\n".into()
                        }
                    }
                }
                "DATA" => {
                    let _ = write.write_all(b"354 go ahead\r\n").await;
                    loop {
                        let mut l = Vec::new();
                        if lines.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if l == b".\r\n" {
                            break;
                        }
                    }
                    self.taken.lock().unwrap().append(&mut to);
                    "250 2.0.0 queued\r\n".into()
                }
                "RSET" | "NOOP" => "250 2.0.0 Ok\r\n".into(),
                "QUIT" => {
                    let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                    return;
                }
                _ => "502 5.5.2 unknown\r\n".into(),
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn taken(&self) -> Vec<String> {
        self.taken.lock().unwrap().clone()
    }
}

/// An account `isp` for office.test whose outgoing server is plain SMTP on 127.0.0.1:`port`.
fn account(port: u16) -> crate::account::Account {
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

struct World {
    _dir: tempfile::TempDir,
    spool: Spool,
    postmaster: crate::maildir::Maildir,
    /// Where the local users' mail (and so delivery reports) goes.
    mailbox: crate::maildir::Maildir,
    smarthost: Smarthost,
    accounts: tokio::sync::watch::Sender<crate::service::Accounts>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let postmaster = crate::maildir::Maildir::create(&dir.path().join("postmaster")).unwrap();
    let mailbox = crate::maildir::Maildir::create(&dir.path().join("Maildir")).unwrap();
    let smarthost = Smarthost::default();
    let port = smarthost.start().await;
    let (accounts, _) = tokio::sync::watch::channel(Arc::new(vec![account(port)]));
    World {
        _dir: dir,
        spool,
        postmaster,
        mailbox,
        smarthost,
        accounts,
    }
}

impl World {
    /// The smarthost answers `reply` to `RCPT TO:<rcpt>` from now on.
    fn refuse(&self, rcpt: &str, reply: &'static str) {
        self.smarthost
            .rcpt
            .lock()
            .unwrap()
            .insert(rcpt.into(), reply);
    }

    /// Waits (with a deadline) until message `id` has left the queue; `why` names the step.
    async fn wait_sent(&self, id: &str, why: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.entry(id).is_some() {
            assert!(tokio::time::Instant::now() < deadline, "{why}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn options(&self) -> RunnerOptions {
        RunnerOptions {
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(1),
            send_retry_delay: Duration::from_secs(300),
            send_max_retry_delay: Duration::from_secs(3600),
            max_queue_lifetime: Duration::from_secs(5 * 86_400),
            delay_warning: None,
            per_target: 2,
            client: crate::client::ClientSettings {
                connect_timeout: Duration::from_secs(2),
                reply_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            host: "gw.office.test".into(),
            history: None,
            accounts: Some(self.accounts.subscribe()),
            router: Some(Arc::new(Router::single(self.mailbox.clone()))),
        }
    }

    fn start(&self, options: RunnerOptions) -> Runner {
        runner::start(
            self.spool.clone(),
            self.postmaster.clone(),
            options,
            EventSink::new(1000),
        )
    }

    async fn submit(&self, sender: &str, to: &[&str]) -> String {
        let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        crate::outgoing::queue::submit(
            &self.spool,
            "isp",
            sender,
            &to,
            "Received: from local user\r\n",
            b"Subject: hello\r\n\r\nbody\r\n",
            "local user",
        )
        .await
        .unwrap()
    }

    /// The reports in the local users' Maildir, as text.
    fn reports(&self) -> Vec<String> {
        let mut found = Vec::new();
        for f in std::fs::read_dir(self.mailbox.root().join("new")).unwrap() {
            found.push(String::from_utf8(std::fs::read(f.unwrap().path()).unwrap()).unwrap());
        }
        found
    }

    fn entry(&self, id: &str) -> Option<Entry> {
        let (entries, _) = self.spool.entries().unwrap();
        entries.into_iter().find(|e| e.id == id)
    }
}

#[tokio::test]
async fn a_held_message_is_never_tried_until_released_even_after_a_restart() {
    let w = world().await;
    let id = w.submit("me@office.test", &["you@far.test"]).await;
    let runner = w.start(w.options());
    let handle = runner.handle();
    let held = handle
        .act(Action::Hold, Selection::Ids(vec![id.clone()]))
        .await
        .unwrap();
    assert_eq!((held.messages, held.recipients), (1, 1));
    handle.set_online(true);
    let report = handle.send_outgoing().await.unwrap();
    assert!(report.messages.is_empty(), "{report:?}");
    assert_eq!(w.smarthost.connections(), 0, "a held message is not tried");
    runner.finish(None).await;
    // A new Mailcall on the same spool: still held.
    assert!(w.entry(&id).unwrap().state.held);
    let runner = w.start(w.options());
    let handle = runner.handle();
    handle.set_online(true);
    let report = handle.send_outgoing().await.unwrap();
    assert!(report.messages.is_empty(), "{report:?}");
    assert_eq!(w.smarthost.connections(), 0, "held across a restart");
    // Released: it leaves at once (the link is up).
    let released = handle
        .act(Action::Release, Selection::Ids(vec![id.clone()]))
        .await
        .unwrap();
    assert_eq!(released.messages, 1);
    w.wait_sent(&id, "never sent").await;
    assert_eq!(w.smarthost.taken(), vec!["you@far.test".to_string()]);
    runner.finish(None).await;
}

#[tokio::test]
async fn a_deferral_waits_by_the_send_delays_and_the_link_coming_up_makes_it_due() {
    let w = world().await;
    w.refuse("you@far.test", "451 4.7.1 greylisted");
    let id = w.submit("me@office.test", &["you@far.test"]).await;
    let runner = w.start(w.options());
    let handle = runner.handle();
    let report = handle.send_outgoing().await.unwrap();
    assert_eq!(report.counts(), (0, 0, 1), "{report:?}");
    let s = w.entry(&id).unwrap().state.recipients[0].clone();
    assert_eq!(s.status, Status::Queued);
    assert_eq!(
        (s.next_attempt.unwrap() - s.last_attempt.unwrap()).num_seconds(),
        300,
        "send-retry-delay, not retry-delay"
    );
    assert!(w.reports().is_empty(), "no report before delay-warning");
    // The link comes up: the wait of a deferral counts only time online, so it goes now.
    w.smarthost.rcpt.lock().unwrap().clear();
    handle.set_online(true);
    w.wait_sent(&id, "not tried at link-up").await;
    assert_eq!(w.smarthost.taken(), vec!["you@far.test".to_string()]);
    runner.finish(None).await;
}

#[tokio::test]
async fn past_the_lifetime_a_deferred_recipient_is_given_up_with_one_report_to_its_sender() {
    let w = world().await;
    w.refuse("late@far.test", "451 4.3.0 try later");
    let id = w
        .submit("me@office.test", &["late@far.test", "ok@far.test"])
        .await;
    let mut options = w.options();
    options.max_queue_lifetime = Duration::ZERO;
    let runner = w.start(options);
    let report = runner.handle().send_outgoing().await.unwrap();
    assert_eq!(report.counts(), (1, 0, 1), "{report:?}");
    assert!(
        w.entry(&id).is_none(),
        "given up: the message left the queue"
    );
    let reports = w.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let dsn = &reports[0];
    assert!(dsn.contains("To: <me@office.test>"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; late@far.test"),
        "{dsn}"
    );
    assert!(!dsn.contains("rfc822; ok@far.test"), "{dsn}");
    assert!(dsn.contains("Action: failed\r\nStatus: 5.4.7"), "{dsn}");
    assert!(dsn.contains("max-queue-lifetime"), "{dsn}");
    runner.finish(None).await;
}

#[tokio::test]
async fn the_null_sender_never_gets_a_report() {
    let w = world().await;
    w.refuse("late@far.test", "451 4.3.0 try later");
    w.refuse("bad@far.test", "550 5.1.1 no such user");
    let id = w.submit("", &["late@far.test", "bad@far.test"]).await;
    let mut options = w.options();
    options.max_queue_lifetime = Duration::ZERO;
    options.delay_warning = Some(Duration::ZERO);
    let runner = w.start(options);
    let report = runner.handle().send_outgoing().await.unwrap();
    assert_eq!(report.counts(), (0, 1, 1), "{report:?}");
    assert!(
        w.entry(&id).is_none(),
        "given up: the message left the queue"
    );
    assert!(w.reports().is_empty(), "{:?}", w.reports());
    assert_eq!(
        std::fs::read_dir(w.postmaster.root().join("new"))
            .unwrap()
            .count(),
        0
    );
    runner.finish(None).await;
}

#[tokio::test]
async fn a_delay_warning_goes_to_the_sender_once() {
    let w = world().await;
    w.refuse("late@far.test", "451 4.7.1 greylisted");
    let id = w.submit("me@office.test", &["late@far.test"]).await;
    let mut options = w.options();
    options.delay_warning = Some(Duration::ZERO);
    let runner = w.start(options);
    let handle = runner.handle();
    for _ in 0..2 {
        let report = handle.send_outgoing().await.unwrap();
        assert_eq!(report.counts(), (0, 0, 1), "{report:?}");
    }
    assert_eq!(w.smarthost.connections(), 2, "tried twice");
    let reports = w.reports();
    assert_eq!(reports.len(), 1, "one warning per message: {reports:?}");
    assert!(
        reports[0].contains("Action: delayed\r\nStatus: 4.7.1"),
        "{}",
        reports[0]
    );
    let entry = w.entry(&id).unwrap();
    assert!(entry.state.warned);
    assert_eq!(entry.state.recipients[0].status, Status::Queued);
    runner.finish(None).await;
}

#[tokio::test]
async fn retry_sends_an_outgoing_message_now_even_while_no_link_is_up() {
    let w = world().await;
    w.refuse("you@far.test", "451 4.7.1 greylisted");
    let id = w.submit("me@office.test", &["you@far.test"]).await;
    let runner = w.start(w.options());
    let handle = runner.handle();
    let report = handle.send_outgoing().await.unwrap();
    assert_eq!(report.counts(), (0, 0, 1), "{report:?}");
    // Offline, deferred for 5 minutes: the user's Retry sends it now.
    w.smarthost.rcpt.lock().unwrap().clear();
    let retried = handle
        .act(Action::Retry, Selection::Ids(vec![id.clone()]))
        .await
        .unwrap();
    assert_eq!(retried.messages, 1);
    w.wait_sent(&id, "not sent at Retry").await;
    assert_eq!(w.smarthost.taken(), vec!["you@far.test".to_string()]);
    runner.finish(None).await;
}
