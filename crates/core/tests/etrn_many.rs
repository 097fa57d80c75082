//! Many domains on one account (issue 21 item 12) against a scripted ISP on 127.0.0.1 that
//! slows its ETRN replies down after a number of ETRNs on one connection, doubling the delay
//! each time (1, 3, 7, 15 … units), as some ISPs do: the client asks the rest on a new
//! connection, never one more on a connection that has slowed down; a reply that never comes
//! says the ISP may be overloaded (not "raise the timeout"); a 459 to the `#` form suggests the
//! plain or `@` form.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcall_core::client::{ClientSettings, IspError};
use mailcall_core::etrn;
use mailcall_core::event::EventSink;
use mailcall_core::listener::AskedPeers;
use mailcall_core::report::{AccountResult, DomainOutcome};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use common::account;
use common::isp::{EHLO_WITH_ETRN, GREETING};

/// What the slowing ISP saw on one connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The ETRN arguments, in order.
    etrns: Vec<String>,
    /// ETRNs sent after this connection had answered one slowly.
    after_slow: usize,
}

/// An ISP that answers the first `fast` ETRNs of each connection at once and the n-th after
/// that after (2^n - 1) × `unit`; `459 … Queue NAME unknown` to a `#` argument.
struct SlowingIsp {
    port: u16,
    connections: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl SlowingIsp {
    async fn start(fast: usize, unit: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            // Bounded: no test needs more connections.
            for _ in 0..20 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let index = {
                    let mut all = seen.lock().unwrap();
                    all.push(Seen::default());
                    all.len() - 1
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    write.write_all(GREETING.as_bytes()).await.unwrap();
                    let mut slowed = false;
                    for _ in 0..100 {
                        let mut line = String::new();
                        match tokio::time::timeout(
                            Duration::from_secs(60),
                            read.read_line(&mut line),
                        )
                        .await
                        {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return,
                        }
                        let line = line.trim_end().to_owned();
                        let upper = line.to_ascii_uppercase();
                        let answer = if upper.starts_with("EHLO") {
                            EHLO_WITH_ETRN.to_owned()
                        } else if upper == "QUIT" {
                            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        } else if let Some(arg) = line.strip_prefix("ETRN ") {
                            let n = {
                                let mut all = seen.lock().unwrap();
                                let this = &mut all[index];
                                this.etrns.push(arg.to_owned());
                                if slowed {
                                    this.after_slow += 1;
                                }
                                this.etrns.len()
                            };
                            if n > fast {
                                slowed = true;
                                let exponent = u32::try_from(n - fast).unwrap().min(10);
                                tokio::time::sleep(unit * ((1 << exponent) - 1)).await;
                            }
                            match arg.strip_prefix('#') {
                                Some(name) => {
                                    format!("459 4.3.0 <#{name}>: Queue {name} unknown\r\n")
                                }
                                None => format!("250 2.0.0 Queuing for node {arg} started\r\n"),
                            }
                        } else {
                            "502 5.5.2 Error: command not recognized\r\n".to_owned()
                        };
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowingIsp {
            port,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.connections.lock().unwrap().clone()
    }
}

impl Drop for SlowingIsp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn settings(reply_timeout: Duration) -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(5),
        reply_timeout,
        retries: 0,
        retry_delay: Duration::from_millis(10),
        default_helo: "client.test".into(),
    }
}

async fn fetch(port: u16, domains: &[&str], settings: &ClientSettings) -> AccountResult {
    let asked = AskedPeers::default();
    etrn::fetch_account(
        &account(port, domains),
        settings,
        &EventSink::default(),
        &asked.scope(),
    )
    .await
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("d{i:02}.test")).collect()
}

#[tokio::test]
async fn fourteen_domains_at_an_isp_that_slows_down_after_eight_are_all_asked() {
    // The 9th ETRN on a connection would wait 1 s, the 10th 3 s: past the 2 s reply timeout.
    let isp = SlowingIsp::start(8, Duration::from_secs(1)).await;
    let domains = names(14);
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let result = fetch(isp.port, &domains, &settings(Duration::from_secs(2))).await;
    let seen = isp.seen();
    assert!(result.error.is_none(), "{:?}\n{seen:?}", result.error);
    assert!(
        result
            .domains
            .iter()
            .all(|d| d.outcome == DomainOutcome::Started { expected: None }),
        "{:?}",
        result.domains
    );
    let per_connection: Vec<usize> = seen.iter().map(|s| s.etrns.len()).collect();
    assert_eq!(per_connection, [8, 6], "{seen:?}");
    let asked: Vec<String> = seen.into_iter().flat_map(|s| s.etrns).collect();
    assert_eq!(asked, domains, "each domain asked once, in order");
    assert!(
        result
            .transcript
            .iter()
            .any(|l| l.line.contains("asked on a new one")),
        "the transcript says why a new connection: {:?}",
        result.transcript
    );
}

#[tokio::test]
async fn a_connection_whose_replies_slow_down_gets_no_more_etrns() {
    // From the 3rd ETRN on a connection replies slow down (3 s, then 9 s …).
    let isp = SlowingIsp::start(2, Duration::from_secs(3)).await;
    let domains = names(5);
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let result = fetch(isp.port, &domains, &settings(Duration::from_secs(30))).await;
    let seen = isp.seen();
    assert!(result.error.is_none(), "{:?}\n{seen:?}", result.error);
    assert!(
        result
            .domains
            .iter()
            .all(|d| d.outcome == DomainOutcome::Started { expected: None }),
        "{:?}",
        result.domains
    );
    assert!(
        seen.len() >= 2,
        "a new connection after the slow reply: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.after_slow == 0),
        "no ETRN on a connection after its slow reply: {seen:?}"
    );
    let asked: Vec<String> = seen.into_iter().flat_map(|s| s.etrns).collect();
    assert_eq!(asked, domains, "each domain asked once, in order");
}

#[tokio::test]
async fn a_reply_that_never_comes_says_the_isp_may_be_overloaded() {
    // Every ETRN after the first waits 10 s and more: past the 1 s reply timeout.
    let isp = SlowingIsp::start(1, Duration::from_secs(10)).await;
    let result = fetch(
        isp.port,
        &["a.test", "b.test", "c.test"],
        &settings(Duration::from_secs(1)),
    )
    .await;
    let err = result.error.clone().unwrap();
    assert!(
        matches!(&err, IspError::EtrnTimeout { argument, .. } if argument == "b.test"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("may be overloaded") && text.contains("try again later"),
        "{text}"
    );
    assert!(
        !text.contains("timeout"),
        "no longer timeout suggested: {text}"
    );
    assert!(err.is_transient());
    assert_eq!(err.fix("isp"), None, "no setting fixes it");
    assert_eq!(
        result.domains.iter().map(|d| d.outcome).collect::<Vec<_>>(),
        [
            DomainOutcome::Started { expected: None },
            DomainOutcome::NotSent,
            DomainOutcome::NotSent
        ]
    );
}

#[tokio::test]
async fn an_unknown_queue_name_suggests_the_plain_or_at_form() {
    let isp = SlowingIsp::start(8, Duration::from_secs(1)).await;
    let result = fetch(
        isp.port,
        &["#example.org"],
        &settings(Duration::from_secs(5)),
    )
    .await;
    assert!(result.error.is_none(), "{:?}", result.error);
    let report = &result.domains[0];
    assert_eq!(report.outcome, DomainOutcome::NotAllowed);
    let said = report.explain();
    assert!(
        said.contains("plain form example.org") && said.contains("@example.org"),
        "{said}"
    );
    assert!(!said.contains("enable ETRN"), "{said}");
}
