//! ETRN client faults against real peers (the unit tests in crates/core use fakes): a TLS
//! certificate for another name (OpenSSL's s_server), `--security starttls` against a Postfix
//! without STARTTLS, and a link that drops in the middle of the session.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mailcall_e2e::process::{run_checked, ChildGuard};
use mailcall_e2e::{
    free_port, poll_until, AccountArgs, Cli, FakeIsp, IspOptions, KeyringEnv, Maildir, Message,
    PostfixIsp, Script,
};

use crate::{fetch, listener_port, set_plain_account, write_base_config};

/// A CA and a server certificate it signs for `san` only (e.g. `DNS:isp.other.test`).
fn make_cert(dir: &Path, san: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    run_checked(
        openssl()
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
            .args(["-subj", "/CN=Mailcall e2e fault CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        None,
    )
    .unwrap();
    run_checked(
        openssl()
            .arg("req")
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=isp.other.test"]),
        None,
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
        ),
    )
    .unwrap();
    run_checked(
        openssl()
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem"])
            .args(["-days", "2", "-extfile", "server.ext"]),
        None,
    )
    .unwrap();
}

/// `openssl s_server` with implicit TLS on 127.0.0.1:`port`; killed by PID when dropped.
fn tls_server(dir: &Path, port: u16) -> ChildGuard {
    let child = Command::new("openssl")
        .current_dir(dir)
        .args([
            "s_server",
            "-quiet",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
        ])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting openssl s_server");
    let guard = ChildGuard::new("openssl s_server", child);
    let up = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "openssl s_server does not listen on {port}");
    guard
}

#[test]
fn a_certificate_for_another_name_is_refused_clearly() {
    let env = KeyringEnv::new();
    let dir = mailcall_e2e::test_dir("cert");
    make_cert(dir.path(), "DNS:isp.other.test");
    let port = free_port();
    let _server = tls_server(dir.path(), port);

    let cli = Cli::new(&env);
    write_base_config(&cli);
    let ca = dir.path().join("ca.pem");
    // By IP (not in the SAN) and by a name (not in the SAN): the CA is trusted, the name is not.
    for (name, host) in [("byip", "127.0.0.1"), ("byname", "localhost")] {
        cli.set_account(
            &AccountArgs::new(name, port)
                .host(host)
                .security("tls")
                .ca_file(&ca)
                .domains(&["alpha.test"]),
        );
        let out = cli.run(&["check", name]);
        out.assert_code(1)
            .assert_mentions("certificate")
            .assert_mentions(&format!("not valid for name \"{host}\""));
        let maildir = Maildir::new(env.root().join("Maildir"));
        let out = fetch(&cli, listener_port(), maildir.path(), &[name]);
        out.assert_code(1)
            .assert_mentions("certificate")
            .assert_mentions(host)
            .assert_mentions("--ca-file");
        assert!(
            out.lines_starting_with("ETRN ").is_empty(),
            "no ETRN may be sent without a verified certificate\n{out}"
        );
    }
}

#[test]
fn starttls_required_but_not_offered_fails_before_any_etrn() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test"], lp));
    isp.queue_all(&[Message::numbered("alpha.test", 0)]);
    isp.wait_deferred(1, Duration::from_secs(20));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(
        &AccountArgs::new("isp", isp.port())
            .security("starttls")
            .domains(&["alpha.test"]),
    );
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nmaillog:\n{}", isp.log());
    assert_eq!(out.code(), Some(1), "{context}");
    out.assert_mentions("STARTTLS");
    assert!(
        out.lines_starting_with("ETRN ").is_empty(),
        "no ETRN may go out in plaintext\n{context}"
    );
    // Postfix's own account of the session: EHLO and QUIT (or a lost connection), never ETRN.
    let disconnect = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let log = std::fs::read_to_string(isp.dir().join("maillog")).unwrap_or_default();
        log.lines()
            .rfind(|l| l.contains("smtpd") && l.contains("disconnect from"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no smtpd disconnect line in the maillog\n{context}"));
    assert!(
        disconnect.contains("ehlo=") && !disconnect.contains("etrn"),
        "the ISP must have seen EHLO but no ETRN: {disconnect}"
    );
    assert!(maildir.new_messages().is_empty());
    // The mail stays at the ISP.
    isp.wait_deferred(1, Duration::from_secs(20));

    let out = cli.run(&["check", "isp"]);
    out.assert_failure().assert_mentions("STARTTLS");
}

#[test]
fn a_link_dropping_mid_session_fails_clearly() {
    for script in [Script::CloseAfterEhlo, Script::CloseAtEtrn] {
        let env = KeyringEnv::new();
        let isp = FakeIsp::start(script);
        let cli = Cli::new(&env);
        write_base_config(&cli);
        set_plain_account(&cli, "isp", isp.port(), &["alpha.test"]);
        let maildir = Maildir::new(env.root().join("Maildir"));
        let out = fetch(&cli, listener_port(), maildir.path(), &[]);
        let commands = isp.commands();
        let context = format!("{script:?}: the fake ISP read {commands:?}\n{out}");
        assert_eq!(out.code(), Some(1), "{context}");
        out.assert_mentions("the connection to 127.0.0.1 was closed")
            .assert_mentions("the link dropped");
        assert!(
            out.elapsed < Duration::from_secs(30),
            "a dropped link must not wait for a timeout\n{context}"
        );
        let etrns = commands.iter().filter(|c| c.starts_with("ETRN")).count();
        match script {
            Script::CloseAfterEhlo => assert_eq!(etrns, 0, "{context}"),
            _ => assert!(
                (1..=4).contains(&etrns),
                "ETRN at most retried a few times\n{context}"
            ),
        }
        assert!(isp.connections() <= 4, "reconnects are bounded\n{context}");
        eprintln!("{context}");
    }
}
