//! What the CLI prints on stdout — every line through `printable`, so text from outside never
//! drives the terminal — and `--quiet`: then only errors (on stderr) and the exit code speak,
//! for cron.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `--quiet` for the whole run (once, at start).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints a line on stdout unless `--quiet`, its controls replaced: lines hold text from outside
/// (subjects, addresses, servers' replies), and what a message says never drives the terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            println!("{}", mailcall_core::printable::text(&format!($($arg)*)));
        }
    };
}
pub(crate) use say;

/// Prints a JSON document on stdout as one line, the controls serde_json leaves raw (C1, bidi)
/// escaped: the same value for a program, nothing a terminal acts on. Printed even with
/// `--quiet`: who asks for JSON reads it.
pub fn print_json(document: &str) {
    println!("{}", mailcall_core::printable::json(document));
}

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::failure::Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::failure::Failure::failed(format!("cannot start the async runtime: {e}"))
        })
}
