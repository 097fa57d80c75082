//! mailcall-bench-floor: the physical floor of durable Maildir delivery on this machine (issue 23
//! item 1). WRITERS threads share COUNT messages of SIZE bytes; each message is only the durable
//! work a `250` needs: create a file in `tmp/`, write SIZE bytes, fsync it, rename it into `new/`,
//! then wait until an fsync of `new/` that started after the rename has finished. Directory
//! fsyncs are group-committed by the same policy as Mailcall's Maildir (`DirSync` in
//! crates/core/src/maildir.rs): count renames, and the first writer to find its rename not yet
//! covered fsyncs `new/` once for every rename counted so far, under one lock. No SMTP, no
//! parsing, no async runtime. Prints `COUNT messages in SECONDS s: RATE msg/s, DIR_FSYNCS
//! directory fsyncs`.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const USAGE: &str = "usage: mailcall-bench-floor MAILDIR COUNT WRITERS SIZE";

/// Group commit of `new/`'s fsync (the policy of Mailcall's `DirSync`, written again here).
#[derive(Default)]
struct GroupSync {
    renamed: AtomicU64,
    synced: Mutex<u64>,
    fsyncs: AtomicU64,
}

impl GroupSync {
    fn after_rename(&self, dir: &Path) -> io::Result<()> {
        let mine = self.renamed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        let covers = self.renamed.load(Ordering::SeqCst);
        File::open(dir)?.sync_all()?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        *synced = covers;
        Ok(())
    }
}

fn deliver(root: &Path, name: &str, body: &[u8], sync: &GroupSync) -> io::Result<()> {
    let tmp = root.join("tmp").join(name);
    let new_dir = root.join("new");
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, new_dir.join(name))?;
    sync.after_rename(&new_dir)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, count, writers, size] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Ok(count), Ok(writers), Ok(size)) = (
        count.parse::<u64>(),
        writers.parse::<u64>(),
        size.parse::<usize>(),
    ) else {
        eprintln!("COUNT, WRITERS and SIZE must be whole numbers\n{USAGE}");
        return ExitCode::from(2);
    };
    if writers == 0 {
        eprintln!("WRITERS must be at least 1\n{USAGE}");
        return ExitCode::from(2);
    }
    let root = PathBuf::from(root);
    for sub in ["tmp", "new", "cur"] {
        if let Err(e) = std::fs::create_dir_all(root.join(sub)) {
            eprintln!("cannot create {}: {e}", root.join(sub).display());
            return ExitCode::FAILURE;
        }
    }
    let body: Arc<Vec<u8>> = Arc::new(
        (0..size)
            .map(|i| if i % 80 == 79 { b'\n' } else { b'x' })
            .collect(),
    );
    let sync = Arc::new(GroupSync::default());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (root, body, sync, next) = (root.clone(), body.clone(), sync.clone(), next.clone());
            std::thread::spawn(move || -> io::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return Ok(());
                    }
                    deliver(&root, &format!("{i}.w{w}.floor"), &body, &sync)?;
                }
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("a writer failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("a writer panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} messages in {secs:.3} s: {:.1} msg/s, {} directory fsyncs",
        count as f64 / secs,
        sync.fsyncs.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}
