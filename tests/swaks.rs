//! `swaks` (Swiss Army Knife for SMTP, Debian package `swaks`): a real SMTP client that is not
//! ours, for sending test mail to the listener and for relay attempts.

use std::process::Command;
use std::time::Duration;

use crate::process::{run_with_timeout, Finished};
use crate::smtp::BODY_END;

/// Runs `swaks --server 127.0.0.1:PORT --timeout 20 ARGS` (no TLS, no AUTH unless asked).
pub fn swaks(port: u16, args: &[&str]) -> Finished {
    let mut cmd = Command::new("swaks");
    cmd.arg("--server")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--timeout", "20", "--helo", "swaks.outside.test"])
        .args(args);
    run_with_timeout(&mut cmd, None, Duration::from_secs(60))
        .expect("running swaks (package swaks; see tests/setup.sh)")
}

/// Sends one ordinary message to `to` with Message-ID `<id>` whose body ends with [`BODY_END`];
/// panics with swaks' transcript unless the server accepted it (exit 0).
pub fn send_normal(port: u16, to: &str, id: &str) -> Finished {
    let header = format!("Message-Id: <{id}>");
    let body = format!("An ordinary message after a hostile case.\n{BODY_END}\n");
    let done = swaks(
        port,
        &[
            "--from",
            "sender@outside.test",
            "--to",
            to,
            "--header",
            &header,
            "--body",
            &body,
        ],
    );
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(0),
        "swaks could not deliver an ordinary message:\n{}\n{}",
        done.stdout,
        done.stderr
    );
    done
}

/// The server's reply lines in a swaks transcript (`<-  250 ...`, `<** 550 ...`), without the
/// arrow, in order.
pub fn server_lines(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["<-  ", "<** ", "<~  ", "<~* "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .map(str::to_string)
        })
        .collect()
}
