//! The turned line: once the ISP said `250` to ATRN, Mailcall is the SMTP server on the same
//! connection (TLS included) and the ISP the client. The session is the listener's own
//! ([`crate::listener::serve`]: greeting, EHLO, relay policy, every limit, durable delivery),
//! over a [`Reception`] derived from the service's for this turn: the same settings, policy and
//! Maildir, waits bounded by the fetch's idle timeout (a provider that goes quiet must not hold
//! the fetch for the listener's 5-minute command timeout), the fetch's stop token, and the
//! events counted on their way to the service's channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::Stream;
use crate::listener::{self, ListenerEvent, ListenerSettings, Reception};

/// What a turn needs from the fetch session around it.
#[derive(Clone)]
pub struct Turnaround {
    /// The service's reception (settings, recipient policy, Maildir, event channel).
    pub reception: Arc<Reception>,
    /// The fetch's idle timeout: the longest the ISP may stay silent on the turned line.
    pub idle_timeout: Duration,
    /// Cancelled when the fetch ends early (max wait, shutdown): the turned session then ends
    /// as the listener's do at shutdown (421 at the next command; a message in DATA finishes).
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Turnaround {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turnaround")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// What one turn stored.
#[derive(Debug, Default)]
pub struct TurnReport {
    /// The Message-ID of each message stored and acknowledged (`None`: it had none).
    pub stored: Vec<Option<String>>,
}

impl Turnaround {
    /// The listener's settings with every wait bounded by the idle timeout.
    fn settings(&self) -> ListenerSettings {
        let mut settings = (*self.reception.settings).clone();
        settings.command_timeout = settings.command_timeout.min(self.idle_timeout);
        settings.data_timeout = settings.data_timeout.min(self.idle_timeout);
        settings
    }

    /// Serves the ISP's deliveries on `stream` until it says QUIT, goes silent, or the fetch
    /// stops; `leftover` is what it sent after its 250 before we took the stream back.
    pub async fn serve(&self, stream: Stream, leftover: Vec<u8>, peer: SocketAddr) -> TurnReport {
        let secure = stream.is_tls();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reception = Arc::new(Reception::new(
            Arc::new(self.settings()),
            self.reception.policy.clone(),
            self.reception.maildir.clone(),
            tx,
            self.stop.clone(),
        ));
        let onward = self.reception.events.clone();
        let session = listener::serve(stream, peer, secure, leftover, reception);
        // The derived reception (and its sender) goes with the session: the channel ends then.
        let forward = async move {
            let mut report = TurnReport::default();
            while let Some(ev) = rx.recv().await {
                if let ListenerEvent::Stored(info) = &ev {
                    report.stored.push(info.message_id.clone());
                }
                let _ = onward.send(ev);
            }
            report
        };
        let ((), report) = tokio::join!(session, forward);
        report
    }
}
