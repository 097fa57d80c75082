//! The Windows build of `mailcall-cli` run under Wine, in the tests' own Wine prefix
//! (`$MAILCALL_CACHE_DIR/wine`, made by tests/setup/wine.sh with the ProcessPrng stand-in that
//! Wine 8.0 lacks), one test directory each: its config file, data directory (history, state,
//! spool), control file and Maildir are there, named by their Windows paths (Wine's drive Z: is
//! the Linux root). The Credential Manager is the prefix's, shared: each test names its own
//! accounts.
//!
//! The binary: `$MAILCALL_WINDOWS_CLI`, else `x86_64-pc-windows-gnu/debug/mailcall-cli.exe` in
//! the target dir that holds the test executable. What is missing is said, with the command that
//! makes it (the tests never pass without running).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cli::{CliOutput, DEFAULT_TIMEOUT};
use crate::process::run_with_timeout;
use crate::running::RunningCli;

/// Wine's loader for 64-bit programs (Debian's wine64).
pub const WINE_LOADER: &str = "/usr/lib/wine/wine64";

/// The tests' Wine prefix: `$MAILCALL_CACHE_DIR/wine`, else `/var/cache/mailcall/wine`.
pub fn prefix() -> PathBuf {
    std::env::var_os("MAILCALL_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/mailcall"))
        .join("wine")
}

