//! Delivery per recipient in the tray (issue 10) against a real Dovecot (LMTP) as the LAN mail
//! server and a Postfix ISP (ETRN): routes added in the Delivery tab (a bad one refused at its
//! field), a fetch delivering alice's mail into Dovecot and a recipient Dovecot refuses (550) held
//! with one notification naming it and the reply; Dovecot stopped, the next mail waits in the
//! Queue tab (with the tooltip's counts and the tray menu's Queue item opening that tab); Dovecot
//! back, Retry now delivers it; Bounce (after its confirmation) gives the refused one up into
//! the Maildir; History shows each hand-over per recipient.

use std::time::Duration;

use mailcall_e2e::{
    free_port, poll_until, Dovecot, DovecotOptions, IspOptions, KeyringEnv, Maildir, PostfixIsp,
};
use serde_json::json;

use crate::sni::Sni;
use crate::webdriver::WebDriver;
use crate::{
    one_desktop_at_a_time, open_session, open_tray_menu, select, shared_config, start_desktop,
    tray_tooltip, wait, wait_text,
};

/// Types a route into the Delivery tab's form and adds it (`smtp`: security and CA file).
fn add_route(wd: &WebDriver, recipient: &str, destination: &str, smtp: Option<(&str, &str)>) {
    wd.type_into("#route-recipient", recipient)
        .expect("recipient");
    wd.type_into("#route-destination", destination)
        .expect("destination");
    // The form follows the destination as it is typed: security and CA file are smtp:'s.
    wd.execute(
        "document.querySelector('#route-destination').dispatchEvent(new Event('input'));",
        json!([]),
    )
    .expect("telling the form");
    if let Some((security, ca_file)) = smtp {
        select(wd, "#route-security", security);
        wd.type_into("#route-ca-file", ca_file).expect("CA file");
    }
    wd.click("#route-add").expect("Add route");
}

/// The bodies of the notifications in dunst's history (`dunstctl history`'s JSON).
fn bodies(history: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(history).unwrap_or_default();
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group.as_array().into_iter().flatten())
        .filter_map(|n| n["body"]["data"].as_str().map(str::to_string))
        .collect()
}

/// The id of the queued message that has a row for `recipient`.
fn queued_id(wd: &WebDriver, recipient: &str) -> String {
    wait(20, &format!("a queue row for {recipient}"), || {
        let v = wd.execute(
            "const r = document.querySelector(`tr[data-recipient=\"${arguments[0]}\"]`); return r ? r.dataset.message : null;",
            json!([recipient]),
        )?;
        Ok(v.as_str().map(str::to_string))
    })
}

