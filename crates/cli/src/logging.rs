//! Where the log goes and how it looks: stderr (colour only on a terminal); the journal's own
//! line format when stderr is the journal (`JOURNAL_STREAM`, as under the systemd user unit): a
//! syslog priority prefix per line, no colour, no timestamp; or an appended 0600 file
//! (`daemon --log-file`).

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::failure::Failure;

/// Installs the global subscriber: level `default_level` unless `MAILCALL_LOG` says otherwise;
/// to `log_file` when given, else to stderr in the journal's format when stderr is the journal.
pub fn init(default_level: &str, log_file: Option<&Path>) -> Result<(), Failure> {
    let filter = || {
        EnvFilter::try_from_env("MAILCALL_LOG").unwrap_or_else(|_| EnvFilter::new(default_level))
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter());
    if let Some(path) = log_file {
        let file = open_log_file(path)?;
        builder.with_writer(Arc::new(file)).with_ansi(false).init();
    } else if stderr_is_journal() {
        builder
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(JournalLines)
            .init();
    } else {
        builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    Ok(())
}

/// Opens `path` for appending, creating it readable by its owner only (the log names accounts,
/// hosts and senders).
fn open_log_file(path: &Path) -> Result<File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        Failure::setup(format!(
            "cannot open the log file {} for appending: {e}; choose a writable path with --log-file",
            path.display()
        ))
    })
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM=DEVICE:INODE` for the
/// stream it connects, and a program checks it against its own stderr (systemd.exec(5)) — a
/// child whose stderr was redirected inherits the variable but not the stream.
fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| parse_stream(&v))
    else {
        return false;
    };
    stderr_identity().is_some_and(|actual| actual == expected)
}

/// `DEVICE:INODE` (decimal) as systemd writes it.
fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The device and inode of the file stderr is (fstat on a duplicate of fd 2).
#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// No journal streams outside Unix.
#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

/// The syslog priority journald reads from a `<N>` line prefix (sd-daemon(3)).
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One event as journal lines: `<priority>message fields`, each line of a multi-line message
/// with its own prefix (journald takes every line as an entry); the journal adds the time.
struct JournalLines;

impl<S, N> FormatEvent<S, N> for JournalLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut text = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut text), event)?;
        let prio = priority(event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{prio}>{line}")?;
        }
        if text.is_empty() {
            writeln!(writer, "<{prio}>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    /// A MakeWriter into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn journal_output(emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("trace"))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .event_format(JournalLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn levels_become_syslog_priorities_without_time_or_colour() {
        let out = journal_output(|| {
            tracing::error!("cannot bind");
            tracing::warn!("no accounts");
            tracing::info!(listen = "127.0.0.1:25", "running");
            tracing::debug!("detail");
            tracing::trace!("more");
        });
        assert_eq!(
            out,
            "<3>cannot bind\n<4>no accounts\n<6>running listen=\"127.0.0.1:25\"\n<7>detail\n<7>more\n"
        );
        assert!(!out.contains('\u{1b}'), "no ANSI escapes: {out:?}");
    }

    #[test]
    fn every_line_of_a_multi_line_message_keeps_its_priority() {
        let out = journal_output(|| tracing::error!("first\nsecond"));
        assert_eq!(out, "<3>first\n<3>second\n");
    }

    #[test]
    fn journal_stream_is_parsed_as_systemd_writes_it() {
        assert_eq!(parse_stream("8:1234567"), Some((8, 1234567)));
        assert_eq!(parse_stream("8:12\n"), Some((8, 12)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("a:b"), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_log_file_is_private_and_appended_to() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        open_log_file(&path).unwrap().write_all(b"one\n").unwrap();
        open_log_file(&path).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(open_log_file(&dir.path().join("missing").join("x.log")).is_err());
    }
}
