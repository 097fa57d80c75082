//! A scripted stand-in for the ISP's SMTP server on 127.0.0.1, for what a real Postfix will not
//! do on request: drop the link in the middle of a session, or answer ETRN and hold the fetch
//! open without any mail. Records every command line it reads.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the fake server does in each session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Greets, advertises ETRN, answers every ETRN with `250 Queuing started`, QUIT with 221.
    EtrnOk,
    /// Greets, reads EHLO, and closes the connection without answering it.
    CloseAfterEhlo,
    /// Greets, answers EHLO (ETRN advertised), and closes the connection when ETRN arrives.
    CloseAtEtrn,
    /// Accepts the connection and never says a word (a server that hangs): no greeting, no
    /// reply; the connection is held until the client closes it (at most 5 minutes).
    Silent,
}

/// The running fake; dropping it stops the accept thread and joins it.
pub struct FakeIsp {
    ip: std::net::Ipv4Addr,
    port: u16,
    commands: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeIsp {
    /// Starts it on a free loopback port.
    pub fn start(script: Script) -> Self {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST, script)
    }

    /// Starts it on a free port of `ip`, a loopback address (all of 127/8 is local): a test
    /// whose own connections come from 127.0.0.1 then is not the ISP its fetch asked.
    pub fn start_at(ip: std::net::Ipv4Addr, script: Script) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("binding the fake ISP");
        let port = listener.local_addr().expect("bound").port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (commands, connections, stop) =
                (commands.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: a test never needs more than this many sessions.
                for stream in listener.incoming().take(1000) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let commands = commands.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, script, &commands);
                    });
                }
            })
        };
        Self {
            ip,
            port,
            commands,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every command line read so far, in order, across sessions.
    pub fn commands(&self) -> Vec<String> {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeIsp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, script: Script, commands: &Mutex<Vec<String>>) -> std::io::Result<()> {
    if script == Script::Silent {
        return hold_silently(stream, commands);
    }
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 fake-isp.test ESMTP\r\n")?;
    for _ in 0..1000 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match (script, verb.as_str()) {
            (Script::CloseAfterEhlo, "EHLO") => return Ok(()),
            (Script::CloseAtEtrn, "ETRN") => return Ok(()),
            (_, "EHLO") => b"250-fake-isp.test\r\n250-ETRN\r\n250 8BITMIME\r\n",
            (_, "HELO") => b"250 fake-isp.test\r\n",
            (_, "ETRN") => b"250 Queuing started\r\n",
            (_, "QUIT") => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 not here\r\n",
        };
        w.write_all(reply)?;
    }
    Ok(())
}

/// [`Script::Silent`]: records what the client sends, answers nothing, returns when it closes.
fn hold_silently(stream: TcpStream, commands: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut r = BufReader::new(stream);
    for _ in 0..1000 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.trim_end().to_string());
    }
    Ok(())
}
