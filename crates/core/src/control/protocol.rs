//! The control protocol, written and read here only — by the server and the client alike: the
//! requests (one line each, [`Request`]) and the replies (one JSON line each, [`Reply`]).
//!
//! | request | reply |
//! |---|---|
//! | `FETCH [trigger=WORD] [send=no] [account ...]` | `{"ok":true,"record":{...}}` once the session ended (its history record); `trigger=` names the front end that asked (`tray`, `window`, `cli`; default `control`); `send=no` only receives (the outgoing queue is not sent first) |
//! | `PAUSE` / `RESUME` | `{"ok":true,"paused":bool}` |
//! | `STATUS` | `{"ok":true,"paused":bool,"fetching":bool,"links":[...],"listen":"ADDR","accounts":[...],"config":"PATH"}` |
//! | `RELOAD` | `{"ok":true,"skipped":[...]}` once the accounts were read again |
//! | `EVENTS` | `{"ok":true}`, then one JSON [`Event`](crate::event::Event) per line for as long as the client listens |
//! | `QUEUE RETRY\|HOLD\|RELEASE\|BOUNCE\|DELETE ALL\|id ...` | `{"ok":true,"result":{...}}` once done (the spool's [`ActionResult`]) |
//! | `SEND` | `{"ok":true,"report":{"messages":[...],"errors":[...]}}` once each queued outgoing message was tried (the runner's [`SendReport`]) |
//! | `WAKE` | `{"ok":true}` at once: the spool is read again now (`mailcall-cli sendmail` queued a message from another process) |
//! | anything else | `{"ok":false,"error":"..."}` |
//!
//! Verbs, queue actions and `ALL` are read in any case. Words after a verb that takes none are
//! ignored, as they always were: scripts written against older versions keep working.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::history::{ManualTrigger, SessionRecord};
use crate::service::Sending;
use crate::spool::actions::{ActionResult, Selection};
use crate::spool::runner::SendReport;
use crate::spool::Action;

/// Longest request line accepted, newline included.
pub const MAX_REQUEST: u64 = 4096;
/// Longest reply line a client reads (a record with long transcripts).
pub const MAX_REPLY: u64 = 64 * 1024 * 1024;
/// Most accounts one `FETCH` may name.
const MAX_ACCOUNTS: usize = 64;

/// What a request asks: the first word of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Fetch now and answer with the session's record.
    Fetch,
    /// Pause automatic fetching.
    Pause,
    /// Resume automatic fetching.
    Resume,
    /// The running Mailcall's state.
    Status,
    /// Read the accounts and routes again.
    Reload,
    /// Stream every event.
    Events,
    /// Act on the queue for LAN servers.
    Queue,
    /// Send the outgoing queue now.
    Send,
    /// Read the spool again (a message was queued by another process).
    Wake,
}

/// One row of the command table.
struct Command {
    verb: Verb,
    /// The word on the wire.
    word: &'static str,
    /// How it is written, for the error that lists them.
    usage: &'static str,
}

/// The command table, in the spirit of Postfix's `smtpd.c`: the one place each verb is spelt.
const COMMANDS: [Command; 9] = [
    Command {
        verb: Verb::Fetch,
        word: "FETCH",
        usage: "FETCH [trigger=WORD] [send=no] [account ...]",
    },
    Command {
        verb: Verb::Pause,
        word: "PAUSE",
        usage: "PAUSE",
    },
    Command {
        verb: Verb::Resume,
        word: "RESUME",
        usage: "RESUME",
    },
    Command {
        verb: Verb::Status,
        word: "STATUS",
        usage: "STATUS",
    },
    Command {
        verb: Verb::Reload,
        word: "RELOAD",
        usage: "RELOAD",
    },
    Command {
        verb: Verb::Queue,
        word: "QUEUE",
        usage: QUEUE_USAGE,
    },
    Command {
        verb: Verb::Send,
        word: "SEND",
        usage: "SEND",
    },
    Command {
        verb: Verb::Wake,
        word: "WAKE",
        usage: "WAKE",
    },
    Command {
        verb: Verb::Events,
        word: "EVENTS",
        usage: "EVENTS",
    },
];

