//! Wire tests for the submission listener (outgoing mail, port 587): raw bytes in, reply bytes
//! checked, the queue looked at. Loopback peers come over real sockets on 127.0.0.1; LAN peers
//! are sessions served over an in-memory stream with the peer address they would have.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailcall_core::account::{Account, OutgoingServer, Security};
use mailcall_core::listener::{
    serve, tls, Listener, ListenerEvent, ListenerSettings, PeerNet, Reception, RecipientPolicy,
    Submission, SubmitLogin,
};
use mailcall_core::maildir::Maildir;
use mailcall_core::routing::Target;
use mailcall_core::spool::{Entry, Spool};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; never reached when the code works.
const DEADLINE: Duration = Duration::from_secs(10);

/// A LAN host no setting names.
const LAN_PEER: &str = "192.0.2.9:40000";

/// The account `isp`: it holds office.test and sends through its ISP's server.
fn office() -> Account {
    Account {
        outgoing: Some(OutgoingServer::new("smtp.isp.test", Security::Starttls)),
        ..common::account(25, &["office.test"])
    }
}

struct Queue {
    dir: tempfile::TempDir,
    spool: Spool,
    events: mpsc::UnboundedReceiver<ListenerEvent>,
    shutdown: CancellationToken,
}

impl Queue {
    fn entries(&self) -> Vec<Entry> {
        let (entries, problems) = self.spool.entries().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        entries
    }

    fn in_tmp(&self) -> usize {
        std::fs::read_dir(self.spool.root().join("tmp"))
            .unwrap()
            .count()
    }
}

