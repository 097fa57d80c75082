//! Outgoing mail survives `kill -9` (issue 19): `mailcall-cli send` killed in the middle of
//! sending 60 queued messages to a real Postfix submission server, then run again, brings every
//! message to the smarthost; a message arrives twice only when it was on the wire at the kill
//! (at most one per connection).

use std::collections::HashMap;
use std::time::Duration;

use mailcall_e2e::{poll_until, Cli, IspOptions, KeyringEnv, PostfixIsp, PostfixLan, RunningCli};

use crate::outgoing::{set_account_with_smarthost, LOGIN};
use crate::{listener_port, write_base_config};

const COUNT: usize = 60;
/// The runner's connections to one server (RunnerOptions::from_config: four).
const CONNECTIONS: usize = 4;

#[test]
fn kill_9_in_the_middle_of_sending_loses_nothing() {
    let env = KeyringEnv::new();
    let isp = PostfixIsp::start(IspOptions::new(&["office.test"], listener_port()));
    let smarthost = PostfixLan::smarthost("example.org", &["alice"], LOGIN);
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_account_with_smarthost(&cli, isp.port(), &smarthost);
    // Big enough that sending takes a while: 200 KB each.
    let filler = "x".repeat(998);
    let body: String = (0..200).map(|_| format!("{filler}\n")).collect();
    for n in 0..COUNT {
        let text = format!(
            "From: me@office.test\nTo: alice@example.org\nSubject: crash {n}\nDate: Sun, 6 Dec 2026 12:00:00 +0000\nMessage-ID: <crash-{n}@office.test>\n\n{body}"
        );
        cli.run_with_stdin(&["sendmail", "-t", "-i"], Some(&text))
            .assert_success();
    }
    let alice = smarthost.maildir("alice");
    let mut run = RunningCli::spawn(&env, &cli, &["send"], &[]);
    let reached = poll_until(Duration::from_secs(120), Duration::from_millis(1), || {
        (alice.files("new").len() >= 5).then_some(())
    });
    run.kill9();
    assert!(reached.is_some(), "sending never started\n{}", run.output());
    let at_kill = alice.files("new").len();
    assert!(
        at_kill < COUNT,
        "sending finished before the kill: nothing was tested"
    );

    let again = cli.run(&["send"]);
    assert_eq!(again.code(), Some(0), "{again}\n{}", smarthost.log());
    let got = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let m = alice.new_messages();
        (m.len() >= COUNT).then_some(m)
    })
    .unwrap_or_else(|| panic!("every message must arrive\n{again}\n{}", smarthost.log()));
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &got {
        *copies
            .entry(m.message_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let missing: Vec<usize> = (0..COUNT)
        .filter(|n| !copies.contains_key(&format!("<crash-{n}@office.test>")))
        .collect();
    let extra: usize = copies.values().map(|c| c - 1).sum();
    assert!(
        missing.is_empty() && extra <= CONNECTIONS,
        "{COUNT} queued, killed with {at_kill} sent; missing {missing:?}, {extra} duplicate(s)"
    );
    let queue = cli.run(&["queue"]);
    assert!(
        !queue.stdout.contains("smarthost:"),
        "the queue is empty\n{queue}"
    );
}
