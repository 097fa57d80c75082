//! How a command fails: the message for the user (with the command that fixes it, when there is
//! one) and the exit code — 1 when the operation ran and failed, 2 for usage, config or keyring.

use std::fmt::Display;
use std::process::ExitCode;

use mailcall_core::hint::Problem;

use crate::hints;

/// A command's failure, printed as `error: ...` on stderr.
#[derive(Debug)]
pub struct Failure {
    /// 1 (failed) or 2 (setup).
    code: u8,
    /// What happened and what to do, fix included.
    message: String,
}

impl Failure {
    /// An operation failure from any error (exit 1).
    pub fn failed(e: impl Display) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }

    /// A setup failure from any error: bad usage, config or keyring, nothing attempted (exit 2).
    pub fn setup(e: impl Display) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }

    /// A setup failure from a problem, with the command that fixes it.
    pub fn setup_problem(p: &Problem) -> Self {
        Failure::setup(hints::render(p))
    }

    /// Prints the message and gives the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("error: {}", mailcall_core::printable::text(&self.message));
        ExitCode::from(self.code)
    }
}

/// The result of a command: an exit code on success paths, a `Failure` otherwise.
pub type Outcome = Result<ExitCode, Failure>;