/// A submission reception: the spool in a fresh directory, the `office` account, `allowed`
/// networks, the login `me`/`secret` when `login`, STARTTLS with a self-signed certificate for
/// `mx.test` when `tls` (the client config trusting it is returned).
fn reception(
    allowed: &[&str],
    login: bool,
    tls: bool,
) -> (Arc<Reception>, Queue, Option<Arc<rustls::ClientConfig>>) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let nets: Vec<PeerNet> = allowed.iter().map(|n| n.parse().unwrap()).collect();
    let submission = Submission::new(spool.clone(), vec![office()], nets)
        .with_login(login.then(|| SubmitLogin::new("me", "secret")));
    let mut settings = ListenerSettings::new("mx.test".into(), 100_000);
    let client = tls.then(|| {
        use rustls::pki_types::pem::PemObject;
        let (config, cert_path) = tls::self_signed(dir.path(), "mx.test").unwrap();
        settings.tls = Some(config);
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&cert_path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    let maildir = Arc::new(Maildir::create(&dir.path().join("maildir")).unwrap());
    let (tx, events) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let reception = Reception::new(
        Arc::new(settings),
        Arc::new(RecipientPolicy::default()),
        maildir,
        tx,
        shutdown.clone(),
    )
    .with_submission(Arc::new(submission));
    let queue = Queue {
        dir,
        spool,
        events,
        shutdown,
    };
    (Arc::new(reception), queue, client)
}

/// A session served over an in-memory stream, as if from `peer`.
async fn session_from(peer: &str, reception: Arc<Reception>) -> Client<tokio::io::DuplexStream> {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let peer: SocketAddr = peer.parse().unwrap();
    tokio::spawn(serve(theirs, peer, false, Vec::new(), reception));
    let mut c = Client {
        stream: ours,
        buf: Vec::new(),
    };
    c.expect("220 mx.test ESMTP").await;
    c
}

struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Reads one complete (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut lines = String::new();
        for _ in 0..1000 {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).unwrap();
                assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
                lines.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return lines;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(DEADLINE, self.stream.read(&mut chunk))
                .await
                .expect("no reply in time")
                .unwrap();
            assert!(n > 0, "connection closed; got so far: {lines:?}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("reply never ended: {lines:?}");
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
        reply
    }

    async fn cmd(&mut self, line: &str, prefix: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect(prefix).await
    }

    /// STARTTLS and the handshake; the TLS client trusts `config`'s roots.
    async fn starttls(
        mut self,
        config: Arc<rustls::ClientConfig>,
    ) -> Client<tokio_rustls::client::TlsStream<S>> {
        self.cmd("STARTTLS", "220 2.0.0").await;
        assert!(self.buf.is_empty(), "plaintext after the 220");
        let name = rustls::pki_types::ServerName::try_from("mx.test").unwrap();
        let stream = timeout(
            DEADLINE,
            tokio_rustls::TlsConnector::from(config).connect(name, self.stream),
        )
        .await
        .expect("handshake in time")
        .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// One message from me@office.test to `rcpt`; returns DATA's final reply.
    async fn submit(&mut self, rcpt: &str, data: &[u8]) -> String {
        self.cmd("MAIL FROM:<me@office.test>", "250 2.1.0").await;
        self.cmd(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5").await;
        self.cmd("DATA", "354").await;
        self.send(data).await;
        self.reply().await
    }
}

const MESSAGE: &[u8] = b"From: Me <me@office.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nfirst line\r\n..a line that began with a dot\r\nlast line\r\n.\r\n";
const STORED: &[u8] = b"From: Me <me@office.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nfirst line\r\n.a line that began with a dot\r\nlast line\r\n";

/// The message without our `Received:` (which must be its first field): the rest must be what
/// was sent, un-stuffed.
fn after_received(message: &[u8]) -> (&[u8], String) {
    let text = std::str::from_utf8(message).unwrap();
    assert!(text.starts_with("Received: from "), "{text}");
    // The field goes on while lines start with white space.
    let mut end = 0;
    for line in text.split_inclusive("\r\n") {
        if end > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        end += line.len();
    }
    (&message[end..], text[..end].to_owned())
}

#[tokio::test]
async fn loopback_submits_to_any_domain_and_the_message_is_queued_unchanged_under_received() {
    let (reception, mut queue, _) = reception(&[], false, false);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let served = tokio::spawn(listener.serve(reception));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client {
        stream,
        buf: Vec::new(),
    };
    c.expect("220 mx.test ESMTP").await;
    let ehlo = c.cmd("EHLO laptop.office.test", "250-mx.test").await;
    assert!(!ehlo.contains("AUTH"), "no AUTH in plaintext: {ehlo}");
    c.cmd("MAIL FROM:<me@office.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<bob@elsewhere.example>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send(MESSAGE).await;
    let done = c.expect("250 2.0.0 Ok: queued as ").await;
    c.cmd("QUIT", "221").await;

    let entries = queue.entries();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert!(done.contains(&e.id), "{done} names {}", e.id);
    assert_eq!(e.envelope.sender, "me@office.test");
    let rcpts: Vec<&str> = e
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["alice@example.org", "bob@elsewhere.example"]);
    assert!(e
        .envelope
        .recipients
        .iter()
        .all(|r| r.target == Target::smarthost("isp")));
    let message = queue.spool.read_message(e).unwrap();
    let (rest, received) = after_received(&message);
    assert_eq!(rest, STORED, "nothing else in the message changes");
    assert!(
        received.contains("from laptop.office.test (127.0.0.1)") && received.contains("by mx.test"),
        "{received}"
    );
    match timeout(DEADLINE, queue.events.recv()).await.unwrap() {
        Some(ListenerEvent::Connected { .. }) => {}
        other => panic!("{other:?}"),
    }
    match timeout(DEADLINE, queue.events.recv()).await.unwrap() {
        Some(ListenerEvent::Stored(info)) => {
            assert_eq!(info.subject.as_deref(), Some("hello"));
            assert!(info.copies.iter().all(|c| c.queued));
        }
        other => panic!("{other:?}"),
    }
    queue.shutdown.cancel();
    timeout(DEADLINE, served).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unlisted_peer_without_login_is_refused_and_nothing_is_queued() {
    let (reception, queue, _) = reception(&["198.51.100.0/24"], true, false);
    let mut c = session_from(LAN_PEER, reception.clone()).await;
    c.cmd("EHLO stranger.test", "250").await;
    c.cmd(
        "MAIL FROM:<me@office.test>",
        "530 5.7.0 Authentication required",
    )
    .await;
    c.cmd("RCPT TO:<alice@example.org>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    // Pipelined, all at once: still nothing.
    c.send(b"MAIL FROM:<me@office.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nrelayed?\r\n.\r\n")
        .await;
    c.expect("530 5.7.0").await;
    c.expect("503").await;
    c.expect("503").await;
    assert!(queue.entries().is_empty() && queue.in_tmp() == 0);

    // A listed network may submit without a login.
    let mut listed = session_from("198.51.100.7:1234", reception).await;
    listed.cmd("EHLO printer.test", "250").await;
    listed
        .submit("alice@example.org", b"Subject: scan\r\n\r\nx\r\n.\r\n")
        .await
        .starts_with("250 2.0.0")
        .then_some(())
        .expect("a listed peer submits");
    assert_eq!(queue.entries().len(), 1);
}

#[tokio::test]
async fn auth_before_starttls_is_refused_with_538_and_nothing_else_changes() {
    let (reception, queue, _) = reception(&[], true, true);
    let mut c = session_from(LAN_PEER, reception).await;
    let ehlo = c.cmd("EHLO laptop.test", "250").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let plain = STANDARD.encode("\0me\0secret");
    c.cmd(&format!("AUTH PLAIN {plain}"), "538 5.7.11").await;
    c.cmd("AUTH LOGIN", "538 5.7.11").await;
    c.cmd("MAIL FROM:<me@office.test>", "530 5.7.0").await;
    c.cmd("NOOP", "250").await;
    assert!(queue.entries().is_empty());
}

#[tokio::test]
async fn auth_after_starttls_lets_a_lan_host_submit() {
    let (reception, queue, client) = reception(&[], true, true);
    let c = session_from(LAN_PEER, reception.clone()).await;
    let mut c = {
        let mut c = c;
        c.cmd("EHLO laptop.test", "250").await;
        c.starttls(client.clone().unwrap()).await
    };
    let ehlo = c.cmd("EHLO laptop.test", "250").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let wrong = STANDARD.encode("\0me\0guess");
    c.cmd(&format!("AUTH PLAIN {wrong}"), "535 5.7.8").await;
    c.cmd("MAIL FROM:<me@office.test>", "530 5.7.0").await;
    // LOGIN, step by step.
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.cmd(&STANDARD.encode("me"), "334 UGFzc3dvcmQ6").await;
    c.cmd(&STANDARD.encode("secret"), "235 2.7.0").await;
    c.cmd("AUTH LOGIN", "503 5.5.1").await;
    let done = c.submit("alice@example.org", MESSAGE).await;
    assert!(done.starts_with("250 2.0.0"), "{done}");
    let entries = queue.entries();
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].envelope.peer.contains("login me"),
        "{:?}",
        entries[0].envelope
    );
    let message = queue.spool.read_message(&entries[0]).unwrap();
    let (rest, received) = after_received(&message);
    assert_eq!(rest, STORED);
    assert!(received.contains("with ESMTPSA"), "{received}");

    // PLAIN with the empty challenge, on another connection.
    let mut c = session_from(LAN_PEER, reception).await;
    c.cmd("EHLO laptop.test", "250").await;
    let mut c = c.starttls(client.unwrap()).await;
    c.cmd("EHLO laptop.test", "250").await;
    c.cmd("AUTH PLAIN", "334").await;
    c.cmd("*", "501 5.0.0").await;
    c.cmd("AUTH PLAIN", "334").await;
    c.cmd(&STANDARD.encode("\0me\0secret"), "235 2.7.0").await;
    let done = c
        .submit("bob@example.org", b"Subject: 2\r\n\r\ny\r\n.\r\n")
        .await;
    assert!(done.starts_with("250 2.0.0"), "{done}");
    assert_eq!(queue.entries().len(), 2);
}

#[tokio::test]
async fn a_sender_no_account_holds_is_refused_at_mail_with_the_fix() {
    let (reception, queue, _) = reception(&[], false, false);
    let mut c = session_from("127.0.0.1:5000", reception).await;
    c.cmd("EHLO laptop.test", "250").await;
    let refused = c
        .cmd(
            "MAIL FROM:<me@elsewhere.test>",
            "553 5.7.1 <me@elsewhere.test>: ",
        )
        .await;
    assert!(
        refused.contains("add elsewhere.test to the domains of the account"),
        "{refused}"
    );
    // The null sender (a report a local program writes) has no domain: it leaves through the
    // only account that sends.
    c.cmd("MAIL FROM:<>", "250").await;
    c.cmd("RSET", "250").await;
    c.cmd("RCPT TO:<alice@example.org>", "503 5.5.1").await;
    assert!(queue.entries().is_empty());
}

#[tokio::test]
async fn the_inbound_rules_apply_to_submission_too() {
    let (reception, queue, _) = reception(&[], false, false);
    let mut c = session_from("127.0.0.1:5000", reception).await;
    c.cmd("EHLO laptop.test", "250").await;
    c.cmd("MAIL FROM:<me@office.test> SIZE=200000", "552 5.3.4")
        .await;
    c.cmd("MAIL FROM:<me@office.test>", "250").await;
    c.cmd("RCPT TO:<a%b@example.org>", "550 5.7.1").await;
    c.cmd("RCPT TO:<\"a@b\"@example.org>", "550 5.7.1").await;
    c.cmd("RCPT TO:<alice@example.org>", "250").await;
    c.cmd("DATA", "354").await;
    // Smuggling: a bare LF before the dot is no end of DATA, and the message is refused whole.
    c.send(b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@office.test>\r\n.\r\n")
        .await;
    c.expect("550 5.5.2").await;
    c.cmd("MAIL FROM:<me@office.test>", "250").await;
    c.cmd("RCPT TO:<alice@example.org>", "250").await;
    c.cmd("DATA", "354").await;
    let big = vec![b'x'; 998];
    for _ in 0..120 {
        c.send(&big).await;
        c.send(b"\r\n").await;
    }
    c.send(b".\r\n").await;
    c.expect("552 5.3.4").await;
    assert!(queue.entries().is_empty() && queue.in_tmp() == 0);
}

#[tokio::test]
async fn a_storage_failure_answers_4xx_and_queues_nothing() {
    let (reception, queue, _) = reception(&[], false, false);
    let mut c = session_from("127.0.0.1:5000", reception).await;
    c.cmd("EHLO laptop.test", "250").await;
    let new = queue.spool.root().join("new");
    std::fs::remove_dir(&new).unwrap();
    let reply = c.submit("alice@example.org", MESSAGE).await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert_eq!(queue.in_tmp(), 0, "the half-written file is gone");
    std::fs::create_dir(&new).unwrap();
    assert!(queue.entries().is_empty());
    let _ = &queue.dir;
    // The disk is back: the next one is queued.
    let reply = c.submit("alice@example.org", MESSAGE).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert_eq!(queue.entries().len(), 1);
}

#[tokio::test]
async fn the_service_binds_submission_while_an_account_has_an_outgoing_server_and_queues_there() {
    use mailcall_core::client::ClientSettings;
    use mailcall_core::event::EventSink;
    use mailcall_core::fetch::FetchOptions;
    use mailcall_core::history::Trigger;
    use mailcall_core::outgoing::submission::SubmitOptions;
    use mailcall_core::service::{self, ServiceOptions};
    use mailcall_core::spool::copies::RoutingOptions;

    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let options = ServiceOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        maildir: maildir.clone(),
        listener: ListenerSettings::new("mx.test".into(), 100_000),
        fetch: FetchOptions {
            trigger: Trigger::Unknown,
            idle_timeout: Duration::from_secs(1),
            max_wait: Duration::from_secs(5),
            client: ClientSettings::default(),
            history: None,
        },
        routing: RoutingOptions::without_routes(dir.path().join("spool")),
    };
    let submit = SubmitOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_peers: Vec::new(),
        login: None,
        default_account: None,
        settings: options.listener.clone(),
    };
    let prepared = service::prepare(options).await.unwrap();
    let spool = prepared.router().spool().unwrap().clone();
    // No outgoing server yet: nothing bound.
    let service = service::start_prepared(
        prepared,
        vec![common::account(25, &["office.test"])],
        EventSink::new(16),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let bound = service
        .start_submission(submit, spool.clone())
        .await
        .unwrap();
    assert_eq!(bound, None);
    assert_eq!(service.submit_addr(), None);
    // The account gets one: bound at the reload.
    service.set_accounts(vec![office()]);
    service.listen_if_needed().await.unwrap();
    let addr = service.submit_addr().expect("bound once an account sends");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client {
        stream,
        buf: Vec::new(),
    };
    c.expect("220 mx.test").await;
    c.cmd("EHLO laptop.test", "250").await;
    let done = c.submit("alice@example.org", MESSAGE).await;
    assert!(done.starts_with("250 2.0.0"), "{done}");
    let (entries, _) = spool.entries().unwrap();
    assert_eq!(entries.len(), 1);
    service.stop().await;
}
