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
}

/// One transaction the server accepted the data of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
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
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
                let (mut from, mut to) = (String::new(), Vec::new());
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: String = match verb.as_str() {
                        "EHLO" => "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into(),
                        "MAIL" => {
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
                                    from: from.clone(),
                                    to: to.clone(),
                                    data,
                                });
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
        match o {
            Outcome::Deferred {
                reply,
                maybe_sent,
                reached,
            } => {
                assert!(!maybe_sent && !reached, "{reply}");
                assert!(
                    reply.contains("cannot connect to the outgoing server"),
                    "{reply}"
                );
                assert!(reply.contains(&port.to_string()), "{reply}");
            }
            other => panic!("{other:?}"),
        }
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
    })
    .await;
    let host = Smarthost::new(&settings(port)).unwrap();
    let outcomes = host
        .send("me@office.test", &["alice@example.org".to_owned()], MESSAGE)
        .await;
    match &outcomes[0] {
        Outcome::Deferred {
            reply,
            maybe_sent,
            reached,
        } => {
            assert!(!maybe_sent && *reached, "{reply}");
            assert!(reply.contains("refused the login (530"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
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
