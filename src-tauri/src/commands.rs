//! The window's commands — all of them: settings, accounts, Test connection, History, Fetch now,
//! the Delivery tab (routes, unknown recipients, retry delays) and the Queue.
//! Each is generic over the runtime so the unit tests drive them on Tauri's mock runtime.

use mailcall_core::account::{FetchMode, Security};
use mailcall_core::config;
use mailcall_core::hint::{AccountField, Problem, Setting};
use mailcall_core::history::{ManualTrigger, RecordKind, SessionRecord};
use mailcall_core::instance;
use mailcall_core::keystore::KeystoreError;
use mailcall_core::mailcall::{self, Patience};
use mailcall_core::report::{DomainOutcome, DomainReport, HandOverOutcome};
use mailcall_core::spool::actions::Selection;
use mailcall_core::spool::Action;
use serde::Serialize;
use tauri::{AppHandle, Runtime, State};

use crate::forms::{
    self, AccountForm, AccountView, CheckView, DeliveryForm, DeliveryView, ListenerCheck,
    RouteForm, SettingsForm, UiError,
};
use crate::hints;
use crate::prefs;
use crate::queue::{self, QueueView};
use crate::state::{AppState, NotApplied};

/// Everything the window shows on opening.
#[derive(Debug, Serialize)]
pub struct SettingsData {
    /// The preferences.
    pub settings: SettingsForm,
    /// The accounts, without passwords.
    pub accounts: Vec<AccountView>,
    /// Accounts named in the config that the keyring could not give, with why.
    pub unreadable: Vec<(String, String)>,
    /// The config file, so the user knows what is edited.
    pub config_path: String,
    /// The tray status now.
    pub status: crate::status::StatusView,
    /// Where the listener listens, when Mailcall runs (here, or the daemon's) and has one.
    pub listening: Option<String>,
    /// The same in a sentence: the address, or "No listener (ODMR accounts only)".
    pub listener: String,
    /// Who runs Mailcall and where scripts reach it ("Using the running Mailcall daemon at …").
    pub control: String,
    /// Whether the keyring holds a submission password (the field shows "saved").
    pub submit_password_saved: bool,
}

/// A problem as the window shows it: the message, with where to fix it; a fix in the Settings
/// tab also puts the message next to that field.
fn ui_problem(problem: &Problem, prefix: &str) -> UiError {
    let mut err = UiError::new(format!("{prefix}{}", hints::render(problem)));
    if let Some(Setting::Config { key }) = &problem.fix {
        if let Some(field) = forms::settings_field_name(*key) {
            err.field(field, problem.message.clone());
        }
    }
    err
}

/// The preferences and accounts.
#[tauri::command]
pub async fn load_settings(state: State<'_, AppState>) -> Result<SettingsData, UiError> {
    let config = state.config()?;
    let default_maildir = config::Config {
        maildir: None,
        ..config.clone()
    }
    .maildir_path()
    .map(|d| d.display().to_string())
    .unwrap_or_default();
    let prefs = state.prefs();
    let settings = SettingsForm::from_config(
        &config,
        default_maildir,
        prefs.notifications,
        prefs::start_at_login(),
        state.is_paused().await,
    );
    let (accounts, skipped) =
        instance::load_accounts(state.store.clone(), config.accounts.clone()).await?;
    let unreadable = skipped
        .into_iter()
        .map(|p| (p.account.clone().unwrap_or_default(), p.message))
        .collect();
    let listening = state.listen_addr().await;
    state.update_listener().await;
    let listener = state.listener_note().await;
    let control = state.serving().await.note();
    let status = state.status().view();
    let submit_password_saved = config.submit_user.is_some()
        && config.account_store == config::AccountStoreKind::Keyring
        && tauri::async_runtime::spawn_blocking(mailcall_core::keystore::load_submit_password)
            .await
            .is_ok_and(|r| r.is_ok_and(|p| p.is_some()));
    Ok(SettingsData {
        settings,
        accounts: accounts.iter().map(AccountView::from).collect(),
        unreadable,
        config_path: state.config_path.display().to_string(),
        status,
        listening,
        listener,
        control,
        submit_password_saved,
    })
}

