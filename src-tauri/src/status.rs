//! What the tray shows: the state machine from core events (of the Mailcall running here, or
//! of the daemon this tray fronts) to icon state, tooltip, status line, the Pause check mark and
//! the notifications to send. Pure — no Tauri, no D-Bus — so every mapping is unit-tested.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Local, Utc};
use mailcall_core::account::FetchMode;
use mailcall_core::config::ConfigKey;
use mailcall_core::event::Event;
use mailcall_core::hint::{Problem, Setting};
use mailcall_core::history::SessionRecord;
use mailcall_core::report::{
    DomainOutcome, DomainReport, HandOverOutcome, HandOverReport, MessageInfo,
};
use serde::Serialize;

use crate::hints;

/// Up to this many new messages get one notification each; more get one summary per domain.
pub const MAX_SINGLE_NOTICES: usize = 3;

/// A notification's title for a fetch that went wrong.
const FETCH_SUMMARY: &str = "Mailcall could not fetch";
/// A notification's title for a domain refused while the others were fetched.
const PARTIAL_SUMMARY: &str = "Mailcall fetched, but the ISP refused a domain";
/// A notification's title for a listener that cannot take mail (no fetch ran).
const RECEIVE_SUMMARY: &str = "Mailcall cannot receive mail";

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IconState {
    /// Nothing going on.
    Idle,
    /// A fetch session runs.
    Fetching,
    /// The last fetch brought mail the user has not looked at yet.
    NewMail,
    /// The last fetch failed, or the service could not start.
    Error,
}

impl IconState {
    /// The PNG for this state (generated from `icons/tray-*.svg`).
    pub fn png(self) -> &'static [u8] {
        match self {
            IconState::Idle => include_bytes!("../../icons/tray-idle.png"),
            IconState::Fetching => include_bytes!("../../icons/tray-fetching.png"),
            IconState::NewMail => include_bytes!("../../icons/tray-new.png"),
            IconState::Error => include_bytes!("../../icons/tray-error.png"),
        }
    }
}

/// A desktop notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The title line.
    pub summary: String,
    /// The text below it.
    pub body: String,
    /// Errors get the critical urgency.
    pub is_error: bool,
}

/// The last finished fetch, for the status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastFetch {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Whether every ETRN was accepted and nothing failed.
    pub ok: bool,
    /// Messages stored.
    pub messages: usize,
    /// The first problem, when not ok.
    pub problem: Option<String>,
    /// Some domains were refused, the others fetched.
    pub partial: bool,
}

/// Who runs Mailcall for this tray.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Serving {
    /// Nothing yet, or the start failed.
    #[default]
    NotRunning,
    /// Mailcall runs in this tray; scripts reach it on `control`.
    Here {
        /// The control socket it answers on.
        control: Option<String>,
    },
    /// A Mailcall daemon (or another tray) runs; this tray is a front end to it.
    Daemon {
        /// Its control socket.
        socket: String,
        /// How it differs from this tray's config file (listener, accounts), if it does: it may
        /// run with another config file, or with `--listen`.
        #[serde(skip_serializing_if = "Option::is_none")]
        differs: Option<String>,
    },
}

impl Serving {
    /// A sentence for the window's Settings tab.
    pub fn note(&self) -> String {
        match self {
            Serving::NotRunning => "Mailcall is not running".into(),
            Serving::Here { control: Some(path) } => format!(
                "Mailcall runs in this tray. Scripts reach it through {path} (`mailcall --fetch`, `mailcall-cli fetch --via-running`)"
            ),
            Serving::Here { control: None } => "Mailcall runs in this tray".into(),
            Serving::Daemon { socket, differs } => {
                let mut note = format!(
                    "Using the running Mailcall daemon at {socket}: Fetch now, Pause and account changes go to it. Changes to the settings above apply when it restarts"
                );
                if let Some(d) = differs {
                    note.push_str(&format!(". Note: {d}"));
                }
                note
            }
        }
    }
}

/// The tray's view of the service, fed one core event at a time.
#[derive(Debug, Clone, Default)]
pub struct TrayStatus {
    serving: Serving,
    paused: bool,
    fetching: bool,
    received: usize,
    unseen: usize,
    error: Option<String>,
    last: Option<LastFetch>,
    /// Error texts already notified; cleared by a successful fetch, so an ISP that stays down
    /// over many automatic retries gives one notification, not one per attempt.
    notified_errors: HashSet<String>,
    /// Recipients waiting in the spool for a LAN server, and those a server refused.
    queue: (usize, usize),
    /// How each account fetches, by name: shown wherever an account is named.
    modes: BTreeMap<String, FetchMode>,
    /// The accounts the running fetch asked (empty: not known, e.g. joined a daemon mid-fetch).
    asked: Vec<String>,
    /// LAN servers that could not be reached and were notified; cleared when mail reaches them
    /// again or the queue empties, so a server that stays down gives one notification.
    unreachable: HashSet<String>,
    /// The listener as it is now, for the line under the window's *Listen on*.
    listener: ListenerLine,
    /// No account yet: Mailcall waits for the first one (no listener, no fetch).
    no_accounts: bool,
}

/// The listener in a sentence (the Settings tab's line under *Listen on*), and whether it is a
/// problem to fix there. Set by whoever starts Mailcall, and by listener errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListenerLine {
    /// `Listening on 127.0.0.1:6525`, or why not.
    pub text: String,
    /// Mail cannot be received: shown as an error next to the field.
    pub problem: bool,
}

