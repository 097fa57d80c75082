//! XOAUTH2 at a real submission server (issue 19 §4): Postfix with STARTTLS and its own CA,
//! its logins checked by a Dovecot auth service whose passdb asks a token issuer's
//! introspection URL (`tests/oauth2.rs`; the issuer, a thread of the test, is the only
//! stand-in). The account's `password-command` prints the access token, as msmtp's
//! `passwordeval` serves OAuth providers: a token the issuer does not know keeps the mail queued with the login named, and
//! once the command prints a good one the mail arrives. The token is never in the history.

use std::time::Duration;

use mailcall_e2e::{poll_until, AccountArgs, Cli, KeyringEnv, OAuth2Auth, PostfixLan};

const TOKEN: &str = "ya29.e2e-access-token-7f3a";

#[test]
fn xoauth2_with_the_token_a_password_command_prints_reaches_a_real_postfix() {
    let env = KeyringEnv::new();
    let auth = OAuth2Auth::start(&[(TOKEN, "office")]);
    let smarthost =
        PostfixLan::smarthost_with_dovecot_auth("example.org", &["alice"], &auth.socket());
    let cli = Cli::new(&env);
    cli.write_config(
        "hostname = \"client.test\"\nfetch-at-start = false\ninterfaces = [\"nolink*\"]\nsubmit-listen = \"off\"\n",
    );
    let token_file = env.root().join("token");
    std::fs::write(&token_file, "an-expired-token\n").unwrap();
    let command = format!("cat {}", token_file.display());
    let port = smarthost.port().to_string();
    let ca = smarthost.ca_file().unwrap().display().to_string();
    // The incoming side points at a port nobody serves: only `send` runs here.
    cli.set_account(
        &AccountArgs::new("isp", mailcall_e2e::free_port())
            .security("starttls")
            .domains(&["office.test"])
            .args(&[
                "--user",
                "office",
                "--password-command",
                &command,
                "--smarthost",
                "127.0.0.1",
                "--smarthost-port",
                &port,
                "--smarthost-ca-file",
                &ca,
                "--smarthost-auth",
                "xoauth2",
            ]),
    );
    let text = "From: me@office.test\nTo: alice@example.org\nSubject: by token\nMessage-ID: <oauth-1@office.test>\n\nbody\n";
    let queued = cli.run_with_stdin(&["sendmail", "-t", "-i"], Some(text));
    assert_eq!(queued.code(), Some(0), "{queued}");

    // A token the issuer calls inactive: the login is refused, the mail waits.
    let refused = cli.run(&["send"]);
    let context = format!(
        "{refused}\nsmarthost log:\n{}\n{}",
        smarthost.log(),
        auth.log()
    );
    assert_eq!(refused.code(), Some(1), "{context}");
    refused.assert_mentions("refused the login");
    assert_eq!(
        auth.introspections(),
        (0, 1),
        "the issuer was asked\n{context}"
    );
    let queue = cli.run(&["queue"]);
    assert_eq!(queue.stdout.matches("smarthost:isp").count(), 1, "{queue}");

    // The command prints a good token now: XOAUTH2 succeeds and the mail arrives once.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let sent = cli.run(&["send"]);
    let context = format!(
        "{sent}\nsmarthost log:\n{}\n{}",
        smarthost.log(),
        auth.log()
    );
    assert_eq!(sent.code(), Some(0), "{context}");
    let alice = smarthost.maildir("alice");
    let got = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let stored = alice.new_messages();
        (!stored.is_empty()).then_some(stored)
    })
    .unwrap_or_else(|| panic!("the message must reach alice\n{context}"));
    assert_eq!(got.len(), 1, "{context}");
    assert_eq!(got[0].message_id.as_deref(), Some("<oauth-1@office.test>"));
    let log = smarthost.log();
    assert!(
        log.contains("sasl_method=XOAUTH2, sasl_username=office"),
        "Postfix saw the XOAUTH2 login\n{context}"
    );
    assert_eq!(auth.introspections(), (1, 1), "{context}");

    // The history names the mechanism, never the token.
    let history = cli.run(&["history", "--transcript"]);
    history.assert_success();
    assert!(
        history.stdout.contains("AUTH XOAUTH2 <redacted>") && history.stdout.contains("S: 235"),
        "{history}"
    );
    let file = env.data_home().join("mailcall/history.jsonl");
    let stored = std::fs::read_to_string(&file).unwrap();
    for body in [&history.stdout, &stored, &sent.stdout, &sent.stderr] {
        assert!(!body.contains(TOKEN), "the token leaked:\n{body}");
    }
}
