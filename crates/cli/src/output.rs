//! What the CLI prints on stdout, and `--quiet`: then only errors (on stderr) and the exit code
//! speak, for cron.

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

/// Prints a line on stdout unless `--quiet`.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            println!($($arg)*);
        }
    };
}
pub(crate) use say;

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::failure::Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::failure::Failure::failed(format!("cannot start the async runtime: {e}"))
        })
}