/// Whether `problem` is the listener's (fixed at *Listen on*).
pub fn is_listener_problem(problem: &Problem) -> bool {
    matches!(
        problem.fix,
        Some(Setting::Config {
            key: ConfigKey::Listen
        })
    )
}

/// A snapshot for the settings window (sent with the `mailcall://status` event).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The icon state.
    pub state: IconState,
    /// The tooltip text.
    pub tooltip: String,
    /// The status line of the menu.
    pub line: String,
    /// Whether a fetch runs now.
    pub fetching: bool,
    /// Whether automatic fetching is paused (the menu's check mark).
    pub paused: bool,
    /// Who runs Mailcall (this tray, or the daemon it fronts).
    pub serving: Serving,
    /// The same in a sentence, for the Settings tab.
    pub note: String,
    /// Recipients waiting in Mailcall's queue for a LAN mail server.
    pub queued: usize,
    /// Recipients a LAN mail server refused, held in the queue.
    pub refused: usize,
    /// The queue in a few words (the menu's queue item, the window's Queue tab); `None` when
    /// nothing waits.
    pub queue_line: Option<String>,
    /// The error in full (the line shortens it), for the window to wrap.
    pub error: Option<String>,
    /// When the last fetch ended: the window writes the time in the user's locale, as History.
    pub last_at: Option<DateTime<Utc>>,
    /// The line without its time: `: OK, 2 messages` after `Last fetch TIME` (with `last_at`).
    pub line_rest: String,
    /// The listener now (the Settings tab's line under *Listen on*).
    pub listener: ListenerLine,
    /// No account yet: the window leads through adding the first one.
    pub no_accounts: bool,
}

impl TrayStatus {
    /// Applies one event; returns the notifications it calls for (before the on/off switch).
    pub fn apply(&mut self, event: &Event) -> Vec<Notice> {
        match event {
            Event::SessionStarted { accounts, .. } => {
                self.fetching = true;
                self.received = 0;
                self.asked = accounts.clone();
                Vec::new()
            }
            // Asking again is progress; a refusal that outlasts it is the session's Error.
            Event::EtrnReply { .. }
            | Event::AtrnReply { .. }
            | Event::AskingAgain { .. }
            | Event::Connected { .. } => Vec::new(),
            Event::MessageStored(info) => {
                if self.fetching {
                    self.received += 1;
                    Vec::new()
                } else {
                    // Delivered by the ISP on its own, outside a fetch: tell the user now.
                    self.unseen += 1;
                    mail_notices(std::slice::from_ref(info.as_ref()))
                }
            }
            Event::Error(problem) if is_hand_over_problem(problem) => {
                self.hand_over_problem(problem).into_iter().collect()
            }
            Event::Error(problem) => {
                let text = self.render(problem);
                if is_listener_problem(problem) {
                    self.listener = ListenerLine {
                        text: format!("Mailcall cannot receive mail: {}", problem.message),
                        problem: true,
                    };
                }
                if !self.fetching {
                    // Outside a fetch (listener trouble): the state shows it until the next fetch.
                    self.error = Some(text.clone());
                }
                let summary = if is_listener_problem(problem) {
                    RECEIVE_SUMMARY
                } else {
                    FETCH_SUMMARY
                };
                self.error_notice(summary, text).into_iter().collect()
            }
            Event::SessionFinished(record) => self.finish(record),
            Event::HandOver(report) => self.hand_over(report),
            // The history changed; the hand-overs it records were shown as they happened.
            Event::Recorded(_) => Vec::new(),
            Event::QueueChanged { queued, failed } => {
                self.queue = (*queued, *failed);
                if *queued == 0 {
                    self.unreachable.clear();
                }
                Vec::new()
            }
        }
    }

    /// How each account fetches (read when Mailcall starts and after every account edit): the
    /// mode is shown wherever the tray names an account.
    pub fn set_account_modes(&mut self, modes: impl IntoIterator<Item = (String, FetchMode)>) {
        self.modes = modes.into_iter().collect();
    }

    /// How the accounts fetch, as last learnt.
    pub fn account_modes(&self) -> Vec<FetchMode> {
        self.modes.values().copied().collect()
    }

    /// `isp (ODMR)`: an account's name with how it fetches, when that is known.
    pub fn account_words(&self, account: &str) -> String {
        match self.modes.get(account) {
            Some(mode) => format!("{account} ({})", mode_word(*mode)),
            None => account.to_string(),
        }
    }

    /// A problem in the window's words, its account named with its mode.
    pub fn render(&self, problem: &Problem) -> String {
        match &problem.account {
            Some(a) => {
                let mut named = problem.clone();
                named.account = Some(self.account_words(a));
                hints::render(&named)
            }
            None => hints::render(problem),
        }
    }

    /// A problem handing mail on to a LAN server: a server that cannot be reached is notified
    /// once (until mail reaches it again); a refusal is notified from its hand-over report,
    /// which names the recipient and the reply. Neither is a failed fetch.
    fn hand_over_problem(&mut self, problem: &Problem) -> Option<Notice> {
        let target = problem
            .message
            .strip_prefix(UNREACHABLE_PREFIX)
            .and_then(|rest| rest.split_once(": "))
            .map(|(target, _)| target.to_string())?;
        self.unreachable.insert(target).then(|| Notice {
            summary: "Mail waits for the LAN mail server".into(),
            body: self.render(problem),
            is_error: false,
        })
    }

