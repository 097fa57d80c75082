//! The password never leaves the keyring: a full run with debug logging (account set with
//! --password-stdin, check, fetch with STARTTLS + AUTH against the TLS ISP, history, show, list)
//! leaves no trace of it, plain or in its AUTH base64 forms, in any output or any file the run
//! wrote; the config file is mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mailcall_e2e::{
    run_cli_with_env, Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp,
};

use crate::{listener_port, write_base_config};

const USER: &str = "alice";
/// Distinctive enough that a hit is never a coincidence.
const PASSWORD: &str = "Xq7-leak-canary-e2e-Pw";

/// Standard base64 with padding (RFC 4648), as SMTP AUTH uses it.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_full_debug_logged_run_never_writes_the_password_anywhere() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(
        IspOptions::new(&["alpha.test"], lp)
            .with_tls()
            .with_auth(USER, PASSWORD),
    );
    let mail: Vec<Message> = (0..2).map(|n| Message::numbered("alpha.test", n)).collect();
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(20));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    let maildir = Maildir::new(env.root().join("Maildir"));
    let (listen, md) = (
        format!("127.0.0.1:{lp}"),
        maildir.path().display().to_string(),
    );
    let debug = [("MAILCALL_LOG", "debug"), ("RUST_LOG", "debug")];
    let (set, stdin) = mailcall_e2e::AccountArgs::new("isp", isp.port())
        .security("starttls")
        .user(USER, PASSWORD)
        .ca_file(&isp.ca_file())
        .domains(&["alpha.test"])
        .argv();
    let runs: Vec<(Vec<&str>, Option<&str>, bool)> = vec![
        (
            set.iter().map(String::as_str).collect(),
            stdin.as_deref(),
            true,
        ),
        (vec!["check", "isp"], None, true),
        (
            vec![
                "fetch",
                "--listen",
                &listen,
                "--maildir",
                &md,
                "--idle-timeout",
                "3",
                "--max-wait",
                "60",
            ],
            None,
            true,
        ),
        (vec!["history"], None, true),
        (vec!["history", "--transcript"], None, true),
        (vec!["history", "--json"], None, true),
        (vec!["account", "show", "isp"], None, true),
        (vec!["account", "list"], None, true),
        (vec!["config", "show"], None, true),
    ];
    let mut outputs: Vec<CliOutput> = Vec::new();
    for (args, input, must_succeed) in &runs {
        let out = run_cli_with_env(&env, &cli, args, *input, &debug);
        if *must_succeed {
            assert_eq!(out.code(), Some(0), "{out}\nmaillog:\n{}", isp.log());
        }
        outputs.push(out);
    }
    // The run did what it should, with debug logging on (so there was something to leak).
    let mut want: Vec<String> = mail.iter().map(|m| m.message_id.clone()).collect();
    want.sort();
    assert_eq!(maildir.message_ids(), want, "{}", outputs[2]);
    assert!(
        outputs[2].stderr.contains("DEBUG"),
        "MAILCALL_LOG=debug must produce debug lines\n{}",
        outputs[2]
    );
    assert!(
        outputs[4].stdout.contains("AUTH") && outputs[4].stdout.contains("<redacted>"),
        "the transcript shows the AUTH step, redacted\n{}",
        outputs[4]
    );

    let forms = [
        ("the password", PASSWORD.to_string()),
        (
            "AUTH PLAIN base64",
            base64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        ),
        (
            "AUTH PLAIN base64 with authzid",
            base64(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes()),
        ),
        ("AUTH LOGIN base64", base64(PASSWORD.as_bytes())),
    ];
    assert_eq!(base64(b"\0a\0b"), "AGEAYg==", "the test's own base64");
    for out in &outputs {
        for (what, needle) in &forms {
            assert!(
                !out.stdout.contains(needle.as_str()) && !out.stderr.contains(needle.as_str()),
                "{what} ({needle}) leaked into the output of `{}`",
                out.command
            );
        }
    }
    // Every file the runs left under the test's HOME, XDG dirs and Maildir: config, history,
    // TLS material, messages. The keyring's own file holds the secret encrypted, never plain.
    let files = mailcall_e2e::files_under(env.root());
    assert!(
        files.iter().any(|f| f.ends_with("history.jsonl")),
        "no history file among {files:#?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for (what, needle) in &forms {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{what} ({needle}) found in {}",
                file.display()
            );
        }
    }
    let mode = std::fs::metadata(cli.config_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "config file mode {mode:o}");
    assert!(
        !cli.config_text().contains(PASSWORD),
        "{}",
        cli.config_text()
    );
    // The password is in the keyring, where it belongs (proves the run used the real store).
    assert!(
        env.keyring_search(&[("service", "mailcall"), ("username", "isp")])
            .iter()
            .any(|item| item.get("secret").is_some_and(|s| s.contains(PASSWORD))),
        "the account's keyring item must hold the password"
    );
}
