//! Outgoing mail in the Queue tab (issue 19, §5–§7) against a real Postfix smarthost (STARTTLS,
//! SASL AUTH, its own CA): a message written while the account's smarthost password is wrong is
//! refused at the login (535) by Send and receive; it waits in the Queue tab as outgoing mail
//! with the smarthost's reply as its last error (not bounced: the login is the account's
//! problem); once the password matches, Retry now sends it and the queue empties.

use std::time::Duration;

use mailcall_e2e::{free_port, poll_until, IspOptions, KeyringEnv, PostfixIsp, PostfixLan};
use serde_json::json;

use crate::{one_desktop_at_a_time, open_session, shared_config, start_desktop, wait, wait_text};

const LOGIN: &str = "office";
const SMARTHOST_PASSWORD: &str = "smarthost-pw-3";
const TYPO: &str = "smarthost-pw-E";

#[test]
fn the_queue_tab_shows_outgoing_mail_the_smarthost_refused_with_its_reply_and_retry_sends_it() {
    let _one = one_desktop_at_a_time();
    let keyring = KeyringEnv::new();
    let listener_port = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.com"], listener_port));
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], (LOGIN, SMARTHOST_PASSWORD));
    let (cli, _maildir, _) = shared_config(&keyring, listener_port, &isp);
    let ca = smarthost.ca_file().expect("TLS").display().to_string();
    let (isp_port, port) = (isp.port().to_string(), smarthost.port().to_string());
    // The account's outgoing server, with a mistyped password.
    cli.run_with_stdin(
        &[
            "account",
            "set",
            "isp",
            "--host",
            "127.0.0.1",
            "--port",
            &isp_port,
            "--security",
            "none",
            "--domain",
            "example.com",
            "--smarthost",
            "127.0.0.1",
            "--smarthost-port",
            &port,
            "--smarthost-ca-file",
            &ca,
            "--smarthost-user",
            LOGIN,
            "--smarthost-password-stdin",
        ],
        Some(&format!("{TYPO}\n")),
    )
    .assert_success();
    cli.run_with_stdin(
        &["sendmail", "-f", "me@example.com", "alice@example.org"],
        Some("Subject: Quarterly figures\n\nSee attached.\n"),
    )
    .assert_success();

    let (mut desktop, shots) = start_desktop(&keyring, cli.config_path(), false);
    let wd = open_session(&mut desktop, &keyring);
    wait_text(&wd, "#account-list", "ETRN · 127.0.0.1", 20);

    // 1. Send and receive: the smarthost refuses the login; the message waits.
    wd.click("#fetch-now").expect("Send and receive");
    wait(60, "the smarthost to refuse the login", || {
        Ok(smarthost
            .log()
            .contains("authentication failed")
            .then_some(()))
    });
    wd.click("#tab-queue").expect("Queue tab");
    let id = wait(30, "the outgoing message in the Queue tab", || {
        let v = wd.execute(
            "const m = document.querySelector('div.queued[data-direction=out]'); return m ? m.dataset.message : null;",
            json!([]),
        )?;
        Ok(v.as_str().map(str::to_string))
    });
    let reply = wait_text(&wd, &format!("[data-last-reply='{id}']"), "535", 60);
    assert!(reply.contains("refused the login"), "{reply}");
    let card = wd
        .text(&format!("div.queued[data-message='{id}']"))
        .expect("the message's card");
    assert!(
        card.contains("Quarterly figures")
            && card.contains("from <me@example.com>")
            && card.contains("to alice@example.org")
            && card.contains("OUT"),
        "{card}"
    );
    let summary = wd.text("#queue-summary").expect("the summary");
    assert!(summary.contains("1 outgoing"), "{summary}");
    assert!(
        smarthost.maildir("alice").new_messages().is_empty(),
        "nothing was sent"
    );
    desktop.screenshot(&keyring, &shots.join("queue-outgoing.png"));

    // 2. The password matches now: Retry now sends it, and the queue empties.
    smarthost.set_password(LOGIN, TYPO);
    wd.click(&format!("[data-retry='{id}']"))
        .expect("Retry now");
    let stored = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let stored = smarthost.maildir("alice").new_messages();
        (!stored.is_empty()).then_some(stored)
    })
    .unwrap_or_else(|| panic!("Retry now must send it\n{}", smarthost.log()));
    assert_eq!(stored.len(), 1);
    wait_text(&wd, "#queue-summary", "Nothing waits", 30);
    wd.quit().expect("ending the session");
}
