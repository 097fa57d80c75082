//! Bounces for a tool that cannot send mail out: a delivery status notification (RFC 3464,
//! `multipart/report; report-type=delivery-status`) with the whole message attached, stored in
//! the postmaster's Maildir (the `maildir` setting, the catch-all) instead of being mailed to
//! the sender. Mailcall only receives; the postmaster reads the report and tells the sender (or
//! forwards the attached message) by hand. A local file cannot fail or loop, so a bounce never
//! needs a bounce.

use chrono::{DateTime, Utc};

use super::{Entry, Headline};

/// What a DSN reports.
#[derive(Debug, Clone)]
pub struct Bounce<'a> {
    /// Our host name (`Reporting-MTA`, the `From:` domain).
    pub host: &'a str,
    /// The spooled message.
    pub entry: &'a Entry,
    /// Its From/Subject/Message-ID.
    pub headline: &'a Headline,
    /// The recipients given up (indices into the envelope).
    pub recipients: &'a [usize],
    /// Why, in words (who gave up, and what the server said last).
    pub reason: &'a str,
    /// When.
    pub at: DateTime<Utc>,
    /// Who it is for, and what it says.
    pub notice: Notice,
}

/// Who a report is for and what it tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The postmaster: mail for a LAN server given up (Mailcall cannot mail the sender).
    Postmaster,
    /// The sender of outgoing mail (a local user): these recipients were given up.
    Failed,
    /// The sender of outgoing mail: these recipients are still being tried (`delay-warning`),
    /// until the given time (`max-queue-lifetime`).
    Delayed {
        /// When Mailcall gives up.
        until: DateTime<Utc>,
    },
}

/// The `Status:` of a recipient given up after `reply`: the server's own enhanced code for a
/// 5xx, else 5.4.7 (given up before the server took it).
fn status_of(reply: Option<&str>) -> String {
    enhanced_code(reply, '5').unwrap_or_else(|| "5.4.7".to_string())
}

/// The `Status:` of a recipient still being tried after `reply`: the server's own enhanced
/// code for a 4xx, else 4.4.7 (delivery time not yet expired).
fn delayed_status_of(reply: Option<&str>) -> String {
    enhanced_code(reply, '4').unwrap_or_else(|| "4.4.7".to_string())
}

/// The enhanced status code of a `class`xx reply (`550 5.1.1 ...`), if it carries one.
fn enhanced_code(reply: Option<&str>, class: char) -> Option<String> {
    let mut words = reply?.split_whitespace();
    let basic = words.next()?;
    let enhanced = words.next()?;
    let parts: Vec<&str> = enhanced.split('.').collect();
    let valid = basic.starts_with(class)
        && parts.len() == 3
        && parts[0].starts_with(class)
        && parts[0].len() == 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| enhanced.to_string())
}

