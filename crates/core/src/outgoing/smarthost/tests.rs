//! The smarthost leg against a scripted SMTP server on loopback: one outcome per recipient,
//! the bytes as queued, and what a lost connection means. The real Postfix submission server is
//! in the e2e suite.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

/// What the scripted server does at a point of the transaction.
#[derive(Clone, Default)]
struct Script {
    /// Replies to `RCPT TO:<address>` other than 250.
    rcpt: HashMap<String, &'static str>,
    /// The reply to the end of data, or `None` to drop the connection instead.
    end_of_data: Option<&'static str>,
    /// Closes the connection right after answering the end of data (as a server whose idle
    /// timeout is shorter than the client's pause would).
    close_after_data: bool,
    /// Drops the connection without a reply when this command (`MAIL`, `RCPT`, `DATA`) comes.
    drop_at: Option<&'static str>,
    /// Takes this many `MAIL` commands per connection, then answers each with `421` (and
    /// keeps the connection, as Exim's `smtp_accept_max_per_connection` does).
    mail_limit: Option<usize>,
}

/// One transaction the server accepted the data of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
    /// The client's port: which connection it came on.
    conn: u16,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

/// A scripted server; returns its port and what it took.
async fn server(script: Script) -> (u16, Arc<Mutex<Vec<Taken>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(Mutex::new(Vec::new()));
    let log = taken.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
                let (mut from, mut to) = (String::new(), Vec::new());
                let mut mails = 0;
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    if script.drop_at == Some(verb.as_str()) {
                        return;
                    }
                    let reply: String = match verb.as_str() {
                        "EHLO" => "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into(),
                        "MAIL" if script.mail_limit.is_some_and(|limit| mails >= limit) => {
                            "421 4.7.0 too many messages in this connection\r\n".into()
                        }
                        "MAIL" => {
                            mails += 1;
                            from = between(&line);
                            to.clear();
                            "250 2.1.0 Ok\r\n".into()
                        }
                        "RCPT" => {
                            let rcpt = between(&line);
                            match script.rcpt.get(&rcpt) {
                                Some(refusal) => format!("{refusal}\r\n"),
                                None => {
                                    to.push(rcpt);
                                    "250 2.1.5 Ok\r\n".into()
                                }
                            }
                        }
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = Vec::new();
                            loop {
                                let mut l = Vec::new();
                                if lines.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if l == b".\r\n" {
                                    break;
                                }
                                // Undo the dot-stuffing.
                                let l = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                                data.extend_from_slice(l);
                            }
                            let Some(reply) = script.end_of_data else {
                                return; // dropped after the data: the reply is lost
                            };
                            if reply.starts_with('2') {
                                log.lock().unwrap().push(Taken {
                                    conn: peer.port(),
                                    from: from.clone(),
                                    to: to.clone(),
                                    data,
                                });
                            }
                            if script.close_after_data {
                                let _ = write.write_all(format!("{reply}\r\n").as_bytes()).await;
                                return;
                            }
                            format!("{reply}\r\n")
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
            });
        }
    });
    (port, taken)
}

/// The address between `<` and `>` on a MAIL or RCPT line.
fn between(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end].to_owned()
}

fn settings(port: u16) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        login: None,
        ca_file: None,
        helo: "mailcall.test".into(),
        timeout: Duration::from_secs(10),
    }
}

fn three() -> Vec<String> {
    ["alice@example.org", "bob@example.org", "carol@example.org"]
        .map(String::from)
        .to_vec()
}

const MESSAGE: &[u8] = b"From: me@office.test\r\nSubject: hi\r\n\r\nbody\r\n";

#[tokio::test]
async fn one_refused_recipient_never_holds_back_the_others() {
    let script = Script {
        rcpt: HashMap::from([("bob@example.org".into(), "550 5.1.1 no such user")]),
        end_of_data: Some("250 2.0.0 Ok: queued"),
        ..Script::default()
    };
    let (port, taken) = server(script).await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    assert_eq!(
        outcomes[1],
        Outcome::Refused {
            reply: "550 5.1.1 no such user".into()
        }
    );
    assert!(outcomes[2].is_sent(), "{outcomes:?}");
    // Each accepted recipient got the message exactly once.
    let taken = taken.lock().unwrap().clone();
    let mut got: Vec<String> = taken.iter().flat_map(|t| t.to.clone()).collect();
    got.sort();
    assert_eq!(got, ["alice@example.org", "carol@example.org"]);
    assert!(taken
        .iter()
        .all(|t| t.from == "me@office.test" && t.data == MESSAGE));
}

