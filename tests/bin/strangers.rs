//! Strangers holding a listener's slots (issue 21): from each source address given, open
//! connections to the listener and hold every one it greets for as long as it lets them, each
//! with one of four tactics — silence, a NOOP a second, a message's data a byte a second, and a
//! MAIL/RCPT/RSET cycle — and open a new one whenever one ends, until the stop file appears.
//! Then wait (bounded) for the listener to end those still open, and report.
//!
//! Run inside the test's network namespace (the test process cannot reach it over TCP):
//! `mailcall-strangers PORT DOMAIN STOP_FILE SOURCE...`; IPv4 sources connect to 127.0.0.1,
//! IPv6 ones to ::1. Prints, as it happens, `holding N` each time they hold more connections at
//! once than ever before; at the end `peak total N`, `peak KEY N` per peer (an IPv4 address, an
//! IPv6 /64), and one `conn SOURCE TACTIC ended|open SECONDS LAST-LINE` per connection held.
//! Exits 0.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long connections still open after the stop file may take to be ended by the listener;
/// one still open then is reported as open (the test fails on it).
const END_BOUND: Duration = Duration::from_secs(90);
/// How long a connection waits for the greeting.
const GREETING_WAIT: Duration = Duration::from_secs(10);
/// The pace of every tactic: one step a second.
const STEP: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Counts {
    live: BTreeMap<IpAddr, usize>,
    peak: BTreeMap<IpAddr, usize>,
    total: usize,
    peak_total: usize,
}

/// The per-peer unit the listener counts: the address, or an IPv6 address's /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One held connection's end: its tactic, whether the listener ended it, after how long, and
/// the last line it said.
struct Held {
    source: IpAddr,
    tactic: usize,
    ended: bool,
    seconds: f64,
    last: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: mailcall-strangers PORT DOMAIN STOP_FILE SOURCE...");
        std::process::exit(2);
    }
    let port: u16 = args[0].parse().expect("PORT is a number");
    let domain = args[1].clone();
    let stop = PathBuf::from(&args[2]);
    let sources: Vec<IpAddr> = args[3..]
        .iter()
        .map(|s| s.parse().expect("SOURCE is an IP address"))
        .collect();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let held = Arc::new(Mutex::new(Vec::<Held>::new()));
    let openers: Vec<_> = sources
        .iter()
        .map(|&source| {
            let (counts, held, stop, domain) =
                (counts.clone(), held.clone(), stop.clone(), domain.clone());
            thread::spawn(move || open_from(source, port, &domain, &stop, &counts, &held))
        })
        .collect();
    for opener in openers {
        let _ = opener.join();
    }
    let c = lock(&counts);
    println!("peak total {}", c.peak_total);
    for (k, n) in &c.peak {
        println!("peak {k} {n}");
    }
    for h in lock(&held).iter() {
        println!(
            "conn {} {} {} {:.1} {}",
            h.source,
            h.tactic,
            if h.ended { "ended" } else { "open" },
            h.seconds,
            h.last
        );
    }
}

/// Keeps opening connections from `source` until the stop file appears; each greeted one is
/// held by its own thread. Returns once all of them have ended (or the bound passed).
fn open_from(
    source: IpAddr,
    port: u16,
    domain: &str,
    stop: &Path,
    counts: &Arc<Mutex<Counts>>,
    held: &Arc<Mutex<Vec<Held>>>,
) {
    let target = match source {
        IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], port)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    };
    let mut holders = Vec::new();
    let mut n = 0usize;
    while !stop.exists() {
        let Some((stream, greeting)) = connect(source, target) else {
            thread::sleep(Duration::from_millis(200));
            continue;
        };
        if !greeting.starts_with("220") {
            // Turned away (421): try again soon, as a stranger who wants the slot would.
            thread::sleep(Duration::from_millis(200));
            continue;
        }
        {
            let mut c = lock(counts);
            let live = c.live.entry(key(source)).or_default();
            *live += 1;
            let now = *live;
            let peak = c.peak.entry(key(source)).or_default();
            *peak = (*peak).max(now);
            c.total += 1;
            if c.total > c.peak_total {
                c.peak_total = c.total;
                println!("holding {}", c.total);
            }
        }
        let tactic = n % 4;
        n += 1;
        let (counts, held, domain, stop) = (
            counts.clone(),
            held.clone(),
            domain.to_owned(),
            stop.to_owned(),
        );
        holders.push(thread::spawn(move || {
            let started = Instant::now();
            let (ended, last) = hold(stream, tactic, &domain, &stop);
            let mut c = lock(&counts);
            if let Some(live) = c.live.get_mut(&key(source)) {
                *live -= 1;
            }
            c.total -= 1;
            drop(c);
            lock(&held).push(Held {
                source,
                tactic,
                ended,
                seconds: started.elapsed().as_secs_f64(),
                last,
            });
        }));
        // Holders finished long ago need not be kept.
        holders.retain(|h| !h.is_finished());
    }
    for h in holders {
        let _ = h.join();
    }
}

/// A connection from `source` to `target` and the first line it said (empty if none in time).
fn connect(source: IpAddr, target: SocketAddr) -> Option<(TcpStream, String)> {
    let domain = match source {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(source, 0).into()).ok()?;
    socket
        .connect_timeout(&target.into(), Duration::from_secs(5))
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(GREETING_WAIT)).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.contains(&b'\n') {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got).trim_end().to_string();
    Some((stream, line))
}

/// Holds `stream` with `tactic` until the listener closes it (`true`, and its last line) or the
/// bound after the stop file passes (`false`).
fn hold(mut stream: TcpStream, tactic: usize, domain: &str, stop: &Path) -> (bool, String) {
    let opening: Vec<String> = match tactic {
        0 => Vec::new(),
        2 => vec![
            "EHLO stranger.test".into(),
            "MAIL FROM:<s@stranger.test>".into(),
            format!("RCPT TO:<user@{domain}>"),
            "DATA".into(),
        ],
        _ => vec!["EHLO stranger.test".into()],
    };
    let cycle: Vec<String> = match tactic {
        1 => vec!["NOOP".into()],
        3 => vec![
            "MAIL FROM:<s@stranger.test>".into(),
            format!("RCPT TO:<user@{domain}>"),
            "RSET".into(),
        ],
        _ => Vec::new(),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut steps = opening.into_iter().map(|l| format!("{l}\r\n"));
    let mut step = 0usize;
    let mut said = Vec::new();
    let mut last = String::new();
    let mut next = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let body = b"Subject: slow\r\n\r\n";
    loop {
        if stopped_at.is_none() && stop.exists() {
            stopped_at = Some(Instant::now());
        }
        if stopped_at.is_some_and(|t| t.elapsed() > END_BOUND) {
            return (false, last);
        }
        if Instant::now() >= next {
            next += STEP;
            let out: Option<Vec<u8>> = match steps.next() {
                Some(line) => Some(line.into_bytes()),
                None => match tactic {
                    0 => None,
                    2 => {
                        step += 1;
                        Some(vec![body[(step - 1) % body.len()]])
                    }
                    _ => {
                        step += 1;
                        Some(format!("{}\r\n", cycle[(step - 1) % cycle.len()]).into_bytes())
                    }
                },
            };
            if let Some(bytes) = out {
                if stream.write_all(&bytes).is_err() {
                    return (true, last);
                }
            }
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return (true, last),
            Ok(n) => {
                said.extend_from_slice(&buf[..n]);
                while let Some(pos) = said.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = said.drain(..=pos).collect();
                    last = String::from_utf8_lossy(&line).trim_end().to_string();
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, last),
        }
    }
}