/// Saves the preferences; restarts Mailcall here when the config changed (a restart for new
/// settings does not fetch at start again). A daemon this tray fronts reads them when it
/// restarts: the answer says so.
#[tauri::command]
pub async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: SettingsForm,
) -> Result<Option<String>, UiError> {
    // Loaded and saved under the config's lock: a change another writer made is kept.
    let lock = config::Config::lock(&state.config_path)?;
    let mut config = state.config()?;
    let before = config.clone();
    settings.apply(&mut config)?;
    let new_password = !settings.submit_password.is_empty();
    if new_password && config.account_store != config::AccountStoreKind::Keyring {
        let mut err = UiError::new("Please correct the marked fields.");
        err.field(
            forms::SUBMIT_PASSWORD_FIELD,
            "The submission password lives in the OS keyring, and accounts here live in a file (account-store = file): let LAN hosts submit without a login instead, or keep accounts in the keyring",
        );
        return Err(err);
    }
    if config != before {
        config.save(&state.config_path)?;
    }
    drop(lock);
    if new_password {
        let password = settings.submit_password.clone();
        tauri::async_runtime::spawn_blocking(move || {
            mailcall_core::keystore::save_submit_password(&password)
        })
        .await??;
    }
    let mut prefs = state.prefs();
    prefs.notifications = settings.notifications;
    state.set_prefs(prefs)?;
    if settings.start_at_login != prefs::start_at_login() {
        let exe = std::env::current_exe()?;
        prefs::set_start_at_login(settings.start_at_login, &exe)?;
    }
    // The submission login is read when Mailcall starts: a new password restarts it too.
    let note = state
        .settings_saved(&app, config != before || new_password)
        .await
        .map_err(|p| ui_problem(&p, "Saved, but Mailcall cannot run with them: "))?;
    // After a restart: the switch goes to what runs now (and is remembered for the next start).
    if settings.paused != state.is_paused().await {
        state
            .set_paused(&app, settings.paused)
            .await
            .map_err(|p| ui_problem(&p, ""))?;
    }
    Ok(note)
}

/// Creates or replaces an account (keyring first, then the config's list of names), then tells
/// the running Mailcall (here, or the daemon); a listener here that only ODMR accounts are left
/// for is closed.
#[tauri::command]
pub async fn save_account<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    account: AccountForm,
) -> Result<AccountView, UiError> {
    let config = state.config()?;
    let original = account.original.trim().to_string();
    let store = state.store.clone();
    let lookup = if original.is_empty() {
        account.name.trim().to_string()
    } else {
        original.clone()
    };
    let stored = tauri::async_runtime::spawn_blocking(move || match store.load(&lookup) {
        Ok(a) => Ok(Some(a)),
        Err(KeystoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    })
    .await??;
    if original.is_empty() && stored.is_some() {
        let mut err = UiError::new("Please correct the marked fields.");
        err.field(
            "name",
            "An account with this name exists already: choose another name or edit that one",
        );
        return Err(err);
    }
    let new = account.to_account(stored.as_ref())?;
    if !original.is_empty() && original != new.name && config.accounts.contains(&new.name) {
        let mut err = UiError::new("Please correct the marked fields.");
        err.field("name", "Another account has this name already");
        return Err(err);
    }
    let store = state.store.clone();
    let saved = new.clone();
    let renamed_from = (!original.is_empty() && original != new.name).then_some(original);
    let old = renamed_from.clone();
    tauri::async_runtime::spawn_blocking(move || {
        store.save(&saved)?;
        if let Some(old) = old {
            store.remove(&old)?;
        }
        Ok::<_, KeystoreError>(())
    })
    .await??;
    // The names go into the file as it is now, under its lock: a change made meanwhile is kept.
    config::Config::update(&state.config_path, |config| {
        if let Some(old) = &renamed_from {
            config.remove_account(old);
        }
        config.add_account(&new.name);
        Ok::<_, UiError>(())
    })?;
    accounts_changed(&app, &state, "Saved, but ").await?;
    Ok(AccountView::from(&new))
}

/// The accounts changed in the keyring and the config: the running Mailcall (here, or the
/// daemon) reads them again, and a listener here that only ODMR accounts are left for is
/// closed. `kept` begins the message when closing it fails ("Saved, but ").
async fn accounts_changed<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    kept: &str,
) -> Result<(), UiError> {
    state
        .accounts_saved(app)
        .await
        .map_err(|p| ui_problem(&p, &format!("{kept}Mailcall cannot start: ")))?;
    state
        .reload_accounts()
        .await
        .map_err(|p| ui_problem(&p, ""))?;
    state
        .drop_unneeded_listener(app)
        .await
        .map_err(|p| ui_problem(&p, kept))?;
    // The listener line and the status follow the edit.
    crate::state::refresh(app);
    Ok(())
}

