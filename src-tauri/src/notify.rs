//! Desktop notifications off the UI thread: a worker sends them one at a time, each with a time
//! limit, so a hung notification daemon can never freeze the tray or the window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::status::Notice;

/// How long one notification may take to be accepted by the daemon.
const SEND_LIMIT: Duration = Duration::from_secs(5);
/// At most this many notifications wait; more are dropped (the tray shows the state anyway).
const QUEUE_LIMIT: usize = 16;

/// Sends notices to the desktop's notification daemon from a worker thread.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::SyncSender<Notice>,
    enabled: Arc<AtomicBool>,
}

impl Notifier {
    /// Starts the worker; `enabled` is the user's on/off switch.
    pub fn start(enabled: bool) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Notice>(QUEUE_LIMIT);
        let spawned = std::thread::Builder::new()
            .name("notifications".into())
            .spawn(move || worker(rx));
        if let Err(e) = spawned {
            tracing::warn!("notifications are off: cannot start their thread: {e}");
        }
        Notifier {
            tx,
            enabled: Arc::new(AtomicBool::new(enabled)),
        }
    }

    /// Switches notifications on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Whether notifications are on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Queues notices; never blocks (a full queue drops them).
    pub fn send(&self, notices: Vec<Notice>) {
        if !self.is_enabled() {
            return;
        }
        for n in notices {
            if self.tx.try_send(n).is_err() {
                tracing::warn!("notification dropped: the notification daemon is not keeping up");
            }
        }
    }
}

fn worker(rx: mpsc::Receiver<Notice>) {
    // Set while a send is stuck in the daemon; later notices are dropped until it returns, so
    // at most one thread ever waits on a hung daemon.
    let stuck = Arc::new(AtomicBool::new(false));
    while let Ok(notice) = rx.recv() {
        if stuck.load(Ordering::SeqCst) {
            tracing::warn!("notification dropped: the notification daemon does not answer");
            continue;
        }
        let (done_tx, done_rx) = mpsc::channel();
        let flag = stuck.clone();
        flag.store(true, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("notification-send".into())
            .spawn(move || {
                let result = show(&notice);
                flag.store(false, Ordering::SeqCst);
                let _ = done_tx.send(result);
            });
        if spawned.is_err() {
            stuck.store(false, Ordering::SeqCst);
            continue;
        }
        match done_rx.recv_timeout(SEND_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not show a notification: {e}"),
            Err(_) => tracing::warn!(
                "the notification daemon did not answer within {SEND_LIMIT:?}; dropping notifications until it does"
            ),
        }
    }
}

/// Notification servers may read the body as markup: `<alice@example.com>` must stay text.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn show(notice: &Notice) -> Result<(), notify_rust::error::Error> {
    let mut n = notify_rust::Notification::new();
    // A subject's bidi overrides would reorder the notification as they would a terminal line.
    n.appname("Mailcall")
        .summary(&mailcall_core::printable::line(&notice.summary))
        .body(&escape_markup(&mailcall_core::printable::text(
            &notice.body,
        )))
        .icon("mail-message-new");
    if notice.is_error {
        n.icon("dialog-error");
        // Urgency is a freedesktop notification hint: notify-rust has it only where that
        // protocol is spoken (Linux and the BSDs); Windows toasts have no such level.
        #[cfg(all(unix, not(target_os = "macos")))]
        n.urgency(notify_rust::Urgency::Critical);
    }
    n.show().map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_in_angle_brackets_stay_text() {
        assert_eq!(
            super::escape_markup("Alice <a@x.test> — Q&A"),
            "Alice &lt;a@x.test&gt; — Q&amp;A"
        );
    }
}