/// How `QUEUE` is written.
const QUEUE_USAGE: &str = "QUEUE RETRY|HOLD|RELEASE|BOUNCE|DELETE ALL|ID ...";

/// The queue actions' words after `QUEUE`.
const ACTIONS: [(Action, &str); 5] = [
    (Action::Retry, "RETRY"),
    (Action::Bounce, "BOUNCE"),
    (Action::Delete, "DELETE"),
    (Action::Hold, "HOLD"),
    (Action::Release, "RELEASE"),
];

/// The word after the action that selects every message.
const ALL: &str = "ALL";

/// The `FETCH` option naming the front end; `=` is never in an account name, so it cannot be
/// taken for one.
const TRIGGER_OPTION: &str = "trigger=";

/// The `FETCH` option that receives only (`send=no`); `send=yes` is the default, and read too.
const SEND_OPTION: &str = "send=";

impl Verb {
    /// Its word on the wire.
    pub fn as_str(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|c| c.verb == self)
            .map_or("", |c| c.word)
    }

    /// The verb `word` names, in any case.
    pub fn from_word(word: &str) -> Option<Self> {
        COMMANDS
            .iter()
            .find(|c| c.word.eq_ignore_ascii_case(word))
            .map(|c| c.verb)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every request as it is written: `A, B, ... or Z`.
fn usages() -> String {
    let all: Vec<&str> = COMMANDS.iter().map(|c| c.usage).collect();
    match all.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn action_word(action: Action) -> &'static str {
    ACTIONS
        .iter()
        .find(|(a, _)| *a == action)
        .map_or("", |(_, w)| *w)
}

/// A request line that cannot be understood (or a request that could not be written as one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first word is no verb.
    #[error("unknown request {:?}: use {}", .0, usages())]
    UnknownRequest(String),
    /// `trigger=` names no front end that fetches by hand.
    #[error(
        "trigger={0} is not a front end that fetches by hand: use tray, window, cli or control"
    )]
    Trigger(String),
    /// `send=` is neither `yes` nor `no`.
    #[error("send={0} is not understood: use send=no to receive only (send=yes is the default)")]
    Send(String),
    /// More accounts than one `FETCH` may name.
    #[error("too many account names (at most {MAX_ACCOUNTS})")]
    TooManyAccounts,
    /// A word that cannot be an account name.
    #[error(transparent)]
    AccountName(#[from] crate::account::BadAccountName),
    /// `QUEUE` without an action or without messages.
    #[error("name the messages: {QUEUE_USAGE}")]
    NoMessages,
    /// `QUEUE` with an action it does not know.
    #[error("unknown queue action {0:?}: use RETRY, BOUNCE or DELETE")]
    UnknownAction(String),
    /// A message id that would not read back as itself.
    #[error("{0:?} cannot name a message: an id has no spaces, and ALL means every message")]
    MessageId(String),
}

/// A request to the running Mailcall: one line on the wire ([`fmt::Display`] writes it without
/// its newline, [`Request::parse`] reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Fetch now and answer with the session's record.
    Fetch {
        /// The front end that asked (the record names it).
        trigger: ManualTrigger,
        /// The accounts to ask; every account when empty.
        accounts: Vec<String>,
        /// Whether the outgoing queue is sent first.
        sending: Sending,
    },
    /// Pause automatic fetching.
    Pause,
    /// Resume automatic fetching.
    Resume,
    /// The running Mailcall's state.
    Status,
    /// Read the accounts and routes again.
    Reload,
    /// Stream every event from now on.
    Events,
    /// Act on the queue for LAN servers.
    Queue {
        /// What to do.
        action: Action,
        /// To which messages.
        selection: Selection,
    },
    /// Send the outgoing queue now, and answer once each message was tried.
    Send,
    /// Read the spool again now, for a message another process queued.
    Wake,
}

