//! The commands a user configures — a password command, a dial-up link's connect and disconnect
//! commands: how a line becomes a program and its arguments (shell quoting, no shell), and
//! running a password command for the one line it prints. The dial-up commands' run, with its
//! transcript for the history, is [`crate::trigger::run_command`].

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::account::Secret;

/// How long a password command may take (a GPG agent asking for its passphrase is not waited for).
const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of what a failing password command said on stderr goes into the error.
const SAID_LIMIT: usize = 200;

/// A user's command line, split: a program and its arguments. Only [`split_command`] makes
/// one, so there is always a program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    program: String,
    args: Vec<String>,
}

impl CommandLine {
    /// The program (a name looked up in `PATH`, or a path).
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Every word, the program first.
    pub fn words(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// The process to spawn: stdin closed, stdout and stderr piped, killed when dropped.
    pub fn process(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// A user's command could not be split or run, or gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum UserCommandError {
    /// A quote is opened and never closed.
    #[error("the command {line:?} has an unclosed {quote} quote: close it, or write the command without it")]
    UnclosedQuote {
        /// The command line.
        line: String,
        /// The quote character.
        quote: char,
    },
    /// The line ends in a backslash that escapes nothing.
    #[error("the command {line:?} ends with a lone backslash: remove it or quote it")]
    LoneBackslash {
        /// The command line.
        line: String,
    },
    /// The line holds no word.
    #[error("the command is empty: give a program and its arguments, e.g. `pon isp`")]
    Empty,
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Start {
        /// The program.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It ran longer than it may.
    #[error("`{program}` did not finish within {} s", limit.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// How long it had.
        limit: Duration,
    },
    /// Waiting for it failed.
    #[error("`{program}` failed: {source}")]
    Wait {
        /// The program.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It exited unsuccessfully; `said` is the first line of its stderr (shortened), which is
    /// what tells the user why.
    #[error("`{program}` failed ({status}){}", if said.is_empty() { String::new() } else { format!(": {said}") })]
    Failed {
        /// The program.
        program: String,
        /// How it exited.
        status: ExitStatus,
        /// The first line it wrote to stderr, shortened; may be empty.
        said: String,
    },
    /// What it printed is not UTF-8.
    #[error("`{program}` printed something that is not text")]
    NotText {
        /// The program.
        program: String,
    },
    /// Its first line is empty.
    #[error("`{program}` printed nothing on its first line")]
    NothingPrinted {
        /// The program.
        program: String,
    },
}

impl UserCommandError {
    /// Whether the line itself is wrong (quoting, empty) — a setting to fix before anything
    /// runs — rather than the program having failed when run.
    pub fn is_in_the_line(&self) -> bool {
        matches!(
            self,
            UserCommandError::UnclosedQuote { .. }
                | UserCommandError::LoneBackslash { .. }
                | UserCommandError::Empty
        )
    }
}

/// Splits a command line into words the way a shell would quote them, without running a shell:
/// `'single'` and `"double"` quotes group, a backslash escapes the next character (outside single
/// quotes). Nothing is expanded; whoever wants a shell writes `sh -c '...'`.
pub fn split_command(line: &str) -> Result<CommandLine, UserCommandError> {
    let unclosed = |quote| UserCommandError::UnclosedQuote {
        line: line.to_owned(),
        quote,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unclosed('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unclosed('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unclosed('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => {
                        return Err(UserCommandError::LoneBackslash {
                            line: line.to_owned(),
                        })
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut words = words.into_iter();
    let program = words.next().ok_or(UserCommandError::Empty)?;
    Ok(CommandLine {
        program,
        args: words.collect(),
    })
}

/// Runs a password command (no shell: split like the dial-up commands) and returns the first
/// line it prints. Its output is never logged or kept; what it says on stderr goes into the
/// error (the first line, shortened), since that is what tells the user why it failed.
pub async fn password_from_command(line: &str) -> Result<Secret, UserCommandError> {
    let command = split_command(line)?;
    let program = || command.program().to_owned();
    let child = command
        .process()
        .spawn()
        .map_err(|source| UserCommandError::Start {
            program: program(),
            source,
        })?;
    let output = tokio::time::timeout(PASSWORD_COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| UserCommandError::TimedOut {
            program: program(),
            limit: PASSWORD_COMMAND_TIMEOUT,
        })?
        .map_err(|source| UserCommandError::Wait {
            program: program(),
            source,
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said: String = said
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(SAID_LIMIT)
            .collect();
        return Err(UserCommandError::Failed {
            program: program(),
            status: output.status,
            said,
        });
    }
    let stdout = String::from_utf8(output.stdout)
        .map_err(|_| UserCommandError::NotText { program: program() })?;
    let first = stdout.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err(UserCommandError::NothingPrinted { program: program() });
    }
    Ok(Secret::new(first))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell_without_expanding() {
        for (line, want) in [
            ("pon isp", vec!["pon", "isp"]),
            ("  pon   isp  ", vec!["pon", "isp"]),
            (
                "sh -c 'pon isp && sleep 1'",
                vec!["sh", "-c", "pon isp && sleep 1"],
            ),
            (r#"echo "a \"b\" $HOME""#, vec!["echo", r#"a "b" $HOME"#]),
            (r"a\ b c", vec!["a b", "c"]),
            ("x ''", vec!["x", ""]),
            ("echo $HOME;rm", vec!["echo", "$HOME;rm"]),
        ] {
            assert_eq!(split_command(line).unwrap().words(), want, "{line}");
        }
        for bad in ["", "   ", "a 'b", "a \"b", "a\\"] {
            let e = split_command(bad).unwrap_err();
            assert!(e.is_in_the_line(), "{bad:?}: {e}");
        }
        assert_eq!(
            split_command("a 'b").unwrap_err().to_string(),
            r#"the command "a 'b" has an unclosed ' quote: close it, or write the command without it"#
        );
    }

    #[tokio::test]
    async fn a_password_command_gives_its_first_line_and_failures_say_why() {
        // The same commands in each platform's own tools (Windows' cmd ends its lines in CRLF).
        #[cfg(unix)]
        let (two_lines, fails, silent, status) = (
            "printf 's3cret\\nsecond line\\n'",
            "sh -c 'echo locked >&2; exit 3'",
            "true",
            "exit status: 3",
        );
        #[cfg(windows)]
        let (two_lines, fails, silent, status) = (
            "cmd /c '(echo s3cret)&(echo second line)'",
            "cmd /c 'echo locked 1>&2& exit 3'",
            "cmd /c rem",
            "exit code: 3",
        );
        let pw = password_from_command(two_lines).await.unwrap();
        assert_eq!(pw.expose(), "s3cret");
        let e = password_from_command(fails).await.unwrap_err().to_string();
        assert!(e.contains(status) && e.contains("locked"), "{e}");
        let e = password_from_command(silent).await.unwrap_err().to_string();
        assert!(e.contains("printed nothing"), "{e}");
        let e = password_from_command("/no/such/program").await.unwrap_err();
        assert!(!e.is_in_the_line(), "{e}");
        assert!(e.to_string().contains("cannot start"), "{e}");
        assert!(password_from_command("pass 'unclosed").await.is_err());
    }
}
