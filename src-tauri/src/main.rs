//! The `mailcall` binary: the tray app, or with `--fetch` a request to fetch now (handed to the
//! running instance, or run headless when there is none).
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
        println!("usage: mailcall [--tray] [--fetch]\n  --tray   start in the tray without opening the settings window\n  --fetch  ask the running Mailcall to fetch now; with none running, fetch headless and exit");
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = args
        .iter()
        .find(|a| !matches!(a.as_str(), "--tray" | mailcall_app::remote::FETCH_FLAG))
    {
        eprintln!("mailcall: unknown argument {bad:?}; see `mailcall --help`");
        return ExitCode::from(2);
    }
    if args.iter().any(|a| a == mailcall_app::remote::FETCH_FLAG) {
        return mailcall_app::remote::fetch_from_command_line();
    }
    if let Some(missing) = mailcall_app::no_display() {
        eprintln!("mailcall: {missing}");
        return ExitCode::from(NO_DISPLAY);
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
