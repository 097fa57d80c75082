//! The client against a scripted server on 127.0.0.1 that really speaks TLS: a test CA signs a
//! server certificate for 127.0.0.1, the account trusts that CA through its CA file. STARTTLS
//! and implicit TLS, each AUTH mechanism with the server's preference, and the refusals.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailcall_core::account::{Account, Secret, Security};
use mailcall_core::client::{
    auth, open, ClientSettings, Connection, Endpoint, IspError, OpenError, ServerInfo,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use common::pki::{pki, Pki};

const USER: &str = "customer";
const PASSWORD: &str = "pa55-w0rd";

/// How the scripted server behaves.
#[derive(Clone)]
struct Script {
    implicit_tls: bool,
    /// The AUTH line of the EHLO reply after TLS.
    auth: &'static str,
    /// Plain text the server sends right after its 220 to STARTTLS (an injection attempt).
    inject_after_starttls: Option<&'static str>,
}

/// Runs the server for one connection; returns what it was sent (decoded AUTH included).
async fn serve(script: Script, pki: &Pki) -> (u16, Arc<Mutex<Vec<String>>>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        let (sock, _) = tcp.accept().await.unwrap();
        if script.implicit_tls {
            let tls = acceptor.accept(sock).await.unwrap();
            talk(tls, &script, true, &log).await;
        } else {
            let mut plain = BufReader::new(sock);
            plain.write_all(b"220 isp.test ESMTP\r\n").await.unwrap();
            loop {
                let mut line = String::new();
                if plain.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end().to_string();
                log.lock().unwrap().push(line.clone());
                if line.starts_with("EHLO") {
                    plain
                        .write_all(b"250-isp.test\r\n250-STARTTLS\r\n250 ETRN\r\n")
                        .await
                        .unwrap();
                } else if line == "STARTTLS" {
                    let mut reply = b"220 go ahead\r\n".to_vec();
                    if let Some(extra) = script.inject_after_starttls {
                        reply.extend_from_slice(extra.as_bytes());
                    }
                    plain.write_all(&reply).await.unwrap();
                    let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                        return;
                    };
                    talk(tls, &script, false, &log).await;
                    return;
                } else {
                    plain.write_all(b"221 bye\r\n").await.unwrap();
                    return;
                }
            }
        }
    });
    (port, seen)
}

/// The conversation inside TLS.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
    greet: bool,
    log: &Mutex<Vec<String>>,
) {
    let mut s = BufReader::new(stream);
    if greet {
        s.write_all(b"220 isp.test ESMTP\r\n").await.unwrap();
    }
    let challenge = STANDARD.encode("<1896.697170952@isp.test>");
    let mut pending: Option<&str> = None;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        log.lock().unwrap().push(line.clone());
        let reply = match (pending.take(), line.as_str()) {
            (Some("login-user"), l) => {
                log.lock().unwrap().push(format!("user={}", decode(l)));
                pending = Some("login-pass");
                "334 UGFzc3dvcmQ6\r\n".to_string()
            }
            (Some("login-pass"), l) => ok_if(decode(l) == PASSWORD),
            (Some("cram"), l) => {
                let expect = auth::cram_md5(USER, PASSWORD, &challenge).unwrap();
                ok_if(l == expect)
            }
            (_, l) if l.starts_with("EHLO") => {
                format!("250-isp.test\r\n250-{}\r\n250 ETRN\r\n", script.auth)
            }
            (_, l) if l.starts_with("AUTH PLAIN ") => ok_if(l[11..] == auth::plain(USER, PASSWORD)),
            (_, "AUTH LOGIN") => {
                pending = Some("login-user");
                "334 VXNlcm5hbWU6\r\n".to_string()
            }
            (_, "AUTH CRAM-MD5") => {
                pending = Some("cram");
                format!("334 {challenge}\r\n")
            }
            (_, "QUIT") => {
                let _ = s.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "502 no\r\n".to_string(),
        };
        s.write_all(reply.as_bytes()).await.unwrap();
    }
}

fn decode(b64: &str) -> String {
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

fn ok_if(good: bool) -> String {
    if good {
        "235 2.7.0 ok\r\n".into()
    } else {
        "535 5.7.8 bad credentials\r\n".into()
    }
}

/// The test account with a user and password, over `security`, trusting `ca_file`.
fn account(port: u16, security: Security, ca_file: Option<PathBuf>) -> Account {
    Account {
        security,
        username: Some(USER.into()),
        password: Some(Secret::new(PASSWORD)),
        ca_file,
        ..common::account(port, &["customer.test"])
    }
}

fn settings() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        ..ClientSettings::default()
    }
}

