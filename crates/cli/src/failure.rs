//! How a command fails: the message for the user and the exit code (1 failed, 2 bad setup).

use std::fmt::Display;
use std::process::ExitCode;

/// A command's failure, printed as `error: ...` on stderr.
#[derive(Debug)]
pub enum Failure {
    /// The operation ran and failed (exit 1).
    Failed(String),
    /// Bad usage, config or keyring: nothing was attempted (exit 2).
    Setup(String),
}

impl Failure {
    /// An operation failure from any error.
    pub fn failed(e: impl Display) -> Self {
        Failure::Failed(e.to_string())
    }
    /// A setup failure from any error.
    pub fn setup(e: impl Display) -> Self {
        Failure::Setup(e.to_string())
    }
    /// Prints the message and gives the exit code.
    pub fn report(self) -> ExitCode {
        let (code, message) = match self {
            Failure::Failed(m) => (1, m),
            Failure::Setup(m) => (2, m),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

/// The result of a command: an exit code on success paths, a `Failure` otherwise.
pub type Outcome = Result<ExitCode, Failure>;