#[tokio::test]
async fn a_4xx_for_one_recipient_defers_only_that_one() {
    let script = Script {
        rcpt: HashMap::from([(
            "carol@example.org".into(),
            "451 4.7.1 greylisted, try later",
        )]),
        end_of_data: Some("250 2.0.0 Ok"),
        ..Script::default()
    };
    let (port, taken) = server(script).await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    assert!(
        outcomes[0].is_sent() && outcomes[1].is_sent(),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[2],
        Outcome::Deferred {
            reply: "451 4.7.1 greylisted, try later".into(),
            maybe_sent: false,
            reached: true,
        }
    );
    assert_eq!(taken.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn all_accepted_is_one_transaction() {
    let script = Script {
        end_of_data: Some("250 2.0.0 Ok: queued as ABC"),
        ..Script::default()
    };
    let (port, taken) = server(script).await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    let sent = Outcome::Sent {
        reply: "250 2.0.0 Ok: queued as ABC".into(),
    };
    assert_eq!(outcomes, vec![sent; 3]);
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].to, three());
}

#[tokio::test]
async fn one_connection_carries_message_after_message_and_a_refusal_costs_only_a_new_one() {
    let script = Script {
        rcpt: HashMap::from([("nobody@example.org".into(), "550 5.1.1 no such user")]),
        end_of_data: Some("250 2.0.0 Ok"),
        ..Script::default()
    };
    let (port, taken) = server(script).await;
    let host = Smarthost::new(&settings(port)).unwrap();
    for _ in 0..3 {
        let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
        assert!(outcomes.iter().all(Outcome::is_sent), "{outcomes:?}");
    }
    // A refused recipient: lettre ends that connection; the next message opens another.
    let refused = host
        .send("me@office.test", &["nobody@example.org".into()], MESSAGE)
        .await;
    assert!(matches!(refused[0], Outcome::Refused { .. }), "{refused:?}");
    let after = host.send("me@office.test", &three(), MESSAGE).await;
    assert!(after.iter().all(Outcome::is_sent), "{after:?}");
    host.close().await;
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 4);
    let first = taken[0].conn;
    assert!(
        taken[..3].iter().all(|t| t.conn == first),
        "the first three on one connection: {taken:?}"
    );
    assert_ne!(taken[3].conn, first, "{taken:?}");
}

#[tokio::test]
async fn the_bytes_arrive_exactly_as_queued() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 Ok"),
        ..Script::default()
    })
    .await;
    let message = "Received: from x\r\nSubject: caf\u{e9}\r\n\r\n.\r\n..two dots\r\n.leading\r\nlast line\r\n";
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host
        .send("", &["alice@example.org".to_owned()], message.as_bytes())
        .await;
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken[0].data, message.as_bytes());
    // The null sender is sent as an empty reverse path.
    assert_eq!(taken[0].from, "");
}

