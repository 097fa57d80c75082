//! A scripted ISP on 127.0.0.1 for one connection: it greets (or stays silent), answers EHLO
//! with a fixed reply, each ETRN from a script, QUIT with 221 and anything else with 502, and
//! records every line it was sent. A script may start a queue run after its reply, as an ISP
//! releasing mail does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The usual greeting.
pub const GREETING: &str = "220 isp.test ESMTP\r\n";
/// An EHLO reply that offers ETRN.
pub const EHLO_WITH_ETRN: &str = "250-isp.test\r\n250-PIPELINING\r\n250-ETRN\r\n250 8BITMIME\r\n";
/// An EHLO reply without ETRN.
pub const EHLO_WITHOUT_ETRN: &str = "250-isp.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

/// Work the ISP starts once it has answered (a queue run delivering to the listener).
pub type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the ISP does with one ETRN.
pub enum Act {
    /// Answers with this reply line.
    Reply(&'static str),
    /// Answers with this reply line, then starts this run on its own task.
    ReplyThenRun(&'static str, Run),
    /// Answers nothing.
    Silent,
    /// Closes the connection without a reply (the link drops).
    Hangup,
}

/// The ISP's answer to each ETRN, given its argument.
pub type EtrnScript = Box<dyn FnMut(&str) -> Act + Send>;

/// A one-connection SMTP server that answers from a script and records what it received;
/// stopped when dropped.
pub struct Isp {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    received: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Isp {
    /// Listens on 127.0.0.1:0 and serves the first connection: `greeting` (none: silent),
    /// `ehlo` to EHLO, `etrn` to each ETRN.
    pub async fn start(
        greeting: Option<&'static str>,
        ehlo: &'static str,
        mut etrn: EtrnScript,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            if let Some(greeting) = greeting {
                write.write_all(greeting.as_bytes()).await.unwrap();
            }
            // Bounded: no test needs more than a few dozen commands.
            for _ in 0..100 {
                let mut line = String::new();
                match tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line)).await
                {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let line = line.trim_end().to_owned();
                log.lock().unwrap().push(line.clone());
                let upper = line.to_ascii_uppercase();
                let (answer, run): (Option<String>, Option<Run>) = if upper.starts_with("EHLO") {
                    (Some(ehlo.to_owned()), None)
                } else if upper == "QUIT" {
                    let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                    return;
                } else if let Some(arg) = line.strip_prefix("ETRN ") {
                    match etrn(arg) {
                        Act::Reply(r) => (Some(format!("{r}\r\n")), None),
                        Act::ReplyThenRun(r, run) => (Some(format!("{r}\r\n")), Some(run)),
                        Act::Silent => (None, None),
                        Act::Hangup => return,
                    }
                } else {
                    (
                        Some("502 5.5.2 Error: command not recognized\r\n".to_owned()),
                        None,
                    )
                };
                if let Some(answer) = answer {
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
                if let Some(run) = run {
                    tokio::spawn(run);
                }
            }
        });
        Isp {
            port,
            received,
            task,
        }
    }

    /// Every line it was sent so far, line ends taken off.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// The ETRN commands it was sent so far.
    pub fn etrns(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|l| l.starts_with("ETRN"))
            .collect()
    }
}

impl Drop for Isp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A script answering the ETRN for each listed argument with its reply, and `250 OK` to the
/// others.
pub fn by_domain(map: &'static [(&'static str, &'static str)]) -> EtrnScript {
    Box::new(move |arg| {
        let reply = map
            .iter()
            .find(|(d, _)| *d == arg)
            .map_or("250 OK", |(_, r)| r);
        Act::Reply(reply)
    })
}
