//! The `mailcall` binary: the tray app; with `--fetch` a request to fetch now (handed to the
//! running instance, or run headless when there is none); with `--window` the tray's settings
//! window, in a process of its own.
#![forbid(unsafe_code)]
// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

/// The exit code when there is no graphical session to show the tray in (`EX_UNAVAILABLE`).
const NO_DISPLAY: u8 = 69;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILCALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: mailcall [--tray] [--fetch] [--window [--tab NAME]]\n  --tray    start in the tray without opening the settings window\n  --fetch   ask the running Mailcall to fetch now; with none running, fetch headless and exit\n  --window  the settings window of the Mailcall running in the tray (the tray starts it so), at the tab NAME if given");
        return ExitCode::SUCCESS;
    }
    let mut tab = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--tray"
            | mailcall_app::remote::FETCH_FLAG
            | mailcall_app::window_link::WINDOW_FLAG => {}
            mailcall_app::window_link::TAB_FLAG => match rest.next() {
                Some(name) => tab = Some(name.clone()),
                None => {
                    eprintln!("mailcall: --tab needs the name of a tab (accounts, queue, history ...); see `mailcall --help`");
                    return ExitCode::from(2);
                }
            },
            bad => {
                eprintln!("mailcall: unknown argument {bad:?}; see `mailcall --help`");
                return ExitCode::from(2);
            }
        }
    }
    if args.iter().any(|a| a == mailcall_app::remote::FETCH_FLAG) {
        return mailcall_app::remote::fetch_from_command_line();
    }
    if let Some(missing) = mailcall_app::no_display() {
        eprintln!("mailcall: {missing}");
        return ExitCode::from(NO_DISPLAY);
    }
    if args
        .iter()
        .any(|a| a == mailcall_app::window_link::WINDOW_FLAG)
    {
        return match mailcall_app::window_app::run(tab) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mailcall: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let launch = mailcall_app::Launch {
        tray_only: args.iter().any(|a| a == "--tray"),
    };
    match mailcall_app::run(launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailcall: {e}");
            ExitCode::FAILURE
        }
    }
}
