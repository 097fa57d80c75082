//! Issue 21, item 11: mail the ISP delivers that Mailcall refuses is never silent. The real
//! Postfix ISP holds a message for the account's domain and another domain together; the ETRN
//! releases it whole. The recipient in the other domain gets a 4xx (Postfix keeps it, no bounce),
//! and the fetch names the domain in its summary, its history record and its exit code, with the
//! fix. The account asks with the `#name` form, whose summary line counts what it brought.

use std::time::Duration;

use mailcall_e2e::{poll_until, Cli, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{fetch, fix_line, listener_port, set_plain_account, write_base_config};

#[test]
fn mail_for_a_domain_no_account_takes_stays_at_the_isp_and_the_fetch_says_so() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["ours.test", "extra.test"], lp));
    let plain = Message::numbered("ours.test", 0);
    let both = Message::numbered("ours.test", 1);
    isp.queue_all(std::slice::from_ref(&plain));
    isp.queue_to(&both, &["user@ours.test", "other@extra.test"]);
    isp.wait_deferred(2, Duration::from_secs(30));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    // The queue form (Postfix takes `#name` as the site name): its line counts what it brought.
    set_plain_account(&cli, "isp", isp.port(), &["#ours.test"]).assert_success();
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    let context = format!("{out}\nISP maillog:\n{}", isp.log());

    // What was ours arrived; what was not is the fetch's failure, said with the fix.
    assert_eq!(out.code(), Some(1), "not a plain success\n{context}");
    let mut want = vec![plain.message_id.clone(), both.message_id.clone()];
    want.sort();
    assert_eq!(maildir.message_ids(), want, "{context}");
    out.assert_mentions("summary: 2 message(s)")
        .assert_mentions("#ours.test (isp): 250 queue run started, 2 message(s)")
        .assert_mentions("1 recipient(s) in domains no account takes left at the ISP (extra.test)")
        .assert_mentions(
            "the ISP offered mail for domains no account takes: extra.test (1 recipient(s))",
        )
        .assert_mentions("Mailcall answered 450, so the ISP keeps that mail");
    assert!(
        fix_line(&out).contains("--add-domain"),
        "the fix adds the domain\n{context}"
    );

    // The ISP keeps the other recipient, deferred by our 4xx, and bounced nothing.
    let held = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let entries = isp.queue_entries();
        (entries.len() == 1).then_some(entries)
    })
    .unwrap_or_else(|| {
        panic!(
            "one entry left at the ISP\n{:#?}\n{context}",
            isp.queue_entries()
        )
    });
    assert_eq!(held[0].recipients, ["other@extra.test"], "{context}");
    assert!(
        held[0].delay_reasons[0].contains("450 4.7.1"),
        "{:#?}\n{context}",
        held
    );
    let maillog = std::fs::read_to_string(isp.dir().join("maillog")).unwrap_or_default();
    assert!(!maillog.contains("status=bounced"), "{context}");

    // The history says it too, by domain.
    let history = cli.run(&["history", "--json"]);
    let last: serde_json::Value = history
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no history record\n{history}"));
    assert_eq!(last["unclaimed"][0]["domain"], "extra.test", "{last}");
    assert_eq!(last["unclaimed"][0]["recipients"], 1, "{last}");
    assert_eq!(last["unclaimed"][0]["accounts"][0], "isp", "{last}");
    assert!(
        last["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("extra.test"),
        "{last}"
    );
}
