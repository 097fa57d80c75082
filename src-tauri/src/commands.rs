//! The window's commands — all of them: settings, accounts, Test connection, History, Fetch now.
//! Each is generic over the runtime so the unit tests drive them on Tauri's mock runtime.

use std::time::Duration;

use mailcall_core::config;
use mailcall_core::etrn::{self, ClientSettings};
use mailcall_core::history::{History, SessionRecord, HISTORY_FILE};
use mailcall_core::keystore::KeystoreError;
use serde::Serialize;
use tauri::{AppHandle, Runtime, State};

use crate::forms::{AccountForm, AccountView, CheckView, SettingsForm, UiError};
use crate::prefs;
use crate::state::AppState;

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
    /// Where the listener listens, when it runs.
    pub listening: Option<String>,
    /// Where scripts reach this Mailcall (the control socket), or why they cannot.
    pub control: String,
}

/// The preferences and accounts.
#[tauri::command]
pub async fn load_settings(state: State<'_, AppState>) -> Result<SettingsData, UiError> {
    let config = state.config()?;
    let default_maildir = config::data_dir()
        .map(|d| d.join("Maildir").display().to_string())
        .unwrap_or_default();
    let prefs = state.prefs();
    let settings = SettingsForm::from_config(
        &config,
        default_maildir,
        prefs.notifications,
        prefs::start_at_login(),
        state.is_paused().await,
    );
    let store = state.store.clone();
    let names = config.accounts.clone();
    let (accounts, unreadable) = tauri::async_runtime::spawn_blocking(move || {
        let mut accounts = Vec::new();
        let mut unreadable = Vec::new();
        for n in names {
            match store.load(&n) {
                Ok(a) => accounts.push(AccountView::from(&a)),
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => unreadable.push((n, e.to_string())),
            }
        }
        Ok((accounts, unreadable))
    })
    .await??;
    let listening = state.listen_addr().await.map(|a| a.to_string());
    let status = state.status().view();
    Ok(SettingsData {
        settings,
        accounts,
        unreadable,
        config_path: state.config_path.display().to_string(),
        status,
        listening,
        control: state.control_note(),
    })
}

/// Saves the preferences; restarts the service when the listener, the Maildir or a trigger
/// option changed (a restart for new settings does not fetch at start again).
#[tauri::command]
pub async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: SettingsForm,
) -> Result<(), UiError> {
    let mut config = state.config()?;
    let before = config.clone();
    settings.apply(&mut config)?;
    if config != before {
        config.save(&state.config_path)?;
    }
    let mut prefs = state.prefs();
    prefs.notifications = settings.notifications;
    state.set_prefs(prefs)?;
    state.set_paused(settings.paused).await?;
    crate::tray::show_paused(&app, settings.paused);
    if settings.start_at_login != prefs::start_at_login() {
        let exe = std::env::current_exe()?;
        prefs::set_start_at_login(settings.start_at_login, &exe)?;
    }
    let restart = config.listen != before.listen
        || config.maildir != before.maildir
        || config.idle_timeout != before.idle_timeout
        || config.max_message_size != before.max_message_size
        || config.interfaces != before.interfaces
        || config.settle_delay != before.settle_delay
        || config.fetch_interval != before.fetch_interval
        || state.listen_addr().await.is_none();
    if restart {
        state.start_service(&app).await.map_err(|e| {
            let mut err = UiError::new(format!("Saved, but Mailcall cannot run with them: {e}"));
            if e.contains("listen") || e.contains("bind") || e.contains("port") {
                err.fields.insert("listen".into(), e.clone());
            }
            err
        })?;
    }
    Ok(())
}

/// Creates or replaces an account (keyring first, then the config's list of names).
#[tauri::command]
pub async fn save_account(
    state: State<'_, AppState>,
    account: AccountForm,
) -> Result<AccountView, UiError> {
    let mut config = state.config()?;
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
        err.fields.insert(
            "name".into(),
            "An account with this name exists already: choose another name or edit that one".into(),
        );
        return Err(err);
    }
    let new = account.validate(stored.as_ref())?;
    if !original.is_empty() && original != new.name && config.accounts.contains(&new.name) {
        let mut err = UiError::new("Please correct the marked fields.");
        err.fields.insert(
            "name".into(),
            "Another account has this name already".into(),
        );
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
    if let Some(old) = &renamed_from {
        config.remove_account(old);
    }
    config.add_account(&new.name);
    config.save(&state.config_path)?;
    state.reload_accounts().await?;
    Ok(AccountView::from(&new))
}

/// Removes an account from the keyring and the config.
#[tauri::command]
pub async fn remove_account(state: State<'_, AppState>, name: String) -> Result<(), UiError> {
    let mut config = state.config()?;
    let store = state.store.clone();
    let n = name.clone();
    let in_keyring = tauri::async_runtime::spawn_blocking(move || store.remove(&n)).await??;
    let in_config = config.remove_account(&name);
    if in_config {
        config.save(&state.config_path)?;
    }
    if !in_keyring && !in_config {
        return Err(UiError::new(format!(
            "There is no account {name:?}; reload the window"
        )));
    }
    state.reload_accounts().await?;
    Ok(())
}

/// Connects to the ISP of the account in the form (not necessarily saved) and reports TLS,
/// AUTH and whether ETRN is advertised; no ETRN is sent.
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
    let account = account.validate(stored.as_ref())?;
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(15),
        reply_timeout: Duration::from_secs(30),
        ..ClientSettings::default()
    };
    let (info, error, transcript) = etrn::check_account(&account, &settings).await;
    let error = error.map(|e| e.to_string()).or_else(|| {
        (!info.etrn_advertised).then(|| {
            format!(
                "{}:{} does not advertise ETRN: ask the ISP whether it holds mail for ETRN, or check the host and port",
                account.host, account.port
            )
        })
    });
    Ok(CheckView {
        greeting: info.greeting,
        tls: info.tls,
        auth: match (&account.username, info.authenticated) {
            (None, _) => "not configured".into(),
            (Some(_), true) => "yes".into(),
            (Some(_), false) => "no".into(),
        },
        etrn_advertised: info.etrn_advertised,
        extensions: info.extensions,
        error,
        transcript: transcript.iter().map(|l| l.to_string()).collect(),
    })
}

/// The newest fetch sessions, newest first (transcripts have AUTH redacted already).
#[tauri::command]
pub async fn history(limit: Option<usize>) -> Result<Vec<SessionRecord>, UiError> {
    let path = config::data_dir()?.join(HISTORY_FILE);
    let limit = limit.unwrap_or(50).min(500);
    let (mut records, _bad) =
        tauri::async_runtime::spawn_blocking(move || History::new(path).recent(limit)).await??;
    records.reverse();
    Ok(records)
}

/// Starts a fetch of every account (the window's "Fetch now").
#[tauri::command]
pub async fn fetch_now<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<(), UiError> {
    state.fetch_now(&app, "window").await.map_err(UiError::new)
}
