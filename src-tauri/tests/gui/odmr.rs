//! An ODMR account in the tray (issue 11) against the real ODMR provider, Exim 4.99.1
//! ([`EximIsp`], STARTTLS with its own CA, AUTH): the account form's mode selector (the port
//! placeholder follows it, ODMR without a login is refused at the user name field), Test
//! connection ("ATRN advertised"), the mode in the accounts list, "No listener (ODMR accounts
//! only)" in the Settings tab, a left click on the tray icon fetching the held mail with nothing
//! bound on the listen address, History in ATRN's words, and — the provider gone — the error in
//! the tooltip naming the account with its mode. (The listener a fresh tray binds while it has
//! no account is closed once its only account is ODMR.)

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use mailcall_core::control::Request;
use mailcall_e2e::process::run_checked;
use mailcall_e2e::{free_port, poll_until, EximIsp, EximOptions, KeyringEnv, Maildir, Message};
use serde_json::json;

use crate::sni::Sni;
use crate::{
    click_tray_icon, control, history, keyring_account, one_desktop_at_a_time, open_session,
    select, start_desktop, tray_tooltip, wait, wait_text,
};

const DOMAIN: &str = "alpha.test";

/// Whether anything listens on 127.0.0.1:`port`: a connect, and `ss` as a second witness.
fn something_listens(port: u16) -> bool {
    let connects = TcpStream::connect(("127.0.0.1", port)).is_ok();
    let ss = run_checked(
        Command::new("ss").args(["-Htln", &format!("sport = :{port}")]),
        None,
    )
    .map(|o| !o.stdout.trim().is_empty())
    .unwrap_or(false);
    connects || ss
}

fn held(n: usize, subject: &str) -> Message {
    Message {
        from: "news@sender.test".into(),
        to: format!("bob@{DOMAIN}"),
        subject: subject.into(),
        message_id: format!("<gui-odmr-{n}@sender.test>"),
        body: format!("Held for you by the provider ({n})."),
    }
}