/// Removes an account from the keyring and the config, then tells the running Mailcall (a
/// listener here that only ODMR accounts are left for is closed).
#[tauri::command]
pub async fn remove_account<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: String,
) -> Result<(), UiError> {
    let store = state.store.clone();
    let n = name.clone();
    let in_keyring = tauri::async_runtime::spawn_blocking(move || store.remove(&n)).await??;
    let in_config = config::Config::update(&state.config_path, |config| {
        Ok::<_, UiError>(config.remove_account(&name))
    })?;
    if !in_keyring && !in_config {
        return Err(UiError::new(format!(
            "There is no account {name:?}; reload the window"
        )));
    }
    accounts_changed(&app, &state, "Removed, but ").await
}

/// Connects to the ISP of the account in the form (not necessarily saved) and reports TLS,
/// AUTH and whether ETRN and ATRN are advertised, checked as the account's mode needs (an ODMR
/// account logs in first); neither ETRN nor ATRN is sent. A failure names the form field to
/// change when one does.
#[tauri::command]
pub async fn test_connection(
    state: State<'_, AppState>,
    account: AccountForm,
) -> Result<CheckView, UiError> {
    let store = state.store.clone();
    let lookup = match account.original.trim() {
        "" => account.name.trim().to_string(),
        o => o.to_string(),
    };
    let stored = tauri::async_runtime::spawn_blocking(move || store.load(&lookup).ok()).await?;
    let account = account.to_account(stored.as_ref())?;
    let config = state.config().unwrap_or_default();
    let check = mailcall::check_account(&account, &config, Patience::Window).await;
    let problem = check.problem(&account.name);
    let info = &check.info;
    let listener = match account.mode {
        FetchMode::Etrn => Some(check_listener(&state, &config).await),
        FetchMode::Odmr => None,
    };
    let mut suggestions = Vec::new();
    if account.security == Security::None && info.advertises("STARTTLS") {
        suggestions.push(
            "The server offers STARTTLS, but Security is None: choose STARTTLS so that the login and the mail are encrypted.".to_string(),
        );
    }
    let domains = account
        .domains
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let field = match problem.as_ref().and_then(|p| p.fix.as_ref()) {
        Some(Setting::Account { field, .. }) => Some(forms::account_field_name(*field).to_string()),
        _ => None,
    };
    Ok(CheckView {
        greeting: info.greeting.clone(),
        tls: info.tls,
        auth: match (&account.username, info.authenticated) {
            (None, _) => "not configured".into(),
            (Some(_), true) => "yes".into(),
            (Some(_), false) => "no".into(),
        },
        mode: account.mode,
        // Unknown when the session failed before the EHLO reply.
        ehlo_seen: check.ehlo_seen(),
        etrn_advertised: info.advertises("ETRN"),
        atrn_advertised: info.advertises("ATRN"),
        extensions: info.extensions.clone(),
        // The field is marked in the form; a fix elsewhere is said in words.
        error: problem.map(|p| match field {
            Some(_) => p.message.clone(),
            None => hints::render(&p),
        }),
        field,
        transcript: check.transcript.iter().map(|l| l.to_string()).collect(),
        listener,
        suggestions,
        unchecked: vec![format!(
            "Domains ({}): not checked. Only a real {} asks the ISP for them, and that starts its delivery: the first fetch (Send and receive) shows each domain's reply.",
            domains,
            match account.mode {
                FetchMode::Etrn => "ETRN",
                FetchMode::Odmr => "ATRN",
            }
        )],
    })
}

/// How long the listener check waits to connect and for the greeting.
const LISTENER_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the listener runs on the saved address and greets with 220: connects to it (a
/// wildcard address through loopback) and says QUIT. Whether the ISP can reach it from outside
/// cannot be seen from here; the text says so.
async fn check_listener(state: &AppState, config: &config::Config) -> ListenerCheck {
    let fail = |text: String| ListenerCheck { ok: false, text };
    let Some(addr) = state.listen_addr().await else {
        return fail(format!(
            "Listener: {}. An ETRN account needs it: the ISP connects to it to deliver. To fix: Settings → Settings tab → Listen on",
            state.listener_note().await
        ));
    };
    let Ok(mut target) = addr.parse::<std::net::SocketAddr>() else {
        return fail(format!("Listener: cannot read its address {addr:?}"));
    };
    if target != config.listen {
        return fail(format!(
            "Listener: listening on {addr}, not on {} as saved. Save settings (Settings tab) to move it",
            config.listen
        ));
    }
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let greeting = tokio::time::timeout(LISTENER_CHECK_WAIT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await?;
        let _ = stream.write_all(b"QUIT\r\n").await;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })
    .await;
    match greeting {
        Ok(Ok(g)) if g.starts_with("220") => ListenerCheck {
            ok: true,
            text: format!(
                "Listener: up on {addr} and answering. Whether the ISP can reach it from the Internet (router, firewall) shows at the first fetch"
            ),
        },
        Ok(Ok(g)) => fail(format!("Listener on {addr} answered {g:?} instead of a 220 greeting")),
        Ok(Err(e)) => fail(format!("Listener on {addr} cannot be reached: {e}")),
        Err(_) => fail(format!(
            "Listener on {addr} did not greet within {} s",
            LISTENER_CHECK_WAIT.as_secs()
        )),
    }
}

