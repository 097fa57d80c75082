//! Automatic fetches that fail are tried again when the failure may pass, and only then: a
//! dial-in whose ISP (a real Postfix) comes up 5 s after the link still gets its mail with no
//! user action, each attempt a history record; a wrong password, an unknown CA and a 459 are
//! one record and no retry.

use std::time::{Duration, Instant};

use mailcall_e2e::{poll_until, Message};

use crate::linkworld::{attempt, short, LinkWorld, WorldOptions, DOMAIN};
use crate::set_plain_account;

/// When the ISP comes up after the link (the scenario of the issue).
const ISP_LATE_BY: Duration = Duration::from_secs(5);

#[test]
fn a_link_up_fetch_is_retried_until_the_isp_comes_up() {
    let mail: Vec<Message> = (0..3).map(|n| Message::numbered(DOMAIN, n)).collect();
    let world = LinkWorld::new(WorldOptions {
        isp_running: false,
        ..WorldOptions::new(&mail)
    });
    set_plain_account(&world.cli(), "isp", world.isp.port(), &[DOMAIN]);
    let daemon = world.start_daemon();

    let dialed = Instant::now();
    world.dial_in();
    // The first attempt finds nobody at the ISP's port.
    world.wait_history("a failed first attempt", Duration::from_secs(15), |r| {
        !r.is_empty()
    });
    let first = world.fetches("network");
    assert_eq!(first.len(), 1, "{}", world.context());
    assert_eq!(attempt(&first[0]), 1);
    assert_eq!(first[0]["retryable"], serde_json::json!(["isp"]));
    // The scenario, not a synchronisation: the ISP starts 5 s after the link came up.
    std::thread::sleep(ISP_LATE_BY.saturating_sub(dialed.elapsed()));
    world.ns.start_isp(&world.isp);
    let isp_up = dialed.elapsed();

    let landed = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        (world.maildir.new_messages().len() == mail.len()).then_some(())
    });
    assert!(
        landed.is_some(),
        "the mail did not land after the ISP came up\n{}",
        world.context()
    );
    let arrived = dialed.elapsed();
    world.wait_history(
        "the successful attempt's record",
        Duration::from_secs(20),
        |r| {
            r.iter()
                .any(|x| x["messages"].as_array().is_some_and(|m| m.len() == 3))
        },
    );
    world.isp.wait_queue_empty(Duration::from_secs(10));
    let mut ids: Vec<String> = mail.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    assert_eq!(world.maildir.message_ids(), ids, "{}", world.context());

    // The history: attempts 1, 2, ... n of one link-up; all but the last failed to connect.
    let records = world.fetches("network");
    assert_eq!(
        records.len(),
        world.records().len(),
        "only link-up fetch records\n{}",
        world.context()
    );
    let n = records.len();
    assert!(n >= 2, "at least one retry\n{}", world.context());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(attempt(r), i as u64 + 1, "{}", short(r));
    }
    for r in &records[..n - 1] {
        let errors = r["errors"].to_string();
        assert!(
            errors.contains("cannot connect") && errors.contains("refused"),
            "a failed attempt says why: {}",
            short(r)
        );
        assert_eq!(r["retryable"], serde_json::json!(["isp"]), "{}", short(r));
    }
    let last = &records[n - 1];
    assert_eq!(last["errors"], serde_json::json!([]), "{}", short(last));
    assert!(last.get("retryable").is_none(), "{}", short(last));
    assert_eq!(last["domains"][0]["code"], 250, "{}", short(last));
    assert_eq!(world.etrn_sessions(), 1, "{}", world.context());
    // The pauses double from 2 s: attempts at about 0, 2, 6, 14 s after the link came up; the
    // ISP is up after about 5 s, so the third or fourth gets the mail. 30 s would mean the
    // schedule slipped.
    let starts: Vec<String> = records
        .iter()
        .map(|r| r["started_at"].as_str().unwrap_or("").to_string())
        .collect();
    eprintln!(
        "retry: ISP up {:.1} s after the link, mail in {:.1} s, {n} attempts started at {starts:?}",
        isp_up.as_secs_f64(),
        arrived.as_secs_f64()
    );
    assert!(arrived < Duration::from_secs(30), "{}", world.context());
    let log = mailcall_e2e::read_for_diagnostics(&world.log);
    assert!(
        log.contains("trying again in 2 s (attempt 2)"),
        "the daemon says when it tries again\n{log}"
    );
    world.stop_daemon(daemon);
}