    /// A hand-over to a LAN server: each recipient it refused for good gets a notification
    /// naming the recipient and the server's reply; mail that reached the server ends its
    /// "cannot be reached" state.
    fn hand_over(&mut self, report: &HandOverReport) -> Vec<Notice> {
        if report
            .recipients
            .iter()
            .any(|r| r.outcome == HandOverOutcome::Delivered)
        {
            self.unreachable.remove(&report.target);
        }
        report
            .recipients
            .iter()
            .filter(|r| r.outcome == HandOverOutcome::Failed)
            .map(|r| Notice {
                summary: "The LAN mail server refused mail".into(),
                body: format!(
                    "{} refused {}: {}\nThe message ({}) is held in Mailcall's queue: retry, bounce or delete it under Queue in the Mailcall window.",
                    report.target,
                    r.address,
                    r.reply,
                    report
                        .subject
                        .as_deref()
                        .map(|s| format!("{s:?}"))
                        .unwrap_or_else(|| report.id.clone()),
                ),
                is_error: true,
            })
            .collect()
    }

    /// The service could not start (bind refused, Maildir unusable), or a request to it failed.
    /// A listener that cannot bind is said as such: no fetch ran, mail cannot be received.
    pub fn service_failed(&mut self, problem: &Problem) -> Vec<Notice> {
        let text = self.render(problem);
        self.fetching = false;
        self.error = Some(text.clone());
        let summary = if is_listener_problem(problem) {
            self.listener = ListenerLine {
                text: format!("Mailcall cannot receive mail: {}", problem.message),
                problem: true,
            };
            RECEIVE_SUMMARY
        } else {
            FETCH_SUMMARY
        };
        self.error_notice(summary, text).into_iter().collect()
    }

    /// The listener as it is now (after a start, an account edit, a stop).
    pub fn set_listener(&mut self, line: ListenerLine) {
        self.listener = line;
    }

    /// The listener as last set.
    pub fn listener(&self) -> &ListenerLine {
        &self.listener
    }

    /// Whether Mailcall waits for a first account.
    pub fn no_accounts(&self) -> bool {
        self.no_accounts
    }

    /// Whether there is no account yet (the first run: nothing runs until one is added).
    pub fn set_no_accounts(&mut self, none: bool) {
        self.no_accounts = none;
        if none {
            self.error = None;
        }
    }

    /// Mailcall (re)started — here, or found running as a daemon: a start error no longer
    /// applies. Using a daemon is said once in a notification.
    pub fn service_started(&mut self, serving: Serving) -> Vec<Notice> {
        if self.last.as_ref().is_none_or(|l| l.ok) {
            self.error = None;
        }
        let news = self.serving != serving;
        self.serving = serving;
        match &self.serving {
            Serving::Daemon { socket, .. } if news => vec![Notice {
                summary: "Mailcall uses the running daemon".into(),
                body: format!(
                    "A Mailcall daemon already runs ({socket}): this tray shows its fetches and asks it to fetch."
                ),
                is_error: false,
            }],
            _ => Vec::new(),
        }
    }

    /// The daemon this tray fronted stopped; Mailcall is about to start here.
    pub fn daemon_lost(&mut self) -> Vec<Notice> {
        let Serving::Daemon { socket, .. } = std::mem::take(&mut self.serving) else {
            return Vec::new();
        };
        self.fetching = false;
        vec![Notice {
            summary: "The Mailcall daemon stopped".into(),
            body: format!(
                "The daemon at {socket} is gone: Mailcall now runs in the tray (listener, automatic fetching, control socket)."
            ),
            is_error: false,
        }]
    }

    /// Mailcall stopped (Quit, or before a restart).
    pub fn stopped(&mut self) {
        self.serving = Serving::NotRunning;
        self.fetching = false;
    }

    /// The pause switch as it is now (whoever flipped it); returns whether it changed.
    pub fn set_paused(&mut self, paused: bool) -> bool {
        std::mem::replace(&mut self.paused, paused) != paused
    }

    /// A session runs (or not) as the daemon's STATUS says, for a tray that joined mid-session.
    pub fn set_fetching(&mut self, fetching: bool) -> bool {
        let changed = self.fetching != fetching;
        if changed {
            self.fetching = fetching;
            self.received = 0;
        }
        changed
    }

    /// Who runs Mailcall.
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// The user looked at the mail (opened the folder): the new-mail badge goes.
    pub fn mail_seen(&mut self) {
        self.unseen = 0;
    }

