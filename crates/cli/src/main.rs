//! mailcall-cli: the command-line front end over mailcall-core (accounts, fetch, check, config,
//! history, the daemon and its control).
#![forbid(unsafe_code)]

mod account;
mod daemon;
mod failure;
mod fetch;
mod generate;
mod hints;
mod history;
mod logging;
mod output;
mod queue;
mod route;
mod running;
mod sendmail;
mod settings;
mod smarthost_args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mailcall: ask your ISP to release the mail it holds for your domains (ETRN, or ODMR's ATRN)
/// and receive it safely into a Maildir.
#[derive(Debug, Parser)]
#[command(name = "mailcall-cli", version, about)]
pub struct Cli {
    /// The config file (default: the platform config directory, or $MAILCALL_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Say more: log what Mailcall does on stderr (twice: debug detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only errors (for cron): the exit code tells the rest.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add, change, list or remove ISP accounts (kept in the OS keyring).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Ask the ISP(s) for the mail (ETRN or ATRN) and receive it into the Maildir.
    Fetch(fetch::FetchArgs),
    /// Connect to an account's ISP and report TLS, AUTH and whether ETRN and ATRN are advertised.
    Check {
        /// The account to check.
        name: String,
        /// One JSON object: what the server offers, and the error if any.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the preferences.
    #[command(subcommand)]
    Config(settings::ConfigCommand),
    /// Show recent fetch sessions.
    History(history::HistoryArgs),
    /// Run the listener and the automatic triggers (network up, schedule, control socket)
    /// without a GUI, logging to stderr, until SIGTERM or SIGINT.
    Daemon(daemon::DaemonArgs),
    /// Pause automatic fetching (link-up, interval, start), in the running daemon or tray and
    /// for the next start. Manual fetches still work.
    Pause,
    /// Resume automatic fetching.
    Resume,
    /// Show whether a daemon or tray runs, and its state (exit 3 when none runs).
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Say where each recipient's mail goes: a Maildir (or Maildir++ folder), or a LAN server
    /// over LMTP or SMTP.
    #[command(subcommand)]
    Route(route::RouteCommand),
    /// Show the mail waiting to be handed on to LAN servers; retry, bounce or delete it.
    Queue(queue::QueueArgs),
    /// Queue a message from standard input for sending, as sendmail does (for mutt, cron,
    /// scripts): [-t] [-f SENDER] [-i] [--] [RECIPIENT...]. It leaves at the next fetch.
    Sendmail(sendmail::SendmailArgs),
    /// Send the outgoing mail waiting in the queue now, through each account's outgoing server.
    Send(sendmail::SendArgs),
    /// Shell completions and man pages from these definitions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log is its only output: it says what it does by default.
    let level = match (cli.verbose, matches!(cli.command, Command::Daemon(_))) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    output::set_quiet(cli.quiet);
    let log_file = match &cli.command {
        Command::Daemon(args) => args.log_file(),
        _ => None,
    };
    if let Err(failure) = logging::init(level, log_file) {
        return failure.report();
    }
    if let Some(path) = &cli.config {
        // Hints name the same file, from wherever they are typed.
        let full = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        hints::set_config(&full);
    }
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Account(cmd) => account::run(config, cmd),
        Command::Fetch(args) => fetch::run(config, args),
        Command::Check { name, json } => fetch::check(config, &name, json),
        Command::Config(cmd) => settings::run(config, cmd),
        Command::History(args) => history::run(config, args),
        Command::Daemon(args) => daemon::run(config, args),
        Command::Pause => running::set_paused(config, true),
        Command::Resume => running::set_paused(config, false),
        Command::Status { json } => running::status(config, json),
        Command::Route(cmd) => route::run(config, cmd),
        Command::Queue(args) => queue::run(config, args),
        Command::Sendmail(args) => sendmail::run(config, args),
        Command::Send(args) => sendmail::send(config, args),
        Command::Generate(cmd) => generate::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