/// The DSN as a complete message (CRLF line ends), ready to store.
pub fn build(bounce: &Bounce<'_>, message: &[u8]) -> Vec<u8> {
    let entry = bounce.entry;
    let host = bounce.host;
    let boundary = format!(
        "=_mailcall-dsn-{}-{}",
        entry.id,
        bounce.at.timestamp_micros()
    );
    let date = bounce.at.with_timezone(&chrono::Local).to_rfc2822();
    let arrival = entry
        .envelope
        .received_at
        .with_timezone(&chrono::Local)
        .to_rfc2822();
    let subject = bounce
        .headline
        .subject
        .as_deref()
        .unwrap_or("(no subject)")
        .replace(['\r', '\n'], " ");
    let sender = if entry.envelope.sender.is_empty() {
        "<>".to_string()
    } else {
        format!("<{}>", entry.envelope.sender)
    };
    let mut lines = Vec::new();
    let mut per_recipient = String::new();
    for &i in bounce.recipients {
        let Some(r) = entry.envelope.recipients.get(i) else {
            continue;
        };
        let state = entry.state.recipients.get(i).cloned().unwrap_or_default();
        let reply = state.reply.as_deref();
        lines.push(format!(
            "  <{}> via {}: {}",
            r.address,
            r.target,
            reply.unwrap_or("never tried")
        ));
        let (action, status) = match bounce.notice {
            Notice::Delayed { .. } => ("delayed", delayed_status_of(reply)),
            Notice::Postmaster | Notice::Failed => ("failed", status_of(reply)),
        };
        per_recipient.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {addr}\r\nOriginal-Recipient: rfc822; {addr}\r\nAction: {action}\r\nStatus: {status}\r\n",
            addr = r.address,
        ));
        if let Some(remote) = remote_host(&r.target) {
            per_recipient.push_str(&format!("Remote-MTA: dns; {remote}\r\n"));
        }
        if let Some(reply) = reply {
            per_recipient.push_str(&format!(
                "Diagnostic-Code: smtp; {}\r\n",
                reply.replace(['\r', '\n'], " ")
            ));
        }
        if let Some(last) = state.last_attempt {
            per_recipient.push_str(&format!(
                "Last-Attempt-Date: {}\r\n",
                last.with_timezone(&chrono::Local).to_rfc2822()
            ));
        }
        if let Notice::Delayed { until } = bounce.notice {
            per_recipient.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                until.with_timezone(&chrono::Local).to_rfc2822()
            ));
        }
    }
    // Outgoing mail goes back to its sender, a local user; a LAN hand-over's report stays
    // with the postmaster (Mailcall cannot mail the outside sender).
    let (to, title, story, ending) = match bounce.notice {
        Notice::Failed => (
            sender.clone(),
            "Undelivered Mail Returned to Sender",
            format!("Mailcall ({host}) could not send your message of {arrival} to these\r\nrecipients:"),
            "Mailcall gave them up. Your whole message is attached below: check the\r\naddresses and send it again.".to_string(),
        ),
        Notice::Delayed { until } => (
            sender.clone(),
            "Delayed Mail (still being retried)",
            format!("Mailcall ({host}) has not been able to send your message of {arrival} to\r\nthese recipients yet:"),
            format!(
                "This is a warning only: you do not need to send the message again. Mailcall\r\nkeeps trying until {}; if it cannot send it by then, you get\r\nanother report. Your message is attached below.",
                until.with_timezone(&chrono::Local).to_rfc2822()
            ),
        ),
        Notice::Postmaster => (
            "postmaster".to_string(),
            "Undelivered Mail Returned to Sender",
            format!("Mailcall ({host}) received this message from {sender} on {arrival} and could\r\nnot hand it on to the server of these recipients:"),
            "Mailcall only receives mail, so this report was not sent to the sender. The\r\nwhole message is attached below: forward it, or tell the sender, as needed.".to_string(),
        ),
    };
    let mut out = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: {to}\r\n\
         Subject: {title}: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{id}.{micros}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {story}\r\n\
         \r\n\
         {list}\r\n\
         \r\n\
         {reason}\r\n\
         \r\n\
         {ending}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Mailcall-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n\
         {per_recipient}\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Undelivered Message\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n",
        id = entry.id,
        micros = bounce.at.timestamp_micros(),
        list = lines.join("\r\n"),
        reason = bounce.reason,
    )
    .into_bytes();
    out.extend_from_slice(message);
    if !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Stores `report` for `sender`, a local user (outgoing mail's sender), through the routes of
/// incoming mail, durably, as mail from `<>`; returns once it is stored.
pub async fn deliver_to_sender(
    router: &super::copies::Router,
    host: &str,
    sender: &str,
    report: &[u8],
) -> std::io::Result<()> {
    let target = router
        .route(sender)
        .unwrap_or_else(|| router.default_target());
    let date = chrono::Local::now().to_rfc2822();
    let received = move |_: &[String], id: &str| {
        format!("Received: by {host} (Mailcall) id {id};\r\n\t{date}\r\n")
    };
    let mut copies = router
        .open("", "Mailcall", &[(sender.to_owned(), target)], &received)
        .await?;
    copies.write(report).await?;
    copies.commit().await?;
    Ok(())
}

/// The server's host for `Remote-MTA`, when it has one (not a unix socket or a Maildir).
fn remote_host(target: &crate::routing::Target) -> Option<String> {
    use crate::client::Address;
    use crate::routing::Destination;
    match &target.destination {
        Destination::Lmtp(Address::Tcp { host, .. }) | Destination::Smtp { host, .. } => {
            Some(host.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::{Envelope, QueuedRecipient, RecipientState, State, Status};

    #[test]
    fn a_dsn_reports_each_recipient_and_carries_the_message() {
        let target: crate::routing::Target =
            crate::routing::Route::parse("*", "lmtp:127.0.0.1:24", None, None)
                .unwrap()
                .target;
        let entry = Entry {
            name: "1.M1P1Q1.host".into(),
            id: "1.M1P1Q1".into(),
            envelope: Envelope {
                received_at: Utc::now(),
                sender: "s@outside.test".into(),
                recipients: vec![
                    QueuedRecipient {
                        address: "a@x.test".into(),
                        target: target.clone(),
                    },
                    QueuedRecipient {
                        address: "b@x.test".into(),
                        target,
                    },
                ],
                peer: "127.0.0.1".into(),
            },
            state: State {
                recipients: vec![
                    RecipientState {
                        status: Status::Failed,
                        reply: Some("550 5.1.1 <a@x.test> User doesn't exist".into()),
                        ..Default::default()
                    },
                    RecipientState {
                        reply: Some("connection refused".into()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            data_offset: 0,
            size: 0,
        };
        let headline = Headline {
            subject: Some("Hi".into()),
            ..Default::default()
        };
        let message = b"Subject: Hi\r\n\r\nbody\r\n";
        let dsn = build(
            &Bounce {
                host: "mx.test",
                entry: &entry,
                headline: &headline,
                recipients: &[0, 1],
                reason: "The postmaster bounced it.",
                at: Utc::now(),
                notice: Notice::Postmaster,
            },
            message,
        );
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("report-type=delivery-status"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; a@x.test\r\nOriginal-Recipient: rfc822; a@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; b@x.test"), "{text}");
        assert!(text.contains("Status: 5.4.7"), "{text}");
        assert!(text.contains("Remote-MTA: dns; 127.0.0.1"), "{text}");
        assert!(
            text.contains("Content-Type: message/rfc822\r\n\r\nSubject: Hi\r\n\r\nbody\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'),
            "CRLF only"
        );
        // A reader parses it as a report with three parts.
        let parsed = mail_parser::MessageParser::new().parse(&dsn).unwrap();
        assert_eq!(parsed.parts.len(), 4, "{parsed:#?}");
        assert_eq!(status_of(Some("451 4.3.0 later")), "5.4.7");
        assert_eq!(status_of(Some("554 5.7.1 no")), "5.7.1");
    }

    #[test]
    fn a_delay_warning_says_delayed_and_until_when() {
        let target = crate::routing::Target::smarthost("isp");
        let entry = Entry {
            name: "1.M1P1Q1.host".into(),
            id: "1.M1P1Q1".into(),
            envelope: Envelope {
                received_at: Utc::now(),
                sender: "me@office.test".into(),
                recipients: vec![QueuedRecipient {
                    address: "you@far.test".into(),
                    target,
                }],
                peer: "local".into(),
            },
            state: State {
                recipients: vec![RecipientState {
                    reply: Some("451 4.7.1 greylisted, try later".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            data_offset: 0,
            size: 0,
        };
        let until = Utc::now() + chrono::Duration::days(5);
        let dsn = build(
            &Bounce {
                host: "gw.test",
                entry: &entry,
                headline: &Headline::default(),
                recipients: &[0],
                reason: "The outgoing server keeps deferring it.",
                at: Utc::now(),
                notice: Notice::Delayed { until },
            },
            b"Subject: x\r\n\r\nbody\r\n",
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("To: <me@office.test>\r\n"), "{text}");
        assert!(text.contains("Subject: Delayed Mail"), "{text}");
        assert!(
            text.contains("Action: delayed\r\nStatus: 4.7.1\r\n"),
            "{text}"
        );
        assert!(text.contains("Will-Retry-Until: "), "{text}");
        assert!(!text.contains("Action: failed"), "{text}");
        assert_eq!(delayed_status_of(Some("connection refused")), "4.4.7");
    }
}