#[test]
fn routes_to_dovecot_set_in_the_window_deliver_and_the_queue_holds_what_it_cannot_take() {
    let _one = one_desktop_at_a_time();
    let keyring = KeyringEnv::new();
    let listener_port = free_port();
    let isp = PostfixIsp::start(IspOptions::new(&["example.com"], listener_port));
    // Users alice and bob; anyone else is refused at RCPT (550 5.1.1).
    let mut dovecot = Dovecot::start(DovecotOptions::new());
    // Held at the ISP until Mailcall asks (nothing listens yet): for alice, and for a user
    // Dovecot does not have.
    isp.queue(
        "news@sender.test",
        "alice@example.com",
        "Minutes of Monday",
        "<gui-route-1@sender.test>",
        "For alice, through Dovecot.",
    );
    isp.queue(
        "news@sender.test",
        "nobody@example.com",
        "For nobody",
        "<gui-route-2@sender.test>",
        "Dovecot has no such user.",
    );
    isp.wait_deferred(2, Duration::from_secs(30));

    let (cli, maildir_path, _) = shared_config(&keyring, listener_port, &isp);
    let (mut desktop, shots) = start_desktop(&keyring, cli.config_path(), true);
    let wd = open_session(&mut desktop, &keyring);
    wait_text(&wd, "#account-list", "ETRN · 127.0.0.1", 20);

    // 1. The Delivery tab: a route that cannot be is refused at its field; then the routes.
    wd.click("#tab-delivery").expect("Delivery tab");
    wait_text(&wd, "#routes-empty", "No routes", 20);
    let lmtp = format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port());
    add_route(&wd, "alice", &lmtp, None);
    wait_text(
        &wd,
        "small.error[data-for=recipient]",
        "is not a recipient pattern",
        15,
    );
    add_route(&wd, "alice@example.com", &lmtp, None);
    wait_text(&wd, "#route-rows", "alice@example.com", 15);
    add_route(&wd, "nobody@example.com", &lmtp, None);
    wait_text(&wd, "#route-rows", "nobody@example.com", 15);
    add_route(
        &wd,
        "@lan.example.com",
        "smtp:mail.lan.example.com:25",
        Some(("starttls", "/etc/ssl/certs/ca-certificates.crt")),
    );
    let rows = wait_text(&wd, "#route-rows", "@lan.example.com", 15);
    assert!(rows.contains("STARTTLS"), "{rows}");
    assert!(rows.contains("through Mailcall's queue"), "{rows}");
    // Long retry delays: only Retry now hands mail on again.
    wd.type_into("#del-retry", "600").expect("retry delay");
    wd.click("#delivery-save").expect("Save");
    wait_text(&wd, "#delivery-saved", "Saved", 30);
    let config = cli.config_text();
    assert!(
        config.contains("[[routes]]") && config.contains("retry-delay = 600"),
        "{config}"
    );
    cli.run(&["route", "list"])
        .assert_success()
        .assert_mentions("alice@example.com")
        .assert_mentions(
            "smtp:mail.lan.example.com:25 (starttls, CA /etc/ssl/certs/ca-certificates.crt)",
        );
    wd.execute("window.scrollTo(0, 0);", json!([]))
        .expect("scrolling");
    desktop.screenshot(&keyring, &shots.join("delivery-routes.png"));

    // 2. A fetch: alice's mail goes into Dovecot; Dovecot refuses nobody (550), which is held
    //    and told in one notification naming the recipient and the reply.
    isp.wait_deferred(2, Duration::from_secs(20)); // still held at the ISP
    wd.click("#fetch-now").expect("Fetch now");
    dovecot.wait_count("alice", "INBOX", 1, Duration::from_secs(90));
    assert_eq!(
        dovecot.message_ids("alice", "INBOX"),
        ["<gui-route-1@sender.test>".to_string()]
    );
    let notes = poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        let h = desktop.all_notifications(&keyring);
        (h.contains("refused nobody@example.com") && h.contains("User doesn't exist")).then_some(h)
    });
    let notes = notes.unwrap_or_else(|| {
        panic!(
            "no notification naming the refused recipient and Dovecot's reply: {}\n{}",
            desktop.all_notifications(&keyring),
            dovecot.log()
        )
    });
    assert_eq!(
        bodies(&notes)
            .iter()
            .filter(|b| b.contains("refused nobody@example.com"))
            .count(),
        1,
        "one notification: {notes}"
    );
    assert!(!notes.contains("mailcall-cli"), "{notes}");

    // 3. Dovecot stops: the next mail for alice (the ISP delivers it on its own now that the
    //    listener is up, or at the next fetch) waits in the Queue tab.
    dovecot.stop();
    isp.queue(
        "news@sender.test",
        "alice@example.com",
        "Minutes of Tuesday",
        "<gui-route-3@sender.test>",
        "Waits while Dovecot is down.",
    );
    wait(60, "Fetch now to be ready again", || {
        Ok(wd
            .execute(
                "return !document.querySelector('#fetch-now').disabled;",
                json!([]),
            )?
            .as_bool()
            .filter(|ready| *ready))
    });
    wd.click("#fetch-now").expect("Fetch now");
    wd.click("#tab-queue").expect("Queue tab");
    let summary = wait_text(
        &wd,
        "#queue-summary",
        "1 waiting for the LAN mail server, 1 refused by it",
        90,
    );
    let rows = wd.text("#queue-list").expect("the queue's rows");
    assert!(
        rows.contains("Minutes of Tuesday")
            && rows.contains("waiting, next try")
            && rows.contains(&lmtp),
        "{summary}\n{rows}"
    );
    assert!(
        rows.contains("For nobody") && rows.contains("refused, held") && rows.contains("550"),
        "{rows}"
    );
    let sni = Sni::connect(&keyring);
    let tooltip = wait(20, "the tooltip to count the queue", || {
        let t = tray_tooltip(&sni);
        Ok(
            t.contains("1 waiting for the LAN mail server, 1 refused by it")
                .then_some(t),
        )
    });
    assert!(!tooltip.contains("mailcall-cli"), "{tooltip}");
    // For the picture: the fetch over, the notifications gone.
    wait_text(&wd, "#status-line", "Last fetch", 30);
    desktop.all_notifications(&keyring);
    desktop.screenshot(&keyring, &shots.join("queue.png"));

    // 4. The tray menu has a Queue item while mail waits: it opens the Queue tab.
    wd.click("#tab-accounts").expect("Accounts tab");
    open_tray_menu(&desktop, &keyring, &shots);
    desktop.screenshot(&keyring, &shots.join("tray-menu-queue.png"));
    // GTK skips the disabled status line: Fetch now, then Queue.
    desktop.run(
        &keyring,
        "xdotool",
        &["key", "--delay", "150", "Down", "Down", "Return"],
    );
    wait(
        20,
        "the tray menu's Queue item to open the Queue tab",
        || {
            let v = wd.execute(
                "return !document.querySelector('#panel-queue').hidden;",
                json!([]),
            )?;
            Ok(v.as_bool().filter(|shown| *shown))
        },
    );

    // 5. Dovecot is back: Retry now hands the waiting message over.
    dovecot.start_again();
    let waiting = queued_id(&wd, "alice@example.com");
    wd.click(&format!("[data-retry='{waiting}']"))
        .expect("Retry now");
    dovecot.wait_count("alice", "INBOX", 2, Duration::from_secs(60));
    let mut ids = dovecot.message_ids("alice", "INBOX");
    ids.sort();
    assert_eq!(
        ids,
        ["<gui-route-1@sender.test>", "<gui-route-3@sender.test>"].map(String::from)
    );
    // An open History tab shows the hand-over's record by itself: the runner writes it once it
    // is done with the server (a moment after the hand-over) and says so; no Reload click.
    wd.click("#tab-history").expect("History tab");
    wait(
        30,
        "the retried hand-over's record on top of the open History tab",
        || {
            let v = wd.execute(
                "const d = document.querySelector('#history-list details.session');
             return !!d && d.dataset.kind === 'handover'
               && d.textContent.includes('Minutes of Tuesday')
               && [...d.querySelectorAll('td.ok')].some((td) => td.textContent === 'delivered');",
                json!([]),
            )?;
            Ok(v.as_bool().filter(|shown| *shown))
        },
    );
    wd.click("#tab-queue").expect("Queue tab");
    wait_text(&wd, "#queue-summary", "1 refused by it", 30);

    // 6. Bounce the refused one, after its confirmation: a delivery report into the Maildir.
    let refused = queued_id(&wd, "nobody@example.com");
    wd.click(&format!("[data-bounce='{refused}']"))
        .expect("Bounce…");
    wait_text(&wd, "#queue-list", "Bounce this message?", 10);
    let maildir = Maildir::new(&maildir_path);
    assert!(
        maildir.new_messages().is_empty(),
        "nothing before the confirmation"
    );
    wd.click("#queue-confirm").expect("Yes, bounce");
    wait_text(&wd, "#queue-summary", "Nothing waits", 30);
    let result = wd.text("#queue-result").expect("the action's result");
    assert!(
        result.starts_with("Bounced: 1 message(s), 1 recipient(s)"),
        "{result}"
    );
    assert_eq!(maildir.new_messages().len(), 1, "the delivery report");
    let dsn = std::fs::read_to_string(&maildir.new_messages()[0].path).expect("the report");
    assert!(dsn.contains("nobody@example.com"), "{dsn}");

    // 7. History: each hand-over with what the server said per recipient.
    wd.click("#tab-history").expect("History tab");
    wait_text(&wd, "#history-list", "hand-over", 30);
    wd.execute(
        "for (const d of document.querySelectorAll('details.session')) d.open = true;",
        json!([]),
    )
    .expect("opening the records");
    let history = wait(20, "the hand-overs' recipients", || {
        let t = wd.text("#history-list")?;
        Ok((t.contains("refused, held in the queue") && t.contains("delivered")).then_some(t))
    });
    assert!(history.contains(&lmtp), "{history}");
    assert!(history.contains("Minutes of Tuesday"), "{history}");
    wd.execute(
        "document.querySelector('details[data-kind=handover]').scrollIntoView({block: 'start'});",
        json!([]),
    )
    .expect("scrolling to a hand-over");
    desktop.all_notifications(&keyring);
    desktop.screenshot(&keyring, &shots.join("history-handover.png"));
    wd.quit().expect("ending the session");
}