impl Request {
    /// `PAUSE` or `RESUME`.
    pub fn set_paused(paused: bool) -> Self {
        if paused {
            Request::Pause
        } else {
            Request::Resume
        }
    }

    /// Its verb.
    pub fn verb(&self) -> Verb {
        match self {
            Request::Fetch { .. } => Verb::Fetch,
            Request::Pause => Verb::Pause,
            Request::Resume => Verb::Resume,
            Request::Status => Verb::Status,
            Request::Reload => Verb::Reload,
            Request::Events => Verb::Events,
            Request::Queue { .. } => Verb::Queue,
            Request::Send => Verb::Send,
            Request::Wake => Verb::Wake,
        }
    }

    /// Reads one request line (without its newline).
    pub fn parse(line: &str) -> Result<Self, ParseError> {
        let mut words = line.split_ascii_whitespace();
        let word = words.next().unwrap_or("");
        let verb = Verb::from_word(word)
            .ok_or_else(|| ParseError::UnknownRequest(word.to_ascii_uppercase()))?;
        let request = match verb {
            Verb::Fetch => {
                let mut trigger = ManualTrigger::Control;
                let mut sending = Sending::First;
                let mut accounts = Vec::new();
                for word in words {
                    if let Some(t) = word.strip_prefix(TRIGGER_OPTION) {
                        trigger = ManualTrigger::from_word(t)
                            .ok_or_else(|| ParseError::Trigger(t.to_string()))?;
                    } else if let Some(s) = word.strip_prefix(SEND_OPTION) {
                        sending = match s.to_ascii_lowercase().as_str() {
                            "yes" => Sending::First,
                            "no" => Sending::Skip,
                            _ => return Err(ParseError::Send(s.to_string())),
                        };
                    } else {
                        accounts.push(word.to_string());
                    }
                }
                Request::Fetch {
                    trigger,
                    accounts,
                    sending,
                }
            }
            Verb::Pause => Request::Pause,
            Verb::Resume => Request::Resume,
            Verb::Status => Request::Status,
            Verb::Reload => Request::Reload,
            Verb::Events => Request::Events,
            Verb::Send => Request::Send,
            Verb::Wake => Request::Wake,
            Verb::Queue => {
                let word = words.next().ok_or(ParseError::NoMessages)?;
                let action = ACTIONS
                    .iter()
                    .find(|(_, w)| w.eq_ignore_ascii_case(word))
                    .map(|(a, _)| *a)
                    .ok_or_else(|| ParseError::UnknownAction(word.to_ascii_uppercase()))?;
                let ids: Vec<String> = words.map(str::to_string).collect();
                let selection = match ids.as_slice() {
                    [all] if all.eq_ignore_ascii_case(ALL) => Selection::All,
                    _ => Selection::Ids(ids),
                };
                Request::Queue { action, selection }
            }
        };
        request.check()?;
        Ok(request)
    }