    fn finish(&mut self, record: &SessionRecord) -> Vec<Notice> {
        self.fetching = false;
        self.received = 0;
        self.asked.clear();
        let ok = record.succeeded();
        let problem = self.first_problem(record);
        self.last = Some(LastFetch {
            at: record.finished_at,
            ok,
            messages: record.message_count(),
            problem: problem.clone(),
            partial: record.is_partial(),
        });
        // New is what the last fetch brought (and mail delivered outside a fetch since): a fetch
        // that brought nothing is not "3 messages new" any more.
        self.unseen = record.message_count();
        let mut notices = if record.unlisted_messages == 0 {
            mail_notices(&record.messages)
        } else {
            // A large drain lists only its first messages: say the counts of its domain lines.
            record
                .domains
                .iter()
                .filter(|d| d.messages > 0)
                .map(|d| Notice {
                    summary: "New mail".into(),
                    body: format!(
                        "{} for {}",
                        plural(d.messages as usize, "new message"),
                        d.domain
                    ),
                    is_error: false,
                })
                .collect()
        };
        if ok {
            self.error = None;
            self.notified_errors.clear();
        } else {
            self.error = problem;
            // Errors of the session itself were notified as they happened (Event::Error); the
            // refused domains only show up here.
            for d in record.domains.iter().filter(|d| !d.outcome.is_accepted()) {
                if d.outcome == DomainOutcome::NotSent {
                    continue;
                }
                let text = self.domain_words(d);
                // Some domains fetched: the fetch did not fail, a domain was refused.
                let summary = if record.is_partial() {
                    PARTIAL_SUMMARY
                } else {
                    FETCH_SUMMARY
                };
                notices.extend(self.error_notice(summary, text));
            }
        }
        notices
    }

    fn error_notice(&mut self, summary: &str, text: String) -> Option<Notice> {
        if !self.notified_errors.insert(text.clone()) {
            return None;
        }
        Some(Notice {
            summary: summary.into(),
            body: text,
            is_error: true,
        })
    }

    /// `example.com (isp, ODMR): the ISP turned the line around to deliver`: one domain's
    /// result in the mode's words.
    fn domain_words(&self, d: &DomainReport) -> String {
        format!(
            "{} ({}, {}): {}",
            d.domain,
            d.account,
            mode_word(d.mode),
            d.explain()
        )
    }

    fn first_problem(&self, record: &SessionRecord) -> Option<String> {
        if let Some(p) = record.errors.first() {
            return Some(self.render(p));
        }
        record
            .domains
            .iter()
            .find(|d| !d.outcome.is_accepted())
            .map(|d| self.domain_words(d))
    }

    /// " from isp (ODMR)": the accounts the running fetch asked, for the tooltip and the line.
    fn fetching_from(&self) -> String {
        const SHOWN: usize = 2;
        if self.asked.is_empty() {
            return String::new();
        }
        let mut names: Vec<String> = self
            .asked
            .iter()
            .take(SHOWN)
            .map(|a| self.account_words(a))
            .collect();
        if self.asked.len() > SHOWN {
            names.push(format!("{} more", self.asked.len() - SHOWN));
        }
        format!(" from {}", names.join(", "))
    }

    /// The queue in a few words; `None` when nothing waits and nothing was refused.
    pub fn queue_words(&self) -> Option<String> {
        match self.queue {
            (0, 0) => None,
            (queued, 0) => Some(format!("{queued} waiting for the LAN mail server")),
            (0, failed) => Some(format!("{failed} refused by the LAN mail server")),
            (queued, failed) => Some(format!(
                "{queued} waiting for the LAN mail server, {failed} refused by it"
            )),
        }
    }

    /// The icon to show.
    pub fn icon(&self) -> IconState {
        if self.fetching {
            IconState::Fetching
        } else if self.error.is_some() || self.queue.1 > 0 {
            IconState::Error
        } else if self.unseen > 0 {
            IconState::NewMail
        } else {
            IconState::Idle
        }
    }

    /// Whether a fetch runs.
    pub fn is_fetching(&self) -> bool {
        self.fetching
    }

    /// The tooltip: the state in a few words.
    pub fn tooltip(&self) -> String {
        let text = match self.icon() {
            IconState::Fetching => format!(
                "Mailcall — fetching{}… {} so far",
                self.fetching_from(),
                plural(self.received, "message")
            ),
            IconState::Error => match &self.error {
                Some(e) => format!("Mailcall — error: {e}"),
                // Only mail a LAN server refused: the queue words below say it.
                None => "Mailcall".into(),
            },
            IconState::NewMail => format!("Mailcall — {} new", plural(self.unseen, "message")),
            IconState::Idle => match &self.last {
                Some(_) => format!("Mailcall — idle. {}", self.line()),
                None => "Mailcall — idle".into(),
            },
        };
        let text = match self.queue_words() {
            None => text,
            Some(q) if text == "Mailcall" => format!("{text} — {q}: see Queue in the window"),
            Some(q) => format!("{text}; {q}"),
        };
        match &self.serving {
            Serving::Daemon { .. } => format!("{text} (using the running daemon)"),
            _ => text,
        }
    }

    /// The disabled status line in the menu: last fetch, when, result, messages — and, when
    /// this tray fronts a daemon, that it does.
    pub fn line(&self) -> String {
        let line = self.fetch_line();
        match &self.serving {
            Serving::Daemon { .. } => format!("{line} · via daemon"),
            _ => line,
        }
    }

    fn fetch_line(&self) -> String {
        match self.line_parts() {
            (Some(at), rest) => format!(
                "Last fetch {}{rest}",
                at.with_timezone(&Local).format("%H:%M")
            ),
            (None, line) => line,
        }
    }

