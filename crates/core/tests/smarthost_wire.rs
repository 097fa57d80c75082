//! The smarthost leg against a scripted submission server on 127.0.0.1 that really speaks TLS
//! (a test CA signs its certificate; the account trusts that CA through its CA file): STARTTLS,
//! then AUTH XOAUTH2 with the access token a password command printed (as msmtp's
//! `passwordeval` serves OAuth providers), then the message. And a token the server refuses
//! defers the mail instead of bouncing it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailcall_core::account::{Secret, Security};
use mailcall_core::outgoing::smarthost::{Login, LoginMethod, Outcome, Settings, Smarthost};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use common::pki::{pki, Pki};

const USER: &str = "me@office.test";
const TOKEN: &str = "ya29.a0-test-access-token";

/// A submission server taking XOAUTH2 only, after STARTTLS; it accepts `token`. Returns its
/// port and every line it read (the XOAUTH2 response decoded).
async fn serve(pki: &Pki, token: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        let (sock, _) = tcp.accept().await.unwrap();
        let mut plain = BufReader::new(sock);
        plain
            .write_all(b"220 smtp.isp.test ESMTP\r\n")
            .await
            .unwrap();
        loop {
            let mut line = String::new();
            if plain.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_string();
            log.lock().unwrap().push(line.clone());
            if line.starts_with("EHLO") {
                // No AUTH before TLS.
                plain
                    .write_all(b"250-smtp.isp.test\r\n250 STARTTLS\r\n")
                    .await
                    .unwrap();
            } else if line == "STARTTLS" {
                plain.write_all(b"220 go ahead\r\n").await.unwrap();
                let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                    return;
                };
                talk(tls, token, &log).await;
                return;
            } else {
                plain
                    .write_all(b"530 5.7.0 STARTTLS first\r\n")
                    .await
                    .unwrap();
            }
        }
    });
    (port, seen)
}

/// The conversation inside TLS.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(stream: S, token: &str, log: &Mutex<Vec<String>>) {
    let mut s = BufReader::new(stream);
    let mut authenticated = false;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        let reply = if line.starts_with("EHLO") {
            log.lock().unwrap().push(line);
            "250-smtp.isp.test\r\n250-AUTH XOAUTH2\r\n250 8BITMIME\r\n".to_string()
        } else if let Some(response) = line.strip_prefix("AUTH XOAUTH2 ") {
            let decoded = String::from_utf8(STANDARD.decode(response).unwrap()).unwrap();
            let expected = format!("user={USER}\x01auth=Bearer {token}\x01\x01");
            log.lock().unwrap().push(format!("xoauth2={decoded:?}"));
            if decoded == expected {
                authenticated = true;
                "235 2.7.0 Authentication successful\r\n".to_string()
            } else if token == CHALLENGING {
                // As Google's servers and Dovecot's oauth2 passdb refuse a token: an error
                // challenge (base64 JSON), an empty line from the client, then 535.
                "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n".to_string()
            } else {
                "535 5.7.8 Username and Password not accepted\r\n".to_string()
            }
        } else if line.starts_with("MAIL") && !authenticated {
            log.lock().unwrap().push(line);
            "530 5.7.0 Authentication required\r\n".to_string()
        } else if line == "DATA" {
            log.lock().unwrap().push(line);
            s.write_all(b"354 go ahead\r\n").await.unwrap();
            loop {
                let mut l = String::new();
                if s.read_line(&mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                log.lock().unwrap().push(format!("data:{}", l.trim_end()));
            }
            "250 2.0.0 OK queued\r\n".to_string()
        } else if line == "QUIT" {
            s.write_all(b"221 bye\r\n").await.unwrap();
            return;
        } else {
            log.lock().unwrap().push(line);
            "250 2.0.0 OK\r\n".to_string()
        };
        s.write_all(reply.as_bytes()).await.unwrap();
    }
}

fn settings(port: u16, pki: &Pki, token: &str) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port,
        security: Security::Starttls,
        login: Some(Login {
            user: USER.into(),
            secret: Secret::new(token),
            method: LoginMethod::OAuth2,
        }),
        ca_file: Some(pki.ca_file.clone()),
        helo: "gw.office.test".into(),
        timeout: Duration::from_secs(10),
    }
}

/// The token of a server that refuses others with an error challenge.
const CHALLENGING: &str = "ya29.a0-refused-with-a-challenge";