    /// Whether it reads back as itself once written, and the server would take it: the
    /// client checks before sending what the server checks on reading.
    pub fn check(&self) -> Result<(), ParseError> {
        match self {
            Request::Fetch { accounts, .. } => {
                if accounts.len() > MAX_ACCOUNTS {
                    return Err(ParseError::TooManyAccounts);
                }
                for name in accounts {
                    crate::account::validate_name(name).map_err(ParseError::AccountName)?;
                }
                Ok(())
            }
            Request::Queue {
                selection: Selection::Ids(ids),
                ..
            } => {
                if ids.is_empty() {
                    return Err(ParseError::NoMessages);
                }
                match ids.iter().find(|id| {
                    id.is_empty()
                        || id.chars().any(|c| c.is_ascii_whitespace())
                        || (ids.len() == 1 && id.eq_ignore_ascii_case(ALL))
                }) {
                    Some(id) => Err(ParseError::MessageId(id.clone())),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb().as_str())?;
        match self {
            Request::Fetch {
                trigger,
                accounts,
                sending,
            } => {
                // The defaults need no word: a daemon of any version reads the line.
                if *trigger != ManualTrigger::Control {
                    write!(f, " {TRIGGER_OPTION}{trigger}")?;
                }
                if *sending == Sending::Skip {
                    write!(f, " {SEND_OPTION}no")?;
                }
                for name in accounts {
                    write!(f, " {name}")?;
                }
            }
            Request::Queue { action, selection } => {
                write!(f, " {}", action_word(*action))?;
                match selection {
                    Selection::All => write!(f, " {ALL}")?,
                    Selection::Ids(ids) => {
                        for id in ids {
                            write!(f, " {id}")?;
                        }
                    }
                }
            }
            Request::Pause
            | Request::Resume
            | Request::Status
            | Request::Reload
            | Request::Events
            | Request::Send
            | Request::Wake => {}
        }
        Ok(())
    }
}

/// The running Mailcall's state, as `STATUS` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Status {
    /// Automatic fetching is paused.
    pub paused: bool,
    /// A fetch session runs.
    pub fetching: bool,
    /// The watched interfaces that are up (`None`: they cannot be watched).
    pub links: Option<Vec<String>>,
    /// Where its listener listens; `None` when none runs (ODMR accounts only).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Its accounts.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The config file it runs with (`None`: an older Mailcall that does not say).
    #[serde(default)]
    pub config: Option<String>,
}

/// A reply: one JSON object on one line, whose `"ok"` says whether the request was done; the
/// other fields depend on the request ([`Reply::read`] is told which was sent).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `FETCH`: the session's history record.
    Fetched {
        /// The record.
        record: Box<SessionRecord>,
    },
    /// `PAUSE`, `RESUME`: the switch as it is now.
    Paused {
        /// Whether automatic fetching is paused.
        paused: bool,
    },
    /// `STATUS`.
    Status(Status),
    /// `RELOAD`: the accounts that were skipped, each with why.
    Reloaded {
        /// The skipped accounts.
        skipped: Vec<String>,
    },
    /// `EVENTS`: the events follow, one per line.
    Subscribed {},
    /// `QUEUE`: what the action did.
    Queued {
        /// What it did.
        result: ActionResult,
    },
    /// `SEND`: what became of each outgoing message.
    Sent {
        /// Each message's outcome, and the servers that could not be used.
        report: SendReport,
    },
    /// `WAKE`: the spool is being read again.
    Woken {},
    /// Not done, and why.
    Refused {
        /// Why.
        error: String,
    },
}

/// A reply as written: `"ok"`, then the reply's own fields.
#[derive(Serialize)]
struct Line<'a> {
    ok: bool,
    #[serde(flatten)]
    reply: &'a Reply,
}

/// What every reply has.
#[derive(Deserialize)]
struct Head {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct FetchedBody {
    record: Box<SessionRecord>,
}

#[derive(Deserialize)]
struct PausedBody {
    paused: bool,
}

#[derive(Deserialize)]
struct ReloadedBody {
    #[serde(default)]
    skipped: Vec<String>,
}

#[derive(Deserialize)]
struct QueuedBody {
    result: ActionResult,
}

#[derive(Deserialize)]
struct SentBody {
    report: SendReport,
}

impl Reply {
    /// The line to send, newline included.
    pub fn to_line(&self) -> String {
        let ok = !matches!(self, Reply::Refused { .. });
        let mut text = serde_json::to_string(&Line { ok, reply: self }).unwrap_or_else(|e| {
            // Only a record that cannot be written gets here; the client hears why.
            let refused = Reply::Refused {
                error: format!("the reply cannot be written: {e}"),
            };
            serde_json::to_string(&Line {
                ok: false,
                reply: &refused,
            })
            .unwrap_or_default()
        });
        text.push('\n');
        text
    }