    /// The status line split at its time: the last fetch's end and the rest after it, or the
    /// whole line when it has no time.
    fn line_parts(&self) -> (Option<DateTime<Utc>>, String) {
        if self.no_accounts && !self.fetching {
            return (
                None,
                "No account yet: add your ISP's account under Accounts".into(),
            );
        }
        if self.fetching {
            return (
                None,
                format!(
                    "Fetching{}… {} so far",
                    self.fetching_from(),
                    plural(self.received, "message")
                ),
            );
        }
        match &self.last {
            None => match &self.error {
                Some(e) if self.listener.problem => {
                    (None, format!("Cannot receive mail: {}", shorten(e, 60)))
                }
                Some(e) => (None, format!("Not running: {}", shorten(e, 60))),
                None => (None, "Last fetch: never".into()),
            },
            Some(last) => {
                let result = if last.ok {
                    "OK".to_string()
                } else if last.partial {
                    format!(
                        "partly OK ({})",
                        shorten(last.problem.as_deref().unwrap_or("see History"), 40)
                    )
                } else {
                    format!(
                        "failed ({})",
                        shorten(last.problem.as_deref().unwrap_or("see History"), 40)
                    )
                };
                (
                    Some(last.at),
                    format!(": {result}, {}", plural(last.messages, "message")),
                )
            }
        }
    }

    /// The snapshot for the window.
    pub fn view(&self) -> StatusView {
        StatusView {
            state: self.icon(),
            tooltip: self.tooltip(),
            line: self.line(),
            fetching: self.fetching,
            paused: self.paused,
            serving: self.serving.clone(),
            note: self.serving.note(),
            queued: self.queue.0,
            refused: self.queue.1,
            queue_line: self.queue_words(),
            error: self.error.clone(),
            last_at: self.line_parts().0,
            line_rest: match &self.serving {
                Serving::Daemon { .. } => format!("{} · via daemon", self.line_parts().1),
                _ => self.line_parts().1,
            },
            listener: self.listener.clone(),
            no_accounts: self.no_accounts,
        }
    }
}

/// How problems handing mail on to a LAN server start when the server cannot be reached
/// (the spool runner's words; a unit test pins them).
const UNREACHABLE_PREFIX: &str = "cannot hand mail on to ";

/// Whether a problem is about handing mail on to a LAN server (the spool's problems point at
/// the routes), not about fetching.
fn is_hand_over_problem(problem: &Problem) -> bool {
    matches!(
        &problem.fix,
        Some(Setting::Config {
            key: ConfigKey::Routes
        })
    ) && problem.account.is_none()
}

/// `ETRN` or `ODMR`, as the window's mode selector says it.
pub fn mode_word(mode: FetchMode) -> &'static str {
    match mode {
        FetchMode::Etrn => "ETRN",
        FetchMode::Odmr => "ODMR",
    }
}

