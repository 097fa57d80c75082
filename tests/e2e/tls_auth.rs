//! STARTTLS + AUTH against an ISP whose certificate is signed by its own CA: works with
//! `--ca-file`, fails clearly with a wrong password or without the CA; `check` reports ETRN.

use std::time::Duration;

use mailcall_e2e::{Cli, CliOutput, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{fetch, listener_port, write_base_config};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-e2e";

/// `account set NAME --security starttls --user alice --password-stdin [--ca-file CA]`.
fn set_tls_account(cli: &Cli, name: &str, isp: &PostfixIsp, password: &str, with_ca: bool) {
    let port = isp.port().to_string();
    let ca = isp.ca_file().display().to_string();
    let mut args = vec![
        "account",
        "set",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "starttls",
        "--user",
        USER,
        "--password-stdin",
        "--domain",
        "alpha.test",
    ];
    if with_ca {
        args.extend(["--ca-file", &ca]);
    }
    cli.run_with_stdin(&args, Some(&format!("{password}\n")))
        .assert_success();
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
    assert_eq!(
        isp.queue_len(),
        mail.len(),
        "the mail must stay at the ISP\n{}",
        isp.log()
    );
}