/// The Windows CLI under test; panics saying how to build it when it is not there.
pub fn windows_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("MAILCALL_WINDOWS_CLI") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    // <target>/debug/deps/windows-HASH -> <target>
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bin = target.join("x86_64-pc-windows-gnu/debug/mailcall-cli.exe");
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build --target x86_64-pc-windows-gnu -p mailcall-cli` \
         first (same target dir), or set MAILCALL_WINDOWS_CLI to the .exe",
        bin.display()
    );
    bin
}

/// A Linux path as the Windows program sees it: on drive Z:, with backslashes.
pub fn win_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Wine's debug channels for the tests: all quiet but the errors of its memory set-up
/// (`virtual`). Wine's start-up ends a process with exit code 1 and, under `-all`, no word when
/// it cannot map the shared user data page before the program runs; with this the run says so.
pub const WINEDEBUG: &str = "-all,err+virtual";

/// A command that runs `program` (a Windows .exe, or a program Wine has, like `reg`) in the
/// tests' prefix, quietly (only Wine's start-up errors, no Mono or Gecko prompts).
pub fn wine_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let prefix = prefix();
    assert!(
        prefix.join("drive_c/windows/system32/bcryptprimitives.dll").is_file(),
        "the tests' Wine prefix {} (with the ProcessPrng stand-in) is missing: run `sh tests/setup/wine.sh` as root",
        prefix.display()
    );
    assert!(
        Path::new(WINE_LOADER).is_file(),
        "{WINE_LOADER} is missing: apt-get install wine wine64 (or run tests/setup.sh)"
    );
    let mut cmd = Command::new(WINE_LOADER);
    cmd.arg(program)
        .env("WINEPREFIX", &prefix)
        .env("WINEDEBUG", WINEDEBUG)
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    cmd
}

/// The Windows CLI bound to one test's directory.
pub struct WinCli {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl WinCli {
    /// A fresh directory with a config file (`hostname = client.test`, no submission listener,
    /// `data-dir` inside the directory) and its own control file (`run\mailcall\control.sock`).
    pub fn new(name: &str) -> Self {
        let dir = crate::test_dir(&format!("win-{name}"));
        let cli = WinCli {
            dir,
            exe: windows_cli(),
        };
        std::fs::create_dir_all(cli.root().join("run")).expect("creating run/");
        cli.write_config("");
        cli
    }

    /// The test's directory (Linux path).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The config file (Linux path).
    pub fn config_path(&self) -> PathBuf {
        self.root().join("config.toml")
    }

    /// The data directory (Linux path): history, state, spool.
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// The control file a daemon of this test writes (Linux path).
    pub fn control_file(&self) -> PathBuf {
        self.root().join("run/mailcall/control.sock")
    }

    /// Writes the base config plus `extra` TOML lines.
    pub fn write_config(&self, extra: &str) {
        let data = win_path(&self.data_dir()).replace('\\', "\\\\");
        let text = format!(
            "hostname = \"client.test\"\nsubmit-listen = \"off\"\ndata-dir = \"{data}\"\n{extra}"
        );
        std::fs::write(self.config_path(), text).expect("writing the config");
    }

    /// `mailcall-cli.exe --config CFG ARGS` under Wine, its environment this test's.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = wine_command(&self.exe);
        cmd.arg("--config")
            .arg(win_path(&self.config_path()))
            .args(args)
            // The control file's directory (read on every platform; on Windows the default is
            // the profile's AppData, which all tests in the prefix share).
            .env("XDG_RUNTIME_DIR", win_path(&self.root().join("run")))
            .env_remove("MAILCALL_CONFIG");
        cmd
    }

    /// Runs it to completion with `stdin` fed and closed.
    ///
    /// A run that Wine ended before the program started (see [`wine_failed_at_start`]) did
    /// nothing, so it is run again (see [`past_wines_start_up`]); any other outcome, failures
    /// included, is the program's own and is returned as it is.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let shown = format!("mailcall-cli.exe {}", args.join(" "));
        let start = || {
            let mut cmd = self.command(args);
            run_with_timeout(&mut cmd, stdin.map(str::as_bytes), DEFAULT_TIMEOUT)
                .unwrap_or_else(|e| panic!("cannot run {shown} under Wine: {e}"))
        };
        let done = past_wines_start_up(&shown, start, |done| {
            let code = done.status.and_then(|s| s.code());
            wine_failed_at_start(code, &done.stdout, &done.stderr).then(|| {
                format!(
                    "exit {code:?} after {:.1?}; its stderr: {}",
                    done.elapsed,
                    done.stderr.trim()
                )
            })
        });
        CliOutput::of_run(shown, done)
    }

    /// Runs it to completion.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_stdin(args, None)
    }

    /// Starts it in the background (stopped by its PID when dropped).
    pub fn spawn(&self, args: &[&str]) -> RunningCli {
        RunningCli::start(
            self.command(args),
            format!("mailcall-cli.exe {}", args.join(" ")),
        )
    }

    /// Starts it in the background and waits (up to `limit`) until its output (stdout or
    /// stderr, where the daemon logs) contains `needle`, or it ends. A start that Wine ended
    /// before the program ran (see [`wine_failed_at_start`]) is made again (see
    /// [`past_wines_start_up`]); any other outcome is returned as it is, for the caller to check.
    pub fn spawn_until(&self, args: &[&str], needle: &str, limit: Duration) -> RunningCli {
        let start = || {
            let mut run = self.spawn(args);
            crate::poll_until(limit, Duration::from_millis(20), || {
                (run.said(needle) || run.exited().is_some()).then_some(())
            });
            run
        };
        let shown = format!("mailcall-cli.exe {}", args.join(" "));
        past_wines_start_up(&shown, start, |run| {
            let code = run.exited()?.code();
            // Its stderr is read on a thread: give the pipe's last bytes a moment to arrive.
            crate::poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
                let lines = run.stdout_lines().join("\n");
                wine_failed_at_start(code, &lines, &run.stderr()).then_some(())
            })?;
            Some(format!(
                "exit {code:?}; its stderr: {}",
                run.stderr().trim()
            ))
        })
    }

    /// Starts `daemon ARGS` and waits until it logs that it runs.
    pub fn daemon(&self, args: &[&str]) -> RunningCli {
        let mut argv = vec!["daemon"];
        argv.extend_from_slice(args);
        let limit = Duration::from_secs(60);
        self.spawn_until(&argv, "mailcall daemon running", limit)
            .until_daemon_runs(limit, " under Wine")
    }
}

/// How many times one command is started at most, when Wine ends it before the program ran.
const WINE_STARTS: u32 = 3;

/// Starts a command with `start` until Wine lets the program run, at most [`WINE_STARTS`]
/// times: a start that Wine ended before the program's first instruction did nothing, so it is
/// made again, and said on stderr. `never_started` says of one start what shows it was such a
/// start (for that line), or `None` when the program ran; the last start is returned as it is.
fn past_wines_start_up<T>(
    shown: &str,
    mut start: impl FnMut() -> T,
    mut never_started: impl FnMut(&mut T) -> Option<String>,
) -> T {
    let mut starts = 1;
    loop {
        let mut outcome = start();
        if starts == WINE_STARTS {
            return outcome;
        }
        let Some(why) = never_started(&mut outcome) else {
            return outcome;
        };
        eprintln!("{shown}: Wine ended it before the program started ({why}): starting it again");
        starts += 1;
    }
}

/// Whether a run is Wine failing to start the process rather than the program failing: exit
/// code 1, nothing on stdout, and on stderr only Wine's own `err:virtual:` lines (the program's
/// every failure says `error: ...`). Nothing of the program ran, so nothing was done.
pub fn wine_failed_at_start(code: Option<i32>, stdout: &str, stderr: &str) -> bool {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty()).peekable();
    code == Some(1)
        && stdout.trim().is_empty()
        && lines.peek().is_some()
        && lines.all(|l| l.contains(":err:virtual:"))
}

#[cfg(test)]
mod tests {
    use super::{past_wines_start_up, wine_failed_at_start, WINE_STARTS};

    /// Starts numbered from 1, `never_started` judging each: (the start returned, starts made).
    fn starts_made(never_started: impl Fn(u32) -> bool) -> (u32, u32) {
        let mut starts = 0;
        let returned = past_wines_start_up(
            "cmd",
            || {
                starts += 1;
                starts
            },
            |n| never_started(*n).then(|| "exit Some(1)".to_string()),
        );
        (returned, starts)
    }

    #[test]
    fn a_start_wine_ended_is_made_again_up_to_the_limit_and_no_other_is() {
        // Wine ends the first two starts, the third runs: three starts, the third returned.
        assert_eq!(starts_made(|n| n < 3), (3, 3));
        // Wine ends every start: the last one allowed is returned as it is.
        assert_eq!(starts_made(|_| true), (WINE_STARTS, WINE_STARTS));
        // The program ran (whatever it then did): one start.
        assert_eq!(starts_made(|_| false), (1, 1));
    }

    #[test]
    fn only_wines_own_start_up_error_counts_as_a_run_that_never_started() {
        let wine =
            "0024:err:virtual:virtual_map_user_shared_data failed to remap the process USD: 24\n";
        assert!(wine_failed_at_start(Some(1), "", wine));
        // The program's own failure, an exit 1 that says nothing, other codes, and output: not.
        assert!(!wine_failed_at_start(
            Some(1),
            "",
            "error: nothing answers\n"
        ));
        assert!(!wine_failed_at_start(
            Some(1),
            "",
            &format!("{wine}error: the account is unknown\n")
        ));
        assert!(!wine_failed_at_start(Some(1), "", ""));
        assert!(!wine_failed_at_start(Some(2), "", wine));
        assert!(!wine_failed_at_start(None, "", wine));
        assert!(!wine_failed_at_start(Some(1), "paused\n", wine));
    }
}