/// "From — Subject" for a few messages; beyond that one summary per recipient domain.
pub fn mail_notices(messages: &[MessageInfo]) -> Vec<Notice> {
    if messages.is_empty() {
        return Vec::new();
    }
    if messages.len() <= MAX_SINGLE_NOTICES {
        return messages
            .iter()
            .map(|m| Notice {
                summary: "New mail".into(),
                body: format!(
                    "{} — {}",
                    sender_of(m),
                    m.subject.as_deref().unwrap_or("(no subject)")
                ),
                is_error: false,
            })
            .collect();
    }
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for m in messages {
        let domain = m
            .recipients
            .first()
            .and_then(|r| r.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_else(|| "your domains".into());
        *per_domain.entry(domain).or_default() += 1;
    }
    per_domain
        .into_iter()
        .map(|(domain, n)| Notice {
            summary: "New mail".into(),
            body: format!("{} for {domain}", plural(n, "new message")),
            is_error: false,
        })
        .collect()
}

fn sender_of(m: &MessageInfo) -> &str {
    match &m.from {
        Some(f) if !f.trim().is_empty() => f,
        _ if m.sender.is_empty() => "Mail system",
        _ => &m.sender,
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The first line of `text` (a menu item has one), cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let text = text.lines().next().unwrap_or_default();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mailcall_core::hint::AccountField;
    use mailcall_core::history::{EndReason, RecordKind, Trigger};
    use mailcall_core::report::DomainReport;

    fn message(from: &str, subject: &str, to: &str) -> MessageInfo {
        MessageInfo {
            sender: "bounce@sender.test".into(),
            recipients: vec![to.into()],
            from: Some(from.into()),
            subject: Some(subject.into()),
            message_id: None,
            size: 100,
            path: "/m/new/1".into(),
            peer: "127.0.0.1:1".into(),
            stored_at: Utc::now(),
            copies: Vec::new(),
        }
    }

    fn record(messages: Vec<MessageInfo>, outcome: DomainOutcome, errors: &[Problem]) -> Event {
        let mut r = SessionRecord::new(
            RecordKind::Fetch,
            Trigger::Tray,
            Utc::now(),
            EndReason::Idle,
        );
        r.domains = vec![DomainReport {
            account: "isp".into(),
            domain: "example.com".into(),
            code: Some(250),
            text: "ok".into(),
            outcome,
            attempts: 1,
            messages: messages.len() as u32,
            mode: Default::default(),
        }];
        r.messages = messages;
        r.errors = errors.to_vec();
        Event::SessionFinished(Box::new(r))
    }

    fn started() -> Event {
        Event::SessionStarted {
            id: "s".into(),
            trigger: Trigger::Tray,
            accounts: vec!["isp".into()],
            listen: Some("127.0.0.1:2525".parse().unwrap()),
        }
    }

    #[test]
    fn idle_then_fetching_counts_messages_then_new_mail() {
        let mut s = TrayStatus::default();
        assert_eq!(s.icon(), IconState::Idle);
        assert_eq!(s.line(), "Last fetch: never");
        assert!(s.apply(&started()).is_empty());
        assert_eq!(s.icon(), IconState::Fetching);
        let m = message("Alice <alice@a.test>", "Hello", "bob@example.com");
        assert!(s
            .apply(&Event::MessageStored(Box::new(m.clone())))
            .is_empty());
        assert_eq!(
            s.tooltip(),
            "Mailcall — fetching from isp… 1 message so far"
        );
        assert_eq!(s.line(), "Fetching from isp… 1 message so far");
        let notices = s.apply(&record(
            vec![m],
            DomainOutcome::Started { expected: None },
            &[],
        ));
        assert_eq!(s.icon(), IconState::NewMail);
        assert_eq!(s.tooltip(), "Mailcall — 1 message new");
        assert!(s.line().ends_with(": OK, 1 message"), "{}", s.line());
        assert_eq!(
            notices,
            vec![Notice {
                summary: "New mail".into(),
                body: "Alice <alice@a.test> — Hello".into(),
                is_error: false
            }]
        );
        s.mail_seen();
        assert_eq!(s.icon(), IconState::Idle);
        assert!(s.tooltip().starts_with("Mailcall — idle. Last fetch"));
    }

    #[test]
    fn many_messages_give_one_summary_per_domain() {
        let mut msgs: Vec<MessageInfo> = (0..12)
            .map(|i| message("a@x.test", &format!("m{i}"), "u@example.com"))
            .collect();
        msgs.push(message("a@x.test", "other", "u@Example.ORG"));
        let notices = mail_notices(&msgs);
        let bodies: Vec<&str> = notices.iter().map(|n| n.body.as_str()).collect();
        assert_eq!(
            bodies,
            [
                "12 new messages for example.com",
                "1 new message for example.org"
            ]
        );
        let few = mail_notices(&msgs[..3]);
        assert_eq!(few.len(), 3);
        assert_eq!(few[2].body, "a@x.test — m2");
    }

    #[test]
    fn a_drain_larger_than_its_list_is_counted_whole() {
        let mut s = TrayStatus::default();
        s.apply(&started());
        let Event::SessionFinished(mut r) = record(
            vec![message("a@x.test", "first", "u@example.com")],
            DomainOutcome::Started { expected: None },
            &[],
        ) else {
            unreachable!()
        };
        // One message listed, 2 500 more only counted (as a fetch records a large drain).
        r.unlisted_messages = 2500;
        r.domains[0].messages = 2501;
        let notices = s.apply(&Event::SessionFinished(r));
        let bodies: Vec<&str> = notices.iter().map(|n| n.body.as_str()).collect();
        assert_eq!(bodies, ["2501 new messages for example.com"]);
        assert!(s.tooltip().contains("2501 messages new"), "{}", s.tooltip());
    }

    #[test]
    fn missing_from_and_subject_fall_back() {
        let mut m = message("", "", "u@example.com");
        m.from = None;
        m.subject = None;
        assert_eq!(
            mail_notices(&[m.clone()])[0].body,
            "bounce@sender.test — (no subject)"
        );
        m.sender.clear();
        assert_eq!(mail_notices(&[m])[0].body, "Mail system — (no subject)");
    }

    #[test]
    fn one_notification_per_distinct_error_until_a_fetch_succeeds() {
        let mut s = TrayStatus::default();
        let cannot = Problem::new("cannot connect").for_account("isp");
        let down = Event::Error(cannot.clone());
        for round in 0..3 {
            s.apply(&started());
            let n = s.apply(&down);
            assert_eq!(n.len(), usize::from(round == 0), "round {round}: {n:?}");
            s.apply(&record(
                vec![],
                DomainOutcome::NotSent,
                std::slice::from_ref(&cannot),
            ));
            assert_eq!(s.icon(), IconState::Error);
            assert!(s.tooltip().contains("cannot connect"), "{}", s.tooltip());
            assert!(
                s.line().contains("failed (isp: cannot connect)"),
                "{}",
                s.line()
            );
        }
        let other = Event::Error(Problem::new("disk full"));
        let n = s.apply(&other);
        assert_eq!(n.len(), 1);
        assert!(n[0].is_error);
        assert_eq!(n[0].body, "disk full");
        s.apply(&started());
        s.apply(&record(vec![], DomainOutcome::NoMail, &[]));
        assert_eq!(s.icon(), IconState::Idle);
        assert_eq!(s.apply(&down).len(), 1, "a success resets the dedup");
    }

    #[test]
    fn refused_domain_is_an_error_notice_with_advice() {
        let mut s = TrayStatus::default();
        s.apply(&started());
        let n = s.apply(&record(vec![], DomainOutcome::NotAllowed, &[]));
        assert_eq!(n.len(), 1);
        assert!(
            n[0].body
                .starts_with("example.com (isp, ETRN): the ISP does not hold mail"),
            "{}",
            n[0].body
        );
        assert_eq!(s.icon(), IconState::Error);
    }

    #[test]
    fn odmr_accounts_are_named_with_their_mode_and_their_results_in_atrn_words() {
        let mut s = TrayStatus::default();
        s.set_account_modes([
            ("isp".to_string(), FetchMode::Odmr),
            ("work".to_string(), FetchMode::Etrn),
        ]);
        s.apply(&Event::SessionStarted {
            id: "s".into(),
            trigger: Trigger::Tray,
            accounts: vec!["isp".into(), "work".into(), "third".into()],
            listen: None,
        });
        assert_eq!(
            s.tooltip(),
            "Mailcall — fetching from isp (ODMR), work (ETRN), 1 more… 0 messages so far"
        );
        let n = s.apply(&Event::Error(
            Problem::new("the ISP refused the password (535)")
                .for_account("isp")
                .fixed_by(Some(Setting::account("isp", AccountField::Password))),
        ));
        assert_eq!(
            n[0].body,
            "isp (ODMR): the ISP refused the password (535)\nTo fix: Settings → Accounts → isp → Password"
        );
        let Event::SessionFinished(mut r) = record(vec![], DomainOutcome::NotAllowed, &[]) else {
            unreachable!()
        };
        r.domains[0].mode = FetchMode::Odmr;
        let n = s.apply(&Event::SessionFinished(r));
        assert!(
            n[0].body
                .starts_with("example.com (isp, ODMR): the ISP refused the ATRN request (450)"),
            "{n:?}"
        );
        assert!(
            s.line().contains("failed (example.com (isp, ODMR)"),
            "{}",
            s.line()
        );
    }

    fn hand_over(outcome: HandOverOutcome, reply: &str) -> Event {
        Event::HandOver(Box::new(HandOverReport {
            id: "1764150000.M1P2Q1".into(),
            target: "lmtp:127.0.0.1:24".into(),
            sender: "sender@outside.test".into(),
            message_id: Some("m1@outside.test".into()),
            subject: Some("Minutes".into()),
            recipients: vec![mailcall_core::report::RecipientOutcome {
                address: "nobody@example.com".into(),
                outcome,
                reply: reply.into(),
            }],
            at: Utc::now(),
        }))
    }

    fn unreachable(when: &str) -> Event {
        Event::Error(
            Problem::new(format!("cannot hand mail on to lmtp:127.0.0.1:24: connection refused; 1 message(s) wait in Mailcall's queue and are retried by themselves from {when}. Check that the server runs, and the route's destination"))
                .fixed_by(Some(Setting::config(ConfigKey::Routes))),
        )
    }

    #[test]
    fn a_lan_server_down_is_told_once_and_mail_waiting_for_it_is_no_fetch_error() {
        let mut s = TrayStatus::default();
        let n = s.apply(&unreachable("10:00:00"));
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].summary, "Mail waits for the LAN mail server");
        assert!(
            n[0].body.ends_with("To fix: Settings → Delivery → Routes"),
            "{n:?}"
        );
        assert!(!n[0].is_error);
        assert!(
            s.apply(&unreachable("10:01:00")).is_empty(),
            "the next retry's words differ, but it is the same server down"
        );
        s.apply(&Event::QueueChanged {
            queued: 2,
            failed: 0,
        });
        assert_eq!(s.icon(), IconState::Idle, "waiting mail is not an error");
        assert_eq!(
            s.tooltip(),
            "Mailcall — idle; 2 waiting for the LAN mail server"
        );
        assert_eq!(
            s.view().queue_line.as_deref(),
            Some("2 waiting for the LAN mail server")
        );
        // The server takes mail again: the next time it is down is news again.
        s.apply(&hand_over(HandOverOutcome::Delivered, "250 2.0.0 Saved"));
        assert_eq!(s.apply(&unreachable("11:00:00")).len(), 1);
        s.apply(&Event::QueueChanged {
            queued: 0,
            failed: 0,
        });
        assert_eq!(s.view().queue_line, None);
        assert_eq!(s.tooltip(), "Mailcall — idle");
    }

    #[test]
    fn the_spools_words_for_a_server_down_are_the_ones_matched() {
        let runner = include_str!("../../crates/core/src/spool/runner/scheduler.rs");
        assert!(
            runner.contains(&format!("\"{UNREACHABLE_PREFIX}{{target}}: {{error}};")),
            "the spool scheduler words an unreachable server differently now: update UNREACHABLE_PREFIX"
        );
    }

    #[test]
    fn a_refused_hand_over_notifies_once_naming_the_recipient_and_the_reply() {
        let mut s = TrayStatus::default();
        // The spool says it as a problem too: the report is what notifies.
        let said = s.apply(&Event::Error(
            Problem::new("lmtp:127.0.0.1:24 refused nobody@example.com for good (550 5.1.1 User doesn't exist): the message 1764150000.M1P2Q1 is held in Mailcall's queue; fix the route or the server (is nobody@example.com a user there?), then retry it, or bounce or delete it")
                .fixed_by(Some(Setting::config(ConfigKey::Routes))),
        ));
        assert!(said.is_empty(), "{said:?}");
        let n = s.apply(&hand_over(
            HandOverOutcome::Failed,
            "550 5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com",
        ));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].is_error);
        assert_eq!(n[0].summary, "The LAN mail server refused mail");
        assert!(
            n[0].body.starts_with("lmtp:127.0.0.1:24 refused nobody@example.com: 550 5.1.1 <nobody@example.com> User doesn't exist"),
            "{}",
            n[0].body
        );
        assert!(n[0].body.contains("\"Minutes\""), "{}", n[0].body);
        assert!(
            n[0].body.contains("under Queue in the Mailcall window")
                && !n[0].body.contains("mailcall-cli"),
            "{}",
            n[0].body
        );
        s.apply(&Event::QueueChanged {
            queued: 0,
            failed: 1,
        });
        assert_eq!(s.icon(), IconState::Error, "refused mail needs the user");
        assert_eq!(
            s.tooltip(),
            "Mailcall — 1 refused by the LAN mail server: see Queue in the window"
        );
        assert!(s.line().starts_with("Last fetch: never"), "{}", s.line());
        s.apply(&Event::QueueChanged {
            queued: 1,
            failed: 1,
        });
        assert_eq!(
            s.view().queue_line.as_deref(),
            Some("1 waiting for the LAN mail server, 1 refused by it")
        );
        s.apply(&Event::QueueChanged {
            queued: 0,
            failed: 0,
        });
        assert_eq!(s.icon(), IconState::Idle);
    }

    #[test]
    fn unsolicited_delivery_notifies_at_once() {
        let mut s = TrayStatus::default();
        let n = s.apply(&Event::MessageStored(Box::new(message(
            "Carol <c@x.test>",
            "Late",
            "u@example.com",
        ))));
        assert_eq!(n[0].body, "Carol <c@x.test> — Late");
        assert_eq!(s.icon(), IconState::NewMail);
    }

    #[test]
    fn errors_say_where_in_the_window_to_fix_them() {
        let mut s = TrayStatus::default();
        let p = Problem::new("the certificate could not be verified")
            .for_account("isp")
            .fixed_by(Some(Setting::account("isp", AccountField::CaFile)));
        let n = s.apply(&Event::Error(p));
        assert_eq!(
            n[0].body,
            "isp: the certificate could not be verified\nTo fix: Settings → Accounts → isp → CA file"
        );
        assert!(
            s.tooltip().contains("Settings → Accounts → isp → CA file"),
            "{}",
            s.tooltip()
        );
    }

    #[test]
    fn a_daemon_front_end_says_so_once_and_when_the_daemon_goes() {
        let mut s = TrayStatus::default();
        let daemon = Serving::Daemon {
            socket: "/run/user/1/mailcall/control.sock".into(),
            differs: None,
        };
        let n = s.service_started(daemon.clone());
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(!n[0].is_error);
        assert!(s.service_started(daemon).is_empty(), "said once");
        assert_eq!(s.line(), "Last fetch: never · via daemon");
        assert!(
            s.tooltip().ends_with("(using the running daemon)"),
            "{}",
            s.tooltip()
        );
        assert!(s.view().serving != Serving::NotRunning);
        let n = s.daemon_lost();
        assert_eq!(n.len(), 1);
        assert!(
            n[0].body.contains("/run/user/1/mailcall/control.sock"),
            "{n:?}"
        );
        assert_eq!(s.line(), "Last fetch: never");
        assert!(s.daemon_lost().is_empty());
        assert!(s.set_paused(true));
        assert!(!s.set_paused(true));
        assert!(s.view().paused);
    }

    #[test]
    fn service_failure_shows_until_it_starts() {
        let mut s = TrayStatus::default();
        let n = s.service_failed(
            &Problem::new("cannot listen on 0.0.0.0:25")
                .fixed_by(Some(Setting::config(ConfigKey::Listen))),
        );
        assert_eq!(n.len(), 1);
        assert!(
            n[0].body
                .ends_with("To fix: Settings → Settings tab → Listen on"),
            "{n:?}"
        );
        assert_eq!(s.icon(), IconState::Error);
        // No fetch ran: the listener's failure is said as such, and at Listen on.
        assert_eq!(n[0].summary, "Mailcall cannot receive mail");
        assert!(
            s.line().starts_with("Cannot receive mail: cannot listen"),
            "{}",
            s.line()
        );
        let view = s.view();
        assert!(view.listener.problem, "{view:?}");
        assert_eq!(
            view.listener.text,
            "Mailcall cannot receive mail: cannot listen on 0.0.0.0:25"
        );
        s.service_started(Serving::Here { control: None });
        assert_eq!(s.icon(), IconState::Idle);
        // Another start failure is no listener's: it is not said to be one.
        let n = s.service_failed(&Problem::new("the Maildir cannot be created"));
        assert_eq!(n[0].summary, "Mailcall could not fetch");
    }

    #[test]
    fn the_new_mail_count_is_the_last_fetchs_and_a_partial_fetch_says_so() {
        let mut s = TrayStatus::default();
        s.apply(&started());
        s.apply(&record(
            vec![message("a@x", "one", "u@example.com")],
            DomainOutcome::Started { expected: None },
            &[],
        ));
        assert_eq!(s.tooltip(), "Mailcall — 1 message new");
        s.apply(&started());
        s.apply(&record(Vec::new(), DomainOutcome::NoMail, &[]));
        assert_eq!(s.icon(), IconState::Idle, "{}", s.tooltip());
        assert!(
            s.tooltip().starts_with("Mailcall — idle. Last fetch"),
            "{}",
            s.tooltip()
        );
        // The window gets the line's time apart, to write it in the user's locale.
        let view = s.view();
        assert!(view.last_at.is_some());
        assert_eq!(view.line_rest, ": OK, 0 messages");
    }

    #[test]
    fn every_state_has_a_png() {
        for st in [
            IconState::Idle,
            IconState::Fetching,
            IconState::NewMail,
            IconState::Error,
        ] {
            assert!(st.png().starts_with(b"\x89PNG"), "{st:?}");
        }
    }
}