#[test]
fn an_odmr_account_added_in_the_form_fetches_the_held_mail_with_no_listener() {
    let _one = one_desktop_at_a_time();
    let keyring = KeyringEnv::new();
    // AUTH only inside TLS, as a real provider would have it.
    let isp = EximIsp::start(EximOptions::new(&[DOMAIN]).with_tls_before_auth());
    let messages = [held(1, "Held at the provider"), held(2, "Also held")];
    isp.queue_all(&messages);

    let root = keyring.root().to_path_buf();
    let config_path = root.join("config").join("mailcall").join("config.toml");
    std::fs::create_dir_all(config_path.parent().expect("has a parent")).expect("config dir");
    let maildir_path = root.join("Maildir");
    // A listen address that must stay unbound: ODMR needs no listener.
    let listen_port = free_port();
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:{listen_port}\"\nmaildir = \"{}\"\nidle-timeout = 3\nfetch-at-start = false\n",
            maildir_path.display()
        ),
    )
    .expect("writing the config");
    let (mut desktop, shots) = start_desktop(&keyring, &config_path, true);
    let wd = open_session(&mut desktop, &keyring);

    // 1. The form: ODMR in the mode selector; the port placeholder follows it.
    wd.click("#add-account").expect("Add account");
    let placeholder = || {
        wd.execute(
            "return document.querySelector('#acct-port').placeholder;",
            json!([]),
        )
        .expect("reading the port placeholder")
    };
    assert_eq!(placeholder(), "25", "ETRN with STARTTLS");
    select(&wd, "#acct-mode", "odmr");
    assert_eq!(placeholder(), "366", "ODMR's port (RFC 2645)");
    // What WebDriver reads is the text as shown: a window still being laid out on a busy
    // machine shows none yet (seen: ""), so wait for it.
    wait_text(&wd, "#mode-hint", "behind NAT", 30);
    wd.type_into("#acct-name", "isp").expect("name");
    wd.type_into("#acct-host", "127.0.0.1").expect("host");
    wd.type_into("#acct-port", &isp.atrn_port().to_string())
        .expect("port");
    select(&wd, "#acct-security", "starttls");
    wd.type_into("#acct-ca-file", &isp.ca_file().display().to_string())
        .expect("CA file");
    wd.type_into("#domain-rows li:nth-child(1) .domain-name", DOMAIN)
        .expect("domain");
    // ODMR without a login: the core's rule, next to the user name field.
    wd.click("#acct-save").expect("Save");
    wait_text(
        &wd,
        "small.error[data-for=username]",
        "ODMR (ATRN) requires authentication",
        15,
    );
    assert!(keyring_account(&keyring).is_none(), "nothing saved");
    wd.type_into("#acct-username", isp.user()).expect("user");
    wd.type_into("#acct-password", isp.password())
        .expect("password");

    // 2. Test connection: STARTTLS, AUTH, and ATRN advertised.
    wd.click("#acct-test").expect("Test connection");
    let result = wait_text(&wd, "#test-result", "ATRN advertised", 60);
    assert!(!result.contains("ATRN not advertised"), "{result}");
    assert!(result.contains("TLS: encrypted"), "{result}");
    assert!(result.contains("AUTH: yes"), "{result}");
    assert!(
        result.contains("The server answers as this account needs."),
        "{result}"
    );
    wd.execute(
        "document.querySelector('#account-form').scrollIntoView({block: 'start'});",
        json!([]),
    )
    .expect("scrolling to the form");
    desktop.screenshot(&keyring, &shots.join("account-odmr.png"));
    wd.click("#acct-save").expect("Save");
    let list = wait_text(
        &wd,
        "#account-list",
        &format!("ODMR · 127.0.0.1:{}", isp.atrn_port()),
        20,
    );
    assert!(list.contains(DOMAIN), "{list}");
    let stored = keyring_account(&keyring).expect("the keyring holds account isp");
    assert_eq!(stored["mode"], "odmr", "{stored}");
    assert_eq!(stored["password"], isp.password());

    // 3. Only ODMR accounts: no listener, and the Settings tab says so.
    wd.click("#tab-settings").expect("Settings tab");
    wd.execute(
        "window.dispatchEvent(new Event('mailcall:reload'));",
        json!([]),
    )
    .expect("reloading the window");
    wait_text(&wd, "#listener-now", "No listener (ODMR accounts only)", 20);
    let status =
        control(&keyring, Request::Status).expect("the tray answers on its control socket");
    assert_eq!(status["listen"], serde_json::Value::Null, "{status}");
    assert!(
        !something_listens(listen_port),
        "a listener on {listen_port}"
    );

    // 4. A left click on the tray icon fetches: the held mail arrives over ATRN, and nothing
    //    listens on the listen address meanwhile; the tooltip names the account with its mode.
    let sni = Sni::connect(&keyring);
    let mut tooltips = vec![tray_tooltip(&sni)];
    click_tray_icon(&desktop, &keyring, "1");
    let maildir = Maildir::new(&maildir_path);
    let done = poll_until(Duration::from_secs(120), Duration::from_millis(100), || {
        assert!(
            !something_listens(listen_port),
            "something listens on 127.0.0.1:{listen_port} during an ODMR fetch"
        );
        let now = tray_tooltip(&sni);
        if tooltips.last() != Some(&now) {
            tooltips.push(now.clone());
        }
        (maildir.new_messages().len() >= 2 && !now.contains("fetching")).then_some(now)
    });
    assert!(
        done.is_some(),
        "the held mail did not arrive after a left click on the tray icon; tooltips: {tooltips:?}\n{}",
        isp.log()
    );
    eprintln!("tray tooltips during the ODMR fetch: {tooltips:?}");
    let mut ids = maildir.message_ids();
    ids.sort();
    assert_eq!(
        ids,
        ["<gui-odmr-1@sender.test>", "<gui-odmr-2@sender.test>"].map(String::from)
    );
    // (An ODMR fetch may be over in 0.2 s, too quick to see "fetching from isp (ODMR)" every
    // time: the naming is checked below, on an error that stays.)
    // Exim 4.99.1 over TLS delivers one message per turn and may end a turn mid-delivery
    // (tests/exim.rs); Mailcall asks again, so all mail arrives, but such a turn is reported.
    let last = tooltips.last().cloned().unwrap_or_default();
    assert!(
        last == "Mailcall — 2 messages new"
            || last.contains("(ODMR): the connection to 127.0.0.1 was closed during the ISP's deliveries on the turned line"),
        "{tooltips:?}"
    );
    isp.wait_queue(
        "nothing held for alpha.test",
        Duration::from_secs(20),
        |q| q.iter().all(|m| !m.is_for(DOMAIN)),
    );
    let requests = isp.atrn_requests();
    assert!(
        requests
            .iter()
            .all(|r| r.user == isp.user() && r.domains == DOMAIN),
        "{requests:?}"
    );

    // 5. History: the fetch as the tray's, the domain in ATRN's words, the mode named.
    let history_file = keyring.data_home().join("mailcall").join("history.jsonl");
    let fetch = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        history(&history_file)
            .into_iter()
            .find(|r| r["kind"] == "fetch")
    })
    .unwrap_or_else(|| panic!("no fetch in {}", history_file.display()));
    assert_eq!(fetch["trigger"], "tray", "{fetch}");
    assert_eq!(fetch["domains"][0]["mode"], "odmr", "{fetch}");
    wd.click("#tab-history").expect("History tab");
    let shown = wait_text(&wd, "#history-list", "Held at the provider", 60);
    assert!(shown.contains("ODMR"), "{shown}");
    assert!(
        shown.contains("the ISP turned the line around to deliver"),
        "{shown}"
    );
    desktop.screenshot(&keyring, &shots.join("history-odmr.png"));

    // 6. The provider goes away: the next fetch fails, and the tray names the account with its
    //    mode in the error it shows.
    drop(isp);
    wd.click("#fetch-now").expect("Fetch now");
    let tooltip = wait(60, "the tooltip to show the failed ODMR fetch", || {
        let t = tray_tooltip(&sni);
        Ok(t.starts_with("Mailcall — error: isp (ODMR):").then_some(t))
    });
    assert!(!tooltip.contains("mailcall-cli"), "{tooltip}");
    wait_text(&wd, "#status-line", "failed (isp (ODMR):", 20);
    wd.quit().expect("ending the session");
}