#[tokio::test]
async fn a_refusal_at_the_end_of_data_is_each_recipients() {
    let (port, taken) = server(Script {
        end_of_data: Some("554 5.7.1 rejected as spam"),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    let refused = Outcome::Refused {
        reply: "554 5.7.1 rejected as spam".into(),
    };
    assert_eq!(outcomes, vec![refused; 3]);
    assert!(taken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_deferred_and_never_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    for o in &outcomes {
        let reply = deferred(o, false, false);
        assert!(
            reply.contains("cannot connect to the outgoing server"),
            "{reply}"
        );
        assert!(reply.contains(&port.to_string()), "{reply}");
    }
}

#[tokio::test]
async fn a_refused_login_defers_the_mail_instead_of_bouncing_it() {
    let mut rcpt = HashMap::new();
    rcpt.insert(
        "alice@example.org".to_owned(),
        "530 5.7.0 Authentication required",
    );
    let (port, taken) = server(Script {
        rcpt,
        end_of_data: Some("250 2.0.0 queued"),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host
        .send("me@office.test", &["alice@example.org".to_owned()], MESSAGE)
        .await;
    let reply = deferred(&outcomes[0], false, true);
    assert!(reply.contains("refused the login (530"), "{reply}");
    assert!(taken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_lost_connection_after_the_data_may_have_sent_it() {
    let (port, _taken) = server(Script {
        end_of_data: None,
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host
        .send("me@office.test", &["alice@example.org".to_owned()], MESSAGE)
        .await;
    match &outcomes[0] {
        Outcome::Deferred {
            reply, maybe_sent, ..
        } => {
            assert!(maybe_sent, "{reply}");
            assert!(reply.contains("was lost"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_address_that_cannot_be_sent_is_refused_alone() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 Ok"),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let rcpts = vec!["alice@example.org".to_owned(), "no address".to_owned()];
    let outcomes = host.send("me@office.test", &rcpts, MESSAGE).await;
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    assert!(
        matches!(&outcomes[1], Outcome::Refused { reply } if reply.starts_with("553") && reply.contains("no address")),
        "{outcomes:?}"
    );
    assert_eq!(taken.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_password_is_never_sent_in_plain_text() {
    let mut s = settings(587);
    s.login = Some(Login {
        user: "me".into(),
        secret: Secret::new("hunter2"),
        method: LoginMethod::Password,
    });
    let err = Smarthost::new(&s).unwrap_err();
    assert!(matches!(err, SetupError::PlaintextLogin { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"));
    s.security = Security::Starttls;
    assert!(Smarthost::new(&s).is_ok());
}

#[tokio::test]
async fn a_bad_ca_file_is_named_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "no certificate\n").unwrap();
    let mut s = settings(587);
    s.security = Security::Starttls;
    s.ca_file = Some(junk);
    let err = Smarthost::new(&s).unwrap_err();
    assert!(err.to_string().contains("junk.pem"), "{err}");
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_and_the_message_not_maybe_sent() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 2.0.0 Ok"),
        close_after_data: true,
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    for _ in 0..3 {
        let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
        assert!(outcomes.iter().all(Outcome::is_sent), "{outcomes:?}");
    }
    host.close().await;
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 3, "each message exactly once: {taken:?}");
    assert!(
        taken[0].conn != taken[1].conn && taken[1].conn != taken[2].conn,
        "each message on a new connection: {taken:?}"
    );
    let transcript: Vec<String> = host.transcript().iter().map(|l| l.line.clone()).collect();
    assert_eq!(
        transcript
            .iter()
            .filter(|l| l.contains("kept connection was closed before the message went out"))
            .count(),
        2,
        "{transcript:#?}"
    );
}

#[tokio::test]
async fn a_connection_lost_before_the_data_never_makes_the_message_maybe_sent() {
    for verb in ["MAIL", "RCPT", "DATA"] {
        let (port, taken) = server(Script {
            end_of_data: Some("250 2.0.0 Ok"),
            drop_at: Some(verb),
            ..Script::default()
        })
        .await;
        let host = Smarthost::new(&settings(port)).unwrap();
        let outcomes = host
            .send("me@office.test", &["alice@example.org".to_owned()], MESSAGE)
            .await;
        let reply = deferred(&outcomes[0], false, true);
        assert!(
            reply.contains("lost before the message went out"),
            "{verb}: {reply}"
        );
        assert!(taken.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_transcript_has_each_command_and_reply_of_the_flush() {
    let (port, _taken) = server(Script {
        rcpt: HashMap::from([("bob@example.org".into(), "550 5.1.1 no such user")]),
        end_of_data: Some("250 2.0.0 Ok: queued as X1"),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    host.send(
        "me@office.test",
        &["alice@example.org".to_owned(), "bob@example.org".to_owned()],
        MESSAGE,
    )
    .await;
    host.close().await;
    let lines: Vec<String> = host.transcript().iter().map(ToString::to_string).collect();
    let text = lines.join("\n");
    for expected in [
        "EHLO mailcall.test",
        "server scripted with",
        "MAIL FROM:<me@office.test>",
        "RCPT TO:<alice@example.org>",
        "550 5.1.1 no such user",
        "DATA",
        // The queued CRLF before the end of data is lettre's to send.
        &format!("the message, {} bytes", MESSAGE.len() - 2),
        "250 2.0.0 Ok: queued as X1",
        "QUIT",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[tokio::test]
async fn the_transcript_stays_bounded_over_a_long_flush() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 2.0.0 Ok"),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    for _ in 0..100 {
        host.send("me@office.test", &three(), MESSAGE).await;
    }
    assert_eq!(taken.lock().unwrap().len(), 100);
    assert_eq!(host.transcript().len(), TRANSCRIPT_LINES);
}

#[tokio::test]
async fn a_server_limiting_messages_per_connection_gets_each_once_on_a_new_one() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 2.0.0 Ok"),
        mail_limit: Some(2),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    for _ in 0..5 {
        let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
        assert!(outcomes.iter().all(Outcome::is_sent), "{outcomes:?}");
    }
    host.close().await;
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 5, "each message exactly once: {taken:?}");
    let conns: std::collections::BTreeSet<u16> = taken.iter().map(|t| t.conn).collect();
    assert_eq!(conns.len(), 3, "two messages per connection: {taken:?}");
}

#[tokio::test]
async fn a_421_on_a_new_connection_defers_the_message_without_maybe_sent() {
    let (port, taken) = server(Script {
        end_of_data: Some("250 2.0.0 Ok"),
        mail_limit: Some(0),
        ..Script::default()
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host.send("me@office.test", &three(), MESSAGE).await;
    for o in &outcomes {
        let reply = deferred(o, false, true);
        assert!(reply.contains("421 4.7.0 too many messages"), "{reply}");
    }
    assert!(taken.lock().unwrap().is_empty());
}

/// The reply of `outcome`, which must be a deferral with these `maybe_sent` and `reached`.
fn deferred(outcome: &Outcome, maybe_sent: bool, reached: bool) -> &str {
    match outcome {
        Outcome::Deferred {
            reply,
            maybe_sent: m,
            reached: r,
        } if *m == maybe_sent && *r == reached => reply,
        other => panic!("want a deferral (maybe sent {maybe_sent}, reached {reached}): {other:?}"),
    }
}