const USER: &str = "alice";
const PASSWORD: &str = "right-pass";

#[test]
fn a_permanent_failure_is_tried_once() {
    // Three ways a session fails for good, at a real ISP with STARTTLS and AUTH: a wrong
    // password (535), the ISP's CA not trusted (certificate), a domain it does not hold (459).
    let mail: Vec<Message> = (0..2).map(|n| Message::numbered(DOMAIN, n)).collect();
    let world = LinkWorld::new(WorldOptions {
        tls_auth: Some((USER.into(), PASSWORD.into())),
        ..WorldOptions::new(&mail)
    });
    let cli = world.cli();
    let port = world.isp.port().to_string();
    let ca = world.isp.ca_file().display().to_string();
    let account = |name: &str, password: &str, domain: &str, with_ca: bool| {
        let mut args = vec![
            "account",
            "set",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            USER,
            "--password-stdin",
            "--domain",
            domain,
        ];
        if with_ca {
            args.extend(["--ca-file", &ca]);
        }
        cli.run_with_stdin(&args, Some(&format!("{password}\n")))
            .assert_success();
    };
    account("badpass", "wrong-pass", DOMAIN, true);
    account("noca", PASSWORD, DOMAIN, false);
    account("unheld", PASSWORD, "elsewhere.test", true);
    let daemon = world.start_daemon();

    world.dial_in();
    world.wait_history("the link-up's record", Duration::from_secs(20), |r| {
        !r.is_empty()
    });
    // An absence can only be watched for a while: a retry would start 2 s after the failure
    // (the first pause) and fail within a second; twice that is the watch.
    std::thread::sleep(Duration::from_secs(5));
    let records = world.records();
    assert_eq!(
        records.len(),
        1,
        "a permanent failure is not tried again\n{}",
        world.context()
    );
    let r = &records[0];
    assert_eq!(attempt(r), 1, "{}", short(r));
    assert!(r.get("retryable").is_none(), "{}", short(r));
    let errors = r["errors"].to_string().to_lowercase();
    assert!(
        errors.contains("badpass") && errors.contains("535"),
        "{errors}"
    );
    assert!(
        errors.contains("noca") && errors.contains("certificate"),
        "{errors}"
    );
    let unheld = r["domains"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["account"] == "unheld"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(unheld["code"], 459, "{}", world.context());
    // Only `unheld` (right password, trusted CA) got as far as ETRN, once.
    assert_eq!(world.etrn_sessions(), 1, "{}", world.context());
    assert!(world.maildir.new_messages().is_empty());
    let log = mailcall_e2e::read_for_diagnostics(&world.log);
    assert!(!log.contains("trying again"), "{log}");
    world.stop_daemon(daemon);
}

#[test]
fn retrying_stops_at_max_wait_and_when_paused() {
    let world = LinkWorld::new(WorldOptions {
        isp_running: false,
        ..WorldOptions::new(&[])
    });
    let cli = world.cli();
    set_plain_account(&cli, "isp", world.isp.port(), &[DOMAIN]);
    // Attempts at 0 and 2 s; the next would start at 6 s, past max-wait.
    cli.run(&["config", "set", "max-wait", "5"])
        .assert_success();
    let daemon = world.start_daemon();

    world.dial_in();
    world.wait_history("two attempts", Duration::from_secs(15), |r| r.len() >= 2);
    let gave_up = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        mailcall_e2e::read_for_diagnostics(&world.log)
            .contains("gave up trying again after 2 attempt(s)")
            .then_some(())
    });
    assert!(gave_up.is_some(), "{}", world.context());
    assert_eq!(world.records().len(), 2, "{}", world.context());

    // A new dial-in tries afresh; pausing while it waits to try again stops it there.
    world.hang_up();
    crate::linkworld::stay_down();
    world.dial_in();
    world.wait_history(
        "the new link-up's first attempt",
        Duration::from_secs(15),
        |r| r.len() >= 3,
    );
    cli.run(&["pause"]).assert_success();
    // An absence: the second attempt would have started 2 s after the first, and failed at once.
    std::thread::sleep(Duration::from_secs(4));
    let records = world.records();
    assert_eq!(
        records.len(),
        3,
        "no attempt after the pause\n{}",
        world.context()
    );
    assert_eq!(attempt(&records[2]), 1, "{}", short(&records[2]));
    world.stop_daemon(daemon);
}
