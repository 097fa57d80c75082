//! Connect and disconnect commands (e.g. `pon isp` / `poff isp`): split into words without a
//! shell ([`crate::user_command`]), run with a deadline, output kept for the history.

use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncReadExt;

use crate::report::{Direction, TranscriptLine};
use crate::user_command::split_command;

/// Most output kept from one command, in bytes; a chatty script must not bloat the history.
const OUTPUT_LIMIT: usize = 16 * 1024;

/// What running one command gave.
#[derive(Debug, Clone)]
pub struct CommandRun {
    /// The command line as configured.
    pub command: String,
    /// Whether it started and exited 0 in time.
    pub success: bool,
    /// Transcript: the command, then its output lines, then how it ended.
    pub lines: Vec<TranscriptLine>,
    /// What went wrong, worded for the user; `None` on success.
    pub error: Option<String>,
}

fn note(line: impl Into<String>) -> TranscriptLine {
    TranscriptLine {
        at: Utc::now(),
        dir: Direction::Note,
        line: line.into(),
    }
}

/// Runs `line` (split by [`split_command`]) with stdin closed, collecting stdout and stderr,
/// killing it after `timeout`.
pub async fn run_command(what: &str, line: &str, timeout: Duration) -> CommandRun {
    let mut lines = vec![note(format!("$ {line}"))];
    let fail = |mut lines: Vec<TranscriptLine>, error: String| {
        lines.push(note(error.clone()));
        CommandRun {
            command: line.to_string(),
            success: false,
            lines,
            error: Some(error),
        }
    };
    let command = match split_command(line) {
        Ok(c) => c,
        Err(e) => return fail(lines, format!("the {what} command cannot run: {e}")),
    };
    let mut child = match command.process().spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail(
                lines,
                format!(
                    "cannot start the {what} command `{line}`: {e}. Check the program name and path (account set --{what}-command)"
                ),
            )
        }
    };
    // Readers on their own tasks: a daemon the command leaves behind (pppd) may keep the pipes
    // open long after the command itself has exited.
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(OUTPUT_LIMIT as u64).read_to_end(&mut buf).await;
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    );
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill().await;
            out.abort();
            err.abort();
            return fail(
                lines,
                format!(
                    "the {what} command `{line}` did not finish within {} s and was stopped; make it return once the link is being set up (e.g. `pon`, not `pppd nodetach`), or allow it more time (the account's link timeout)",
                    timeout.as_secs()
                ),
            );
        }
    };
    let grace = Duration::from_millis(500);
    let o = tokio::time::timeout(grace, out)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let e = tokio::time::timeout(grace, err)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    for text in [o, e] {
        for l in String::from_utf8_lossy(&text).lines() {
            lines.push(TranscriptLine {
                at: Utc::now(),
                dir: Direction::Received,
                line: l.to_string(),
            });
        }
    }
    match status {
        Ok(s) if s.success() => {
            lines.push(note("exited 0"));
            CommandRun {
                command: line.to_string(),
                success: true,
                lines,
                error: None,
            }
        }
        Ok(s) => fail(
            lines,
            format!("the {what} command `{line}` failed ({s}); its output is in the history"),
        ),
        Err(e) => fail(
            lines,
            format!("waiting for the {what} command `{line}` failed: {e}"),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_and_status_are_kept() {
        // The same commands in each platform's own tools.
        #[cfg(unix)]
        let (both, fails) = ("sh -c 'echo up; echo warn >&2'", "sh -c 'exit 3'");
        #[cfg(windows)]
        let (both, fails) = ("cmd /c '(echo up)&(echo warn>&2)'", "cmd /c 'exit 3'");
        let run = run_command("connect", both, Duration::from_secs(10)).await;
        assert!(run.success, "{:?}", run.error);
        let text: Vec<&str> = run.lines.iter().map(|l| l.line.as_str()).collect();
        assert!(text.contains(&"up") && text.contains(&"warn"), "{text:?}");
        let run = run_command("connect", fails, Duration::from_secs(10)).await;
        assert!(!run.success);
        assert!(run.error.unwrap().contains("failed"));
        let run = run_command("connect", "/nonexistent/pon isp", Duration::from_secs(10)).await;
        assert!(run.error.unwrap().contains("cannot start"));
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_stopped() {
        let started = std::time::Instant::now();
        // Windows has no sleep: ping waits a second between its echoes.
        let hangs = if cfg!(windows) {
            "ping -n 30 127.0.0.1"
        } else {
            "sleep 30"
        };
        let run = run_command("connect", hangs, Duration::from_millis(200)).await;
        assert!(!run.success);
        assert!(run.error.unwrap().contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