/// One history record as the window shows it: the record, its headline (as every front end
/// words it) and its problems with where to fix them.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// The record as kept.
    #[serde(flatten)]
    pub record: SessionRecord,
    /// `2 message(s) in 3.1 s; ended: idle`.
    pub headline: String,
    /// What the record is, for its title: the trigger of a fetch (`tray`, `network`), or
    /// `hand-over`, `connect`, ...
    pub label: String,
    /// Whether every ETRN and ATRN was accepted, every recipient handed over, and nothing went
    /// wrong.
    pub ok: bool,
    /// `OK`, `partly OK` (some domains refused, others fetched), `failed`, or for a hand-over
    /// also `refused` or `deferred`.
    pub result: &'static str,
    /// Each domain's result explained in its mode's words (ETRN or ATRN), as `domains`.
    pub explanations: Vec<String>,
    /// Whether the ISP accepted each domain's request, as `domains` (shown per domain).
    pub accepted: Vec<bool>,
    /// What went wrong, each with where to fix it.
    pub problems: Vec<String>,
}

impl HistoryEntry {
    /// The record as the window shows it.
    pub fn of(record: SessionRecord) -> Self {
        let summary = record.summary();
        let outcomes = || record.handovers.iter().flat_map(|h| &h.recipients);
        let result = if record.is_partial() {
            "partly OK"
        } else if !record.succeeded() {
            "failed"
        } else if outcomes().any(|r| r.outcome == HandOverOutcome::Failed) {
            "refused"
        } else if outcomes().any(|r| matches!(r.outcome, HandOverOutcome::Deferred { .. })) {
            "deferred"
        } else {
            "OK"
        };
        let label = match record.kind {
            RecordKind::Fetch => record.trigger.to_string(),
            RecordKind::HandOver => "hand-over".into(),
            RecordKind::Connect => format!("connect ({})", record.trigger),
            RecordKind::Disconnect => format!("disconnect ({})", record.trigger),
            RecordKind::Delivery => "delivered by the ISP on its own".into(),
        };
        HistoryEntry {
            headline: summary.headline,
            label,
            ok: result == "OK",
            result,
            explanations: record.domains.iter().map(|d| d.explain()).collect(),
            accepted: record
                .domains
                .iter()
                .map(|d| d.outcome.is_accepted())
                .collect(),
            problems: summary
                .problems
                .iter()
                .map(hints::render)
                .chain(record.domains.iter().filter_map(refused_domain))
                .collect(),
            record,
        }
    }
}

/// A domain the ISP refused, in words with where to fix it: a domain the ISP does not hold
/// mail for (or not in this form) is fixed in the account's domains.
fn refused_domain(d: &DomainReport) -> Option<String> {
    let fix = match d.outcome {
        DomainOutcome::NotAllowed | DomainOutcome::Unsupported => {
            Some(Setting::account(&d.account, AccountField::Domains))
        }
        DomainOutcome::AuthRequired => Some(Setting::account(&d.account, AccountField::User)),
        outcome if outcome.is_accepted() || outcome == DomainOutcome::NotSent => return None,
        _ => None,
    };
    let problem =
        Problem::new(format!("{} ({}): {}", d.domain, d.account, d.explain())).fixed_by(fix);
    Some(hints::render(&problem))
}

/// The newest history records, newest first (transcripts have AUTH redacted already).
#[tauri::command]
pub async fn history(
    state: State<'_, AppState>,
    limit: Option<usize>,
) -> Result<Vec<HistoryEntry>, UiError> {
    // A daemon this tray fronts writes its history where its own config says.
    let history = state.served_config().await?.history()?;
    let limit = limit.unwrap_or(50).min(500);
    let (records, _bad) =
        tauri::async_runtime::spawn_blocking(move || history.recent(limit)).await??;
    Ok(records.into_iter().rev().map(HistoryEntry::of).collect())
}

/// Starts a fetch of every account (the window's "Fetch now").
#[tauri::command]
pub async fn fetch_now<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<(), UiError> {
    state
        .fetch_now(&app, ManualTrigger::Window)
        .await
        .map_err(|p| ui_problem(&p, ""))
}