async fn open_account(account: &Account) -> Result<(Connection, ServerInfo), OpenError> {
    open(
        &Endpoint::of(account, &settings()).await.unwrap(),
        &settings(),
    )
    .await
}

#[tokio::test]
async fn starttls_then_the_servers_preferred_mechanism() {
    let pki = pki();
    for (auth_line, used) in [
        ("AUTH CRAM-MD5 PLAIN", "CRAM-MD5"),
        ("AUTH PLAIN CRAM-MD5", "PLAIN"),
        ("AUTH LOGIN", "LOGIN"),
    ] {
        let script = Script {
            implicit_tls: false,
            auth: auth_line,
            inject_after_starttls: None,
        };
        let (port, seen) = serve(script, &pki).await;
        let acct = account(port, Security::Starttls, Some(pki.ca_file.clone()));
        let (mut conn, info) = open_account(&acct)
            .await
            .unwrap_or_else(|e| panic!("{auth_line}: {:?}", e.error));
        assert!(info.tls && info.authenticated, "{auth_line}: {info:?}");
        assert_eq!(info.mechanism.as_deref(), Some(used), "{auth_line}");
        assert!(info.advertises("ETRN"));
        conn.quit().await;
        let transcript = conn.into_parts().unwrap().2;
        let text: Vec<String> = transcript.lines().iter().map(|l| l.to_string()).collect();
        let text = text.join("\n");
        // EHLO twice (before and inside TLS, RFC 3207), and no credential in the transcript.
        assert_eq!(text.matches("EHLO client.test").count(), 2, "{text}");
        for secret in [
            PASSWORD.to_string(),
            auth::plain(USER, PASSWORD),
            auth::encode(PASSWORD),
        ] {
            assert!(!text.contains(&secret), "{secret} leaked:\n{text}");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().filter(|l| l.starts_with("EHLO")).count(), 2);
        assert!(
            seen.iter()
                .any(|l| l == &format!("AUTH {used}") || l.starts_with(&format!("AUTH {used} "))),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn implicit_tls_and_a_wrong_password() {
    let pki = pki();
    let script = Script {
        implicit_tls: true,
        auth: "AUTH PLAIN",
        inject_after_starttls: None,
    };
    let (port, _) = serve(script.clone(), &pki).await;
    let acct = account(port, Security::Tls, Some(pki.ca_file.clone()));
    let (mut conn, info) = open_account(&acct).await.unwrap();
    assert!(info.tls && info.authenticated);
    assert!(info.greeting.starts_with("220 isp.test"), "{info:?}");
    conn.quit().await;

    let (port, _) = serve(script, &pki).await;
    let mut wrong = account(port, Security::Tls, Some(pki.ca_file.clone()));
    wrong.password = Some(Secret::new("nope"));
    let err = open_account(&wrong).await.unwrap_err().error;
    assert!(
        matches!(err, IspError::AuthFailed { code: 535, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn without_the_isps_ca_the_certificate_is_refused() {
    let pki = pki();
    let script = Script {
        implicit_tls: true,
        auth: "AUTH PLAIN",
        inject_after_starttls: None,
    };
    let (port, _) = serve(script, &pki).await;
    let err = open_account(&account(port, Security::Tls, None))
        .await
        .unwrap_err()
        .error;
    assert!(matches!(err, IspError::Certificate { .. }), "{err:?}");
    assert_eq!(
        err.fix("isp"),
        Some(mailcall_core::hint::Setting::account(
            "isp",
            mailcall_core::hint::AccountField::CaFile
        ))
    );
}

#[tokio::test]
async fn plain_text_after_the_starttls_220_is_refused() {
    let pki = pki();
    let script = Script {
        implicit_tls: false,
        auth: "AUTH PLAIN",
        inject_after_starttls: Some("250-injected\r\n"),
    };
    let (port, _) = serve(script, &pki).await;
    let acct = account(port, Security::Starttls, Some(pki.ca_file.clone()));
    let err = open_account(&acct).await.unwrap_err().error;
    assert!(
        matches!(&err, IspError::Protocol { reason, .. } if reason.contains("plain text")),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_mechanism_in_common_is_named() {
    let pki = pki();
    let script = Script {
        implicit_tls: true,
        auth: "AUTH GSSAPI XOAUTH2",
        inject_after_starttls: None,
    };
    let (port, _) = serve(script, &pki).await;
    let err = open_account(&account(port, Security::Tls, Some(pki.ca_file.clone())))
        .await
        .unwrap_err()
        .error;
    assert!(matches!(err, IspError::AuthUnsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("CRAM-MD5"), "{err}");
}
