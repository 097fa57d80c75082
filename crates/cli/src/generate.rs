//! `generate` (hidden): shell completions and man pages made from the CLI's own clap definitions,
//! so what the package ships can never drift from the real options (scripts/package.sh runs it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Command, CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::failure::{Failure, Outcome};

/// What `generate` makes.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for SHELL on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write man pages into DIR: mailcall-cli.1 and one per subcommand (mailcall-cli-fetch.1, ...).
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// The binary name the completions and pages are for (what users type).
const BIN: &str = "mailcall-cli";

/// Runs `generate`.
pub fn run(cmd: GenerateCommand) -> Outcome {
    match cmd {
        GenerateCommand::Completions { shell } => {
            std::io::stdout()
                .write_all(completions(shell).as_bytes())
                .map_err(|e| Failure::failed(format!("cannot write the completions: {e}")))?;
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::setup(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
            // clap_mangen leaves hidden subcommands out by itself.
            clap_mangen::generate_to(crate::Cli::command(), &dir).map_err(|e| {
                Failure::failed(format!(
                    "cannot write man pages into {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The completion script for `shell`.
fn completions(shell: Shell) -> String {
    let mut command = visible(&crate::Cli::command());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, BIN, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == Shell::Bash {
        // clap_complete 4.6 (clap-rs/clap#6421, open) spells a hyphenated binary name one way
        // in the loop that finds the subcommand (`mailcall__cli__subcmd__fetch`) and another
        // in the case arms that complete it (`mailcall__subcmd__cli__subcmd__fetch`), so no
        // subcommand's options ever complete. The arms get the loop's spelling.
        script = script.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"));
    }
    script
}

/// The command as users see it. clap_complete 4.6 offers hidden subcommands (this one) like
/// any other, so the top level is rebuilt from its parts without them: name, version, about,
/// its own arguments (help and version come back when clap builds it) and the visible
/// subcommands, each unchanged.
fn visible(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_string())
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set())
        .args(
            cmd.get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .cloned(),
        )
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Drives the bash script's completion function for the line in $2 (its last word is
    /// the one being completed) and prints the candidates. (Unix only: bash is not a Windows
    /// program; the completion scripts are packaged for Linux.)
    #[cfg(unix)]
    const BASH_DRIVER: &str = r#"source "$1"
COMP_LINE=$2
read -r -a COMP_WORDS <<<"$COMP_LINE"
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
_mailcall__cli mailcall-cli "${COMP_WORDS[$COMP_CWORD]}" "${COMP_WORDS[$((COMP_CWORD - 1))]}"
echo "${COMPREPLY[*]}"
"#;

    /// What bash offers for `line` with `script`.
    #[cfg(unix)]
    fn bash_completes(script: &str, line: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mailcall-cli.bash");
        std::fs::write(&file, script).unwrap();
        let out = std::process::Command::new("bash")
            .args(["-c", BASH_DRIVER, "bash"])
            .arg(&file)
            .arg(line)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    #[cfg(unix)]
    fn bash_completes_subcommands_and_their_options() {
        let script = completions(Shell::Bash);
        assert_eq!(bash_completes(&script, "mailcall-cli fe"), "fetch");
        assert_eq!(
            bash_completes(&script, "mailcall-cli daemon --log"),
            "--log-file"
        );
        assert_eq!(
            bash_completes(&script, "mailcall-cli account ed"),
            "edit",
            "a second level completes too"
        );
    }

    #[test]
    fn no_shell_is_offered_the_hidden_generate_command() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            assert!(!script.contains("generate"), "{shell} offers `generate`");
            assert!(script.contains("fetch"), "{shell} lacks `fetch`");
        }
    }

    #[test]
    fn the_visible_command_keeps_everything_but_generate() {
        let full = crate::Cli::command();
        let shown = visible(&full);
        let names = |c: &Command| -> Vec<String> {
            c.get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect()
        };
        let mut want = names(&full);
        want.retain(|n| n != "generate");
        assert_eq!(names(&shown), want);
        let args = |c: &Command| -> Vec<String> {
            c.get_arguments().map(|a| a.get_id().to_string()).collect()
        };
        assert_eq!(args(&shown), args(&full));
        assert_eq!(shown.get_version(), full.get_version());
        shown.debug_assert();
    }

    #[test]
    fn man_pages_cover_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        run(GenerateCommand::Man {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        for want in [
            "mailcall-cli.1",
            "mailcall-cli-daemon.1",
            "mailcall-cli-account-set.1",
        ] {
            assert!(
                pages.contains(&want.to_string()),
                "{want} missing: {pages:?}"
            );
        }
        assert!(!pages.iter().any(|p| p.contains("generate")), "{pages:?}");
        let daemon = std::fs::read_to_string(dir.path().join("mailcall-cli-daemon.1")).unwrap();
        assert!(
            daemon.contains(r"log\-file"),
            "the daemon page documents --log-file"
        );
    }
}
