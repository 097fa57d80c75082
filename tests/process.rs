//! Child processes owned by the test: a guard that kills by PID on drop, and a run-to-completion
//! helper with a deadline that captures stdout and stderr.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A started daemon; dropping it kills the process by its PID and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Takes ownership of `child`, named `name` in messages.
    pub fn new(name: &str, child: Child) -> Self {
        Self {
            name: name.to_string(),
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` when the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Child::kill sends SIGKILL to this PID only: nothing else on the machine is touched.
            if let Err(e) = self.child.kill() {
                eprintln!("cannot kill {} (pid {}): {e}", self.name, self.child.id());
            }
        }
        let _ = self.child.wait();
    }
}

/// What a finished (or killed) command left behind.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit status; `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Wall-clock time from spawn to exit (or kill).
    pub elapsed: Duration,
}

impl Finished {
    /// True when it ran out of time and was killed.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
}

/// Runs `cmd` to completion, feeding `stdin` (then closing it), killing it by PID after
/// `timeout`. Output is read on threads so a chatty child never blocks on a full pipe.
pub fn run_with_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Finished> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits before reading stdin gives EPIPE; its output says why.
        let _ = pipe.write_all(data);
    }
    let deadline = start + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Ok(Finished {
        status,
        stdout: collect(out),
        stderr: collect(err),
        elapsed,
    })
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn collect(rx: mpsc::Receiver<Vec<u8>>) -> String {
    // The pipe closes when the child (and anything it forked that kept the pipe) is gone;
    // a grandchild holding it open must not hang the test.
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => "<output not closed within 5 s of exit>".to_string(),
    }
}

/// Runs a short helper command (openssl, postqueue, ...) and fails with its output if it fails.
pub fn run_checked(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<Finished, String> {
    let shown = format!("{cmd:?}");
    let done = run_with_timeout(cmd, stdin, Duration::from_secs(60))
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    match done.status {
        Some(s) if s.success() => Ok(done),
        _ => Err(format!(
            "{shown} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            done.status, done.stdout, done.stderr
        )),
    }
}