/// The Delivery tab: the routes, unknown recipients and the retry delays.
#[tauri::command]
pub async fn load_delivery(state: State<'_, AppState>) -> Result<DeliveryView, UiError> {
    let config = state.config()?;
    Ok(DeliveryView::of(&config, &config.maildir_path()?)?)
}

/// What a change in the Delivery tab gives back: the tab as it is now, and what the running
/// Mailcall does with it when that is not "uses it now".
#[derive(Debug, Serialize)]
pub struct DeliverySaved {
    /// The tab now.
    pub delivery: DeliveryView,
    /// E.g. that a daemon uses new retry delays once it restarts.
    pub note: Option<String>,
}

/// Routes changed in the file: the running Mailcall (here, or the daemon) reads them again at
/// once, with the accounts — what `mailcall-cli route add` does too (RELOAD).
async fn routes_changed(state: &AppState) -> Result<DeliverySaved, UiError> {
    state
        .reload_accounts()
        .await
        .map_err(|p| ui_problem(&p, "Saved, but the running Mailcall cannot use it: "))?;
    let config = state.config()?;
    Ok(DeliverySaved {
        delivery: DeliveryView::of(&config, &config.maildir_path()?)?,
        note: None,
    })
}

/// Adds a route (or replaces the one for the same recipients) by the core's rules; each fault
/// comes back next to its field.
#[tauri::command]
pub async fn add_route(
    state: State<'_, AppState>,
    route: RouteForm,
) -> Result<DeliverySaved, UiError> {
    config::Config::update(&state.config_path, |config| route.apply(config))?;
    routes_changed(&state).await
}

/// Removes the route for `recipient` (as the table shows it); refused when the rest would
/// break a rule (unknown recipients "reject" needs a route).
#[tauri::command]
pub async fn remove_route(
    state: State<'_, AppState>,
    recipient: String,
) -> Result<DeliverySaved, UiError> {
    let lock = config::Config::lock(&state.config_path)?;
    let mut config = state.config()?;
    match config.remove_route(&recipient) {
        Ok(true) => {}
        Ok(false) => {
            return Err(UiError::new(format!(
                "There is no route for {recipient}; reload the window"
            )))
        }
        Err(e) => {
            let problem =
                Problem::new(forms::config_problem(&e)).fixed_by(e.key().map(Setting::config));
            return Err(ui_problem(&problem, "The route stays: "));
        }
    }
    config.save(&state.config_path)?;
    drop(lock);
    routes_changed(&state).await
}

/// Saves unknown recipients and the retry delays. Unknown recipients apply at once (RELOAD);
/// new retry delays restart Mailcall here, and a daemon this tray fronts uses them once it
/// restarts: the answer says so.
#[tauri::command]
pub async fn save_delivery<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: DeliveryForm,
) -> Result<DeliverySaved, UiError> {
    let lock = config::Config::lock(&state.config_path)?;
    let mut config = state.config()?;
    let before = config.clone();
    settings.apply(&mut config)?;
    let mut note = None;
    if config != before {
        config.save(&state.config_path)?;
        drop(lock);
        let delays = (config.retry_delay, config.max_retry_delay)
            != (before.retry_delay, before.max_retry_delay);
        note = state
            .delivery_saved(&app, delays)
            .await
            .map_err(|e| match e {
                NotApplied::CannotRun(p) => {
                    ui_problem(&p, "Saved, but Mailcall cannot run with them: ")
                }
                NotApplied::NotRead(p) => ui_problem(&p, "Saved, but "),
            })?;
    }
    Ok(DeliverySaved {
        delivery: DeliveryView::of(&config, &config.maildir_path()?)?,
        note,
    })
}

/// The mail waiting in Mailcall's queue for LAN servers.
#[tauri::command]
pub async fn load_queue(state: State<'_, AppState>) -> Result<QueueView, UiError> {
    state.queue().await.map_err(|p| ui_problem(&p, ""))
}

/// Retry now, Bounce or Delete for the messages `ids` (or every message, with `all`); the
/// window asks for confirmation before Bounce and Delete. Returns what was done, in words.
#[tauri::command]
pub async fn queue_action<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    action: Action,
    ids: Vec<String>,
    all: Option<bool>,
) -> Result<String, UiError> {
    let selection = match (all.unwrap_or(false), ids.is_empty()) {
        (true, _) => Selection::All,
        (false, false) => Selection::Ids(ids),
        (false, true) => return Err(UiError::new("Choose the messages first.")),
    };
    let result = state
        .queue_action(&app, action, selection)
        .await
        .map_err(|p| ui_problem(&p, ""))?;
    Ok(queue::done(action, &result))
}
