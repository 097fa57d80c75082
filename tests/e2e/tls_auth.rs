//! STARTTLS + AUTH against an ISP whose certificate is signed by its own CA: works with
//! `--ca-file`, fails clearly with a wrong password or without the CA; `check` reports ETRN.

use std::time::Duration;

use mailcall_e2e::{Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{fetch, listener_port, write_base_config};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-e2e";

/// `account set NAME --security starttls --user alice --password-stdin [--ca-file CA]`.
fn set_tls_account(cli: &Cli, name: &str, isp: &PostfixIsp, password: &str, with_ca: bool) {
    let mut args = mailcall_e2e::AccountArgs::new(name, isp.port())
        .security("starttls")
        .user(USER, password)
        .domains(&["alpha.test"]);
    if with_ca {
        args = args.ca_file(&isp.ca_file());
    }
    cli.set_account(&args);
}

fn start_isp(lp: u16) -> (PostfixIsp, Vec<Message>) {
    let isp = PostfixIsp::start(
        IspOptions::new(&["alpha.test"], lp)
            .with_tls()
            .with_auth(USER, PASSWORD),
    );
    let mail: Vec<Message> = (0..3).map(|n| Message::numbered("alpha.test", n)).collect();
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(20));
    (isp, mail)
}

fn with_log(out: &CliOutput, isp: &PostfixIsp) -> String {
    format!("{out}\nISP maillog:\n{}", isp.log())
}

#[test]
fn starttls_auth_with_the_isps_own_ca_checks_and_fetches() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let (isp, mail) = start_isp(lp);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_tls_account(&cli, "isp", &isp, PASSWORD, true);

    let out = cli.run(&["check", "isp"]);
    assert_eq!(
        out.code(),
        Some(0),
        "check must succeed\n{}",
        with_log(&out, &isp)
    );
    out.assert_mentions("ETRN advertised: yes")
        .assert_mentions("TLS: yes")
        .assert_mentions("AUTH: yes")
        .assert_mentions("220 isp.test");

    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    assert_eq!(
        out.code(),
        Some(0),
        "fetch must succeed\n{}",
        with_log(&out, &isp)
    );
    let mut want: Vec<String> = mail.iter().map(|m| m.message_id.clone()).collect();
    want.sort();
    assert_eq!(maildir.message_ids(), want, "{}", with_log(&out, &isp));
    assert!(maildir.new_messages().iter().all(|m| m.complete), "{out}");
    isp.wait_queue_empty(Duration::from_secs(10));

    // The session is in the history, with its messages and the transcript, AUTH redacted.
    let history = cli.run(&["history", "--json"]);
    history.assert_success();
    let record: serde_json::Value =
        serde_json::from_str(history.stdout.lines().last().expect("one history record"))
            .expect("history --json prints JSON records");
    assert_eq!(
        record["messages"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );
    let transcript = record["transcripts"].to_string();
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    assert!(
        transcript.contains("AUTH PLAIN <redacted>")
            || transcript.contains("AUTH LOGIN <redacted>"),
        "{transcript}"
    );
    assert!(transcript.contains("ETRN alpha.test"), "{transcript}");
    let shown = cli.run(&["history", "--transcript"]);
    shown
        .assert_success()
        .assert_mentions("alpha.test")
        .assert_mentions("<redacted>");
    for out in [&history, &shown] {
        assert!(
            !out.stdout.contains(PASSWORD),
            "the password leaked into the history\n{out}"
        );
    }
}

#[test]
fn wrong_password_and_unknown_ca_fail_clearly_and_leave_the_mail_queued() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let (isp, mail) = start_isp(lp);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_tls_account(&cli, "badpw", &isp, "not-the-password", true);
    set_tls_account(&cli, "noca", &isp, PASSWORD, false);
    let maildir = Maildir::new(env.root().join("Maildir"));

    let out = fetch(&cli, lp, maildir.path(), &["badpw"]);
    assert!(
        matches!(out.code(), Some(c) if c != 0),
        "a wrong password must fail\n{}",
        with_log(&out, &isp)
    );
    out.assert_mentions("authentication failed");

    let out = fetch(&cli, lp, maildir.path(), &["noca"]);
    assert!(
        matches!(out.code(), Some(c) if c != 0),
        "an ISP certificate from an unknown CA must fail\n{}",
        with_log(&out, &isp)
    );
    out.assert_mentions("certificate");

    let out = cli.run(&["check", "noca"]);
    out.assert_failure().assert_mentions("certificate");

    assert!(maildir.new_messages().is_empty(), "nothing may arrive");
    // The mail must stay at the ISP.
    isp.wait_deferred(mail.len(), Duration::from_secs(20));
}