const MESSAGE: &[u8] = b"From: me@office.test\r\nSubject: hi\r\n\r\nbody\r\n";

#[tokio::test]
async fn xoauth2_after_starttls_sends_the_token_and_then_the_message() {
    let pki = pki();
    let (port, seen) = serve(&pki, TOKEN).await;
    let host = Smarthost::new(&settings(port, &pki, TOKEN)).unwrap();
    let outcomes = host
        .send("me@office.test", &["friend@far.test".to_owned()], MESSAGE)
        .await;
    host.close().await;
    let seen = seen.lock().unwrap().clone();
    assert!(outcomes[0].is_sent(), "{outcomes:?}\n{seen:#?}");
    let auth = seen
        .iter()
        .position(|l| l.starts_with("xoauth2="))
        .unwrap_or_else(|| panic!("no AUTH XOAUTH2: {seen:#?}"));
    let tls = seen.iter().position(|l| l == "STARTTLS").unwrap();
    assert!(tls < auth, "the token only inside TLS: {seen:#?}");
    assert!(
        seen.iter().any(|l| l == "data:Subject: hi"),
        "the message arrived after the login: {seen:#?}"
    );
    // The history's transcript: the login named and redacted, its reply, never the token
    // (neither as sent nor in base64).
    let transcript: Vec<String> = host.transcript().iter().map(|l| l.to_string()).collect();
    let text = transcript.join("\n");
    for expected in [
        "C: STARTTLS",
        "AUTH XOAUTH2 <redacted>",
        "S: 235",
        "C: MAIL FROM:<me@office.test>",
        "C: QUIT",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let tls = text.find("C: STARTTLS").unwrap();
    let auth = text.find("AUTH XOAUTH2 <redacted>").unwrap();
    assert!(tls < auth, "{text}");
    let encoded = STANDARD.encode(format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01"));
    assert!(
        !text.contains("ya29") && !text.contains(&encoded),
        "the token leaked into the transcript:\n{text}"
    );
}

#[tokio::test]
async fn a_token_the_server_refuses_defers_the_mail() {
    let pki = pki();
    let (port, seen) = serve(&pki, TOKEN).await;
    let host = Smarthost::new(&settings(port, &pki, "an-expired-token")).unwrap();
    let outcomes = host
        .send("me@office.test", &["friend@far.test".to_owned()], MESSAGE)
        .await;
    let seen = seen.lock().unwrap().clone();
    match &outcomes[0] {
        Outcome::Deferred {
            reply, maybe_sent, ..
        } => {
            assert!(!maybe_sent, "{reply}");
            assert!(reply.contains("refused the login (535"), "{reply}");
        }
        other => panic!("{other:?}\n{seen:#?}"),
    }
    assert!(!seen.iter().any(|l| l == "DATA"), "{seen:#?}");
    let text: Vec<String> = host.transcript().iter().map(|l| l.to_string()).collect();
    let text = text.join("\n");
    assert!(
        text.contains("AUTH XOAUTH2 <redacted>") && text.contains("S: 535"),
        "{text}"
    );
    assert!(!text.contains("an-expired-token"), "{text}");
}

#[tokio::test]
async fn a_token_refused_with_an_error_challenge_defers_the_mail_as_a_refused_login() {
    let pki = pki();
    let (port, seen) = serve(&pki, CHALLENGING).await;
    let host = Smarthost::new(&settings(port, &pki, "an-expired-token")).unwrap();
    let outcomes = host
        .send("me@office.test", &["friend@far.test".to_owned()], MESSAGE)
        .await;
    let seen = seen.lock().unwrap().clone();
    match &outcomes[0] {
        Outcome::Deferred {
            reply,
            maybe_sent,
            reached,
        } => {
            assert!(!maybe_sent && *reached, "{reply}");
            assert!(reply.contains("refused the login (XOAUTH2"), "{reply}");
        }
        other => panic!("{other:?}\n{seen:#?}"),
    }
    assert!(!seen.iter().any(|l| l.starts_with("MAIL")), "{seen:#?}");
    let text: Vec<String> = host.transcript().iter().map(|l| l.to_string()).collect();
    let text = text.join("\n");
    assert!(text.contains("AUTH XOAUTH2 <redacted>"), "{text}");
    assert!(text.contains("the token is not accepted"), "{text}");
    assert!(!text.contains("an-expired-token"), "{text}");
}