    /// Reads the reply to a request of `verb` from its line.
    pub fn read(verb: Verb, line: &str) -> Result<Self, serde_json::Error> {
        let head: Head = serde_json::from_str(line)?;
        if !head.ok {
            return Ok(Reply::Refused {
                error: head.error.unwrap_or_else(|| "no reason given".into()),
            });
        }
        Ok(match verb {
            Verb::Fetch => Reply::Fetched {
                record: serde_json::from_str::<FetchedBody>(line)?.record,
            },
            Verb::Pause | Verb::Resume => Reply::Paused {
                paused: serde_json::from_str::<PausedBody>(line)?.paused,
            },
            Verb::Status => Reply::Status(serde_json::from_str(line)?),
            Verb::Reload => Reply::Reloaded {
                skipped: serde_json::from_str::<ReloadedBody>(line)?.skipped,
            },
            Verb::Events => Reply::Subscribed {},
            Verb::Queue => Reply::Queued {
                result: serde_json::from_str::<QueuedBody>(line)?.result,
            },
            Verb::Send => Reply::Sent {
                report: serde_json::from_str::<SentBody>(line)?.report,
            },
            Verb::Wake => Reply::Woken {},
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every request as the README documents its line: written so, and read back.
    #[test]
    fn each_request_has_its_line() {
        let cases = [
            (
                Request::Fetch {
                    trigger: ManualTrigger::Control,
                    accounts: vec![],
                    sending: Sending::First,
                },
                "FETCH",
            ),
            (
                Request::Fetch {
                    trigger: ManualTrigger::Tray,
                    accounts: vec!["isp".into()],
                    sending: Sending::First,
                },
                "FETCH trigger=tray isp",
            ),
            (
                Request::Fetch {
                    trigger: ManualTrigger::Window,
                    accounts: vec!["a".into(), "b.c".into()],
                    sending: Sending::First,
                },
                "FETCH trigger=window a b.c",
            ),
            (
                Request::Fetch {
                    trigger: ManualTrigger::Cli,
                    accounts: vec![],
                    sending: Sending::First,
                },
                "FETCH trigger=cli",
            ),
            (
                Request::Fetch {
                    trigger: ManualTrigger::Cli,
                    accounts: vec!["isp".into()],
                    sending: Sending::Skip,
                },
                "FETCH trigger=cli send=no isp",
            ),
            (Request::Send, "SEND"),
            (Request::Wake, "WAKE"),
            (Request::Pause, "PAUSE"),
            (Request::Resume, "RESUME"),
            (Request::Status, "STATUS"),
            (Request::Reload, "RELOAD"),
            (Request::Events, "EVENTS"),
            (
                Request::Queue {
                    action: Action::Retry,
                    selection: Selection::All,
                },
                "QUEUE RETRY ALL",
            ),
            (
                Request::Queue {
                    action: Action::Bounce,
                    selection: Selection::Ids(vec!["1764150000.M1".into()]),
                },
                "QUEUE BOUNCE 1764150000.M1",
            ),
            (
                Request::Queue {
                    action: Action::Delete,
                    selection: Selection::Ids(vec!["a".into(), "b".into()]),
                },
                "QUEUE DELETE a b",
            ),
            (
                Request::Queue {
                    action: Action::Hold,
                    selection: Selection::Ids(vec!["a".into()]),
                },
                "QUEUE HOLD a",
            ),
            (
                Request::Queue {
                    action: Action::Release,
                    selection: Selection::All,
                },
                "QUEUE RELEASE ALL",
            ),
        ];
        for (request, line) in cases {
            assert_eq!(request.to_string(), line);
            assert_eq!(Request::parse(line), Ok(request), "{line}");
        }
        assert_eq!(Request::set_paused(true), Request::Pause);
        assert_eq!(Request::set_paused(false), Request::Resume);
    }

    #[test]
    fn lines_are_read_as_scripts_write_them() {
        assert_eq!(Request::parse("status"), Ok(Request::Status));
        assert_eq!(Request::parse("  PAUSE  "), Ok(Request::Pause));
        // Words after a verb that takes none were always ignored.
        assert_eq!(Request::parse("RESUME now"), Ok(Request::Resume));
        assert_eq!(
            Request::parse("fetch trigger=control isp"),
            Ok(Request::Fetch {
                trigger: ManualTrigger::Control,
                accounts: vec!["isp".into()],
                sending: Sending::First,
            })
        );
        // The options go anywhere among the names; send=yes is the default, spelt out.
        assert_eq!(
            Request::parse("FETCH isp send=NO trigger=tray"),
            Ok(Request::Fetch {
                trigger: ManualTrigger::Tray,
                accounts: vec!["isp".into()],
                sending: Sending::Skip,
            })
        );
        assert_eq!(
            Request::parse("FETCH send=yes"),
            Ok(Request::Fetch {
                trigger: ManualTrigger::Control,
                accounts: vec![],
                sending: Sending::First,
            })
        );
        assert_eq!(Request::parse("send"), Ok(Request::Send));
        assert_eq!(Request::parse("wake up"), Ok(Request::Wake));
        assert_eq!(
            Request::parse("queue retry all"),
            Ok(Request::Queue {
                action: Action::Retry,
                selection: Selection::All
            })
        );
    }

    #[test]
    fn bad_lines_are_refused_with_what_to_send() {
        let e = Request::parse("REBOOT now").unwrap_err();
        assert_eq!(e, ParseError::UnknownRequest("REBOOT".into()));
        assert_eq!(
            e.to_string(),
            "unknown request \"REBOOT\": use FETCH [trigger=WORD] [send=no] [account ...], PAUSE, RESUME, STATUS, RELOAD, QUEUE RETRY|HOLD|RELEASE|BOUNCE|DELETE ALL|ID ..., SEND, WAKE or EVENTS"
        );
        assert_eq!(
            Request::parse(""),
            Err(ParseError::UnknownRequest(String::new()))
        );
        // Only a front end that fetches by hand: an automatic trigger would be a lie.
        let e = Request::parse("FETCH trigger=network").unwrap_err();
        assert!(
            e.to_string().contains("use tray, window, cli or control"),
            "{e}"
        );
        assert!(matches!(
            Request::parse("FETCH ../x"),
            Err(ParseError::AccountName(_))
        ));
        // A typo in send= is refused rather than taken for "send".
        assert_eq!(
            Request::parse("FETCH send=nope"),
            Err(ParseError::Send("nope".into()))
        );
        let many = format!("FETCH {}", vec!["a"; 65].join(" "));
        assert_eq!(Request::parse(&many), Err(ParseError::TooManyAccounts));
        assert_eq!(Request::parse("QUEUE"), Err(ParseError::NoMessages));
        assert_eq!(Request::parse("QUEUE RETRY"), Err(ParseError::NoMessages));
        // A typo is refused: it can never fall through to a delete.
        assert_eq!(
            Request::parse("QUEUE DELET ALL"),
            Err(ParseError::UnknownAction("DELET".into()))
        );
    }

    #[test]
    fn a_request_that_would_not_read_back_is_not_written() {
        let spaced = Request::Fetch {
            trigger: ManualTrigger::Tray,
            accounts: vec!["my isp".into()],
            sending: Sending::First,
        };
        assert!(matches!(spaced.check(), Err(ParseError::AccountName(_))));
        for ids in [vec![], vec!["ALL".to_string()], vec!["a b".to_string()]] {
            let request = Request::Queue {
                action: Action::Delete,
                selection: Selection::Ids(ids.clone()),
            };
            assert!(request.check().is_err(), "{ids:?}");
        }
    }

    fn line(reply: &Reply) -> serde_json::Value {
        let text = reply.to_line();
        assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
        serde_json::from_str(&text).unwrap()
    }

    /// Each reply's shape, as scripts and older trays read it.
    #[test]
    fn each_reply_has_its_shape() {
        let status = Status {
            paused: true,
            fetching: false,
            links: Some(vec!["ppp0".into()]),
            listen: Some("127.0.0.1:2525".parse().unwrap()),
            accounts: vec!["isp".into()],
            config: Some("/home/me/.config/mailcall/config.toml".into()),
        };
        let result = ActionResult {
            messages: 1,
            recipients: 2,
            reports: vec!["/m/new/dsn".into()],
        };
        let cases = [
            (
                Verb::Pause,
                Reply::Paused { paused: true },
                json!({"ok": true, "paused": true}),
            ),
            (
                Verb::Status,
                Reply::Status(status.clone()),
                json!({"ok": true, "paused": true, "fetching": false, "links": ["ppp0"],
                       "listen": "127.0.0.1:2525", "accounts": ["isp"],
                       "config": "/home/me/.config/mailcall/config.toml"}),
            ),
            (
                Verb::Reload,
                Reply::Reloaded {
                    skipped: vec!["gone: unreadable".into()],
                },
                json!({"ok": true, "skipped": ["gone: unreadable"]}),
            ),
            (Verb::Events, Reply::Subscribed {}, json!({"ok": true})),
            (
                Verb::Queue,
                Reply::Queued {
                    result: result.clone(),
                },
                json!({"ok": true, "result": {"messages": 1, "recipients": 2, "reports": ["/m/new/dsn"]}}),
            ),
            (
                Verb::Queue,
                Reply::Refused {
                    error: "no message \"x\" in the queue".into(),
                },
                json!({"ok": false, "error": "no message \"x\" in the queue"}),
            ),
            (
                Verb::Send,
                Reply::Sent {
                    report: SendReport {
                        messages: vec![],
                        errors: vec!["smtp.example.org:587: connection refused".into()],
                    },
                },
                json!({"ok": true, "report": {"messages": [], "errors": ["smtp.example.org:587: connection refused"]}}),
            ),
            (Verb::Wake, Reply::Woken {}, json!({"ok": true})),
        ];
        for (verb, reply, shape) in cases {
            assert_eq!(line(&reply), shape, "{verb}");
            assert_eq!(Reply::read(verb, &reply.to_line()).unwrap(), reply);
        }
        // A daemon with ODMR accounts only listens nowhere; an older one names no config.
        let bare = Status {
            listen: None,
            links: None,
            config: None,
            ..status
        };
        let shape = line(&Reply::Status(bare.clone()));
        assert_eq!(shape["listen"], serde_json::Value::Null);
        assert_eq!(shape["links"], serde_json::Value::Null);
        let older = r#"{"ok":true,"paused":false,"fetching":true,"links":null}"#;
        assert_eq!(
            Reply::read(Verb::Status, older).unwrap(),
            Reply::Status(Status {
                paused: false,
                fetching: true,
                links: None,
                listen: None,
                accounts: vec![],
                config: None
            })
        );
        assert_eq!(
            Reply::read(Verb::Fetch, r#"{"ok":false}"#).unwrap(),
            Reply::Refused {
                error: "no reason given".into()
            }
        );
        assert!(Reply::read(Verb::Fetch, r#"{"ok":true}"#).is_err());
    }

    #[test]
    fn a_fetch_reply_carries_the_record() {
        let record: SessionRecord = serde_json::from_value(json!({
            "id": "s1", "trigger": "tray", "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:01Z", "ended_because": "idle"
        }))
        .unwrap();
        let reply = Reply::Fetched {
            record: Box::new(record),
        };
        let shape = line(&reply);
        assert_eq!(shape["ok"], true);
        assert_eq!(shape["record"]["trigger"], "tray");
        assert_eq!(Reply::read(Verb::Fetch, &reply.to_line()).unwrap(), reply);
    }
}
