//! mailcall-bench-listener: runs `mailcall_core::service::start` with one account whose domain
//! the listener accepts, never asks for a fetch, and stops on SIGTERM/SIGINT. It is the listener
//! and durable Maildir delivery of `mailcall-cli fetch`/`daemon` without the keyring, for
//! benches/run.sh.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use mailcall_core::account::{Account, FetchMode, Security};
use mailcall_core::client::ClientSettings;
use mailcall_core::event::EventSink;
use mailcall_core::fetch::FetchOptions;
use mailcall_core::history::Trigger;
use mailcall_core::listener::ListenerSettings;
use mailcall_core::service::{self, ServiceOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: mailcall-bench-listener ADDR:PORT MAILDIR DOMAIN MAX_MESSAGE_BYTES";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, maildir, domain, max] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let parsed = (|| -> Result<_, String> {
        let listen: SocketAddr = listen.parse().map_err(|e| format!("{listen}: {e}"))?;
        let max: u64 = max.parse().map_err(|e| format!("{max}: {e}"))?;
        let domain = domain.parse().map_err(|e| format!("{domain}: {e}"))?;
        Ok((listen, max, domain))
    })();
    let (listen, max, domain) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bad argument {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let options = ServiceOptions {
        listen,
        maildir: PathBuf::from(maildir),
        listener: ListenerSettings::new("mailcall.bench".into(), max),
        fetch: FetchOptions {
            trigger: Trigger::Unknown,
            idle_timeout: std::time::Duration::from_secs(5),
            max_wait: std::time::Duration::from_secs(60),
            client: ClientSettings::default(),
            history: None,
        },
        // No routes: everything into the Maildir, as before routes existed.
        routing: mailcall_core::spool::copies::RoutingOptions::without_routes(
            PathBuf::from(maildir).with_extension("spool"),
        ),
    };
    // The account is never asked (no fetch is requested): it only tells the listener its domain.
    let account = Account {
        name: "bench".into(),
        // ETRN: the listener is what this binary is for.
        mode: FetchMode::Etrn,
        host: "127.0.0.1".into(),
        port: 9,
        security: Security::None,
        username: None,
        password: None,
        password_command: None,
        helo: None,
        ca_file: None,
        domains: vec![domain],
        link: Default::default(),
        outgoing: None,
    };
    // The same runtime as mailcall-cli.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot watch SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        let service =
            match service::start(options, vec![account], EventSink::default(), shutdown).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
        match service.listen_addr() {
            Some(addr) => println!("listening on {addr}"),
            None => {
                eprintln!("the service runs without a listener");
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        service.stop().await;
        ExitCode::SUCCESS
    })
}
